//! Edge propagation to a DNS answer through the lab (issue #21 item 5): the fan-out server and
//! its publisher in namespace `b` (as [`super::lab_fanout`]), the edges, their DNS servers and
//! DNS clients in namespace `a` (127.0.0.1 there), at 50 ms RTT with 0, 1 and 5 % loss, over h2
//! and h3, for 1 and 64 edges. Only the Sync streams cross the impaired link; the DNS queries stay
//! in `a`, as a resolver next to its edge.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use netlab::Lab;
use serde::Serialize;

use super::lab_fanout::{counts_in_a, start_in_b};
use super::{LabSettings, link};
use crate::report::num;
use crate::scenarios::edge_dns::{COUNTS, measure_fleet};
use crate::target::Wire;

/// The (RTT ms, loss %) cells, before `--rtt`/`--loss` narrow them.
pub const CELLS: [(u64, f64); 3] = [(50, 0.0), (50, 1.0), (50, 5.0)];

/// The cells of `CELLS` that `--rtt` and `--loss` keep (an empty list keeps all).
pub fn cells(rtts_ms: &[u64], losses_pct: &[f64]) -> Vec<(u64, f64)> {
    CELLS
        .into_iter()
        .filter(|(rtt, loss)| {
            (rtts_ms.is_empty() || rtts_ms.contains(rtt))
                && (losses_pct.is_empty() || losses_pct.contains(loss))
        })
        .collect()
}

/// Figures of one (cell, wire, edge count).
#[derive(Debug, Clone, Serialize)]
pub struct DnsPoint {
    pub rtt_ms: u64,
    pub loss_pct: f64,
    pub wire: &'static str,
    pub edges: usize,
    /// Link one-way delay (server → edge), included in the figures.
    pub one_way_ms: f64,
    /// PushChanges → the edge's DNS answer carries the change.
    pub answered_p50_ms: Option<f64>,
    pub answered_p99_ms: Option<f64>,
    /// PushChanges → the edge applied the batch.
    pub applied_p50_ms: Option<f64>,
    pub applied_p99_ms: Option<f64>,
    pub stale_answers: Option<u64>,
    pub error: Option<String>,
}

/// Every cell × wire × edge count of `settings.edge_dns_cells`; failures become the point's error.
pub fn run_all(lab: &Lab, settings: &LabSettings) -> anyhow::Result<Vec<DnsPoint>> {
    let (target, stop, thread) = start_in_b(lab)?;
    let probes = Arc::new(AtomicU64::new(0));
    let mut points = Vec::new();
    for &(rtt_ms, loss_pct) in &settings.edge_dns_cells {
        lab.set(link(rtt_ms, loss_pct, 21), link(rtt_ms, loss_pct, 22))?;
        for wire in [Wire::H2, Wire::H3] {
            eprintln!(
                "zone-bench netlab: edge → DNS RTT {rtt_ms} ms, loss {loss_pct} %, {wire} ..."
            );
            let (target, probes, s) = (target.clone(), Arc::clone(&probes), settings.clone());
            // Bounded: set-up, then each round waits at most the delivery timeout.
            let limit = s.duration() * 4 + Duration::from_secs(40);
            let counts = COUNTS.iter().map(|&(edges, _)| edges).collect();
            let results = counts_in_a(lab, counts, limit, move |edges| {
                let (target, probes, s) = (target.clone(), Arc::clone(&probes), s.clone());
                async move {
                    let (publishes, duration) = (s.fanout_publishes, s.duration());
                    measure_fleet(&target, wire, edges, publishes, duration, &probes).await
                }
            })?;
            for (edges, r) in results {
                let (f, error) = match r {
                    Ok(f) => (Some(f), None),
                    Err(e) => (None, Some(e)),
                };
                points.push(DnsPoint {
                    rtt_ms,
                    loss_pct,
                    wire: if wire == Wire::H3 { "h3" } else { "h2" },
                    edges,
                    one_way_ms: rtt_ms as f64 / 2.0,
                    answered_p50_ms: f.map(|f| f.answered.0),
                    answered_p99_ms: f.map(|f| f.answered.1),
                    applied_p50_ms: f.map(|f| f.applied.0),
                    applied_p99_ms: f.map(|f| f.applied.1),
                    stale_answers: f.map(|f| f.stale),
                    error,
                });
            }
        }
    }
    let _ = lab.set(link(0, 0.0, 0), link(0, 0.0, 0));
    let _ = stop.send(());
    let _ = thread.join();
    Ok(points)
}

/// Table rows (header first): one row per cell and edge count, h2 and h3 side by side.
pub fn rows(points: &[DnsPoint]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "RTT ms",
            "loss %",
            "one-way ms",
            "edges",
            "h2 answered p50 ms",
            "h2 answered p99 ms",
            "h2 applied p99 ms",
            "h3 answered p50 ms",
            "h3 answered p99 ms",
            "h3 applied p99 ms",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    let figures = |rtt: u64, loss: f64, wire: &str, edges: usize| -> [String; 3] {
        let point = points
            .iter()
            .find(|p| p.rtt_ms == rtt && p.loss_pct == loss && p.wire == wire && p.edges == edges);
        let cell = |v: Option<f64>| v.map_or("—".to_string(), num);
        match point {
            None => ["—", "—", "—"].map(str::to_string),
            Some(p) if p.error.is_some() => ["error", "error", "error"].map(str::to_string),
            Some(p) => [
                cell(p.answered_p50_ms),
                cell(p.answered_p99_ms),
                cell(p.applied_p99_ms),
            ],
        }
    };
    let mut cells: Vec<(u64, f64)> = Vec::new();
    for p in points {
        if !cells.contains(&(p.rtt_ms, p.loss_pct)) {
            cells.push((p.rtt_ms, p.loss_pct));
        }
    }
    for (rtt, loss) in cells {
        for (edges, _) in COUNTS {
            let mut row = vec![
                rtt.to_string(),
                num(loss),
                num(rtt as f64 / 2.0),
                edges.to_string(),
            ];
            row.extend(figures(rtt, loss, "h2", edges));
            row.extend(figures(rtt, loss, "h3", edges));
            rows.push(row);
        }
    }
    rows
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rtt_and_loss_narrow_the_cells() {
        assert_eq!(cells(&[], &[]), CELLS);
        assert_eq!(cells(&[50], &[1.0, 5.0]), [(50, 1.0), (50, 5.0)]);
        assert!(cells(&[20], &[]).is_empty());
    }

    #[test]
    fn rows_put_both_wires_of_a_cell_side_by_side() {
        let point = |wire, edges, p99: Option<f64>, error: Option<&str>| DnsPoint {
            rtt_ms: 50,
            loss_pct: 1.0,
            wire,
            edges,
            one_way_ms: 25.0,
            answered_p50_ms: p99.map(|v| v / 2.0),
            answered_p99_ms: p99,
            applied_p50_ms: p99.map(|v| v / 2.0),
            applied_p99_ms: p99.map(|v| v - 0.5),
            stale_answers: p99.map(|_| 0),
            error: error.map(str::to_string),
        };
        let rows = rows(&[
            point("h2", 1, Some(30.0), None),
            point("h3", 1, Some(28.0), None),
            point("h2", 64, None, Some("timeout")),
        ]);
        assert_eq!(rows.len(), 3);
        let cell = [50.to_string(), num(1.0), num(25.0), 1.to_string()];
        assert_eq!(rows[1][..4], cell);
        assert_eq!(rows[1][5], num(30.0));
        assert_eq!(rows[1][9], num(27.5));
        assert_eq!(rows[2][4], "error");
        assert_eq!(rows[2][7], "—");
    }
}

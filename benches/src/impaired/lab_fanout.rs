//! Edge fan-out through the lab (issue #6.6): the fan-out server and its publisher in namespace
//! `b`, the `Sync` subscribers in namespace `a`, at a few (RTT, loss) cells over h2 and h3.
//! Propagation includes the link's one-way delay (RTT/2), reported next to it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use netlab::Lab;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{LabSettings, link};
use crate::scenarios::fanout::{FanoutTarget, JournalKind, measure, start_server};
use crate::target::Wire;

/// The (RTT ms, loss %) cells the fan-out runs at.
pub const CELLS: [(u64, f64); 3] = [(0, 0.0), (50, 1.0), (50, 5.0)];

/// p50/p99 of one (cell, wire, subscriber count).
#[derive(Debug, Clone, Serialize)]
pub struct FanoutPoint {
    pub rtt_ms: u64,
    pub loss_pct: f64,
    pub wire: &'static str,
    pub subscribers: usize,
    /// Link one-way delay (server → subscriber), included in the figures.
    pub one_way_ms: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error: Option<String>,
}

pub(super) type ServerThread = std::thread::JoinHandle<Result<(), String>>;
/// Per count: the figures or why not.
pub(super) type CountResults<T> = Vec<(usize, Result<T, String>)>;

/// Runs `measure` for each of `counts` in turn, each bounded by `limit`, on a runtime of its own
/// on a thread in namespace `a`; a failure (the runtime's too) becomes that count's error.
pub(super) fn counts_in_a<T, F, Fut>(
    lab: &Lab,
    counts: Vec<usize>,
    limit: Duration,
    measure: F,
) -> anyhow::Result<CountResults<T>>
where
    F: Fn(usize) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let joined = lab
        .spawn_in_a(move || -> Result<CountResults<T>, String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            Ok(rt.block_on(async {
                let mut out = Vec::new();
                for count in counts {
                    let r = tokio::time::timeout(limit, measure(count))
                        .await
                        .map_err(|_| format!("no result within {limit:?}"))
                        .and_then(|r| r.map_err(|e| format!("{e:#}")));
                    out.push((count, r));
                }
                out
            }))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace a panicked"))?;
    Ok(joined.unwrap_or_else(|e| vec![(0, Err(e))]))
}

/// Starts the fan-out server (memory journal) on a runtime in namespace `b`.
pub(super) fn start_in_b(
    lab: &Lab,
) -> anyhow::Result<(FanoutTarget, oneshot::Sender<()>, ServerThread)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<FanoutTarget, String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let ip = IpAddr::V4(lab.addr_b());
    let thread = lab.spawn_in_b(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let server = match start_server(ip, JournalKind::Memory).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return Err(format!("{e:#}"));
                }
            };
            // `target()` publishes on this runtime, i.e. in namespace b.
            let _ = ready_tx.send(Ok(server.target()));
            let _ = stop_rx.await;
            server.stop().await;
            Ok(())
        })
    })?;
    let target = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| anyhow::anyhow!("the fan-out server did not report: {e}"))?
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok((target, stop_tx, thread))
}

/// Every cell × wire × subscriber count; failures become the point's error.
pub fn run_all(lab: &Lab, settings: &LabSettings) -> anyhow::Result<Vec<FanoutPoint>> {
    let (target, stop, thread) = start_in_b(lab)?;
    let n = Arc::new(AtomicU64::new(0));
    let mut points = Vec::new();
    for (rtt_ms, loss_pct) in CELLS {
        lab.set(link(rtt_ms, loss_pct, 11), link(rtt_ms, loss_pct, 12))?;
        for wire in [Wire::H2, Wire::H3] {
            eprintln!(
                "zone-bench netlab: edge fan-out RTT {rtt_ms} ms, loss {loss_pct} %, {wire} ..."
            );
            let (target, n, s) = (target.clone(), Arc::clone(&n), settings.clone());
            // Bounded: each publish waits at most the delivery timeout.
            let limit = s.duration() * 4 + Duration::from_secs(30);
            let results = counts_in_a(lab, s.fanout_counts.clone(), limit, move |count| {
                let (target, n, s) = (target.clone(), Arc::clone(&n), s.clone());
                let publishes = if count >= 1000 {
                    s.fanout_publishes / 10
                } else {
                    s.fanout_publishes
                };
                async move { measure(&target, wire, count, publishes, s.duration(), &n).await }
            })?;
            for (subscribers, r) in results {
                let (p50_ms, p99_ms, error) = match r {
                    Ok((a, b)) => (Some(a), Some(b), None),
                    Err(e) => (None, None, Some(e)),
                };
                points.push(FanoutPoint {
                    rtt_ms,
                    loss_pct,
                    wire: if wire == Wire::H3 { "h3" } else { "h2" },
                    subscribers,
                    one_way_ms: rtt_ms as f64 / 2.0,
                    p50_ms,
                    p99_ms,
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

/// Table rows (header first): one row per cell and count, h2 and h3 side by side.
pub fn rows(points: &[FanoutPoint]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "RTT ms",
            "loss %",
            "one-way ms",
            "subscribers",
            "h2 p50 ms",
            "h2 p99 ms",
            "h3 p50 ms",
            "h3 p99 ms",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    let fig = |rtt: u64, loss: f64, wire: &str, subs: usize| {
        points
            .iter()
            .find(|p| {
                p.rtt_ms == rtt && p.loss_pct == loss && p.wire == wire && p.subscribers == subs
            })
            .map_or(("—".to_string(), "—".to_string()), |p| match &p.error {
                Some(_) => ("error".to_string(), "error".to_string()),
                None => (
                    p.p50_ms.map_or("—".into(), crate::report::num),
                    p.p99_ms.map_or("—".into(), crate::report::num),
                ),
            })
    };
    let mut counts: Vec<usize> = points.iter().map(|p| p.subscribers).collect();
    counts.sort_unstable();
    counts.dedup();
    for (rtt, loss) in CELLS {
        for &c in &counts {
            let (a, b) = fig(rtt, loss, "h2", c);
            let (x, y) = fig(rtt, loss, "h3", c);
            rows.push(vec![
                rtt.to_string(),
                crate::report::num(loss),
                crate::report::num(rtt as f64 / 2.0),
                c.to_string(),
                a,
                b,
                x,
                y,
            ]);
        }
    }
    rows
}

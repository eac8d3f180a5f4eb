//! `zone-bench faults`, balanced failover (issue #20 item 5): three server processes behind one
//! balanced channel (`grpc_h3::Balance`, power of two choices), 64 unary calls kept in flight,
//! one server SIGKILLed mid-run. Counted: the calls that failed (the channel retries only calls
//! that never left, gRFC A6; the load retries nothing), the calls in flight on the killed server
//! when it died, and the time from the kill until the rate is back to 90 % of what it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use grpc_h3::{Balance, Channel, QuicSettings};
use serde::Serialize;
use tokio::task::JoinSet;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;

use super::{ChildServer, Env, FAULT_CALL_TIMEOUT, SIZE, simple_request};
use crate::report::num;
use crate::soak::code_name;
use crate::target::Wire;

/// Calls kept in flight (one per worker).
pub const IN_FLIGHT: usize = 64;
const SERVERS: usize = 3;
/// Width of the rate timeline's bins.
const BIN: Duration = Duration::from_millis(100);
/// The rate counts as back once this many bins in a row reach 90 % of the rate before the kill.
const BACK_BINS: usize = 3;
/// Keep-alive of both wires; HTTP/3's idle timeout is three of them (a dead QUIC peer whose host
/// sends no ICMP unreachable is found by its silence).
const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// One wire's failover: a row of the failover table.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverCase {
    pub wire: Wire,
    pub detail: String,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    /// Calls in flight on the killed server just before the kill (the balancer's count).
    pub in_flight_on_killed: usize,
    /// Failed calls the balancer counted on the killed server.
    pub failed_on_killed: u64,
    /// Calls per second over the second before the kill, and over the last second of the run.
    pub rate_before: f64,
    pub rate_after: f64,
    /// Kill → first of [`BACK_BINS`] bins in a row at ≥ 90 % of `rate_before`.
    pub back_to_rate_ms: Option<f64>,
    /// Kill → first failed call.
    pub first_error_ms: Option<f64>,
    /// Kill → the balancer took the killed server out of picking (ejected).
    pub ejected_after_ms: Option<f64>,
    /// The slowest 100 ms bin of the two seconds after the kill, as a share of the average bin
    /// of the second before: how deep the dip went.
    pub worst_bin_share: f64,
    pub error: Option<String>,
}

impl FailoverCase {
    /// A row saying why the case could not run.
    pub fn failed(wire: Wire, detail: String, error: String) -> FailoverCase {
        FailoverCase {
            wire,
            detail,
            calls_ok: 0,
            calls_failed: 0,
            failed_by_code: BTreeMap::new(),
            in_flight_on_killed: 0,
            failed_on_killed: 0,
            rate_before: 0.0,
            rate_after: 0.0,
            back_to_rate_ms: None,
            first_error_ms: None,
            ejected_after_ms: None,
            worst_bin_share: 0.0,
            error: Some(error),
        }
    }
}

/// What the workers share with the controller.
struct Load {
    origin: Instant,
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    by_code: std::sync::Mutex<BTreeMap<String, u64>>,
    killed_at_ns: AtomicU64,
    first_error_ns: AtomicU64,
    /// Successful calls per bin since `origin`.
    bins: Vec<AtomicU64>,
}

impl Load {
    fn new(total: Duration) -> Load {
        let n = (total.as_millis() / BIN.as_millis()) as usize + 1;
        Load {
            origin: Instant::now(),
            stop: AtomicBool::new(false),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            by_code: std::sync::Mutex::new(BTreeMap::new()),
            killed_at_ns: AtomicU64::new(0),
            first_error_ns: AtomicU64::new(0),
            bins: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        let bin = (self.origin.elapsed().as_millis() / BIN.as_millis()) as usize;
        if let Some(b) = self.bins.get(bin) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self, code: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let killed = self.killed_at_ns.load(Ordering::Acquire);
        if killed != 0 {
            let _ = self.first_error_ns.compare_exchange(
                0,
                self.now_ns().max(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        let mut map = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(code.to_string()).or_default() += 1;
    }
}

async fn worker(channel: Channel, load: Arc<Load>) {
    let mut client = TestServiceClient::new(channel);
    let request = simple_request();
    while !load.stop.load(Ordering::Relaxed) {
        match client.unary_call(request.clone()).await {
            Ok(r) if r.get_ref().payload.as_ref().map_or(0, |p| p.body.len()) == SIZE => load.ok(),
            Ok(_) => load.failed("WRONG_ANSWER"),
            Err(status) => {
                load.failed(code_name(status.code()));
                // No hot loop when every call fails at once.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Calls per second of `bins[from..to]`.
fn rate(bins: &[u64], from: usize, to: usize) -> f64 {
    let to = to.min(bins.len());
    if to <= from {
        return 0.0;
    }
    let calls: u64 = bins[from..to].iter().sum();
    calls as f64 / ((to - from) as f64 * BIN.as_secs_f64())
}

/// Bins from `kill_bin` until [`BACK_BINS`] in a row reach 90 % of `before`, as ms after the
/// kill (measured from the start of the first such bin).
fn back_to_rate(bins: &[u64], kill_bin: usize, kill_offset_ms: f64, before: f64) -> Option<f64> {
    let per_bin = 0.9 * before * BIN.as_secs_f64();
    let mut run = 0;
    for (i, &n) in bins.iter().enumerate().skip(kill_bin) {
        if n as f64 >= per_bin {
            run += 1;
            if run == BACK_BINS {
                let first = i + 1 - BACK_BINS;
                let at = (first as u128 * BIN.as_millis()) as f64;
                return Some((at - kill_offset_ms).max(0.0));
            }
        } else {
            run = 0;
        }
    }
    None
}

/// The lowest bin of the 2 s from `kill_bin` (the kill's own bin excluded) over the average bin
/// at `before` calls/s.
fn worst_bin_share(bins: &[u64], kill_bin: usize, before: f64) -> f64 {
    let per_bin = before * BIN.as_secs_f64();
    let window = (2.0 / BIN.as_secs_f64()) as usize;
    let end = (kill_bin + 1 + window).min(bins.len());
    match bins.get(kill_bin + 1..end).and_then(|w| w.iter().min()) {
        Some(&min) if per_bin > 0.0 => min as f64 / per_bin,
        _ => 0.0,
    }
}

/// Three servers, one killed under load, over `wire`.
pub async fn balanced_kill(
    env: Arc<Env>,
    wire: Wire,
    detail: String,
) -> anyhow::Result<FailoverCase> {
    let s = &env.settings;
    let before = Duration::from_millis(s.before_kill_ms.max(1_000));
    let after = Duration::from_millis(s.after_recovery_ms.max(1_000)) + KEEP_ALIVE * 6;
    let mut servers = Vec::with_capacity(SERVERS);
    for _ in 0..SERVERS {
        servers.push(ChildServer::start(0, &env.cert_dir).await?);
    }
    let mut endpoints = Vec::with_capacity(SERVERS);
    for server in &servers {
        endpoints.push(
            env.endpoint(server.port, wire)?
                .timeout(FAULT_CALL_TIMEOUT)
                .connect_timeout(FAULT_CALL_TIMEOUT)
                .keep_alive_interval(KEEP_ALIVE)
                .keep_alive_timeout(KEEP_ALIVE)
                .quic_settings(QuicSettings::default().idle_timeout(KEEP_ALIVE * 3)),
        );
    }
    let channel = Balance::new().list(endpoints);
    channel
        .ready()
        .await
        .context("connecting the balanced channel")?;
    // Every backend connected before the load starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel.backends().iter().filter(|b| b.ready).count() < SERVERS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "backends not ready: {:?}",
            channel.backends()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let load = Arc::new(Load::new(before + after + Duration::from_secs(2)));
    let mut workers = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        workers.spawn(worker(channel.clone(), load.clone()));
    }
    tokio::time::sleep(before).await;
    let victim = servers.remove(1);
    let victim_name = format!("127.0.0.1:{}", victim.port);
    let in_flight_on_killed = channel
        .backends()
        .iter()
        .find(|b| b.name == victim_name)
        .map_or(0, |b| b.in_flight);
    let kill_ns = load.now_ns().max(1);
    load.killed_at_ns.store(kill_ns, Ordering::Release);
    victim.kill().await;
    // Watch for the ejection while the load runs.
    let watch_until = Instant::now() + after;
    let mut ejected_after_ms = None;
    while Instant::now() < watch_until {
        let ready = channel
            .backends()
            .iter()
            .find(|b| b.name == victim_name)
            .is_some_and(|b| b.ready);
        if !ready && ejected_after_ms.is_none() {
            ejected_after_ms = Some((load.now_ns().saturating_sub(kill_ns)) as f64 / 1e6);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = workers.join_next().await {
        joined.context("a load worker failed")?;
    }
    let end_bin = (load.origin.elapsed().as_millis() / BIN.as_millis()) as usize;
    for server in servers {
        server.kill().await;
    }

    let bins: Vec<u64> = load
        .bins
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let kill_ms = kill_ns as f64 / 1e6;
    let kill_bin = (kill_ms / BIN.as_secs_f64() / 1e3) as usize;
    let per_second = (1.0 / BIN.as_secs_f64()) as usize;
    let rate_before = rate(&bins, kill_bin.saturating_sub(per_second), kill_bin);
    // The last whole second before the workers stopped.
    let last = end_bin.saturating_sub(1);
    let rate_after = rate(&bins, last.saturating_sub(per_second), last);
    let first_error = load.first_error_ns.load(Ordering::Relaxed);
    let failed_on_killed = channel
        .backends()
        .iter()
        .find(|b| b.name == victim_name)
        .map_or(0, |b| b.failed);
    Ok(FailoverCase {
        wire,
        detail,
        calls_ok: load.ok.load(Ordering::Relaxed),
        calls_failed: load.failed.load(Ordering::Relaxed),
        failed_by_code: load
            .by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        in_flight_on_killed,
        failed_on_killed,
        rate_before,
        rate_after,
        back_to_rate_ms: back_to_rate(&bins, kill_bin, kill_ms, rate_before),
        ejected_after_ms,
        worst_bin_share: worst_bin_share(&bins, kill_bin, rate_before),
        first_error_ms: (first_error != 0)
            .then(|| (first_error.saturating_sub(kill_ns)) as f64 / 1e6),
        error: None,
    })
}

/// The failover table's rows.
pub fn rows(cases: &[FailoverCase]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "transport",
            "setting",
            "calls ok",
            "failed",
            "by code",
            "in flight on killed",
            "failed on killed (balancer)",
            "calls/s before",
            "calls/s after",
            "worst 100 ms bin",
            "back to 90 % rate, ms",
            "first error ms",
            "ejected after ms",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for c in cases {
        if let Some(e) = &c.error {
            rows.push(vec![
                c.wire.to_string(),
                c.detail.clone(),
                format!("error: {e}"),
            ]);
            continue;
        }
        let codes = if c.failed_by_code.is_empty() {
            "—".to_string()
        } else {
            c.failed_by_code
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(vec![
            c.wire.to_string(),
            c.detail.clone(),
            crate::soak::int(c.calls_ok),
            c.calls_failed.to_string(),
            codes,
            c.in_flight_on_killed.to_string(),
            c.failed_on_killed.to_string(),
            num(c.rate_before),
            num(c.rate_after),
            format!("{:.0} %", c.worst_bin_share * 100.0),
            c.back_to_rate_ms
                .map_or_else(|| "not within the run".into(), num),
            c.first_error_ms.map_or_else(|| "—".into(), num),
            c.ejected_after_ms.map_or_else(|| "—".into(), num),
        ]);
    }
    rows
}

/// The H3/H2 comparison line under the table.
pub fn ratio_line(cases: &[FailoverCase]) -> Option<String> {
    let get = |w: Wire| cases.iter().find(|c| c.wire == w && c.error.is_none());
    let (h2, h3) = (get(Wire::H2)?, get(Wire::H3)?);
    Some(format!(
        "failover H3 vs H2: failed calls {} vs {}; dead server ejected after {} vs {} ms; worst \
         100 ms bin {:.0} % vs {:.0} %; back to 90 % rate {} vs {} ms",
        h3.calls_failed,
        h2.calls_failed,
        h3.ejected_after_ms.map_or_else(|| "—".into(), num),
        h2.ejected_after_ms.map_or_else(|| "—".into(), num),
        h3.worst_bin_share * 100.0,
        h2.worst_bin_share * 100.0,
        h3.back_to_rate_ms.map_or_else(|| "—".into(), num),
        h2.back_to_rate_ms.map_or_else(|| "—".into(), num),
    ))
}

pub const LEGEND: &str = "failover: 3 server processes behind one balanced Channel (power of two \
    choices), 64 unary calls in flight, the second server SIGKILLed; calls are not retried by the \
    load (the channel moves only calls that never left, gRFC A6). back to 90 % rate = kill → the \
    first of 3 consecutive 100 ms bins at ≥ 90 % of the second before the kill (on a 2-core \
    loopback machine the kill also frees CPU, so the rate may not dip at all: see the worst bin). \
    ejected after = kill → the balancer stops picking the dead server (HTTP/2: the kernel's RST; \
    HTTP/3: the ICMP port unreachable its next datagram meets, else the QUIC idle timeout); calls \
    sent to it meanwhile fail with it.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_recovery_come_from_the_bins() {
        // 10 bins of 100 before, a kill at bin 10 (1000 ms), two slow bins, then back.
        let mut bins = vec![100; 10];
        bins.extend([20, 50, 95, 95, 95, 100]);
        assert_eq!(rate(&bins, 0, 10), 1000.0);
        assert_eq!(back_to_rate(&bins, 10, 1000.0, 1000.0), Some(200.0));
        // Never three good bins in a row.
        let bins = [100, 100, 10, 95, 10, 95, 95];
        assert_eq!(back_to_rate(&bins, 2, 200.0, 1000.0), None);
        // The worst bin after the kill's own: 20 of 100.
        let mut bins = vec![100; 10];
        bins.extend([5, 20, 50, 95]);
        assert_eq!(worst_bin_share(&bins, 10, 1000.0), 0.2);
    }
}

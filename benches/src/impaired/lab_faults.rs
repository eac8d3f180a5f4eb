//! `netlab` fault cases (issue #7.5): unary load over HTTP/2 and HTTP/3 while the lab
//! partitions the link and heals it, or drops packets in bursts ([`Schedule`]). Counts calls
//! that succeeded at once, succeeded on a retry, or failed (by final status), and how long after
//! each heal the first call succeeded again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use grpc_h3::{Endpoint, Transport};
use netlab::{Impairment, Lab, Schedule};
use serde::Serialize;
use tokio::task::JoinSet;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{Payload, SimpleRequest};

use crate::report::num;

/// Calls in flight at once (one channel).
const CONCURRENCY: usize = 4;
/// Deadline of one attempt (sent as `grpc-timeout`; the client also stops waiting after it).
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(1);
/// Attempts per call: the first and up to two retries on a retryable status.
const MAX_ATTEMPTS: u32 = 3;
/// One-way delay of the link outside the faults (RTT 20 ms).
const BASE_DELAY: Duration = Duration::from_millis(10);

/// One fault case: its name, its schedule and how long load runs.
struct FaultCase {
    name: &'static str,
    description: &'static str,
    schedule: Schedule,
    total: Duration,
}

fn cases() -> Vec<FaultCase> {
    let base = Impairment {
        delay: BASE_DELAY,
        ..Impairment::default()
    };
    let s = Duration::from_secs;
    vec![
        FaultCase {
            name: "partition",
            description: "RTT 20 ms; every packet dropped both ways from 2 s to 5 s, then healed; \
                          load until 9 s",
            schedule: Schedule::partition(&base, s(2), s(3)),
            total: s(9),
        },
        FaultCase {
            name: "loss-bursts",
            description: "RTT 20 ms; 30 % loss both ways for 2 s every 5 s (at 1, 6 and 11 s); \
                          load until 13 s",
            schedule: Schedule::loss_bursts(&base, 0.3, s(1), s(2), s(5), s(13)),
            total: s(13),
        },
    ]
}

/// Outcome of one fault case on one transport.
#[derive(Debug, Clone, Serialize)]
pub struct FaultResult {
    pub case: &'static str,
    pub description: &'static str,
    /// `h2` (TCP Cubic) or `h3` (QUIC Cubic).
    pub wire: &'static str,
    /// Calls started (each up to [`MAX_ATTEMPTS`] attempts).
    pub calls: u64,
    pub ok_first_try: u64,
    pub ok_after_retry: u64,
    pub failed: u64,
    /// Final status of each failed call.
    pub failed_by_status: BTreeMap<String, u64>,
    /// Status of every failed attempt (retried or not).
    pub attempts_failed_by_status: BTreeMap<String, u64>,
    /// Per fault window: ms from its end (the heal) to the first successful call completing.
    pub recovery_ms: Vec<Option<f64>>,
    /// Longest stretch without a successful call completing, ms.
    pub longest_gap_ms: f64,
    /// When each step of the schedule took effect (s from the start).
    pub applied_s: Vec<f64>,
    /// Why the case could not run, if it could not.
    pub error: Option<String>,
}

/// What one call did: completion offset, attempts, final status (`None` = OK).
struct CallRecord {
    done: Duration,
    attempts: u32,
    failed_statuses: Vec<String>,
    ok: bool,
}

fn status_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// Retry policy of the load: an idempotent call is retried when the attempt ran out of time or
/// the transport was unavailable — not on an answer from the server.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

async fn one_call(client: &mut TestServiceClient<grpc_h3::Channel>, epoch: Instant) -> CallRecord {
    let mut failed_statuses = Vec::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let mut request = tonic::Request::new(SimpleRequest {
            response_size: 64,
            payload: Some(Payload {
                r#type: 0,
                body: vec![0x5a; 64],
            }),
            ..SimpleRequest::default()
        });
        request.set_timeout(ATTEMPT_DEADLINE);
        // The client's own bound, in case a deadline is not enforced locally.
        let outcome = tokio::time::timeout(
            ATTEMPT_DEADLINE + Duration::from_millis(200),
            client.unary_call(request),
        )
        .await;
        let code = match outcome {
            Ok(Ok(_)) => {
                return CallRecord {
                    done: epoch.elapsed(),
                    attempts: attempt,
                    failed_statuses,
                    ok: true,
                };
            }
            Ok(Err(status)) => status.code(),
            Err(_) => tonic::Code::DeadlineExceeded,
        };
        failed_statuses.push(status_name(code));
        if !retryable(code) {
            break;
        }
    }
    CallRecord {
        done: epoch.elapsed(),
        attempts: u32::try_from(failed_statuses.len()).unwrap_or(MAX_ATTEMPTS),
        failed_statuses,
        ok: false,
    }
}

/// Connects in namespace `a`, signals `ready`, waits for the schedule's start and runs the load
/// until `total` after it.
async fn load(
    addr: SocketAddr,
    transport: Transport,
    ca_pem: Vec<u8>,
    total: Duration,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    start: std::sync::mpsc::Receiver<Instant>,
) -> Result<Vec<CallRecord>, String> {
    let connected = async {
        let channel = Endpoint::new(format!("https://{addr}"))?
            .transport(transport)
            .server_name("localhost")
            .ca_certificate_pem(&ca_pem)?
            .connect()
            .await?;
        Ok::<_, grpc_h3::Error>(TestServiceClient::new(channel))
    }
    .await
    .map_err(|e| e.to_string());
    let client = match connected {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let epoch = tokio::task::spawn_blocking(move || start.recv_timeout(Duration::from_secs(10)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("no start signal: {e}"))?;
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (mut client, records) = (client.clone(), Arc::clone(&records));
        workers.spawn(async move {
            // Bounded: no call starts after `total`, each takes at most MAX_ATTEMPTS deadlines.
            while epoch.elapsed() < total {
                let r = one_call(&mut client, epoch).await;
                if let Ok(mut all) = records.lock() {
                    all.push(r);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut all = records.lock().map_err(|e| e.to_string())?;
    Ok(std::mem::take(&mut *all))
}

/// Runs one case over one transport with the client in namespace `a`.
fn run_case(
    lab: &Lab,
    case: &FaultCase,
    wire: &'static str,
    addr: SocketAddr,
    transport: Transport,
    ca_pem: &[u8],
) -> FaultResult {
    let mut result = FaultResult {
        case: case.name,
        description: case.description,
        wire,
        calls: 0,
        ok_first_try: 0,
        ok_after_retry: 0,
        failed: 0,
        failed_by_status: BTreeMap::new(),
        attempts_failed_by_status: BTreeMap::new(),
        recovery_ms: Vec::new(),
        longest_gap_ms: 0.0,
        applied_s: Vec::new(),
        error: None,
    };
    let base = case.schedule.steps.first().map(|s| s.a_to_b.clone());
    if let Some(base) = &base
        && let Err(e) = lab.set(base.clone(), base.clone())
    {
        result.error = Some(e.to_string());
        return result;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (start_tx, start_rx) = std::sync::mpsc::channel();
    let (ca, total) = (ca_pem.to_vec(), case.total);
    let thread = lab.spawn_in_a(move || -> Result<Vec<CallRecord>, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(load(addr, transport, ca, total, ready_tx, start_rx))
    });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| format!("the client did not connect: {e}"))
        .and_then(|r| r);
    let player =
        match ready.and_then(|()| lab.play(case.schedule.clone()).map_err(|e| e.to_string())) {
            Ok(p) => p,
            Err(e) => {
                drop(start_tx);
                let _ = thread.join();
                result.error = Some(e);
                return result;
            }
        };
    let _ = start_tx.send(player.started());
    let records = thread
        .join()
        .map_err(|_| "the client thread panicked".to_string())
        .and_then(|r| r);
    result.applied_s = player
        .finish(case.total + Duration::from_secs(5))
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    if let Some(base) = base {
        let _ = lab.set(base.clone(), base);
    }
    match records {
        Ok(records) => tally(
            &mut result,
            &records,
            &case.schedule.windows(0.0),
            case.total,
        ),
        Err(e) => result.error = Some(e),
    }
    result
}

/// Fills the counts, recovery times and the longest gap from the call records.
fn tally(
    result: &mut FaultResult,
    records: &[CallRecord],
    windows: &[(Duration, Duration)],
    total: Duration,
) {
    for r in records {
        result.calls += 1;
        for s in &r.failed_statuses {
            *result
                .attempts_failed_by_status
                .entry(s.clone())
                .or_default() += 1;
        }
        match (r.ok, r.attempts) {
            (true, 1) => result.ok_first_try += 1,
            (true, _) => result.ok_after_retry += 1,
            (false, _) => {
                result.failed += 1;
                let last = r.failed_statuses.last().cloned().unwrap_or_default();
                *result.failed_by_status.entry(last).or_default() += 1;
            }
        }
    }
    let mut ok: Vec<Duration> = records.iter().filter(|r| r.ok).map(|r| r.done).collect();
    ok.sort();
    result.recovery_ms = windows
        .iter()
        .map(|&(_, heal)| {
            ok.iter()
                .find(|&&t| t >= heal)
                .map(|&t| (t - heal).as_secs_f64() * 1e3)
        })
        .collect();
    let mut last = Duration::ZERO;
    let mut gap = Duration::ZERO;
    for &t in ok.iter().chain(std::iter::once(
        &total.max(ok.last().copied().unwrap_or_default()),
    )) {
        gap = gap.max(t.saturating_sub(last));
        last = t;
    }
    result.longest_gap_ms = gap.as_secs_f64() * 1e3;
}

/// Every fault case over h2 and h3 (both Cubic) against the servers at `h2`/`h3`.
pub fn run_all(lab: &Lab, h2: SocketAddr, h3: SocketAddr, ca_pem: &[u8]) -> Vec<FaultResult> {
    let mut out = Vec::new();
    for case in cases() {
        for (wire, addr, transport) in [("h2", h2, Transport::H2), ("h3", h3, Transport::H3)] {
            eprintln!("zone-bench netlab: fault {} over {wire} ...", case.name);
            out.push(run_case(lab, &case, wire, addr, transport, ca_pem));
        }
    }
    out
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "—".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Table rows (header first).
pub fn rows(results: &[FaultResult]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "fault",
            "wire",
            "calls",
            "ok 1st try",
            "ok on retry",
            "failed (final status)",
            "failed attempts (status)",
            "recovery after heal ms",
            "longest gap ms",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for r in results {
        if let Some(e) = &r.error {
            rows.push(vec![
                r.case.to_string(),
                r.wire.to_string(),
                format!("error: {e}"),
            ]);
            continue;
        }
        let recovery = r
            .recovery_ms
            .iter()
            .map(|v| v.map_or_else(|| "never".to_string(), num))
            .collect::<Vec<_>>()
            .join(" / ");
        rows.push(vec![
            r.case.to_string(),
            r.wire.to_string(),
            r.calls.to_string(),
            r.ok_first_try.to_string(),
            r.ok_after_retry.to_string(),
            format!("{} ({})", r.failed, counts(&r.failed_by_status)),
            counts(&r.attempts_failed_by_status),
            recovery,
            num(r.longest_gap_ms),
        ]);
    }
    rows
}

/// The cases in words, for the report.
pub fn notes() -> String {
    let mut out = format!(
        "Unary 64 B, {CONCURRENCY} calls in flight on one channel (connected before the fault; \
         h2 = TCP Cubic, h3 = QUIC Cubic); each attempt has a {} ms deadline, a call is retried \
         up to {} times on DeadlineExceeded/Unavailable/Cancelled. Recovery = from the end of \
         each fault window to the first successful call completing.\n",
        ATTEMPT_DEADLINE.as_millis(),
        MAX_ATTEMPTS - 1
    );
    for c in cases() {
        let _ = writeln!(out, "- {}: {}", c.name, c.description);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rec(done_ms: u64, attempts: u32, failed: &[&str], ok: bool) -> CallRecord {
        CallRecord {
            done: Duration::from_millis(done_ms),
            attempts,
            failed_statuses: failed.iter().map(|s| s.to_string()).collect(),
            ok,
        }
    }

    #[test]
    fn tally_counts_retries_failures_and_recovery() {
        let mut r = FaultResult {
            case: "partition",
            description: "",
            wire: "h3",
            calls: 0,
            ok_first_try: 0,
            ok_after_retry: 0,
            failed: 0,
            failed_by_status: BTreeMap::new(),
            attempts_failed_by_status: BTreeMap::new(),
            recovery_ms: Vec::new(),
            longest_gap_ms: 0.0,
            applied_s: Vec::new(),
            error: None,
        };
        let records = [
            rec(100, 1, &[], true),
            rec(1900, 1, &[], true),
            rec(5000, 3, &["DeadlineExceeded"; 3], false),
            rec(5250, 2, &["DeadlineExceeded"], true),
            rec(5300, 1, &["Internal"], false),
            rec(8000, 1, &[], true),
        ];
        let windows = [(Duration::from_secs(2), Duration::from_secs(5))];
        tally(&mut r, &records, &windows, Duration::from_secs(9));
        assert_eq!(
            (r.calls, r.ok_first_try, r.ok_after_retry, r.failed),
            (6, 3, 1, 2)
        );
        assert_eq!(r.failed_by_status["DeadlineExceeded"], 1);
        assert_eq!(r.failed_by_status["Internal"], 1);
        assert_eq!(r.attempts_failed_by_status["DeadlineExceeded"], 4);
        assert_eq!(r.recovery_ms, [Some(250.0)]);
        // 1.9 s -> 5.25 s without a success.
        assert!(
            (r.longest_gap_ms - 3350.0).abs() < 1e-6,
            "{}",
            r.longest_gap_ms
        );
        assert!(retryable(tonic::Code::Unavailable) && !retryable(tonic::Code::Internal));
    }
}

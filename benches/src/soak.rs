//! `zone-bench soak`: sustained mixed load on each wire against the in-process servers (issue #7
//! item 4), sampled every second, to show that errors stay at zero, p99 does not drift and memory
//! and file descriptors plateau.
//!
//! Per wire, one channel carries for the whole (bounded) run: unary 64 B calls from many workers
//! back to back, paced zone transfers and 64 KiB server streams, and one long-lived bidi stream.
//! A failed call is counted by its status code and the load goes on (a soak counts failures; it
//! does not stop at the first). Client and servers share this process, so RSS and fds are of both.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{
    Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
};
use zone_proto::zone::v1::TransferRequest;
use zone_proto::zone::v1::zones_client::ZonesClient;

use crate::cli::{Args, Profile, Settings};
use crate::report::{layout, num, table};
use crate::results::{Machine, git_commit};
use crate::runner::guarded;
use crate::scenarios::{LARGE, SMALL, TRANSFER_ZONE};
use crate::servers::LocalServers;
use crate::target::{AnyChannel, ServerSet, Target, Wire};

/// The soaked wires: each server under its own client (a soak is about the servers).
const SOAK_WIRES: [Wire; 3] = [Wire::H2, Wire::H3, Wire::Peer];

/// Deadline of every call and of every stream read; a hang becomes a counted error.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Pause of a worker after a failed call, so a dead server does not turn into a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(20);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// RSS growth over the second half of a wire's run below which it counts as a plateau.
pub const PLATEAU_PCT: f64 = 10.0;
/// Client decode limit: above the largest message the soak asks for.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Latency histograms track up to a minute (calls are cut at [`CALL_DEADLINE`]).
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// The workload of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSettings {
    pub profile: Profile,
    /// Length of each wire's run (the wires run one after the other).
    pub secs_per_wire: u64,
    pub unary_concurrency: usize,
    pub unary_size: usize,
    /// Upper bound on unary calls of one wire (the time bound normally ends the run first).
    pub max_unary_calls: u64,
    pub transfer_workers: usize,
    pub transfer_every_ms: u64,
    pub zone_records: usize,
    pub stream_workers: usize,
    pub stream_messages: usize,
    pub stream_every_ms: u64,
    pub bidi_every_ms: u64,
    pub call_deadline_s: f64,
    pub plateau_threshold_pct: f64,
    pub wires: Vec<Wire>,
}

impl SoakSettings {
    pub fn from_args(args: &Args, bench: &Settings) -> SoakSettings {
        let (secs, unary_concurrency) = match bench.profile {
            Profile::Full => (300, 64),
            Profile::Quick => (20, 64),
            Profile::Tiny => (3, 16),
        };
        let secs_per_wire = args
            .soak_secs
            .unwrap_or(secs)
            .clamp(1, crate::cli::MAX_SOAK_SECS);
        let wires = SOAK_WIRES
            .into_iter()
            .filter(|w| bench.wires.is_empty() || bench.wires.contains(w))
            .collect();
        SoakSettings {
            profile: bench.profile,
            secs_per_wire,
            unary_concurrency,
            unary_size: SMALL,
            max_unary_calls: secs_per_wire * 200_000,
            transfer_workers: 2,
            transfer_every_ms: 500,
            zone_records: bench.zone_records,
            stream_workers: 2,
            stream_messages: 16,
            stream_every_ms: 200,
            bidi_every_ms: 10,
            call_deadline_s: CALL_DEADLINE.as_secs_f64(),
            plateau_threshold_pct: PLATEAU_PCT,
            wires,
        }
    }
}

/// The canonical name of a status code (`UNAVAILABLE`), as the gRPC docs and other stacks print it.
pub use grpc_h3::metrics::code_name;

/// Resident set size of this process in KiB (`VmRSS` of /proc/self/status; Linux only).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of this process (entries of /proc/self/fd, minus the one listing it).
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)?)
}

/// Counters the workers of one wire share with the sampler.
struct Shared {
    unary_ok: AtomicU64,
    transfers_ok: AtomicU64,
    streams_ok: AtomicU64,
    bidi_ok: AtomicU64,
    errors: AtomicU64,
    by_code: Mutex<BTreeMap<String, u64>>,
    /// Unary latency (ns) of the current interval; the sampler swaps it out every second.
    unary_latency: Mutex<Histogram<u64>>,
    claimed: AtomicU64,
}

impl Shared {
    fn new() -> anyhow::Result<Shared> {
        Ok(Shared {
            unary_ok: AtomicU64::new(0),
            transfers_ok: AtomicU64::new(0),
            streams_ok: AtomicU64::new(0),
            bidi_ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            by_code: Mutex::new(BTreeMap::new()),
            unary_latency: Mutex::new(histogram()?),
            claimed: AtomicU64::new(0),
        })
    }

    fn fail(&self, what: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut map = self.by_code.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(what.to_string()).or_default() += 1;
    }

    fn fail_status(&self, status: &tonic::Status) {
        self.fail(code_name(status.code()));
    }

    fn ok_total(&self) -> u64 {
        self.unary_ok.load(Ordering::Relaxed)
            + self.transfers_ok.load(Ordering::Relaxed)
            + self.streams_ok.load(Ordering::Relaxed)
            + self.bidi_ok.load(Ordering::Relaxed)
    }
}

/// One second of one wire's run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakInterval {
    /// End of the interval, seconds since the wire's load started.
    pub t_s: f64,
    pub unary_ok: u64,
    pub streams_ok: u64,
    pub bidi_ok: u64,
    pub errors: u64,
    pub unary_p50_us: Option<f64>,
    pub unary_p99_us: Option<f64>,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
}

/// Completed calls of one wire by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakCalls {
    pub unary: u64,
    pub transfers: u64,
    pub server_streams: u64,
    pub bidi_round_trips: u64,
}

/// What one wire's run showed.
#[derive(Debug, Clone, Serialize)]
pub struct SoakWire {
    pub wire: Wire,
    pub duration_s: f64,
    pub calls: SoakCalls,
    /// Calls and round trips that completed successfully, all kinds.
    pub total_ok: u64,
    /// Failed calls, round trips and wrong answers (goal: 0).
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub unary_per_s: f64,
    pub unary_p50_us: Option<f64>,
    pub unary_p99_us: Option<f64>,
    /// Unary p99 of the first and of the last one-second interval, and last / first.
    pub p99_first_interval_us: Option<f64>,
    pub p99_last_interval_us: Option<f64>,
    pub p99_drift_intervals: Option<f64>,
    /// Unary p99 over the first and the last quarter of the run, and last / first (less noisy).
    pub p99_first_quarter_us: Option<f64>,
    pub p99_last_quarter_us: Option<f64>,
    pub p99_drift_quarters: Option<f64>,
    pub rss_start_kib: Option<u64>,
    pub rss_25_kib: Option<u64>,
    pub rss_50_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_max_kib: Option<u64>,
    /// RSS growth from 50 % to 100 % of the run, in percent.
    pub rss_growth_second_half_pct: Option<f64>,
    /// Whether that growth stayed under [`PLATEAU_PCT`] (reported, not enforced).
    pub rss_plateau: Option<bool>,
    pub fds_start: Option<u64>,
    pub fds_end: Option<u64>,
    pub fds_max: Option<u64>,
    /// Open fds half a second after the wire's channel was dropped.
    pub fds_after_close: Option<u64>,
    pub intervals: Vec<SoakInterval>,
    /// A harness failure (hang, panic, no connection), recorded as the result.
    pub error: Option<String>,
}

/// Everything soak.json holds.
#[derive(Debug, Serialize)]
pub struct SoakRun {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: &'static str,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub command_line: Vec<String>,
    pub git_commit: Option<String>,
    pub machine: Machine,
    pub settings: SoakSettings,
    pub notes: Vec<&'static str>,
    pub wires: Vec<SoakWire>,
}

const NOTES: &[&str] = &[
    "Client and servers run in this one process on loopback: RSS, fds and CPU are of both ends.",
    "Wires run one after the other against the same servers; each wire's RSS starts where the \
     previous one left it.",
    "Every call has a 10 s deadline; a failed call is counted by its status code and the load goes \
     on. Errors: goal 0.",
    "p99 is of the unary calls; drift is last / first (1.0 = no drift). RSS plateau: growth from \
     50 % to 100 % of the run under 10 % (reported, not enforced).",
];

/// `zone-bench soak`.
pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let bench = Settings::from_args(args);
    let soak = SoakSettings::from_args(args, &bench);
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let peer = soak.wires.contains(&Wire::Peer);
    let mut servers =
        LocalServers::start(&bench, peer, std::net::Ipv4Addr::LOCALHOST.into()).await?;
    let target = Arc::new(servers.target().clone());
    let mut wires = Vec::new();
    for &wire in &soak.wires {
        eprintln!(
            "zone-bench soak: {wire} for {} s (unary c={}, {} transfer + {} stream workers, 1 bidi \
             stream)",
            soak.secs_per_wire, soak.unary_concurrency, soak.transfer_workers, soak.stream_workers
        );
        let limit = Duration::from_secs(soak.secs_per_wire) + CALL_DEADLINE * 3;
        let fds_start = open_fds();
        let rss_start = rss_kib();
        let work = soak_wire(target.clone(), wire, soak.clone());
        let mut result = match guarded(work, limit).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("zone-bench soak: {wire}: {e}");
                failed_wire(wire, e)
            }
        };
        if wire.uses_peer_server()
            && result.error.is_none()
            && let Some(reason) = servers.peer_exit_reason()
        {
            result.error = Some(reason);
        }
        // The channel is gone now; what is still open was not released.
        tokio::time::sleep(Duration::from_millis(500)).await;
        result.fds_start = fds_start;
        result.rss_start_kib = rss_start;
        result.fds_after_close = open_fds();
        wires.push(result);
    }
    servers.shutdown().await;

    let run = SoakRun {
        tool: "zone-bench",
        version: env!("CARGO_PKG_VERSION"),
        mode: "soak",
        started_unix_s,
        duration_s: started.elapsed().as_secs_f64(),
        command_line: std::env::args().collect(),
        git_commit: git_commit(),
        machine: Machine::detect(),
        settings: soak,
        notes: NOTES.to_vec(),
        wires,
    };
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("soak.json"), serde_json::to_string_pretty(&run)?)
        .with_context(|| format!("writing {}", out.join("soak.json").display()))?;
    std::fs::write(out.join("soak.md"), markdown(&run))
        .with_context(|| format!("writing {}", out.join("soak.md").display()))?;
    print!("{}", terminal(&run));
    println!(
        "\nwrote {} (soak.md, soak.json) in {:.1} s",
        out.display(),
        run.duration_s
    );
    let ours_failed = run
        .wires
        .iter()
        .any(|w| !w.wire.is_peer() && (w.error.is_some() || w.errors > 0));
    if ours_failed {
        eprintln!("zone-bench soak: a grpc-h3 wire had errors (goal: 0)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn failed_wire(wire: Wire, error: String) -> SoakWire {
    SoakWire {
        wire,
        duration_s: 0.0,
        calls: SoakCalls::default(),
        total_ok: 0,
        errors: 0,
        errors_by_code: BTreeMap::new(),
        unary_per_s: 0.0,
        unary_p50_us: None,
        unary_p99_us: None,
        p99_first_interval_us: None,
        p99_last_interval_us: None,
        p99_drift_intervals: None,
        p99_first_quarter_us: None,
        p99_last_quarter_us: None,
        p99_drift_quarters: None,
        rss_start_kib: None,
        rss_25_kib: None,
        rss_50_kib: None,
        rss_end_kib: None,
        rss_max_kib: None,
        rss_growth_second_half_pct: None,
        rss_plateau: None,
        fds_start: None,
        fds_end: None,
        fds_max: None,
        fds_after_close: None,
        intervals: Vec::new(),
        error: Some(error),
    }
}

fn us(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1_000.0)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).and_then(|(a, b)| crate::stats::ratio(a, b))
}

/// Runs the mixed load of one wire for `soak.secs_per_wire` seconds, sampling every second.
async fn soak_wire(
    target: Arc<Target>,
    wire: Wire,
    soak: SoakSettings,
) -> anyhow::Result<SoakWire> {
    let channel = target
        .connect(wire, ServerSet::Plain)
        .await
        .context("connecting")?;
    let shared = Arc::new(Shared::new()?);
    // One untimed call first: tonic-h3 connects lazily, and a wrong answer should stop here.
    unary_once(
        &mut test_client(channel.clone()),
        &unary_request(soak.unary_size),
        soak.unary_size,
    )
    .await
    .context("first call")?;

    let start = Instant::now();
    let run_for = Duration::from_secs(soak.secs_per_wire);
    let deadline = start + run_for;
    let mut workers = JoinSet::new();
    for _ in 0..soak.unary_concurrency {
        workers.spawn(unary_worker(
            test_client(channel.clone()),
            shared.clone(),
            deadline,
            soak.unary_size,
            soak.max_unary_calls,
        ));
    }
    for _ in 0..soak.transfer_workers {
        workers.spawn(transfer_worker(
            ZonesClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            shared.clone(),
            deadline,
            Duration::from_millis(soak.transfer_every_ms),
            soak.zone_records,
        ));
    }
    for _ in 0..soak.stream_workers {
        workers.spawn(stream_worker(
            test_client(channel.clone()),
            shared.clone(),
            deadline,
            Duration::from_millis(soak.stream_every_ms),
            soak.stream_messages,
        ));
    }
    workers.spawn(bidi_worker(
        test_client(channel.clone()),
        shared.clone(),
        deadline,
        Duration::from_millis(soak.bidi_every_ms),
    ));

    // Sample every second until the time bound.
    let n = soak.secs_per_wire.max(1);
    let quarter = n.div_ceil(4);
    let mut first_q = histogram()?;
    let mut last_q = histogram()?;
    let mut all = histogram()?;
    let mut intervals: Vec<SoakInterval> = Vec::new();
    let mut prev = (0u64, 0u64, 0u64, 0u64);
    let progress_every = (n / 10).max(1);
    for i in 0..n {
        tokio::time::sleep_until((start + SAMPLE_EVERY * (i as u32 + 1)).into()).await;
        let fresh = histogram()?;
        let h = std::mem::replace(
            &mut *shared
                .unary_latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        // Same bounds everywhere, so adding cannot fail.
        let _ = all.add(&h);
        if i < quarter {
            let _ = first_q.add(&h);
        }
        if i >= n - quarter {
            let _ = last_q.add(&h);
        }
        let now = (
            shared.unary_ok.load(Ordering::Relaxed),
            shared.transfers_ok.load(Ordering::Relaxed) + shared.streams_ok.load(Ordering::Relaxed),
            shared.bidi_ok.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        let interval = SoakInterval {
            t_s: start.elapsed().as_secs_f64(),
            unary_ok: now.0 - prev.0,
            streams_ok: now.1 - prev.1,
            bidi_ok: now.2 - prev.2,
            errors: now.3 - prev.3,
            unary_p50_us: us(&h, 0.5),
            unary_p99_us: us(&h, 0.99),
            rss_kib: rss_kib(),
            fds: open_fds(),
        };
        prev = now;
        if (i + 1) % progress_every == 0 || i + 1 == n {
            eprintln!(
                "  {wire} t={:>4.0}s unary {}/s streams {} bidi {} errors {} p99 {} µs RSS {} MiB fds {}",
                interval.t_s,
                interval.unary_ok,
                interval.streams_ok,
                interval.bidi_ok,
                shared.errors.load(Ordering::Relaxed),
                interval.unary_p99_us.map_or_else(|| "—".into(), num),
                interval
                    .rss_kib
                    .map_or_else(|| "—".into(), |k| num(k as f64 / 1024.0)),
                interval.fds.map_or_else(|| "—".into(), |f| f.to_string()),
            );
        }
        intervals.push(interval);
    }
    let fds_end = open_fds();
    // Workers end at the time bound after their current call (itself bounded by the deadline).
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            anyhow::bail!("a soak worker failed: {e}");
        }
    }
    let elapsed = start.elapsed();
    drop(channel);

    let rss_at = |frac: f64| -> Option<u64> {
        let idx = ((intervals.len() as f64 * frac).ceil() as usize).clamp(1, intervals.len());
        intervals.get(idx - 1).and_then(|s| s.rss_kib)
    };
    let (rss_25, rss_50, rss_end) = (rss_at(0.25), rss_at(0.5), rss_at(1.0));
    let growth = rss_50
        .zip(rss_end)
        .filter(|(a, _)| *a > 0)
        .map(|(a, b)| (b as f64 - a as f64) / a as f64 * 100.0);
    let p99_first = intervals.first().and_then(|s| s.unary_p99_us);
    let p99_last = intervals.last().and_then(|s| s.unary_p99_us);
    let p99_first_q = us(&first_q, 0.99);
    let p99_last_q = us(&last_q, 0.99);
    let calls = SoakCalls {
        unary: shared.unary_ok.load(Ordering::Relaxed),
        transfers: shared.transfers_ok.load(Ordering::Relaxed),
        server_streams: shared.streams_ok.load(Ordering::Relaxed),
        bidi_round_trips: shared.bidi_ok.load(Ordering::Relaxed),
    };
    Ok(SoakWire {
        wire,
        duration_s: elapsed.as_secs_f64(),
        unary_per_s: crate::load::per_sec(calls.unary as f64, elapsed),
        calls,
        total_ok: shared.ok_total(),
        errors: shared.errors.load(Ordering::Relaxed),
        errors_by_code: shared
            .by_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        unary_p50_us: us(&all, 0.5),
        unary_p99_us: us(&all, 0.99),
        p99_first_interval_us: p99_first,
        p99_last_interval_us: p99_last,
        p99_drift_intervals: ratio(p99_last, p99_first),
        p99_first_quarter_us: p99_first_q,
        p99_last_quarter_us: p99_last_q,
        p99_drift_quarters: ratio(p99_last_q, p99_first_q),
        rss_start_kib: None,
        rss_25_kib: rss_25,
        rss_50_kib: rss_50,
        rss_end_kib: rss_end,
        rss_max_kib: intervals.iter().filter_map(|s| s.rss_kib).max(),
        rss_growth_second_half_pct: growth,
        rss_plateau: growth.map(|g| g < PLATEAU_PCT),
        fds_start: None,
        fds_end,
        fds_max: intervals.iter().filter_map(|s| s.fds).max(),
        fds_after_close: None,
        intervals,
        error: None,
    })
}

fn test_client(channel: AnyChannel) -> TestServiceClient<AnyChannel> {
    TestServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn unary_request(size: usize) -> SimpleRequest {
    SimpleRequest {
        response_size: i32::try_from(size).unwrap_or(i32::MAX),
        payload: Some(Payload {
            r#type: 0,
            body: vec![0x5a; size],
        }),
        ..SimpleRequest::default()
    }
}

/// Why a call did not succeed: its status, a wrong answer, or the client's own timer.
enum Failure {
    Status(tonic::Status),
    Other(&'static str),
}

impl Failure {
    fn record(&self, shared: &Shared) {
        match self {
            Failure::Status(s) => shared.fail_status(s),
            Failure::Other(what) => shared.fail(what),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// Bounds `work` by the call deadline plus a second, in case a wire ignores `grpc-timeout`.
async fn bounded<T>(work: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::time::timeout(CALL_DEADLINE + Duration::from_secs(1), work)
        .await
        .unwrap_or(Err(Failure::Other("CLIENT_TIMEOUT")))
}

async fn unary_once(
    client: &mut TestServiceClient<AnyChannel>,
    request: &SimpleRequest,
    size: usize,
) -> Result<(), Failure> {
    bounded(async {
        let response = client
            .unary_call(with_deadline(request.clone()))
            .await?
            .into_inner();
        if response.payload.map_or(0, |p| p.body.len()) == size {
            Ok(())
        } else {
            Err(Failure::Other("WRONG_ANSWER"))
        }
    })
    .await
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "{}: {}", code_name(s.code()), s.message()),
            Failure::Other(what) => f.write_str(what),
        }
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

async fn unary_worker(
    mut client: TestServiceClient<AnyChannel>,
    shared: Arc<Shared>,
    deadline: Instant,
    size: usize,
    max_calls: u64,
) {
    let request = unary_request(size);
    while Instant::now() < deadline && shared.claimed.fetch_add(1, Ordering::Relaxed) < max_calls {
        let t0 = Instant::now();
        match unary_once(&mut client, &request, size).await {
            Ok(()) => {
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                shared
                    .unary_latency
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .saturating_record(ns.max(1));
                shared.unary_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) => {
                f.record(&shared);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// Sleeps until `next` (but not past `deadline`) and moves `next` one `every` on.
async fn pace(next: &mut Instant, every: Duration, deadline: Instant) {
    tokio::time::sleep_until((*next).min(deadline).into()).await;
    *next = (*next + every).max(Instant::now());
}

async fn transfer_worker(
    mut client: ZonesClient<AnyChannel>,
    shared: Arc<Shared>,
    deadline: Instant,
    every: Duration,
    records: usize,
) {
    let mut next = Instant::now();
    loop {
        pace(&mut next, every, deadline).await;
        if Instant::now() >= deadline {
            return;
        }
        let result = bounded(async {
            let request = TransferRequest {
                zone: TRANSFER_ZONE.to_string(),
                since_serial: None,
                batch_size: 0,
            };
            let mut batches = client
                .transfer_zone(with_deadline(request))
                .await?
                .into_inner();
            let (mut got, mut last) = (0usize, false);
            while let Some(batch) = batches.message().await? {
                got += batch.records.len();
                last = batch.last;
            }
            if last && got == records {
                Ok(())
            } else {
                Err(Failure::Other("WRONG_ANSWER"))
            }
        })
        .await;
        match result {
            Ok(()) => {
                shared.transfers_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) => f.record(&shared),
        }
    }
}

async fn stream_worker(
    mut client: TestServiceClient<AnyChannel>,
    shared: Arc<Shared>,
    deadline: Instant,
    every: Duration,
    messages: usize,
) {
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: LARGE as i32,
                ..ResponseParameters::default()
            };
            messages
        ],
        ..StreamingOutputCallRequest::default()
    };
    let mut next = Instant::now();
    loop {
        pace(&mut next, every, deadline).await;
        if Instant::now() >= deadline {
            return;
        }
        let result = bounded(async {
            let mut stream = client
                .streaming_output_call(with_deadline(request.clone()))
                .await?
                .into_inner();
            let mut got = 0usize;
            while let Some(m) = stream.message().await? {
                if m.payload.map_or(0, |p| p.body.len()) != LARGE {
                    return Err(Failure::Other("WRONG_ANSWER"));
                }
                got += 1;
            }
            if got == messages {
                Ok(())
            } else {
                Err(Failure::Other("WRONG_ANSWER"))
            }
        })
        .await;
        match result {
            Ok(()) => {
                shared.streams_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) => f.record(&shared),
        }
    }
}

/// One long-lived `FullDuplexCall` for the whole run, a 64 B round trip every `every`; reopened
/// after a failure. Half-closed and read to its status at the end.
async fn bidi_worker(
    mut client: TestServiceClient<AnyChannel>,
    shared: Arc<Shared>,
    deadline: Instant,
    every: Duration,
) {
    let ping = StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: SMALL as i32,
            ..ResponseParameters::default()
        }],
        payload: Some(Payload {
            r#type: 0,
            body: vec![0x5a; SMALL],
        }),
        ..StreamingOutputCallRequest::default()
    };
    let mut next = Instant::now();
    while Instant::now() < deadline {
        let (pings, rx) = mpsc::channel(1);
        let opened = bounded(async {
            Ok(client
                .full_duplex_call(ReceiverStream::new(rx))
                .await?
                .into_inner())
        })
        .await;
        let mut pongs = match opened {
            Ok(p) => p,
            Err(f) => {
                f.record(&shared);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let mut broken = false;
        loop {
            pace(&mut next, every, deadline).await;
            if Instant::now() >= deadline {
                break;
            }
            let round_trip = bounded(async {
                pings
                    .send(ping.clone())
                    .await
                    .map_err(|_| Failure::Other("STREAM_CLOSED"))?;
                match pongs.message().await? {
                    Some(p) if p.payload.as_ref().map_or(0, |p| p.body.len()) == SMALL => Ok(()),
                    Some(_) => Err(Failure::Other("WRONG_ANSWER")),
                    None => Err(Failure::Other("STREAM_ENDED")),
                }
            })
            .await;
            match round_trip {
                Ok(()) => {
                    shared.bidi_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(f) => {
                    f.record(&shared);
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        }
        // A clean end: half-close and read the status, as a well-behaved client does.
        drop(pings);
        let closed = bounded(async {
            match pongs.message().await? {
                None => Ok(()),
                Some(_) => Err(Failure::Other("WRONG_ANSWER")),
            }
        })
        .await;
        if let Err(f) = closed {
            f.record(&shared);
        }
        return;
    }
}

/// A count as the tables print it (`812`, `12,345`).
pub fn int(n: u64) -> String {
    num(n as f64)
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), num)
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |k| num(k as f64 / 1024.0))
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |c| c.to_string())
}

fn codes(w: &SoakWire) -> String {
    if w.errors_by_code.is_empty() {
        return "none".to_string();
    }
    w.errors_by_code
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plateau(w: &SoakWire) -> String {
    match (w.rss_growth_second_half_pct, w.rss_plateau) {
        (Some(g), Some(true)) => format!("{g:+.1}% (plateau)"),
        (Some(g), _) => format!("{g:+.1}% (still growing)"),
        _ => "—".to_string(),
    }
}

/// Rows of the summary table (terminal and report).
fn rows(run: &SoakRun) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "wire",
            "s",
            "calls ok",
            "unary/s",
            "errors",
            "p99 µs first→last quarter (drift)",
            "p99 µs first→last second",
            "RSS MiB 25%→50%→100%",
            "RSS growth 2nd half",
            "fds start→end→closed",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for w in &run.wires {
        if let Some(e) = &w.error {
            rows.push(vec![
                w.wire.to_string(),
                format!("error: {}", e.replace('\n', " ")),
            ]);
            continue;
        }
        rows.push(vec![
            w.wire.to_string(),
            format!("{:.0}", w.duration_s),
            int(w.total_ok),
            num(w.unary_per_s),
            format!("{} ({})", w.errors, codes(w)),
            format!(
                "{}→{} ({})",
                opt(w.p99_first_quarter_us),
                opt(w.p99_last_quarter_us),
                w.p99_drift_quarters
                    .map_or_else(|| "—".to_string(), |d| format!("{d:.2}×"))
            ),
            format!(
                "{}→{}",
                opt(w.p99_first_interval_us),
                opt(w.p99_last_interval_us)
            ),
            format!(
                "{}→{}→{}",
                mib(w.rss_25_kib),
                mib(w.rss_50_kib),
                mib(w.rss_end_kib)
            ),
            plateau(w),
            format!(
                "{}→{}→{}",
                count(w.fds_start),
                count(w.fds_end),
                count(w.fds_after_close)
            ),
        ]);
    }
    rows
}

/// The terminal summary.
pub fn terminal(run: &SoakRun) -> String {
    let mut out = format!(
        "\nsoak: {} s per wire, unary {} B c={} + {} transfer / {} stream workers + 1 bidi stream \
         (client and servers in this one process)\n\n",
        run.settings.secs_per_wire,
        run.settings.unary_size,
        run.settings.unary_concurrency,
        run.settings.transfer_workers,
        run.settings.stream_workers
    );
    out.push_str(&layout(&rows(run)));
    out.push_str("\nerrors: goal 0; RSS plateau: growth from 50 % to 100 % of the run under 10 % (reported).\n");
    out
}

/// soak.md.
pub fn markdown(run: &SoakRun) -> String {
    let mut out = String::from("# zone-bench soak\n\n");
    out.push_str(&run.machine.markdown_lines(run.git_commit.as_deref()));
    let s = &run.settings;
    let _ = writeln!(
        out,
        "- workload per wire, {} s: UnaryCall {} B from {} workers back to back; {} workers each \
         transferring the {}-record zone every {} ms; {} workers each reading a {}×64 KiB server \
         stream every {} ms; one FullDuplexCall with a 64 B round trip every {} ms",
        s.secs_per_wire,
        s.unary_size,
        s.unary_concurrency,
        s.transfer_workers,
        s.zone_records,
        s.transfer_every_ms,
        s.stream_workers,
        s.stream_messages,
        s.stream_every_ms,
        s.bidi_every_ms
    );
    let _ = writeln!(out, "- command: `{}`", run.command_line.join(" "));
    let _ = writeln!(out, "- run time: {:.1} s\n", run.duration_s);
    for n in &run.notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push('\n');
    out.push_str(&table(&rows(run), true));
    out.push('\n');
    for w in &run.wires {
        if w.intervals.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "### {}\n\nCalls: {} unary, {} transfers, {} server streams, {} bidi round trips; \
             unary p50 {} µs, p99 {} µs over the run; RSS max {} MiB, fds max {}.\n",
            w.wire,
            w.calls.unary,
            w.calls.transfers,
            w.calls.server_streams,
            w.calls.bidi_round_trips,
            opt(w.unary_p50_us),
            opt(w.unary_p99_us),
            mib(w.rss_max_kib),
            count(w.fds_max)
        );
        let _ = writeln!(
            out,
            "| t s | unary/s | streams | bidi | errors | p99 µs | RSS MiB | fds |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        // About ten rows per wire: enough to see a trend, short enough to read.
        let step = w.intervals.len().div_ceil(10).max(1);
        for (i, iv) in w.intervals.iter().enumerate() {
            if i % step != 0 && i + 1 != w.intervals.len() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                iv.t_s,
                iv.unary_ok,
                iv.streams_ok,
                iv.bidi_ok,
                iv.errors,
                opt(iv.unary_p99_us),
                mib(iv.rss_kib),
                count(iv.fds)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tzone-bench\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12_345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_rss_and_fds() {
        assert!(rss_kib().is_some_and(|k| k > 0));
        // Other tests of this binary run in parallel threads and open a few fds of their own.
        let before = open_fds().unwrap();
        let files: Vec<_> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let during = open_fds().unwrap();
        let opened = i64::try_from(during).unwrap() - i64::try_from(before).unwrap();
        assert!((48..=80).contains(&opened), "{before} → {during}");
        drop(files);
    }

    #[test]
    fn soak_length_follows_the_profile_and_the_flag() {
        let args = Args::parse_from_cli(["zone-bench", "soak", "--tiny"]).unwrap();
        let s = SoakSettings::from_args(&args, &Settings::from_args(&args));
        assert_eq!(s.secs_per_wire, 3);
        assert_eq!(s.wires, SOAK_WIRES);
        let args =
            Args::parse_from_cli(["zone-bench", "soak", "--soak-secs", "42", "--wire", "h3"])
                .unwrap();
        let s = SoakSettings::from_args(&args, &Settings::from_args(&args));
        assert_eq!((s.secs_per_wire, s.wires.clone()), (42, vec![Wire::H3]));
        assert!(Args::parse_from_cli(["zone-bench", "soak", "--soak-secs", "0"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "soak", "--soak-secs", "3601"]).is_err());
    }
}

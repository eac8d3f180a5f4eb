//! `zone-bench faults`: recovery from faults under load (issue #7 item 5) — a server process
//! killed (SIGKILL) and restarted on the same port while clients call it, an HTTP/3 client
//! moving to a new UDP socket (`Channel::rebind`, RFC 9000 §9) during unary load and during a
//! long server stream, and one of three servers behind a balanced channel killed (`failover`).
//!
//! The server is a child process: this binary re-run with the hidden `--fault-server PORT` flag,
//! serving grpc's `TestService` (the interop server's handlers) through `grpc_h3::Server` and
//! announcing itself with the `READY h3=… h2=…` line of `zone_server::process` (`cargo run -p
//! zone-bench` builds no other binary to spawn). Each case uses one `Channel` throughout: any
//! recovery is the channel's own reconnect.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use dev_certs::DevCerts;
use grpc_h3::{Channel, Endpoint, QuicSettings, Server, ServerTls, Transport, Wires};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinSet;
use tonic::Code;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{
    Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
};

use crate::cli::{Args, Profile, Settings};
use crate::report::{layout, num, table};
use crate::results::{Machine, git_commit};
use crate::runner::guarded;
use crate::soak::code_name;
use crate::target::Wire;

mod failover;

/// How long the child may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-call deadline of the kill/restart cases (`Endpoint::timeout`), and their connect timeout.
const FAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Retries of a call that failed with UNAVAILABLE (the only code retried), and the pause before
/// each: a call spans at most ~0.5 s of outage before it counts as failed.
const MAX_RETRIES: u32 = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const SIZE: usize = 64;

/// Serves the `--fault-server` child: TestService on 127.0.0.1:`port` (HTTP/2 and HTTP/3) until
/// killed.
pub fn serve_child(port: u16, cert_dir: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zone-bench --fault-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let certs = DevCerts::load_or_generate(cert_dir)
            .with_context(|| format!("loading certificates from {}", cert_dir.display()))?;
        let tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?;
        let server = Server::builder()
            .tls(tls)
            .wires(Wires::Both)
            .add_service(zone_server::interop::test_service());
        zone_server::process::serve_announced(
            server,
            SocketAddr::from(([127, 0, 0, 1], port)),
            None,
        )
        .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "zone-bench --fault-server: {}",
                zone_server::process::error_chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}

/// A running `--fault-server` child; killed when dropped.
struct ChildServer {
    child: Child,
    port: u16,
    /// Kept open so the child never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl ChildServer {
    /// Starts the child on `port` (0: any) and waits for its READY line.
    async fn start(port: u16, cert_dir: &Path) -> anyhow::Result<ChildServer> {
        let exe = std::env::current_exe().context("locating the zone-bench binary")?;
        let mut child = Command::new(exe)
            .arg("--fault-server")
            .arg(port.to_string())
            .arg("--cert-dir")
            .arg(cert_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server child")?;
        let stdout = child
            .stdout
            .take()
            .context("the server child has no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line)).await;
        let port = match read {
            Ok(Ok(n)) if n > 0 => parse_ready(&line)
                .with_context(|| format!("unexpected first line from the server: {line:?}"))?,
            Ok(_) => {
                let status = child.wait().await.ok();
                anyhow::bail!("the server child exited without READY ({status:?})");
            }
            Err(_) => anyhow::bail!("no READY line within {READY_TIMEOUT:?}"),
        };
        Ok(ChildServer {
            child,
            port,
            _stdout: stdout,
        })
    }

    /// SIGKILL, then reap.
    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The port of `READY h3=ADDR h2=ADDR` (both wires share it).
fn parse_ready(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    if words.next() != Some("READY") {
        return None;
    }
    let ports: Vec<u16> = words
        .filter_map(|w| w.split_once('=').map(|(_, a)| a))
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .collect();
    let first = *ports.first()?;
    ports.iter().all(|&p| p == first).then_some(first)
}

/// Timings of one run of `faults`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSettings {
    pub profile: Profile,
    pub workers: usize,
    pub call_timeout_ms: u64,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    /// Load before the kill, server down time, load after recovery.
    pub before_kill_ms: u64,
    pub down_ms: u64,
    pub after_recovery_ms: u64,
    /// QUIC idle timeout of the short-timeout HTTP/3 case.
    pub short_idle_timeout_ms: u64,
    /// Whether the HTTP/3 case with the default 30 s idle timeout runs (not in quick/tiny runs).
    pub default_idle_case: bool,
    pub rebinds: u32,
    pub rebind_every_ms: u64,
    pub streams: u32,
    pub stream_messages: u32,
    pub stream_interval_ms: u64,
}

impl FaultSettings {
    fn new(profile: Profile) -> FaultSettings {
        let tiny = profile == Profile::Tiny;
        FaultSettings {
            profile,
            workers: if tiny { 4 } else { 8 },
            call_timeout_ms: FAULT_CALL_TIMEOUT.as_millis() as u64,
            max_retries: MAX_RETRIES,
            retry_backoff_ms: RETRY_BACKOFF.as_millis() as u64,
            before_kill_ms: if tiny { 500 } else { 2_000 },
            down_ms: 1_000,
            after_recovery_ms: if tiny { 500 } else { 2_000 },
            short_idle_timeout_ms: if tiny { 1_000 } else { 3_000 },
            default_idle_case: profile == Profile::Full,
            rebinds: if tiny { 3 } else { 10 },
            rebind_every_ms: if tiny { 200 } else { 300 },
            streams: if tiny { 2 } else { 5 },
            stream_messages: if tiny { 30 } else { 100 },
            stream_interval_ms: if tiny { 10 } else { 20 },
        }
    }
}

/// One fault case's outcome: one row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct FaultCase {
    pub fault: &'static str,
    pub wire: Wire,
    /// Client settings that matter for the figures (idle timeout, deadlines).
    pub detail: String,
    /// Calls that succeeded (some after retries).
    pub calls_ok: u64,
    /// Of those, calls that succeeded only after one or more retries.
    pub ok_after_retry: u64,
    /// Calls that failed for good (a non-retried code, or retries used up).
    pub calls_failed: u64,
    /// Failed attempts (retried or not) by status code.
    pub attempts_failed_by_code: BTreeMap<String, u64>,
    /// Attempts retried after UNAVAILABLE.
    pub retried: u64,
    /// Kill/restart: from the restarted server's READY line to the first successful call.
    /// Rebind of a stream: the longest stall between two messages after a rebind.
    pub recovery_ms: Option<f64>,
    /// Kill/restart: from the kill to the first successful call (the outage the clients saw).
    pub outage_ms: Option<f64>,
    /// Kill/restart: from the kill to the first failed attempt (how fast the loss showed).
    pub first_error_ms: Option<f64>,
    /// Kill/restart: successful calls after the restart.
    pub ok_after_restart: u64,
    /// Slowest successful attempt.
    pub max_call_ms: Option<f64>,
    /// A harness failure (server would not start, hang), recorded as the result.
    pub error: Option<String>,
}

impl FaultCase {
    /// The case as measured, or a row saying why it could not run.
    fn or_failed(
        case: Result<FaultCase, String>,
        fault: &'static str,
        wire: Wire,
        detail: String,
    ) -> FaultCase {
        case.unwrap_or_else(|e| {
            let mut c = FaultCase::new(fault, wire, detail);
            c.error = Some(e);
            c
        })
    }

    fn new(fault: &'static str, wire: Wire, detail: String) -> FaultCase {
        FaultCase {
            fault,
            wire,
            detail,
            calls_ok: 0,
            ok_after_retry: 0,
            calls_failed: 0,
            attempts_failed_by_code: BTreeMap::new(),
            retried: 0,
            recovery_ms: None,
            outage_ms: None,
            first_error_ms: None,
            ok_after_restart: 0,
            max_call_ms: None,
            error: None,
        }
    }
}

/// Everything faults.json holds.
#[derive(Debug, Serialize)]
pub struct FaultRun {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: &'static str,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub command_line: Vec<String>,
    pub git_commit: Option<String>,
    pub machine: Machine,
    pub settings: FaultSettings,
    pub notes: Vec<String>,
    pub cases: Vec<FaultCase>,
    pub failover: Vec<failover::FailoverCase>,
}

/// `zone-bench faults`.
pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let bench = Settings::from_args(args);
    let settings = FaultSettings::new(bench.profile);
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = args.out.clone();
    let cert_dir = out.join("fault-certs");
    std::fs::create_dir_all(&cert_dir)
        .with_context(|| format!("creating {}", cert_dir.display()))?;
    let certs = DevCerts::load_or_generate(&cert_dir)
        .with_context(|| format!("certificates in {}", cert_dir.display()))?;
    let env = Arc::new(Env {
        cert_dir,
        ca_pem: certs.ca_pem,
        settings: settings.clone(),
    });

    let mut plan: Vec<(&'static str, Wire, Option<Duration>)> = vec![
        ("kill+restart", Wire::H2, None),
        (
            "kill+restart",
            Wire::H3,
            Some(Duration::from_millis(settings.short_idle_timeout_ms)),
        ),
    ];
    if settings.default_idle_case {
        plan.push((
            "kill+restart",
            Wire::H3,
            Some(QuicSettings::default().get_idle_timeout()),
        ));
    }
    let mut cases = Vec::new();
    for (fault, wire, idle) in plan {
        eprintln!("zone-bench faults: {fault} over {wire}");
        let detail = match idle {
            Some(idle) => format!(
                "QUIC idle timeout {} s, call deadline {} s",
                idle.as_secs_f64(),
                FAULT_CALL_TIMEOUT.as_secs_f64()
            ),
            None => format!("call deadline {} s", FAULT_CALL_TIMEOUT.as_secs_f64()),
        };
        let limit = idle.unwrap_or_default() + Duration::from_secs(40);
        let case = guarded(kill_restart(env.clone(), wire, idle, detail.clone()), limit).await;
        cases.push(FaultCase::or_failed(case, fault, wire, detail));
    }
    eprintln!("zone-bench faults: rebind during unary load over h3");
    let detail = format!(
        "{} rebinds {} ms apart, {} workers",
        settings.rebinds, settings.rebind_every_ms, settings.workers
    );
    let case = guarded(
        rebind_unary(env.clone(), detail.clone()),
        Duration::from_secs(60),
    )
    .await;
    cases.push(FaultCase::or_failed(
        case,
        "rebind (unary load)",
        Wire::H3,
        detail,
    ));
    eprintln!("zone-bench faults: rebind during server streams over h3");
    let detail = format!(
        "{} streams of {} × 1000 B, {} ms apart; one rebind each after a quarter",
        settings.streams, settings.stream_messages, settings.stream_interval_ms
    );
    let case = guarded(
        rebind_stream(env.clone(), detail.clone()),
        Duration::from_secs(60),
    )
    .await;
    cases.push(FaultCase::or_failed(
        case,
        "rebind (server stream)",
        Wire::H3,
        detail,
    ));

    let mut failovers = Vec::new();
    for wire in [Wire::H2, Wire::H3] {
        eprintln!("zone-bench faults: one of 3 balanced servers killed over {wire}");
        let detail = format!(
            "{} in flight, keep-alive 500 ms, QUIC idle timeout 1.5 s, call deadline {} s",
            failover::IN_FLIGHT,
            FAULT_CALL_TIMEOUT.as_secs_f64()
        );
        let case = guarded(
            failover::balanced_kill(env.clone(), wire, detail.clone()),
            Duration::from_secs(60),
        )
        .await;
        failovers.push(case.unwrap_or_else(|e| failover::FailoverCase::failed(wire, detail, e)));
    }

    let mut notes = vec![
        "The server is a separate process (zone-bench --fault-server, grpc-h3 serving TestService); \
         the client is this process with one Channel per case (no new Channel after a fault)."
            .to_string(),
        format!(
            "Load: {} workers calling UnaryCall 64 B back to back; a call failing with UNAVAILABLE \
             is retried up to {} times, {} ms apart (no other code is retried). calls ok/failed \
             count calls; `retried` counts retried attempts; failed attempts are listed by code.",
            settings.workers, MAX_RETRIES, settings.retry_backoff_ms
        ),
        format!(
            "Kill+restart: SIGKILL after {} ms of load, restart on the same port {} ms later; \
             recovery = restarted server's READY → first successful call; outage = kill → first \
             successful call.",
            settings.before_kill_ms, settings.down_ms
        ),
    ];
    if !settings.default_idle_case {
        notes.push(
            "The HTTP/3 case with the default 30 s QUIC idle timeout runs only in full runs."
                .to_string(),
        );
    }
    let run = FaultRun {
        tool: "zone-bench",
        version: env!("CARGO_PKG_VERSION"),
        mode: "faults",
        started_unix_s,
        duration_s: started.elapsed().as_secs_f64(),
        command_line: std::env::args().collect(),
        git_commit: git_commit(),
        machine: Machine::detect(),
        settings,
        notes,
        cases,
        failover: failovers,
    };
    std::fs::write(out.join("faults.json"), serde_json::to_string_pretty(&run)?)
        .with_context(|| format!("writing {}", out.join("faults.json").display()))?;
    std::fs::write(out.join("faults.md"), markdown(&run))
        .with_context(|| format!("writing {}", out.join("faults.md").display()))?;
    print!("{}", terminal(&run));
    println!(
        "\nwrote {} (faults.md, faults.json) in {:.1} s",
        out.display(),
        run.duration_s
    );
    if run.cases.iter().any(|c| c.error.is_some()) || run.failover.iter().any(|c| c.error.is_some())
    {
        eprintln!("zone-bench faults: a case could not run (see the table)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What every case needs.
#[derive(Debug)]
struct Env {
    cert_dir: PathBuf,
    ca_pem: Vec<u8>,
    settings: FaultSettings,
}

impl Env {
    fn endpoint(&self, port: u16, wire: Wire) -> anyhow::Result<Endpoint> {
        let transport = if wire == Wire::H2 {
            Transport::H2
        } else {
            Transport::H3
        };
        Ok(Endpoint::new(format!("https://127.0.0.1:{port}"))?
            .transport(transport)
            .server_name("localhost")
            .ca_certificate_pem(&self.ca_pem)?)
    }
}

/// Nanoseconds since `origin` (never 0, which the atomics below use for "not yet").
fn since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// What the load workers of one case share with its controller.
#[derive(Debug)]
struct Tally {
    origin: Instant,
    stop: AtomicBool,
    calls_ok: AtomicU64,
    ok_after_retry: AtomicU64,
    calls_failed: AtomicU64,
    retried: AtomicU64,
    by_code: Mutex<BTreeMap<String, u64>>,
    max_call_ns: AtomicU64,
    /// Set by the controller (ns since `origin`; 0 = not yet).
    killed_at: AtomicU64,
    restarted_at: AtomicU64,
    /// Set by the workers: the first failure after the kill, the first success after the restart.
    first_error_after_kill: AtomicU64,
    first_ok_after_restart: AtomicU64,
    ok_after_restart: AtomicU64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            origin: Instant::now(),
            stop: AtomicBool::new(false),
            calls_ok: AtomicU64::new(0),
            ok_after_retry: AtomicU64::new(0),
            calls_failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            by_code: Mutex::new(BTreeMap::new()),
            max_call_ns: AtomicU64::new(0),
            killed_at: AtomicU64::new(0),
            restarted_at: AtomicU64::new(0),
            first_error_after_kill: AtomicU64::new(0),
            first_ok_after_restart: AtomicU64::new(0),
            ok_after_restart: AtomicU64::new(0),
        }
    }

    fn attempt_ok(&self, started: Instant) {
        let now = since(self.origin);
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.max_call_ns.fetch_max(took, Ordering::Relaxed);
        let restarted = self.restarted_at.load(Ordering::Acquire);
        if restarted != 0 && now > restarted {
            self.ok_after_restart.fetch_add(1, Ordering::Relaxed);
            let _ = self.first_ok_after_restart.compare_exchange(
                0,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn attempt_failed(&self, code: &str) {
        let now = since(self.origin);
        let killed = self.killed_at.load(Ordering::Acquire);
        if killed != 0 && now > killed {
            let _ = self.first_error_after_kill.compare_exchange(
                0,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        let mut map = self.by_code.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(code.to_string()).or_default() += 1;
    }

    /// The counts into `case`.
    fn fill(&self, case: &mut FaultCase) {
        case.calls_ok = self.calls_ok.load(Ordering::Relaxed);
        case.ok_after_retry = self.ok_after_retry.load(Ordering::Relaxed);
        case.calls_failed = self.calls_failed.load(Ordering::Relaxed);
        case.retried = self.retried.load(Ordering::Relaxed);
        case.attempts_failed_by_code = self
            .by_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        case.ok_after_restart = self.ok_after_restart.load(Ordering::Relaxed);
        let max = self.max_call_ns.load(Ordering::Relaxed);
        case.max_call_ms = (max > 0).then(|| ms(max));
        let killed = self.killed_at.load(Ordering::Relaxed);
        let restarted = self.restarted_at.load(Ordering::Relaxed);
        let first_ok = self.first_ok_after_restart.load(Ordering::Relaxed);
        let first_err = self.first_error_after_kill.load(Ordering::Relaxed);
        if first_ok != 0 {
            case.recovery_ms = Some(ms(first_ok.saturating_sub(restarted)));
            case.outage_ms = Some(ms(first_ok.saturating_sub(killed)));
        }
        if first_err != 0 {
            case.first_error_ms = Some(ms(first_err.saturating_sub(killed)));
        }
    }
}

fn simple_request() -> SimpleRequest {
    SimpleRequest {
        response_size: SIZE as i32,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0x5a; SIZE],
        }),
        ..SimpleRequest::default()
    }
}

/// Unary calls back to back until told to stop, retrying UNAVAILABLE. Every attempt is bounded by
/// the channel's deadline, and by a client timer a second later in case that did not fire.
async fn load_worker(channel: Channel, tally: Arc<Tally>, call_timeout: Duration) {
    let mut client = TestServiceClient::new(channel);
    let request = simple_request();
    while !tally.stop.load(Ordering::Relaxed) {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                call_timeout + Duration::from_secs(1),
                client.unary_call(request.clone()),
            )
            .await;
            let code = match outcome {
                Ok(Ok(r)) if r.get_ref().payload.as_ref().map_or(0, |p| p.body.len()) == SIZE => {
                    tally.attempt_ok(started);
                    tally.calls_ok.fetch_add(1, Ordering::Relaxed);
                    if attempt > 0 {
                        tally.ok_after_retry.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Ok(Ok(_)) => None,
                Ok(Err(status)) => Some(status.code()),
                Err(_) => None,
            };
            tally.attempt_failed(code.map_or("CLIENT_TIMEOUT_OR_WRONG_ANSWER", code_name));
            if code == Some(Code::Unavailable)
                && attempt < MAX_RETRIES
                && !tally.stop.load(Ordering::Relaxed)
            {
                attempt += 1;
                tally.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            tally.calls_failed.fetch_add(1, Ordering::Relaxed);
            // A failed call is not retried; the next one starts after the same pause.
            tokio::time::sleep(RETRY_BACKOFF).await;
            break;
        }
    }
}

async fn stop_and_join(tally: &Tally, mut workers: JoinSet<()>) -> anyhow::Result<()> {
    tally.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = workers.join_next().await {
        joined.context("a load worker failed")?;
    }
    Ok(())
}

/// Kill the server under load, restart it on the same port a moment later, and watch the same
/// channel recover.
async fn kill_restart(
    env: Arc<Env>,
    wire: Wire,
    idle: Option<Duration>,
    detail: String,
) -> anyhow::Result<FaultCase> {
    let s = &env.settings;
    let server = ChildServer::start(0, &env.cert_dir).await?;
    let port = server.port;
    let mut endpoint = env
        .endpoint(port, wire)?
        .timeout(FAULT_CALL_TIMEOUT)
        .connect_timeout(FAULT_CALL_TIMEOUT);
    if let Some(idle) = idle {
        let quic = QuicSettings::default().idle_timeout(idle);
        endpoint = endpoint.quic_settings(quic);
    }
    let channel = endpoint.connect().await.context("connecting")?;
    TestServiceClient::new(channel.clone())
        .unary_call(simple_request())
        .await
        .context("first call")?;

    let tally = Arc::new(Tally::new());
    let mut workers = JoinSet::new();
    for _ in 0..s.workers {
        workers.spawn(load_worker(
            channel.clone(),
            tally.clone(),
            FAULT_CALL_TIMEOUT,
        ));
    }
    tokio::time::sleep(Duration::from_millis(s.before_kill_ms)).await;
    tally
        .killed_at
        .store(since(tally.origin), Ordering::Release);
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(s.down_ms)).await;
    // The port may take a moment to be free again (TCP); a bounded number of tries.
    let mut restarted = None;
    let mut last_error = None;
    for _ in 0..20 {
        match ChildServer::start(port, &env.cert_dir).await {
            Ok(server) => {
                restarted = Some(server);
                break;
            }
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let Some(restarted) = restarted else {
        stop_and_join(&tally, workers).await?;
        return Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
            .context(format!("restarting the server on port {port}")));
    };
    tally
        .restarted_at
        .store(since(tally.origin), Ordering::Release);
    // Wait for the channel to recover, at most the idle timeout plus a margin.
    let wait_until = Instant::now() + idle.unwrap_or_default() + Duration::from_secs(15);
    while tally.first_ok_after_restart.load(Ordering::Acquire) == 0 && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(s.after_recovery_ms)).await;
    stop_and_join(&tally, workers).await?;
    restarted.kill().await;
    let mut case = FaultCase::new("kill+restart", wire, detail);
    tally.fill(&mut case);
    Ok(case)
}

fn fresh_socket() -> anyhow::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind("127.0.0.1:0").context("binding a new UDP socket")
}

/// Moves the HTTP/3 channel to a new UDP socket every `rebind_every_ms` during unary load.
async fn rebind_unary(env: Arc<Env>, detail: String) -> anyhow::Result<FaultCase> {
    let s = &env.settings;
    let server = ChildServer::start(0, &env.cert_dir).await?;
    let channel = env
        .endpoint(server.port, Wire::H3)?
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .context("connecting")?;
    TestServiceClient::new(channel.clone())
        .unary_call(simple_request())
        .await
        .context("first call")?;
    let tally = Arc::new(Tally::new());
    let mut workers = JoinSet::new();
    for _ in 0..s.workers {
        workers.spawn(load_worker(
            channel.clone(),
            tally.clone(),
            Duration::from_secs(10),
        ));
    }
    let every = Duration::from_millis(s.rebind_every_ms);
    let mut rebind_error = None;
    for _ in 0..s.rebinds {
        tokio::time::sleep(every).await;
        if let Err(e) = fresh_socket().and_then(|socket| Ok(channel.rebind(socket)?)) {
            rebind_error = Some(e);
            break;
        }
    }
    tokio::time::sleep(every).await;
    stop_and_join(&tally, workers).await?;
    server.kill().await;
    if let Some(e) = rebind_error {
        return Err(e.context("rebinding"));
    }
    let mut case = FaultCase::new("rebind (unary load)", Wire::H3, detail);
    tally.fill(&mut case);
    Ok(case)
}

/// Long server streams, each moved to a new UDP socket a quarter of the way through: every
/// message must arrive; the longest gap after the rebind is the stall it caused.
async fn rebind_stream(env: Arc<Env>, detail: String) -> anyhow::Result<FaultCase> {
    let s = &env.settings;
    let server = ChildServer::start(0, &env.cert_dir).await?;
    let channel = env
        .endpoint(server.port, Wire::H3)?
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .context("connecting")?;
    let mut client = TestServiceClient::new(channel.clone());
    let interval = Duration::from_millis(s.stream_interval_ms);
    let request = StreamingOutputCallRequest {
        response_parameters: (0..s.stream_messages)
            .map(|_| ResponseParameters {
                size: 1000,
                interval_us: i32::try_from(interval.as_micros()).unwrap_or(i32::MAX),
                ..ResponseParameters::default()
            })
            .collect(),
        ..StreamingOutputCallRequest::default()
    };
    let mut case = FaultCase::new("rebind (server stream)", Wire::H3, detail);
    let mut worst_stall = Duration::ZERO;
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..s.streams {
        let started = Instant::now();
        let outcome: Result<Duration, String> = async {
            let mut stream = client
                .streaming_output_call(request.clone())
                .await
                .map_err(|e| code_name(e.code()).to_string())?
                .into_inner();
            let mut got = 0u32;
            let mut last = Instant::now();
            let mut stall = Duration::ZERO;
            let rebind_after = (s.stream_messages / 4).max(1);
            while let Some(m) = stream
                .message()
                .await
                .map_err(|e| code_name(e.code()).to_string())?
            {
                if m.payload.map_or(0, |p| p.body.len()) != 1000 {
                    return Err("WRONG_ANSWER".to_string());
                }
                got += 1;
                if got > rebind_after {
                    stall = stall.max(last.elapsed().saturating_sub(interval));
                }
                if got == rebind_after {
                    fresh_socket()
                        .and_then(|socket| Ok(channel.rebind(socket)?))
                        .map_err(|e| format!("REBIND_FAILED: {e:#}"))?;
                }
                last = Instant::now();
            }
            if got == s.stream_messages {
                Ok(stall)
            } else {
                Err("MESSAGES_LOST".to_string())
            }
        }
        .await;
        match outcome {
            Ok(stall) => {
                case.calls_ok += 1;
                worst_stall = worst_stall.max(stall);
                let took = started.elapsed().as_secs_f64() * 1e3;
                case.max_call_ms = Some(case.max_call_ms.map_or(took, |m| m.max(took)));
            }
            Err(code) => {
                case.calls_failed += 1;
                *by_code.entry(code).or_default() += 1;
            }
        }
    }
    server.kill().await;
    case.attempts_failed_by_code = by_code;
    case.recovery_ms = (case.calls_ok > 0).then_some(worst_stall.as_secs_f64() * 1e3);
    Ok(case)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), num)
}

fn codes(c: &FaultCase) -> String {
    if c.attempts_failed_by_code.is_empty() {
        return "—".to_string();
    }
    c.attempts_failed_by_code
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rows(run: &FaultRun) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "fault",
            "transport",
            "setting",
            "calls ok",
            "failed",
            "retried",
            "failed attempts by code",
            "ok after retry",
            "recovery ms",
            "outage ms",
            "first error ms",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for c in &run.cases {
        if let Some(e) = &c.error {
            rows.push(vec![
                c.fault.to_string(),
                c.wire.to_string(),
                c.detail.clone(),
                format!("error: {}", e.replace('\n', " ")),
            ]);
            continue;
        }
        rows.push(vec![
            c.fault.to_string(),
            c.wire.to_string(),
            c.detail.clone(),
            crate::soak::int(c.calls_ok),
            c.calls_failed.to_string(),
            c.retried.to_string(),
            codes(c),
            c.ok_after_retry.to_string(),
            opt_ms(c.recovery_ms),
            opt_ms(c.outage_ms),
            opt_ms(c.first_error_ms),
        ]);
    }
    rows
}

const LEGEND: &str = "recovery ms: kill+restart = restarted server's READY → first successful \
                      call on the same Channel; rebind (server stream) = longest stall between two \
                      messages after the rebind. outage ms = kill → first success. first error ms \
                      = kill → first failed attempt.";

/// The terminal summary.
pub fn terminal(run: &FaultRun) -> String {
    let mut out = String::from("\nfaults (server in a child process, client in this one)\n\n");
    out.push_str(&layout(&rows(run)));
    let _ = writeln!(out, "\n{LEGEND}");
    let _ = writeln!(out, "\nfailover (one of 3 balanced servers killed)\n");
    out.push_str(&layout(&failover::rows(&run.failover)));
    if let Some(line) = failover::ratio_line(&run.failover) {
        let _ = writeln!(out, "\n{line}");
    }
    let _ = writeln!(out, "\n{}", failover::LEGEND);
    out
}

/// faults.md.
pub fn markdown(run: &FaultRun) -> String {
    let mut out = String::from("# zone-bench faults\n\n");
    out.push_str(&run.machine.markdown_lines(run.git_commit.as_deref()));
    let _ = writeln!(out, "- command: `{}`", run.command_line.join(" "));
    let _ = writeln!(out, "- run time: {:.1} s\n", run.duration_s);
    for n in &run.notes {
        let _ = writeln!(out, "- {n}");
    }
    let _ = writeln!(out, "- {LEGEND}\n");
    out.push_str(&table(&rows(run), true));
    let _ = writeln!(out, "\n## Failover: one of 3 balanced servers killed\n");
    let _ = writeln!(out, "{}\n", failover::LEGEND);
    out.push_str(&table(&failover::rows(&run.failover), true));
    if let Some(line) = failover::ratio_line(&run.failover) {
        let _ = writeln!(out, "\n{line}");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_the_shared_port() {
        assert_eq!(
            parse_ready("READY h3=127.0.0.1:4433 h2=127.0.0.1:4433\n"),
            Some(4433)
        );
        assert_eq!(parse_ready("READY h3=127.0.0.1:1 h2=127.0.0.1:2"), None);
        assert_eq!(parse_ready("READY h3=off h2=127.0.0.1:7"), Some(7));
        assert_eq!(parse_ready("listening"), None);
    }

    #[test]
    fn tally_times_are_relative_to_kill_and_restart() {
        let tally = Tally::new();
        tally.killed_at.store(1_000_000, Ordering::Relaxed);
        tally
            .first_error_after_kill
            .store(3_000_000, Ordering::Relaxed);
        tally.restarted_at.store(10_000_000, Ordering::Relaxed);
        tally
            .first_ok_after_restart
            .store(14_000_000, Ordering::Relaxed);
        let mut case = FaultCase::new("kill+restart", Wire::H2, String::new());
        tally.fill(&mut case);
        assert_eq!(case.first_error_ms, Some(2.0));
        assert_eq!(case.recovery_ms, Some(4.0));
        assert_eq!(case.outage_ms, Some(13.0));
    }

    #[test]
    fn failures_before_the_kill_do_not_count_as_its_detection() {
        let tally = Tally::new();
        tally.attempt_failed("UNAVAILABLE");
        assert_eq!(tally.first_error_after_kill.load(Ordering::Relaxed), 0);
        tally.killed_at.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
        tally.attempt_failed("UNAVAILABLE");
        assert!(tally.first_error_after_kill.load(Ordering::Relaxed) > 1);
        assert_eq!(tally.by_code.lock().unwrap()["UNAVAILABLE"], 2);
    }
}

//! `zone-bench metrics-count`: what the Prometheus metrics recorder costs, as instructions per
//! call counted by valgrind's callgrind rather than time. On a shared VM (hypervisor steal
//! 20–40 %) the `metrics-cost` scenario's rate and CPU figures spread ±15–35 %, far wider than
//! the 3 % goal; an instruction count does not depend on the machine's load.
//!
//! Per wire, the same binary runs the `count_workload` (scenarios/observe.rs) twice under
//! callgrind: once with no recorder installed, once with metrics-http's Prometheus recorder.
//! Client and server run in one process on one current-thread runtime, so every count is both
//! ends together. Callgrind dumps its counters each time [`phase_mark`] is entered; the
//! differences of paired phases (N and 2N unary calls, one and two streams) cancel start-up,
//! connection set-up, handle registration and each phase's fixed cost.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dev_certs::DevCerts;
use grpc_h3::{Server, ServerTls, Wires};
use zone_server::interop::test_service;

use crate::cli::{Args, Recording, Settings};
use crate::scenarios::LARGE;
use crate::stats::Summary;
use crate::target::{Addrs, ServerSet, Target, Wire};

/// The goal: the recorder adds at most this many percent per call.
const GOAL_PCT: f64 = 3.0;
/// Callgrind slows a run 50–100×; a child that takes longer than this is hung.
const CHILD_LIMIT: Duration = Duration::from_secs(30 * 60);
const MIB: f64 = (1u64 << 20) as f64;

/// Callgrind dumps its counters on entry to this function (`--dump-before`), so each dump file
/// holds exactly one phase of the workload. Never inlined, or there is nothing to enter.
#[inline(never)]
pub fn phase_mark(phase: usize) {
    std::hint::black_box(phase);
}

/// Why a count could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("valgrind is not installed ({0}); apt-get install valgrind")]
    NoValgrind(std::io::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("callgrind run {run} failed ({status}); its last output:\n{tail}")]
    Child {
        run: String,
        status: String,
        tail: String,
    },
    #[error("callgrind run {0} did not finish within {CHILD_LIMIT:?}")]
    Hung(String),
    #[error("{file}: no `totals:` or `summary:` line")]
    NoTotals { file: String },
    #[error("callgrind run {run} wrote {found} phase dumps, expected {expected}")]
    Dumps {
        run: String,
        found: usize,
        expected: usize,
    },
}

/// Instructions of the five dumps of one run: set-up, unary N, unary 2N, one stream, two.
const DUMPS: usize = 5;

/// What one run (wire × recording) counted.
#[derive(Debug, Clone, serde::Serialize)]
struct Run {
    wire: Wire,
    recording: Recording,
    /// Instructions per phase dump, in order.
    dumps: Vec<u64>,
    /// Instructions per unary call (client and server): (2N − N phase) / N.
    unary_per_call: f64,
    /// Instructions per stream call of `messages` 64 KiB messages: two streams − one.
    stream_per_call: f64,
    /// The same per MiB of payload.
    stream_per_mib: f64,
}

/// One wire's comparison over the repeats.
#[derive(Debug, Clone, serde::Serialize)]
struct Comparison {
    wire: Wire,
    /// Each repeat's pair of runs, recorder off and on.
    off: Vec<Run>,
    on: Vec<Run>,
    /// Instructions added by the recorder, in percent: median and range of the repeats' pairs.
    unary_pct: Summary,
    stream_pct: Summary,
}

impl Comparison {
    fn new(wire: Wire, off: Vec<Run>, on: Vec<Run>) -> anyhow::Result<Self> {
        let pct = |figure: fn(&Run) -> f64| {
            let pairs: Vec<f64> = off
                .iter()
                .zip(&on)
                .map(|(a, b)| added_pct(figure(a), figure(b)))
                .collect();
            Summary::of(&pairs).context("no finite count")
        };
        Ok(Comparison {
            wire,
            unary_pct: pct(|r| r.unary_per_call)?,
            stream_pct: pct(|r| r.stream_per_call)?,
            off,
            on,
        })
    }

    /// The median over the repeats of `figure` with the recorder off and on.
    fn medians(&self, figure: fn(&Run) -> f64) -> (f64, f64) {
        let median = |runs: &[Run]| {
            let values: Vec<f64> = runs.iter().map(figure).collect();
            Summary::of(&values).map_or(f64::NAN, |s| s.median)
        };
        (median(&self.off), median(&self.on))
    }
}

/// `zone-bench metrics-count`: runs the children under callgrind and reports.
pub fn main(args: &Args) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            if let Some(CountError::NoValgrind(_)) = e.downcast_ref::<CountError>() {
                // A missing tool is a skip, as the MTU 1500 path and the DNS comparison do.
                eprintln!("zone-bench metrics-count: skipped: {e}");
                return ExitCode::SUCCESS;
            }
            eprintln!("zone-bench metrics-count: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let version = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(CountError::NoValgrind)?;
    let valgrind = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let exe = std::env::current_exe().context("locating the zone-bench binary")?;
    let dir = args.out.join("metrics-count");
    std::fs::create_dir_all(&dir).map_err(|source| CountError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let wires: Vec<Wire> = if args.wires.is_empty() {
        vec![Wire::H2, Wire::H3]
    } else {
        args.wires
            .iter()
            .copied()
            .filter(|w| !w.is_peer())
            .collect()
    };
    anyhow::ensure!(!wires.is_empty(), "metrics-count runs on h2 and/or h3 only");
    let mut runs: Vec<(Vec<Run>, Vec<Run>)> = vec![(Vec::new(), Vec::new()); wires.len()];
    for repeat in 1..=args.repeat {
        for (&wire, (off, on)) in wires.iter().zip(&mut runs) {
            for recording in [Recording::Off, Recording::On] {
                eprintln!(
                    "zone-bench metrics-count: {wire}, recorder {}, repeat {repeat}/{}, under \
                     callgrind…",
                    recording_name(recording),
                    args.repeat
                );
                let run = count_run(&exe, &dir, args, wire, recording, repeat)?;
                match recording {
                    Recording::Off => off.push(run),
                    Recording::On => on.push(run),
                }
            }
        }
    }
    let comparisons = wires
        .iter()
        .zip(runs)
        .map(|(&wire, (off, on))| Comparison::new(wire, off, on))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = markdown(&comparisons, args, &valgrind);
    print!("{report}");
    write(&dir.join("metrics-count.md"), report.as_bytes())?;
    let json = serde_json::json!({
        "tool": "zone-bench metrics-count",
        "valgrind": valgrind,
        "git_commit": crate::results::git_commit(),
        "calls": args.calls,
        "stream_messages": args.stream_messages,
        "repeat": args.repeat,
        "goals": count_goals(&comparisons),
        "wires": comparisons,
    });
    write(
        &dir.join("metrics-count.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!(
        "\nwrote {} (metrics-count.md, .json, callgrind.*)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CountError> {
    std::fs::write(path, bytes).map_err(|source| CountError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// On over off, minus one, in percent.
fn added_pct(off: f64, on: f64) -> f64 {
    (on / off - 1.0) * 100.0
}

/// Runs one child under callgrind and reads its phase dumps.
fn count_run(
    exe: &Path,
    dir: &Path,
    args: &Args,
    wire: Wire,
    recording: Recording,
    repeat: u32,
) -> anyhow::Result<Run> {
    let name = format!("{wire}-{}-{repeat}", recording_name(recording));
    let base = dir.join(format!("callgrind.{name}"));
    remove_old_dumps(&base)?;
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        // The exact demangled name: a wildcard also matches generic instances that name it.
        .arg("--dump-before=zone_bench::counts::phase_mark")
        .arg(format!("--callgrind-out-file={}", base.display()))
        .arg(exe)
        .args(["--count-child", recording_name(recording), "--wire"])
        .arg(wire.label())
        .arg("--calls")
        .arg(args.calls.to_string())
        .arg("--stream-messages")
        .arg(args.stream_messages.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CountError::Io {
            what: "starting valgrind".into(),
            source,
        })?;
    // Drain stderr on a thread so a chatty valgrind cannot block on a full pipe.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        let polled = child.try_wait().map_err(|source| CountError::Io {
            what: format!("waiting for {name}"),
            source,
        })?;
        if let Some(status) = polled {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CountError::Hung(name).into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = reader.join().unwrap_or_default();
    if !status.success() {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err(CountError::Child {
            run: name,
            status: status.to_string(),
            tail,
        }
        .into());
    }
    let dumps = read_dumps(&base)?;
    if dumps.len() < DUMPS {
        return Err(CountError::Dumps {
            run: name,
            found: dumps.len(),
            expected: DUMPS,
        }
        .into());
    }
    let diff = |a: usize, b: usize| dumps[b] as f64 - dumps[a] as f64;
    let stream_per_call = diff(3, 4);
    let mib = args.stream_messages as f64 * LARGE as f64 / MIB;
    Ok(Run {
        wire,
        recording,
        unary_per_call: diff(1, 2) / args.calls as f64,
        stream_per_call,
        stream_per_mib: stream_per_call / mib,
        dumps,
    })
}

fn recording_name(recording: Recording) -> &'static str {
    match recording {
        Recording::Off => "off",
        Recording::On => "on",
    }
}

/// The dump files of `base` (`base.1`, `base.2`, … and the final `base`), by number.
fn dump_files(base: &Path) -> Result<Vec<(u32, PathBuf)>, CountError> {
    let (Some(parent), Some(stem)) = (base.parent(), base.file_name()) else {
        return Ok(Vec::new());
    };
    let stem = stem.to_string_lossy().into_owned();
    let entries = std::fs::read_dir(parent).map_err(|source| CountError::Io {
        what: format!("listing {}", parent.display()),
        source,
    })?;
    let mut files: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_prefix(&stem)?.strip_prefix('.')?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn remove_old_dumps(base: &Path) -> Result<(), CountError> {
    for (_, path) in dump_files(base)? {
        std::fs::remove_file(&path).map_err(|source| CountError::Io {
            what: format!("removing {}", path.display()),
            source,
        })?;
    }
    let _ = std::fs::remove_file(base);
    Ok(())
}

/// Instructions of each numbered dump of `base`, in order.
fn read_dumps(base: &Path) -> Result<Vec<u64>, CountError> {
    dump_files(base)?
        .into_iter()
        .map(|(_, path)| {
            let text = std::fs::read_to_string(&path).map_err(|source| CountError::Io {
                what: format!("reading {}", path.display()),
                source,
            })?;
            totals(&text).ok_or_else(|| CountError::NoTotals {
                file: path.display().to_string(),
            })
        })
        .collect()
}

/// The instruction total of a callgrind output file (`totals:`, or the header's `summary:`).
fn totals(text: &str) -> Option<u64> {
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    field("totals:").or_else(|| field("summary:"))
}

fn markdown(comparisons: &[Comparison], args: &Args, valgrind: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Metrics recorder cost in instructions (zone-bench metrics-count)\n\n\
         {valgrind} callgrind; client and server in one process (one current-thread runtime), \
         loopback; recorder off = none installed, on = metrics-http's Prometheus recorder with \
         its upkeep at the end of every phase. Unary: 64 B each way at c=32, ({n2} − {n1} calls) \
         / {n1}. Stream: one StreamingOutputCall of {m} × 64 KiB (two streams − one). Medians \
         of {r} repeat(s); added = on/off − 1 per repeat pair, median (min–max).\n",
        n1 = args.calls,
        n2 = 2 * args.calls,
        m = args.stream_messages,
        r = args.repeat,
    );
    let _ = writeln!(
        s,
        "| wire | case | instr off | instr on | added |\n|---|---|---:|---:|---:|"
    );
    let range = |p: &Summary| format!("{:+.2} % ({:+.2} … {:+.2})", p.median, p.min, p.max);
    for c in comparisons {
        let (off, on) = c.medians(|r| r.unary_per_call);
        let _ = writeln!(
            s,
            "| {} | unary 64 B c=32, per call | {off:.0} | {on:.0} | {} |",
            c.wire,
            range(&c.unary_pct)
        );
        let (off, on) = c.medians(|r| r.stream_per_mib);
        let _ = writeln!(
            s,
            "| {} | 64 KiB stream, per MiB | {off:.0} | {on:.0} | {} |",
            c.wire,
            range(&c.stream_pct)
        );
    }
    let _ = writeln!(
        s,
        "\nGoals (PASS/MISS when every repeat is on one side of the goal):"
    );
    for g in count_goals(comparisons) {
        let _ = writeln!(s, "- {}", crate::goals::line(&g));
    }
    s
}

/// The ≤ 3 % goals of the comparisons, in the report's PASS/MISS form. A count repeats, so the
/// value is its own interval.
fn count_goals(comparisons: &[Comparison]) -> Vec<crate::results::Goal> {
    comparisons
        .iter()
        .flat_map(|c| {
            [
                ("unary 64 B c=32", &c.unary_pct),
                ("64 KiB stream", &c.stream_pct),
            ]
            .map(|(case, pct)| {
                crate::goals::goal(
                    format!(
                        "{} metrics recorder cost %, {case} (instructions per call)",
                        c.wire
                    ),
                    Some(pct.median),
                    Some([pct.min, pct.max]),
                    false,
                    GOAL_PCT,
                )
            })
        })
        .collect()
}

/// `--count-child`: the workload itself (what callgrind counts), on one wire.
pub fn child(args: &Args, recording: Recording) -> ExitCode {
    let wire = match args.wires.as_slice() {
        [w @ (Wire::H2 | Wire::H3)] => *w,
        _ => {
            eprintln!("zone-bench --count-child: needs exactly one --wire, h2 or h3");
            return ExitCode::from(2);
        }
    };
    // The subscriber every zone-bench run (and a server) has: without one, tracing's `log`
    // fallback formats each call's span, ~10 % of a unary call's instructions.
    zone_client::logging::init("error");
    // One thread: no cross-thread wake-ups whose number depends on scheduling.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zone-bench --count-child: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(child_run(args, wire, recording)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zone-bench --count-child: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn child_run(args: &Args, wire: Wire, recording: Recording) -> anyhow::Result<()> {
    // Installed before the server and channel register any handle, as `--metrics` does.
    let handle = match recording {
        Recording::Off => None,
        Recording::On => {
            let recorder = metrics_http::builder()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
            Some(handle)
        }
    };
    let settings = Settings::from_args(args);
    let certs = DevCerts::generate().context("generating dev certificates")?;
    let tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?;
    let server = Server::builder()
        .tls(tls)
        .wires(Wires::Both)
        .quic_settings(settings.quic())
        .add_service(test_service())
        .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .await
        .context("binding the grpc-h3 server")?;
    let missing = || anyhow::anyhow!("grpc-h3 server did not bind both TCP and UDP");
    let addrs = Addrs {
        h2: server.h2_addr().ok_or_else(missing)?,
        h3: server.h3_addr().ok_or_else(missing)?,
        peer: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let target = Target {
        plain: addrs,
        auth: None,
        ca_pem: certs.ca_pem.clone(),
        server_name: "localhost".to_string(),
        quic: settings.quic(),
        cross_pair: false,
    };
    let channel = target.connect(wire, ServerSet::Plain).await?;
    let messages = usize::try_from(args.stream_messages)?;
    let upkeep = || {
        if let Some(handle) = &handle {
            handle.run_upkeep();
        }
    };
    crate::scenarios::observe::count_workload(channel, args.calls, messages, phase_mark, upkeep)
        .await?;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(3), serving).await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_from_the_totals_or_summary_line() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1234\n\
                    fn=(1) main\n3 10\ntotals: 1234\n";
        assert_eq!(totals(dump), Some(1234));
        assert_eq!(totals("events: Ir\nsummary: 77\n"), Some(77));
        assert_eq!(totals("events: Ir\n"), None);
    }

    #[test]
    fn dumps_are_read_in_numeric_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("callgrind.h3-on");
        for (n, total) in [(1, 5), (2, 7), (10, 11), (3, 9)] {
            std::fs::write(
                dir.path().join(format!("callgrind.h3-on.{n}")),
                format!("totals: {total}\n"),
            )
            .unwrap();
        }
        // Another run's dumps and the final dump are not this run's phases.
        std::fs::write(dir.path().join("callgrind.h3-off.1"), "totals: 1\n").unwrap();
        std::fs::write(&base, "totals: 99\n").unwrap();
        assert_eq!(read_dumps(&base).unwrap(), [5, 7, 9, 11]);
        remove_old_dumps(&base).unwrap();
        assert!(read_dumps(&base).unwrap().is_empty());
        assert!(dir.path().join("callgrind.h3-off.1").exists());
    }
}

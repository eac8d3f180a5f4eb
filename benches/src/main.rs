//! `zone-bench`: side-by-side benchmarks of gRPC over HTTP/2 and HTTP/3 (grpc-h3) and HTTP/3
//! (tonic-h3, the comparison peer). One tool, five subcommands sharing one set of options and
//! one report module: `run` (the default: the scenarios over a 1500-byte veth link, then over
//! loopback), `netlab` (the scenarios through the impaired-network emulator, the `netlab`
//! crate), `soak`, `faults`, `dns` (zone-edge's DNS server against Knot DNS under dnsperf), and
//! `metrics-count` (the metrics recorder's cost in instructions, under callgrind).
//! Prints tables with absolute figures and ratios and writes reports, JSON and SVG plots under
//! `--out`.
//!
//! Modules, one concern each: `cli` (subcommands, options, settings), `path` (the network
//! paths), `servers` (in-process servers), `peer` (tonic-h3 adapter), `target` (where calls go;
//! one channel type over all wires), `scenarios` (what is measured), `load` (bounded load loops),
//! `cpu` (getrusage), `runner` (interleaved rounds, timeouts, progress), `panics` (where a case
//! panicked), `stats`, `results` (JSON model), `goals`, `report` (every table of every
//! subcommand), `plots`, `impaired` (`netlab`), `soak` (`soak`: long mixed load, RSS and fds over
//! time), `faults` (`faults`: server killed and restarted, client rebinding), `dns` (`dns`:
//! dnsperf against zone-edge and Knot DNS), `counts` (`metrics-count`).
mod cli;
mod counts;
mod cpu;
mod dns;
mod faults;
mod goals;
mod impaired;
mod load;
mod panics;
mod path;
mod peer;
mod plots;
mod report;
mod results;
mod runner;
mod scenarios;
mod servers;
mod soak;
mod stats;
mod target;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Args, Cli, Settings};
use crate::path::NetPath;
use crate::results::{CpuTimes, Machine, RunResults, ScenarioResult, WireInfo};
use crate::runner::Runner;
use crate::scenarios::ScenarioDef;
use crate::servers::LocalServers;
use crate::target::{Target, Wire};
use netlab::{VETH_ADDR_B, VethLink};

fn main() -> ExitCode {
    let args = Cli::parse().into_args();
    if args.list {
        for s in scenarios::CATALOGUE {
            println!("{:<16} {}", s.name, s.description);
        }
        return ExitCode::SUCCESS;
    }
    if args.dns {
        return dns::main(&args);
    }
    // Before the gated recorder below: the count installs the real one, or none.
    if let Some(recording) = args.count_child {
        return counts::child(&args, recording);
    }
    if args.metrics_count {
        return counts::main(&args);
    }
    if args.netlab {
        return impaired::main(&args);
    }
    if let (Some(port), Some(dir)) = (args.fault_server, &args.cert_dir) {
        return faults::serve_child(port, dir);
    }
    panics::install_hook();
    // Before any server or channel registers a metric handle (see scenarios/observe.rs).
    scenarios::observe::install_recorder();
    let selected = match scenarios::select(&args.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zone-bench: {e}");
            return ExitCode::from(2);
        }
    };
    zone_client::logging::init("error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zone-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let full_lab = args.full_lab();
    let outcome = if args.soak {
        runtime.block_on(soak::run(&args))
    } else if args.faults {
        runtime.block_on(faults::run(&args))
    } else {
        runtime.block_on(run(args, selected))
    };
    drop(runtime);
    let code = match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zone-bench: {e:#}");
            ExitCode::FAILURE
        }
    };
    match full_lab {
        Some(lab) => run_full_lab(&lab, code),
        None => code,
    }
}

/// `run --full`'s second part: the deployed-paths goals under loss, through the lab (as root;
/// without root it says so, and the run's own result stands).
fn run_full_lab(lab: &Args, run_code: ExitCode) -> ExitCode {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "zone-bench: --full: the lab's goal cells (50 ms RTT, 1 % and 5 % loss) skipped: \
             the lab needs root (run `zone-bench netlab --scenario grid --rtt 50 --loss 1,5` \
             as root)"
        );
        return run_code;
    }
    eprintln!(
        "zone-bench: --full: the lab's goal cells: 50 ms RTT, 1 % and 5 % loss (about 40 min) ..."
    );
    let lab_code = impaired::main(lab);
    if run_code == ExitCode::SUCCESS {
        lab_code
    } else {
        run_code
    }
}

async fn run(args: Args, selected: Vec<&'static ScenarioDef>) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(Settings::from_args(&args));
    let started = Instant::now();
    let cpu_at_start = CpuTimes::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    if settings.cross_pair {
        eprintln!(
            "zone-bench: --cross-pair: the h3 column is grpc-h3's client against tonic-h3's \
             server, the tonic-h3 column tonic-h3's client against grpc-h3's server"
        );
    }
    let mut scenario_results = Vec::new();
    let mut wires = Vec::new();
    let mut paths = Vec::new();
    for &path in &settings.paths {
        let ran = match path {
            NetPath::Loopback => Some(run_loopback(&settings, &selected).await?),
            NetPath::Mtu1500 => {
                let (settings, selected) = (settings.clone(), selected.clone());
                tokio::task::spawn_blocking(move || run_mtu1500(settings, selected))
                    .await
                    .context("the MTU 1500 run")??
            }
        };
        if let Some(ran) = ran {
            paths.push(path);
            for w in ran.wires {
                if !wires.contains(&w) {
                    wires.push(w);
                }
            }
            scenario_results.extend(ran.results);
        }
    }
    wires.sort();
    let wires: Vec<WireInfo> = wires.into_iter().map(WireInfo::of).collect();
    let ours_failed = scenario_results
        .iter()
        .flat_map(|r| &r.transports)
        .any(|t| t.error.is_some() && !t.wire.is_peer());
    let goals = goals::evaluate(&scenario_results, &paths);
    let run = RunResults {
        tool: "zone-bench",
        version: env!("CARGO_PKG_VERSION"),
        started_unix_s,
        duration_s: started.elapsed().as_secs_f64(),
        command_line: std::env::args().collect(),
        git_commit: results::git_commit(),
        machine: Machine {
            steal_pct: cpu_at_start
                .zip(CpuTimes::now())
                .and_then(|(a, b)| a.steal_pct_until(b)),
            ..Machine::detect()
        },
        settings: (*settings).clone(),
        wires,
        scenarios: scenario_results,
        goals,
    };

    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let plots = match plots::write_all(out, &run.scenarios) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("zone-bench: plots skipped: {e:#}");
            Vec::new()
        }
    };
    let json = serde_json::to_string_pretty(&run)?;
    std::fs::write(out.join("results.json"), json)
        .with_context(|| format!("writing {}", out.join("results.json").display()))?;
    std::fs::write(out.join("report.md"), report::markdown(&run, &plots))
        .with_context(|| format!("writing {}", out.join("report.md").display()))?;

    print!("{}", report::terminal(&run));
    println!(
        "\nwrote {} (report.md, results.json, {} plot(s)) in {:.1} s",
        out.display(),
        plots.len(),
        run.duration_s
    );
    if ours_failed {
        eprintln!("zone-bench: a grpc-h3 case failed (see errors above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The scenario results of one path and the wires that ran.
struct PathRun {
    results: Vec<ScenarioResult>,
    wires: Vec<Wire>,
}

/// The scenarios over loopback: servers and clients on 127.0.0.1, one runtime.
async fn run_loopback(
    settings: &Arc<Settings>,
    selected: &[&'static ScenarioDef],
) -> anyhow::Result<PathRun> {
    let mut servers = LocalServers::start(settings, true, Ipv4Addr::LOCALHOST.into()).await?;
    let target = Arc::new(servers.target().clone());
    let runner = Runner::new(settings.clone(), target, NetPath::Loopback, selected.len());
    let results = runner.run_all(selected, Some(&mut servers)).await;
    let wires = runner.wires().to_vec();
    servers.shutdown().await;
    Ok(PathRun { results, wires })
}

/// How long the servers in namespace `b` may take to bind.
const NS_SERVERS_READY: Duration = Duration::from_secs(60);

/// The scenarios that talk to the shared servers, over a 1500-byte veth link: servers in
/// namespace `b`, clients in `a`, each side on its own runtime (sockets belong to the namespace
/// of the thread that creates them). `None` when this machine cannot host the link (not root).
fn run_mtu1500(
    settings: Arc<Settings>,
    selected: Vec<&'static ScenarioDef>,
) -> anyhow::Result<Option<PathRun>> {
    let selected: Vec<_> = selected.into_iter().filter(|d| d.uses_target()).collect();
    if selected.is_empty() {
        return Ok(None);
    }
    let link = match VethLink::start() {
        Ok(link) => link,
        Err(e) if e.is_skip() => {
            eprintln!("zone-bench: MTU 1500 path skipped, loopback only: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e).context("setting up the MTU 1500 link"),
    };
    eprintln!("zone-bench: MTU 1500 path: {}", link.describe());
    let (target_tx, target_rx) = std::sync::mpsc::channel::<Result<Target, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_settings = settings.clone();
    let servers = link.spawn_in_b(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("server runtime: {e}"))?;
        rt.block_on(async move {
            match LocalServers::start(&server_settings, true, VETH_ADDR_B.into()).await {
                Ok(servers) => {
                    let _ = target_tx.send(Ok(servers.target().clone()));
                    let _ = stop_rx.await;
                    servers.shutdown().await;
                    Ok(())
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    let _ = target_tx.send(Err(e.clone()));
                    Err(e)
                }
            }
        })
    })?;
    let target = target_rx
        .recv_timeout(NS_SERVERS_READY)
        .map_err(|e| anyhow::anyhow!("servers in namespace b did not report: {e}"))?
        .map_err(|e| anyhow::anyhow!("servers in namespace b: {e}"))?;
    let clients = link.spawn_in_a(move || -> anyhow::Result<PathRun> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let runner = Runner::new(settings, Arc::new(target), NetPath::Mtu1500, selected.len());
            Ok(PathRun {
                results: runner.run_all(&selected, None).await,
                wires: runner.wires().to_vec(),
            })
        })
    })?;
    let ran = clients
        .join()
        .map_err(|_| anyhow::anyhow!("the MTU 1500 client thread panicked"));
    let _ = stop_tx.send(());
    match servers.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("zone-bench: MTU 1500 servers: {e}"),
        Err(_) => eprintln!("zone-bench: the MTU 1500 server thread panicked"),
    }
    drop(link);
    ran?.map(Some)
}

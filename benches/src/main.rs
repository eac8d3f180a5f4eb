//! `zone-bench`: side-by-side benchmarks of gRPC over HTTP/2 and HTTP/3 (grpc-h3) and HTTP/3
//! (tonic-h3, the comparison peer) on loopback. Prints a table with absolute figures
//! and ratios and writes report.md, results.json and SVG plots under `--out`.
//!
//! Modules, one concern each: `cli` (flags and settings), `servers` (in-process servers),
//! `peer` (tonic-h3 adapter), `target` (where calls go; one channel type over all wires),
//! `scenarios` (what is measured), `load` (bounded load loops), `cpu` (getrusage), `runner`
//! (interleaved rounds, timeouts, progress), `panics` (where a case panicked), `stats`,
//! `results` (JSON model), `goals`, `report`, `plots`, `impaired` (`--netlab`: the subset over
//! the impaired link of `zone_bench::netlab`), `soak` (`--soak`: long mixed load, RSS and fds over
//! time), `faults` (`--faults`: server killed and restarted, client rebinding).

mod cli;
mod cpu;
mod faults;
mod goals;
mod impaired;
mod load;
mod panics;
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

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Args, Settings};
use crate::results::{Machine, RunResults, WireInfo};
use crate::runner::Runner;
use crate::scenarios::ScenarioDef;
use crate::servers::LocalServers;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in scenarios::CATALOGUE {
            println!("{:<16} {}", s.name, s.description);
        }
        return ExitCode::SUCCESS;
    }
    if args.netlab {
        return impaired::main(&args);
    }
    if let (Some(port), Some(dir)) = (args.fault_server, &args.cert_dir) {
        return faults::serve_child(port, dir);
    }
    panics::install_hook();
    let selected = match scenarios::select(&args.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zone-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
    let outcome = if args.soak {
        runtime.block_on(soak::run(&args))
    } else if args.faults {
        runtime.block_on(faults::run(&args))
    } else {
        runtime.block_on(run(args, selected))
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zone-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, selected: Vec<&'static ScenarioDef>) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(Settings::from_args(&args));
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    if settings.cross_pair {
        eprintln!(
            "zone-bench: --cross-pair: the h3 column is grpc-h3's client against tonic-h3's \
             server, the tonic-h3 column tonic-h3's client against grpc-h3's server"
        );
    }
    let mut servers = LocalServers::start(&settings, true).await?;
    let target = Arc::new(servers.target().clone());
    let runner = Runner::new(settings.clone(), target, selected.len());
    let mut scenario_results = Vec::with_capacity(selected.len());
    for def in selected {
        scenario_results.push(runner.run_scenario(def, Some(&mut servers)).await);
    }
    runner.finish();
    let wires: Vec<WireInfo> = runner.wires().iter().map(|&w| WireInfo::of(w)).collect();
    servers.shutdown().await;

    let ours_failed = scenario_results
        .iter()
        .flat_map(|r| &r.transports)
        .any(|t| t.error.is_some() && !t.wire.is_peer());
    let goals = goals::evaluate(&scenario_results);
    let run = RunResults {
        tool: "zone-bench",
        version: env!("CARGO_PKG_VERSION"),
        started_unix_s,
        duration_s: started.elapsed().as_secs_f64(),
        command_line: std::env::args().collect(),
        git_commit: results::git_commit(),
        machine: Machine::detect(),
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

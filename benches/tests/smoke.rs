//! Smoke test of the `zone-bench` binary: a tiny run completes, writes its report and results,
//! and every scenario has figures for every transport (tonic-h3 may instead carry a recorded
//! error). Never asserts that anything is fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zone-bench");

/// Runs the binary with `args`, killing it after `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zone-bench");
    let started = Instant::now();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let status = wait_within(
        &mut child,
        started + limit,
        &format!("zone-bench {args:?} ({limit:?})"),
    );
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Waits for `child` to exit; past `deadline` it is killed and the test fails naming `what`.
fn wait_within(child: &mut std::process::Child, deadline: Instant, what: &str) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scenario_names() -> Vec<String> {
    let out = run(&["--list"], Duration::from_secs(30));
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Checks `results.json`: every scenario (name, path) over its wires, each metric with a figure —
/// except the JetStream half (`nats_*`) when `without_nats`, which the run skips without
/// nats-server.
fn check_results(dir: &Path, expected: &[(String, &str)], without_nats: bool) {
    assert!(dir.join("report.md").is_file(), "report.md missing");
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(json["command_line"].as_array().unwrap().len() > 1);
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    let names: Vec<(String, &str)> = scenarios
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, expected);
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        let keys: Vec<&str> = scenario["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["key"].as_str().unwrap())
            .collect();
        let transports = scenario["transports"].as_array().unwrap();
        let wires: Vec<&str> = transports
            .iter()
            .map(|t| t["wire"].as_str().unwrap())
            .collect();
        // These measure grpc-h3's own fan-out / journals / metrics; tonic-h3 does not run them.
        let expected: &[&str] = if [
            "edge-fanout",
            "edge-dns",
            "journal-redb-vs-nats",
            "metrics-cost",
        ]
        .contains(&name)
        {
            &["h2", "h3"]
        } else {
            &["h2", "h3", "tonic-h3", "tonic-h3>h3"]
        };
        assert_eq!(wires, expected, "{name}");
        for t in transports {
            let wire = t["wire"].as_str().unwrap();
            if wire.starts_with("tonic-h3") && !t["error"].is_null() {
                // A peer failure is a result: it must say what happened.
                assert!(!t["error"].as_str().unwrap().trim().is_empty(), "{name}");
                continue;
            }
            assert!(t["error"].is_null(), "{name} over {wire}: {}", t["error"]);
            assert!(
                !t["samples"].as_array().unwrap().is_empty(),
                "{name} {wire}"
            );
            for key in keys
                .iter()
                .filter(|k| !(without_nats && k.starts_with("nats_")))
            {
                let median = &t["summary"][key]["median"];
                assert!(
                    median.as_f64().is_some_and(f64::is_finite),
                    "{name} over {wire}: no figure for {key}"
                );
            }
        }
    }
}

#[test]
fn tiny_run_reports_every_scenario_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &["--quick", "--tiny", "--out", out_dir.to_str().unwrap()],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ours/tonic-h3"), "{stdout}");
    assert!(
        stdout.contains("goals (reported, not enforced)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let without_nats = stderr.contains("nats-server not installed");
    if without_nats {
        eprintln!(
            "JetStream figures not checked: nats-server not installed (scripts/install-nats.sh)"
        );
    }
    // As root the scenarios on the shared servers run over the 1500-byte veth link first.
    let names = scenario_names();
    let mut expected: Vec<(String, &str)> = Vec::new();
    if stderr.contains("MTU 1500 path skipped") {
        eprintln!("MTU 1500 path not checked: {stderr}");
    } else {
        let own_servers = ["edge-fanout", "edge-dns", "journal-redb-vs-nats"];
        expected.extend(
            names
                .iter()
                .filter(|n| !own_servers.contains(&n.as_str()))
                .map(|n| (n.clone(), "mtu1500")),
        );
        assert!(stdout.contains("MTU 1500 (veth"), "{stdout}");
    }
    expected.extend(names.iter().map(|n| (n.clone(), "loopback")));
    check_results(&out_dir, &expected, without_nats);
}

#[test]
fn netlab_runs_its_grid_or_skips_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "netlab",
            "--quick",
            "--tiny",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        // A hang guard, not a timing goal: the tiny grid with its edge → DNS cells takes about
        // 90 s on a loaded 2-core machine.
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        // Not root or no TUN: a skip that says why.
        Some(2) => assert!(
            stderr.contains("zone-bench netlab:") && stderr.contains("lab"),
            "{stderr}"
        ),
        Some(0) => {
            assert!(stdout.contains("Impaired network"), "{stdout}");
            assert!(
                stdout.contains("goals (reported, not enforced)"),
                "{stdout}"
            );
            let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
            assert!(report.contains("## Impaired network"), "{report}");
            let text = std::fs::read_to_string(out_dir.join("results.json")).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let points = json["points"].as_array().unwrap();
            // Tiny grid: RTT 50 ms × loss {1, 5} %, h2 + h3 + tonic-h3 + h2-bbr + h3-bbr each.
            assert_eq!(points.len(), 10, "{text}");
            // Every wire records its controller: TCP ones as read back from the lab.
            for p in points {
                let want = match p["wire"].as_str().unwrap() {
                    "h2" | "h3" | "tonic-h3" => "cubic",
                    "h2-bbr" | "h3-bbr" => "bbr",
                    other => panic!("unknown wire {other}: {text}"),
                };
                assert_eq!(p["congestion"], want, "{text}");
            }
            assert!(json["host_tcp_congestion"].is_string(), "{text}");
            assert!(report.contains("h3/h2 bbr"), "{report}");
            let measured = points
                .iter()
                .filter(|p| p["metrics"]["c1_p99_ms"].as_f64().is_some_and(|v| v > 0.0))
                .count();
            assert!(measured > 0, "no unary figure at all: {text}");
            // The head-of-line cell: small calls beside a stream on one connection.
            let hol = points
                .iter()
                .filter(|p| p["metrics"]["hol_p99_ms"].as_f64().is_some_and(|v| v > 0.0))
                .count();
            assert!(hol > 0, "no head-of-line figure at all: {text}");
            assert_eq!(json["goals"].as_array().unwrap().len(), 5);
            assert_eq!(json["info"].as_array().unwrap().len(), 1);
            // Edge → DNS answer: 3 cells (50 ms × 0, 1, 5 %) × h2/h3 × 1 and 64 edges.
            let dns = json["edge_dns"].as_array().unwrap();
            assert_eq!(dns.len(), 12, "{text}");
            let answered = dns
                .iter()
                .filter(|p| p["answered_p99_ms"].as_f64().is_some_and(|v| v >= 25.0))
                .count();
            assert!(answered > 0, "no edge → DNS figure at all: {text}");
            assert!(
                report.contains("Edge → DNS answer through the lab"),
                "{report}"
            );
        }
        other => panic!("exit {other:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
    }
}

#[test]
fn dns_compares_zone_edge_with_knot_or_skips_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "dns",
            "--tiny",
            "--duration",
            "1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.contains("skipped") {
        eprintln!("skipping: {stdout}");
        return;
    }
    // Both servers measured, each answering the zone (the run refuses a server that does not).
    let report = std::fs::read_to_string(out_dir.join("dns/dns.md")).unwrap();
    for row in ["| zone-edge |", "| knot |"] {
        assert!(report.contains(row), "no {row} in\n{report}");
    }
    let figures = read_json(&out_dir.join("dns/dns.json"));
    let runs = figures.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{figures}");
    for run in runs {
        assert!(run["qps"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["noerror_pct"].as_f64().unwrap() >= 99.0, "{run}");
    }
}

#[test]
fn unknown_scenarios_are_usage_errors() {
    let out = run(&["--scenario", "no-such-scenario"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
}

/// The workload `metrics-count` counts, run once without valgrind (a second or two): the
/// server, the channel and every phase work with the recorder installed.
#[test]
fn metrics_count_workload_runs_with_the_recorder() {
    for wire in ["h2", "h3"] {
        let out = run(
            &[
                "--count-child",
                "on",
                "--wire",
                wire,
                "--calls",
                "32",
                "--stream-messages",
                "2",
            ],
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{wire}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Without valgrind on PATH, `metrics-count` skips with its reason and succeeds.
#[test]
fn metrics_count_skips_without_valgrind() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["metrics-count", "--out"])
        .arg(empty.path())
        .env("PATH", empty.path())
        .output()
        .expect("start zone-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped: valgrind is not installed"),
        "{stderr}"
    );
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn is_number(v: &serde_json::Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

#[test]
fn soak_tiny_reports_errors_latency_drift_rss_and_fds() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &["soak", "--tiny", "--out", out_dir.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("RSS growth 2nd half"), "{stdout}");
    let report = std::fs::read_to_string(out_dir.join("soak.md")).unwrap();
    assert!(
        report.contains("Client and servers run in this one process"),
        "{report}"
    );
    let json = read_json(&out_dir.join("soak.json"));
    assert_eq!(json["settings"]["secs_per_wire"], 3);
    let wires = json["wires"].as_array().unwrap();
    let names: Vec<&str> = wires.iter().map(|w| w["wire"].as_str().unwrap()).collect();
    assert_eq!(names, ["h2", "h3", "tonic-h3"]);
    for w in wires {
        let name = w["wire"].as_str().unwrap();
        if name == "tonic-h3" && !w["error"].is_null() {
            // A peer crash is a result: it must say what happened.
            assert!(!w["error"].as_str().unwrap().trim().is_empty());
            continue;
        }
        assert!(w["error"].is_null(), "{name}: {}", w["error"]);
        // The error count is present (and, for grpc-h3, zero: the exit status says so too).
        assert!(w["errors"].as_u64().is_some(), "{name}: {w}");
        if name != "tonic-h3" {
            assert_eq!(w["errors"], 0, "{name}: {}", w["errors_by_code"]);
        }
        for key in ["unary", "transfers", "server_streams", "bidi_round_trips"] {
            assert!(w["calls"][key].as_u64().unwrap() > 0, "{name}: no {key}");
        }
        for key in [
            "unary_per_s",
            "p99_first_quarter_us",
            "p99_last_quarter_us",
            "p99_drift_quarters",
            "rss_25_kib",
            "rss_end_kib",
            "rss_growth_second_half_pct",
            "fds_start",
            "fds_end",
            "fds_after_close",
        ] {
            assert!(is_number(&w[key]), "{name}: no figure for {key}: {w}");
        }
        let intervals = w["intervals"].as_array().unwrap();
        assert_eq!(intervals.len(), 3, "{name}");
        assert!(intervals.iter().all(|i| is_number(&i["rss_kib"])));
    }
}

#[test]
fn faults_tiny_reports_recovery_after_kill_and_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &["faults", "--tiny", "--out", out_dir.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("recovery ms"), "{stdout}");
    assert!(out_dir.join("faults.md").is_file());
    let json = read_json(&out_dir.join("faults.json"));
    let cases = json["cases"].as_array().unwrap();
    let rows: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| (c["fault"].as_str().unwrap(), c["wire"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("kill+restart", "h2"),
            ("kill+restart", "h3"),
            ("rebind (unary load)", "h3"),
            ("rebind (server stream)", "h3"),
        ]
    );
    for c in cases {
        let name = format!("{} {}", c["fault"], c["wire"]);
        assert!(c["error"].is_null(), "{name}: {}", c["error"]);
        assert!(c["calls_ok"].as_u64().unwrap() > 0, "{name}");
        assert!(c["calls_failed"].as_u64().is_some(), "{name}");
        assert!(c["retried"].as_u64().is_some(), "{name}");
        if c["fault"] == "kill+restart" {
            // The same channel served calls again after the restart: it reconnected by itself.
            assert!(c["ok_after_restart"].as_u64().unwrap() > 0, "{name}: {c}");
            assert!(is_number(&c["recovery_ms"]), "{name}: {c}");
            assert!(is_number(&c["outage_ms"]), "{name}: {c}");
            // Calls failed while the server was down.
            assert!(
                !c["attempts_failed_by_code"].as_object().unwrap().is_empty(),
                "{name}: {c}"
            );
        } else {
            // Migration loses nothing.
            assert_eq!(c["calls_failed"], 0, "{name}: {c}");
        }
    }
}

/// An interrupted `netlab` run (Ctrl-C) deletes its namespaces and exits 130; without root the
/// lab cannot start and the run is a skip that says why.
#[test]
fn interrupted_netlab_deletes_its_namespaces() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["netlab", "--tiny", "--out"])
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zone-bench");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // `netlab READY a=NAME/ADDR b=NAME/ADDR ...`, or the reason it cannot start.
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let Some(ready) = first.strip_prefix("netlab READY ") else {
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(2), "{first}");
        println!("skipping: {first}");
        return;
    };
    let names: Vec<String> = ready
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("a=").or_else(|| w.strip_prefix("b=")))
        .filter_map(|w| w.split('/').next().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), 2, "{first}");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    // Drain stderr so the child cannot block on a full pipe while it exits.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = wait_within(&mut child, deadline, "zone-bench after SIGINT");
    let rest = drain.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(130), "{rest}");
    let left = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for name in &names {
        assert!(!left.contains(name.as_str()), "{name} left behind: {left}");
    }
}

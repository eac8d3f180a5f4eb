//! Smoke test of the `zone-bench` binary: a tiny run completes, writes its report and results,
//! and every scenario has figures for every transport (tonic-h3 may instead carry a recorded
//! error). Never asserts that anything is fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
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
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zone-bench {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
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

fn check_results(dir: &Path, expected: &[String]) {
    assert!(dir.join("report.md").is_file(), "report.md missing");
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(json["command_line"].as_array().unwrap().len() > 1);
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
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
        // edge-fanout measures grpc-h3's own fan-out; tonic-h3 does not run it.
        let expected: &[&str] = if name == "edge-fanout" {
            &["h2", "h3"]
        } else {
            &["h2", "h3", "tonic-h3"]
        };
        assert_eq!(wires, expected, "{name}");
        for t in transports {
            let wire = t["wire"].as_str().unwrap();
            if wire == "tonic-h3" && !t["error"].is_null() {
                // A peer failure is a result: it must say what happened.
                assert!(!t["error"].as_str().unwrap().trim().is_empty(), "{name}");
                continue;
            }
            assert!(t["error"].is_null(), "{name} over {wire}: {}", t["error"]);
            assert!(
                !t["samples"].as_array().unwrap().is_empty(),
                "{name} {wire}"
            );
            for key in &keys {
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
    check_results(&out_dir, &scenario_names());
}

#[test]
fn netlab_runs_its_grid_or_skips_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "--netlab",
            "--quick",
            "--tiny",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        // Not root or no TUN: a skip that says why.
        Some(2) => assert!(
            stderr.contains("zone-bench --netlab:") && stderr.contains("lab"),
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
            // Tiny grid: RTT 50 ms × loss {1, 5} %, h2 + h3 + h2-bbr + h3-bbr each.
            assert_eq!(points.len(), 8, "{text}");
            // Every wire records its controller: TCP ones as read back from the lab.
            for p in points {
                let want = match p["wire"].as_str().unwrap() {
                    "h2" | "h3" => "cubic",
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
            assert_eq!(json["goals"].as_array().unwrap().len(), 3);
            assert_eq!(json["info"].as_array().unwrap().len(), 1);
        }
        other => panic!("exit {other:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
    }
}

#[test]
fn unknown_scenarios_are_usage_errors() {
    let out = run(&["--scenario", "no-such-scenario"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
}

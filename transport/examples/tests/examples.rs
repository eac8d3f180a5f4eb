//! Runs every example binary and checks what it prints: the examples are documentation, and
//! documentation that no longer works is a defect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs example `bin` to its end (at most 60 s) and returns its standard output.
fn run(bin: &str) -> String {
    let mut child = Command::new(bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_has(stdout: &str, line: &str) {
    assert!(
        stdout.lines().any(|l| l.trim() == line),
        "missing line {line:?} in:\n{stdout}"
    );
}

#[test]
fn helloworld_answers_over_http3() {
    let out = run(env!("CARGO_BIN_EXE_helloworld"));
    assert_has(&out, "RESPONSE=\"Hello Tonic!\"");
    assert!(
        out.contains("server: a request from Some(127.0.0.1:"),
        "{out}"
    );
}

#[test]
fn streaming_works_the_same_over_both_wires() {
    let out = run(env!("CARGO_BIN_EXE_streaming"));
    for wire in ["h3", "h2"] {
        assert_has(
            &out,
            &format!("{wire}: server streaming received foo foo foo foo foo"),
        );
        assert_has(&out, &format!("{wire}: bidi echoed a b c"));
    }
}

#[test]
fn the_auth_layer_refuses_without_a_token_and_admits_with_one_on_both_wires() {
    let out = run(env!("CARGO_BIN_EXE_auth"));
    for (wire, name) in [("h3", "H3"), ("h2", "H2")] {
        assert_has(&out, &format!("{wire}: without a token: Unauthenticated"));
        assert_has(
            &out,
            &format!("{wire}: with the token: Hello alice over Some({name})!"),
        );
    }
    assert!(
        out.contains("/helloworld.Greeter/SayHello over Some(H3)"),
        "{out}"
    );
    assert!(out.contains("refused") && out.contains("allowed"), "{out}");
}

#[test]
fn auto_starts_on_http2_and_moves_to_http3_after_alt_svc() {
    let out = run(env!("CARGO_BIN_EXE_auto"));
    assert_has(&out, "before the first call: h2");
    assert_has(&out, "call 1: served over h2");
    assert!(out.contains("moved to HTTP/3 after"), "{out}");
    assert_has(&out, "in use now: h3");
}

#[test]
fn a_resumed_session_carries_an_idempotent_call_in_0rtt() {
    let out = run(env!("CARGO_BIN_EXE_early-data"));
    assert_has(&out, "first connection: after the handshake");
    assert!(
        out.lines()
            .any(|l| l.starts_with("resumed connection ") && l.ends_with(": in 0-RTT")),
        "{out}"
    );
}

//! `zone-server user add|list|remove`: the users file the binary writes is the one the auth layer
//! reads, passwords never come from argv, and bad input fails with a readable message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use zone_server::auth::Users;

const BIN: &str = env!("CARGO_BIN_EXE_zone-server");

/// Runs `zone-server ARGS` in `dir` with `ZONE_PASSWORD` set to `password` (or unset), feeding
/// `stdin`.
fn run(dir: &Path, args: &[&str], password: Option<&str>, stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("ZONE_PASSWORD");
    if let Some(pw) = password {
        cmd.env("ZONE_PASSWORD", pw);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_readable_failure(out: &Output, want: &str) {
    assert!(!out.status.success(), "unexpected success: {}", stdout(out));
    let err = stderr(out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(want), "{err:?} lacks {want:?}");
    assert!(
        !err.contains("panicked") && !err.contains("Error {"),
        "{err}"
    );
}

#[test]
fn add_with_env_password_writes_an_owner_only_file_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &[
            "user",
            "add",
            "alice",
            "--allow",
            "zone.v1.Zones/*",
            "grpc.health.v1.Health/Check",
            "--zone",
            "Example.com",
            "--users",
            "users.toml",
        ],
        Some("correct horse"),
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let path = tmp.path().join("users.toml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let users = Users::load(&path).unwrap();
    let alice = users.get("alice").unwrap();
    assert!(alice.verify_password(b"correct horse"));
    assert!(!alice.verify_password(b"correct horse\n"));
    assert!(alice.allows("zone.v1.Zones/TransferZone"));
    assert!(alice.allows("grpc.health.v1.Health/Check"));
    assert!(!alice.allows("grpc.health.v1.Health/Watch"));
    assert_eq!(alice.zones().unwrap(), ["example.com."]);
    // The password is nowhere in the file.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("correct horse"));
}

#[test]
fn add_reads_one_line_of_stdin_without_its_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["user", "add", "bob", "--allow", "*"],
        None,
        "pw from stdin\r\nsecond line\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Default file name in the working directory.
    let users = Users::load(&tmp.path().join("users.toml")).unwrap();
    let bob = users.get("bob").unwrap();
    assert!(bob.verify_password(b"pw from stdin"));
    assert!(bob.zones().is_none());
}

#[test]
fn empty_password_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["user", "add", "bob", "--allow", "*"],
        None,
        "\n",
    );
    assert_readable_failure(&out, "empty password");
    assert!(!tmp.path().join("users.toml").exists());
}

#[test]
fn bad_pattern_fails_with_a_message_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["user", "add", "alice", "--allow", "zone.v1.Zones"],
        Some("pw"),
        "",
    );
    assert_readable_failure(&out, "invalid method pattern `zone.v1.Zones`");
    assert!(!tmp.path().join("users.toml").exists());
}

#[test]
fn bad_names_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["user", "add", "a:b", "--allow", "*"],
        Some("pw"),
        "",
    );
    assert_readable_failure(&out, "invalid user name");
    assert!(!tmp.path().join("users.toml").exists());
}

#[test]
fn existing_user_needs_force_to_be_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let add = |pw: &str, force: bool| {
        let mut args = vec!["user", "add", "alice", "--allow", "*"];
        if force {
            args.push("--force");
        }
        run(tmp.path(), &args, Some(pw), "")
    };
    assert!(add("one", false).status.success());
    assert_readable_failure(&add("two", false), "already exists");
    let path = tmp.path().join("users.toml");
    assert!(
        Users::load(&path)
            .unwrap()
            .get("alice")
            .unwrap()
            .verify_password(b"one")
    );
    assert!(add("two", true).status.success());
    let users = Users::load(&path).unwrap();
    assert_eq!(users.len(), 1);
    assert!(users.get("alice").unwrap().verify_password(b"two"));
}

#[test]
fn list_shows_names_and_rights_but_never_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, allow) in [
        ("alice", "zone.v1.Zones/*"),
        ("bob", "zone.v1.Zones/GetRecord"),
    ] {
        let out = run(
            tmp.path(),
            &["user", "add", name, "--allow", allow],
            Some("pw"),
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(tmp.path(), &["user", "list"], None, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("alice") && text.contains("zone.v1.Zones/*"),
        "{text}"
    );
    assert!(
        text.contains("bob") && text.contains("zone.v1.Zones/GetRecord"),
        "{text}"
    );
    assert!(!text.contains("argon2"), "{text}");
}

#[test]
fn remove_deletes_the_user_and_unknown_names_fail() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["alice", "bob"] {
        let out = run(
            tmp.path(),
            &["user", "add", name, "--allow", "*"],
            Some("pw"),
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(tmp.path(), &["user", "remove", "alice"], None, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let users = Users::load(&tmp.path().join("users.toml")).unwrap();
    assert!(users.get("alice").is_none());
    assert!(users.get("bob").is_some());
    assert_readable_failure(
        &run(tmp.path(), &["user", "remove", "alice"], None, ""),
        "no user `alice`",
    );
}

#[test]
fn list_of_a_missing_or_broken_file_fails_readably() {
    let tmp = tempfile::tempdir().unwrap();
    assert_readable_failure(
        &run(
            tmp.path(),
            &["user", "list", "--users", "nope.toml"],
            None,
            "",
        ),
        "nope.toml",
    );
    std::fs::write(tmp.path().join("bad.toml"), "[users.alice]\nhash = 1\n").unwrap();
    assert_readable_failure(
        &run(
            tmp.path(),
            &["user", "list", "--users", "bad.toml"],
            None,
            "",
        ),
        "bad.toml",
    );
}

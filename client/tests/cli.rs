//! End-to-end tests of the `zone-client` binary against an in-process zone server on loopback.
//!
//! Every behaviour runs over each entry of [`TRANSPORTS`]; the binary gets the same `--transport`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grpc_h3::{Server, ServerTls, Transport};
use zone_proto::zone::v1 as pb;
use zone_server::journal::{JournalOptions, MemoryJournal};
use zone_server::zones::ZoneStore;

const TRANSPORTS: &[&str] = &["h2", "h3"];

const ZONE: &str = "example.com.";
const ZONE_TEXT: &str = "\
$ORIGIN example.com.
$TTL 300
@       IN SOA ns1 hostmaster 10 7200 3600 1209600 300
@       IN NS  ns1
ns1     IN A   192.0.2.1
www     IN A   192.0.2.10
www     IN AAAA 2001:db8::10
mail    IN MX  10 mx.example.com.
mx      IN A   192.0.2.25
";
/// Each client run must finish within this; a hang fails the test instead of blocking CI.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A zone server on 127.0.0.1 with dev certs; stopped on drop.
struct TestServer {
    transport: &'static str,
    addr: SocketAddr,
    store: ZoneStore,
    dir: tempfile::TempDir,
    ca: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    fn start(transport: &'static str) -> TestServer {
        let store = ZoneStore::new();
        store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
        Self::serving(transport, store)
    }

    /// A server on `store` (which holds [`ZONE`]).
    fn serving(transport: &'static str, store: ZoneStore) -> TestServer {
        let certs = dev_certs::DevCerts::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &certs.ca_pem).unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let wire: Transport = transport.parse().unwrap();
        let bound = runtime
            .block_on(
                Server::builder()
                    .tls(
                        ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap(),
                    )
                    .wires(grpc_h3::Wires::from(wire))
                    .add_service(zone_server::zones::zones_server(store.clone()))
                    .bind("127.0.0.1:0".parse().unwrap()),
            )
            .unwrap();
        let addr = match wire {
            Transport::H3 => bound.h3_addr(),
            _ => bound.h2_addr(),
        }
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(bound.serve_with_shutdown(async {
            let _ = rx.await;
        }));
        TestServer {
            transport,
            addr,
            store,
            dir,
            ca,
            shutdown: Some(tx),
            runtime: Some(runtime),
        }
    }

    fn serial(&self) -> u32 {
        self.store.zone(ZONE).unwrap().serial
    }

    /// `zone-client` with this server's address, transport and CA, then `args`.
    fn client(&self, args: &[&str]) -> Run {
        let addr = self.addr.to_string();
        let ca = self.ca.to_str().unwrap();
        let mut full = vec!["--addr", &addr, "--transport", self.transport, "--ca", ca];
        full.extend_from_slice(args);
        run_client(&full, &[])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with stdin closed (so no password prompt), bounded by [`RUN_LIMIT`].
fn run_client(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zone-client"));
    cmd.args(args)
        .env_remove("ZONE_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zone-client {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

fn assert_ok(run: &Run) {
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stderr.is_empty(), "{run:#?}");
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn get_prints_a_table_and_the_serial() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let run = server.client(&["get", ZONE, "www.example.com."]);
        assert_ok(&run);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{run:#?}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["NAME", "TTL", "CLASS", "TYPE", "RDATA"]);
        let mut rows: Vec<Vec<&str>> = lines[1..3]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                ["www.example.com.", "300", "IN", "A", "192.0.2.10"],
                ["www.example.com.", "300", "IN", "AAAA", "2001:db8::10"],
            ]
        );
        // Columns are aligned: RDATA starts at the same offset in every row.
        let rdata_at = lines[0].find("RDATA").unwrap();
        for row in &lines[1..3] {
            assert_eq!(row.as_bytes()[rdata_at - 1], b' ', "{row}");
            assert_ne!(row.as_bytes()[rdata_at], b' ', "{row}");
        }
        assert_eq!(lines[3], format!("serial {}", server.serial()));

        // Options may follow the subcommand too.
        let addr = server.addr.to_string();
        let run = run_client(
            &[
                "get",
                ZONE,
                "www.example.com.",
                "--type",
                "AAAA",
                "--addr",
                &addr,
                "--transport",
                transport,
                "--ca",
                server.ca.to_str().unwrap(),
            ],
            &[],
        );
        assert_ok(&run);
        assert!(run.stdout.contains("2001:db8::10"), "{run:#?}");
        assert!(!run.stdout.contains("192.0.2.10"), "{run:#?}");
    }
}

#[test]
fn unknown_zone_is_not_found_with_exit_1() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let run = server.client(&["get", "nope.example.", "www.nope.example."]);
        assert_eq!(run.code, Some(1), "{run:#?}");
        assert!(run.stderr.starts_with("error: not found: "), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
}

#[test]
fn missing_or_unreadable_ca_is_a_usage_error() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let addr = server.addr.to_string();
        let run = run_client(
            &[
                "--addr",
                &addr,
                "--transport",
                transport,
                "get",
                ZONE,
                "www.example.com.",
            ],
            &[],
        );
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.starts_with("error: "), "{run:#?}");
        assert!(run.stderr.contains("--ca"), "{run:#?}");

        let missing = server.path("missing-ca.pem");
        let missing = missing.to_str().unwrap();
        let run = run_client(
            &[
                "--addr",
                &addr,
                "--transport",
                transport,
                "--ca",
                missing,
                "get",
                ZONE,
                "www",
            ],
            &[],
        );
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.contains(missing), "{run:#?}");
    }
}

#[test]
fn user_without_password_source_is_a_usage_error() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let run = server.client(&["--user", "alice", "get", ZONE, "www.example.com."]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.contains("ZONE_PASSWORD"), "{run:#?}");
    }
}

/// `zone-client --addr ADDR --transport T --ca CA get ZONE www`.
fn get_www(addr: &str, transport: &str, ca: &str) -> Run {
    run_client(
        &[
            "--addr",
            addr,
            "--transport",
            transport,
            "--ca",
            ca,
            "get",
            ZONE,
            "www",
        ],
        &[],
    )
}

/// A port that was just free: nothing listens there.
fn dead_addr() -> String {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    free.local_addr().unwrap().to_string()
}

#[test]
fn unreachable_server_fails_with_exit_1() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let addr = dead_addr();
        let ca = server.ca.to_str().unwrap();
        let run = get_www(&addr, transport, ca);
        assert_eq!(run.code, Some(1), "{run:#?}");
        assert!(run.stderr.starts_with("error: "), "{run:#?}");
        assert!(run.stderr.contains(&addr), "{run:#?}");
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }
}

/// `--addr DEAD,LIVE`: the call goes to the server that answers; a list of dead servers fails
/// with exit 1 naming them; a malformed list is a usage error.
#[test]
fn several_servers_in_addr_are_balanced_over() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let dead = dead_addr();
        let ca = server.ca.to_str().unwrap();
        let both = format!("{dead},{}", server.addr);
        let args = |addr: &str| get_www(addr, transport, ca);
        let run = args(&both);
        assert_ok(&run);
        assert!(run.stdout.contains("192.0.2.10"), "{run:#?}");

        let run = args(&format!("{dead},,{}", server.addr));
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.contains("empty item"), "{run:#?}");

        // Refused at once: TCP's RST, QUIC's ICMP port unreachable.
        let run = args(&format!("{dead},{dead}"));
        assert_eq!(run.code, Some(1), "{run:#?}");
        assert!(run.stderr.contains(&dead), "{run:#?}");
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }
}

#[test]
fn full_transfer_writes_a_master_file() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let output = server.path("out.zone");
        let run = server.client(&[
            "transfer",
            ZONE,
            "--batch-size",
            "2",
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_ok(&run);
        let summary = server.store.zone(ZONE).unwrap();
        let expected = format!(
            "transferred {} records, serial {}, in ",
            summary.records, summary.serial
        );
        assert!(run.stdout.starts_with(&expected), "{run:#?}");
        assert!(run.stdout.trim_end().ends_with("records/s)"), "{run:#?}");

        // The file is a valid master file with the same records.
        let text = std::fs::read_to_string(&output).unwrap();
        assert!(text.starts_with("$ORIGIN example.com.\n"), "{text}");
        assert!(
            text.contains("www.example.com.\t300\tIN\tA\t192.0.2.10"),
            "{text}"
        );
        let reloaded = ZoneStore::new();
        let loaded = reloaded.insert_zone_text(ZONE, &text).unwrap();
        assert_eq!(loaded.records, summary.records);
        assert_eq!(loaded.serial, summary.serial);
    }
}

#[test]
fn push_applies_batches_and_incremental_transfer_shows_them() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let before = server.serial();
        let changes = write(
            &server.path("c.changes"),
            "# two batches\n\
             add shop 300 IN A 192.0.2.50\n\
             add shop 300 TXT \"hello world\"\n\
             ---\n\
             edit www 300 A 192.0.2.10 => www 600 A 192.0.2.11\n\
             del mx 300 A 192.0.2.25\n",
        );
        let run = server.client(&["push", &changes, "--zone", ZONE]);
        assert_ok(&run);
        let after = server.serial();
        assert_eq!(after, before.wrapping_add(2));
        assert!(
            run.stdout.trim_end().ends_with(&format!("serial {after}")),
            "{run:#?}"
        );
        assert!(run.stdout.contains("2 batches (4 changes)"), "{run:#?}");

        let run = server.client(&["get", ZONE, "www.example.com.", "--type", "A"]);
        assert_ok(&run);
        assert!(run.stdout.contains("192.0.2.11"), "{run:#?}");
        assert!(!run.stdout.contains("192.0.2.10"), "{run:#?}");

        let since = before.to_string();
        let run = server.client(&["transfer", ZONE, "--since", &since]);
        assert_ok(&run);
        // Each batch also edits the SOA record (its serial), as IXFR does.
        let first = format!("serial {}: +2 -0 ~1", before.wrapping_add(1));
        let second = format!("serial {after}: +0 -1 ~2");
        assert!(run.stdout.contains(&first), "{run:#?}");
        assert!(run.stdout.contains(&second), "{run:#?}");
        assert!(
            run.stdout.contains(
                "edit www.example.com. 300 IN A 192.0.2.10 => www.example.com. 600 IN A 192.0.2.11"
            ),
            "{run:#?}"
        );
    }
}

/// Two stores sharing one journal, like two zone-servers on one NATS JetStream; the second
/// has no tail, so it learns the first one's batches only when its own append conflicts.
fn stores_sharing_a_journal() -> (ZoneStore, ZoneStore) {
    let journal = MemoryJournal::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stores = [(), ()].map(|()| {
        let store = ZoneStore::new();
        store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
        runtime
            .block_on(store.attach_journal(journal.clone(), JournalOptions::default()))
            .unwrap();
        store
    });
    let [a, b] = stores;
    (a, b)
}

#[test]
fn push_retries_a_batch_another_server_took_the_serial_of() {
    for &transport in TRANSPORTS {
        let (other, served) = stores_sharing_a_journal();
        let before = served.zone(ZONE).unwrap().serial;
        // The other server takes the next serial: the served one's first append conflicts
        // (ABORTED, for a serial the user never pinned).
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let taken = pb::ChangeBatch {
            zone: ZONE.into(),
            changes: vec![pb::Change {
                op: pb::change::Op::Create.into(),
                record: Some(pb::Record {
                    name: "other".into(),
                    r#type: "A".into(),
                    class: String::new(),
                    ttl: 300,
                    rdata: "192.0.2.99".into(),
                }),
                previous: None,
            }],
            expected_serial: None,
        };
        runtime.block_on(other.push(taken)).unwrap();
        let server = TestServer::serving(transport, served);
        assert_eq!(server.serial(), before, "no tail: not learnt yet");
        let changes = write(
            &server.path("c.changes"),
            "add shop 300 IN A 192.0.2.50\n---\nadd shop2 300 IN A 192.0.2.51\n",
        );
        let run = server.client(&["push", &changes, "--zone", ZONE]);
        assert_ok(&run);
        let after = before.wrapping_add(3);
        assert_eq!(server.serial(), after);
        assert!(
            run.stdout.contains(&format!(
                "applied 2 batches (2 changes) to {ZONE}, serial {after}"
            )),
            "{run:#?}"
        );
        let run = server.client(&["get", ZONE, "other.example.com."]);
        assert_ok(&run);
        assert!(run.stdout.contains("192.0.2.99"), "{run:#?}");
    }
}

#[test]
fn bad_change_file_is_rejected_with_its_line_before_connecting() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let before = server.serial();
        let path = write(
            &server.path("bad.changes"),
            "zone example.com.\nadd ok 300 A 192.0.2.1\nadd broken notattl A 192.0.2.2\n",
        );
        let run = server.client(&["push", &path]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.stderr
                .starts_with(&format!("error: {path}:3: invalid TTL `notattl`")),
            "{run:#?}"
        );
        // Nothing of the file was applied.
        assert_eq!(server.serial(), before);

        let run = server.client(&["push", server.path("absent.changes").to_str().unwrap()]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.contains("absent.changes"), "{run:#?}");
    }
}

#[test]
fn push_rejected_by_the_server_fails_with_exit_1() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        // Syntactically a record, but not valid A rdata: only the server can tell.
        let path = write(&server.path("x.changes"), "add www 300 A not-an-address\n");
        let run = server.client(&["push", &path, "--zone", ZONE]);
        assert_eq!(run.code, Some(1), "{run:#?}");
        assert!(run.stderr.starts_with("error: "), "{run:#?}");
        assert!(!run.stderr.contains("Status {"), "{run:#?}");
    }
}

#[test]
fn sync_without_follow_stops_after_catching_up() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let start = server.serial();
        let records = server.store.zone(ZONE).unwrap().records;

        let run = server.client(&["sync", ZONE]);
        assert_ok(&run);
        assert_eq!(
            run.stdout,
            format!(
                "snapshot {ZONE}: serial {start}, {records} records\nsynced: {ZONE} at serial {start}\n"
            )
        );

        let changes = write(
            &server.path("s.changes"),
            "add a 60 A 192.0.2.101\n---\nadd b 60 A 192.0.2.102\ndel a 60 A 192.0.2.101\n",
        );
        assert_ok(&server.client(&["push", &changes, "--zone", ZONE]));

        let from = start.to_string();
        let run = server.client(&["sync", ZONE, "--from", &from]);
        assert_ok(&run);
        let end = start.wrapping_add(2);
        assert_eq!(
            run.stdout,
            format!(
                "{ZONE} serial {}: +1 -0 ~1\n{ZONE} serial {end}: +1 -1 ~1\nsynced: {ZONE} at serial {end}\n",
                start.wrapping_add(1)
            )
        );
    }
}

#[test]
fn help_documents_the_change_file_format() {
    let run = run_client(&["push", "--help"], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    for needle in [
        "edit OLD_RECORD => NEW_RECORD",
        "---",
        "zone NAME",
        "NAME TTL [CLASS] TYPE RDATA",
    ] {
        assert!(
            run.stdout.contains(needle),
            "missing {needle:?} in {run:#?}"
        );
    }
    let run = run_client(&["frobnicate"], &[]);
    assert_eq!(run.code, Some(2), "{run:#?}");
}

/// `sync --follow` prints updates as they are published and exits cleanly on Ctrl-C (SIGINT).
#[cfg(unix)]
#[test]
fn sync_follow_prints_live_updates_until_interrupted() {
    use std::io::BufRead as _;
    use zone_proto::zone::v1::{Change, ChangeBatch, Record, change::Op};

    for &transport in TRANSPORTS {
        let server = TestServer::start(transport);
        let start = server.serial();
        let addr = server.addr.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_zone-client"))
            .args(["--addr", &addr, "--transport", transport])
            .args([
                "--ca",
                server.ca.to_str().unwrap(),
                "sync",
                ZONE,
                "--follow",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next_line = || {
            lines
                .recv_timeout(RUN_LIMIT)
                .expect("a line from sync --follow")
        };

        assert!(next_line().starts_with(&format!("snapshot {ZONE}: serial {start},")));
        let record = |ttl, rdata: &str| Record {
            name: "live.example.com.".into(),
            r#type: "A".into(),
            class: String::new(),
            ttl,
            rdata: rdata.into(),
        };
        server
            .store
            .apply(&ChangeBatch {
                zone: ZONE.into(),
                changes: vec![Change {
                    op: Op::Create.into(),
                    record: Some(record(60, "192.0.2.200")),
                    previous: None,
                }],
                expected_serial: None,
            })
            .unwrap();
        let expected = format!("{ZONE} serial {}: +1 -0 ~1", start.wrapping_add(1));
        assert_eq!(next_line(), expected);

        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "sync --follow ignored SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0));
        assert_eq!(
            next_line(),
            format!("synced: {ZONE} at serial {}", start.wrapping_add(1))
        );
    }
}

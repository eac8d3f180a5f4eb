//! `zone-server serve`: bad options fail readably before anything is served; a real server enforces
//! the users file identically over HTTP/2 and HTTP/3, keeps health public, and exits cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use grpc_h3::{Endpoint, Transport};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_proto::zone::v1::{RecordQuery, TransferRequest};
use zone_server::auth::Users;

const BIN: &str = env!("CARGO_BIN_EXE_zone-server");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_readable_failure(out: &Output, code: i32, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(want), "{err:?} lacks {want:?}");
    assert!(
        !err.contains("panicked") && !err.contains("Error {"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no READY line on failure");
}

#[test]
fn nonexistent_zones_dir_fails_readably() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &[
            "--port",
            "0",
            "--zones",
            "no-such-dir",
            "--cert-dir",
            "certs",
        ],
    );
    assert_readable_failure(&out, 1, "cannot load zones from no-such-dir");
}

#[test]
fn unusable_journal_fails_readably() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("j.redb"), b"not a redb file").unwrap();
    let out = run(
        tmp.path(),
        &["serve", "--port", "0", "--plaintext", "--journal", "j.redb"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: cannot open journal j.redb"), "{err}");
    assert!(!err.contains("panicked") && out.stdout.is_empty(), "{err}");
    let out = run(tmp.path(), &["--port", "0", "--journal-rebase"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--journal-rebase needs --journal"
    );
}

#[test]
fn plaintext_with_users_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["--port", "0", "--plaintext", "--users", "users.toml"],
    );
    assert_readable_failure(
        &out,
        2,
        "credentials are refused on a connection without TLS",
    );
}

#[test]
fn broken_users_file_fails_readably() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("users.toml"),
        "[users.alice]\nhash = \"x\"\nallow = [\"*\"]\n",
    )
    .unwrap();
    let out = run(
        tmp.path(),
        &[
            "--port",
            "0",
            "--users",
            "users.toml",
            "--cert-dir",
            "certs",
        ],
    );
    assert_readable_failure(&out, 1, "user `alice`: invalid password hash");
}

/// A running `zone-server`, killed on drop if the test did not stop it.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// The `metrics=` address of the READY line (`--metrics`).
    metrics: Option<SocketAddr>,
}

impl ServerProcess {
    fn start(dir: &Path, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("no READY line within 60 s");
            }
        };
        let mut h3 = None;
        let mut h2 = None;
        let mut metrics = None;
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("READY"), "{line:?}");
        for word in words {
            if let Some(a) = word.strip_prefix("h3=") {
                h3 = Some(a.to_string());
            } else if let Some(a) = word.strip_prefix("h2=") {
                h2 = Some(a.to_string());
            } else if let Some(a) = word.strip_prefix("metrics=") {
                metrics = Some(a.parse().unwrap());
            }
        }
        let (h3, h2) = (h3.unwrap(), h2.unwrap());
        let addr = match (h3.as_str(), h2.as_str()) {
            ("off", "off") => panic!("nothing served: {line:?}"),
            ("off", a) | (a, "off") => a,
            (a, b) => {
                assert_eq!(a, b, "one port for both transports: {line:?}");
                a
            }
        };
        ServerProcess {
            child,
            addr: addr.parse().unwrap(),
            metrics,
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A channel to `server` over `transport` (its dev CA, name `localhost`, 20 s call timeout).
async fn connect(server: &ServerProcess, ca: &[u8], transport: Transport) -> grpc_h3::Channel {
    Endpoint::new(format!("https://{}", server.addr))
        .unwrap()
        .transport(transport)
        .ca_certificate_pem(ca)
        .unwrap()
        .server_name("localhost")
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{transport}: connect: {e}"))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn basic(user: &str, password: &str) -> MetadataValue<tonic::metadata::Ascii> {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}").parse().unwrap()
}

/// Adds `authorization` to every call when set.
#[derive(Clone)]
struct Credentials(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Client = ZonesClient<InterceptedService<grpc_h3::Channel, Credentials>>;

fn zones_client(channel: grpc_h3::Channel, credentials: Option<(&str, &str)>) -> Client {
    ZonesClient::with_interceptor(channel, Credentials(credentials.map(|(u, p)| basic(u, p))))
}

fn query(zone: &str, name: &str) -> RecordQuery {
    RecordQuery {
        zone: zone.into(),
        name: name.into(),
        r#type: String::new(),
    }
}

/// `GET path` over plain HTTP/1.1 on `addr`: the status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`], failing with the I/O error (nothing listening yet, say).
async fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A server on a port of its own with dev certs in `certs` and `--metrics` on a free port.
const METERED: [&str; 6] = [
    "--port",
    "0",
    "--cert-dir",
    "certs",
    "--metrics",
    "127.0.0.1:0",
];

/// `n` successful GetRecord calls (no credentials) on `channel`.
async fn get_records(channel: &grpc_h3::Channel, n: usize) {
    for _ in 0..n {
        zones_client(channel.clone(), None)
            .get_record(query("example.com.", "ns1.example.com."))
            .await
            .unwrap();
    }
}

/// `--metrics`: Prometheus text at /metrics, with the calls of each wire counted per method and
/// status (gRFC A66 names with Prometheus' underscores), and nothing anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_calls_of_each_wire() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(tmp.path(), &METERED);
    let metrics = server.metrics.expect("READY line without metrics=");
    let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();
    for (transport, calls) in [(Transport::H2, 2), (Transport::H3, 3)] {
        let channel = connect(&server, &ca, transport).await;
        get_records(&channel, calls).await;
        let missing = zones_client(channel.clone(), None)
            .get_record(query("example.com.", "nothing.example.com."))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }
    let (status, text) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    for (version, calls) in [("2", 3), ("3", 4)] {
        let started = format!(
            "grpc_server_call_started_total{{grpc_method=\"zone.v1.Zones/GetRecord\",\
             network_protocol_version=\"{version}\"}} {calls}"
        );
        assert!(text.contains(&started), "no {started:?} in\n{text}");
        for (code, n) in [("OK", calls - 1), ("NOT_FOUND", 1)] {
            let count = format!(
                "grpc_server_call_duration_seconds_count{{grpc_method=\"zone.v1.Zones/GetRecord\",\
                 grpc_status=\"{code}\",network_protocol_version=\"{version}\"}} {n}"
            );
            assert!(text.contains(&count), "no {count:?} in\n{text}");
        }
    }
    assert_eq!(http_get(metrics, "/").await.0, 404);
    assert!(server.terminate().success());
}

/// The zone server's own metrics: auth outcomes (no user names), journal appends and their
/// latency, the zone's serial after a push, open Sync subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_auth_journal_serial_and_subscribers() {
    use zone_proto::zone::v1::change::Op;
    use zone_proto::zone::v1::{Change, ChangeBatch, Record, SyncMessage, ZoneCursor};
    let tmp = tempfile::tempdir().unwrap();
    let mut users = Users::new();
    users
        .add("alice", b"alice-pw", &["zone.v1.Zones/*"], None::<&[&str]>)
        .unwrap();
    users.save(&tmp.path().join("users.toml")).unwrap();
    let server = ServerProcess::start(
        tmp.path(),
        &[
            "--port",
            "0",
            "--cert-dir",
            "certs",
            "--users",
            "users.toml",
            "--journal",
            "journal.redb",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();
    let channel = connect(&server, &ca, Transport::H3).await;
    let denied = zones_client(channel.clone(), None)
        .get_record(query("example.com.", "ns1.example.com."))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let mut alice = zones_client(channel.clone(), Some(("alice", "alice-pw")));
    // A Sync subscriber, open while the metrics are read.
    let (sync_tx, sync_rx) = tokio::sync::mpsc::channel(4);
    sync_tx
        .send(SyncMessage {
            kind: Some(zone_proto::zone::v1::sync_message::Kind::Subscribe(
                zone_proto::zone::v1::Subscribe {
                    zones: vec![ZoneCursor {
                        zone: "example.com.".into(),
                        serial: 0,
                    }],
                },
            )),
        })
        .await
        .unwrap();
    let mut sync = alice
        .sync(tokio_stream::wrappers::ReceiverStream::new(sync_rx))
        .await
        .unwrap()
        .into_inner();
    sync.message().await.unwrap().unwrap();
    let pushed = alice
        .push_changes(futures::stream::iter(vec![ChangeBatch {
            zone: "example.com.".into(),
            changes: vec![Change {
                op: Op::Create.into(),
                record: Some(Record {
                    name: "metrics.example.com.".into(),
                    r#type: "A".into(),
                    class: String::new(),
                    ttl: 60,
                    rdata: "192.0.2.99".into(),
                }),
                previous: None,
            }],
            expected_serial: None,
        }]))
        .await
        .unwrap()
        .into_inner();
    let serial = pushed.serial;
    let (status, text) = http_get(server.metrics.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "zone_server_auth_outcomes_total{result=\"UNAUTHENTICATED\"} 1".to_string(),
        "zone_server_auth_outcomes_total{result=\"PUBLIC\"} 1".to_string(),
        // Sync and PushChanges.
        "zone_server_auth_outcomes_total{result=\"OK\"} 2".to_string(),
        "zone_server_journal_appends_total{result=\"ok\"} 1".to_string(),
        "zone_server_journal_append_latency_seconds_count 1".to_string(),
        format!("zone_server_zone_serial{{zone=\"example.com.\"}} {serial}"),
        "zone_server_sync_subscribers 1".to_string(),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("alice"),
        "a user name in the metrics:\n{text}"
    );
    drop(sync_tx);
    drop(sync);
    assert!(server.terminate().success());
}

/// A Prometheus server of its own (temporary storage, loopback port), killed on drop.
struct PrometheusProcess {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PrometheusProcess {
    /// Starts `prometheus` scraping `target` every second; `None` (with the reason printed) when
    /// the binary is missing (scripts/install-prometheus.sh installs it).
    async fn start(target: SocketAddr) -> Option<PrometheusProcess> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no `prometheus` on PATH (scripts/install-prometheus.sh)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: zone-server\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free loopback port (released just before prometheus binds it).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = PrometheusProcess {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(
            tokio::time::timeout(Duration::from_secs(2), try_http_get(addr, "/-/ready")).await,
            Ok(Ok((200, _)))
        ) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(prometheus)
    }

    /// An instant query through `/api/v1/query`: each series' labels and value.
    async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={encoded}")).await;
        assert_eq!(status, 200, "{promql}: {body}");
        // Connection: close, no chunking expected from Prometheus for small answers; tolerate it.
        let json = body
            .find('{')
            .map(|i| &body[i..])
            .and_then(|b| b.rfind('}').map(|j| &b[..=j]))
            .unwrap_or("{}");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes `zone-server --metrics` while calls run over both wires; read back
/// through its query API: started and finished calls per method and wire equal the calls made,
/// a latency quantile is finite, and QUIC's RTT is there (it exists for HTTP/3 only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_calls_of_each_wire() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(tmp.path(), &METERED);
    let Some(prometheus) = PrometheusProcess::start(server.metrics.unwrap()).await else {
        return;
    };
    let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();
    let calls = [(Transport::H2, "2", 3.0), (Transport::H3, "3", 5.0)];
    for (transport, _, n) in calls {
        get_records(&connect(&server, &ca, transport).await, n as usize).await;
        // Dropped: the QUIC connection ends, and its figures are sampled.
    }
    let method = "grpc_method=\"zone.v1.Zones/GetRecord\"";
    let started_q =
        format!("sum by (network_protocol_version) (grpc_server_call_started_total{{{method}}})");
    let finished_q = format!(
        "sum by (network_protocol_version) (grpc_server_call_duration_seconds_count{{{method}}})"
    );
    let rtt_q = "sum(grpc_h3_quic_rtt_seconds_count{side=\"server\"})";
    let by_wire = |rows: Vec<(serde_json::Value, f64)>| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = rows
            .into_iter()
            .map(|(m, x)| {
                (
                    m["network_protocol_version"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    x,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let want: Vec<(String, f64)> = calls.iter().map(|(_, v, n)| (v.to_string(), *n)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = by_wire(prometheus.query(&started_q).await);
        let finished = by_wire(prometheus.query(&finished_q).await);
        let rtt = prometheus.query(rtt_q).await;
        if started == want && finished == want && rtt.first().is_some_and(|(_, n)| *n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see the calls within 30 s: started {started:?}, finished \
             {finished:?}, QUIC RTT samples {rtt:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let p50 = prometheus
        .query(&format!(
            "histogram_quantile(0.5, sum by (le) (grpc_server_call_duration_seconds_bucket{{{method}}}))"
        ))
        .await;
    assert!(
        p50.first()
            .is_some_and(|(_, s)| s.is_finite() && *s > 0.0 && *s < 10.0),
        "{p50:?}"
    );
    // Every query of the Grafana dashboard in docs/ is valid PromQL over these names.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/grpc-h3.json")).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            prometheus.query(target["expr"].as_str().unwrap()).await;
            queries += 1;
        }
    }
    assert!(queries >= 16, "{queries} dashboard queries");
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_rules_are_the_same_over_h2_and_h3() {
    let tmp = tempfile::tempdir().unwrap();
    let users_path = tmp.path().join("users.toml");
    let mut users = Users::new();
    users
        .add(
            "alice",
            b"alice-pw",
            &["zone.v1.Zones/*"],
            Some(&["example.com."]),
        )
        .unwrap();
    users
        .add(
            "bob",
            b"bob-pw",
            &["zone.v1.Zones/GetRecord"],
            None::<&[&str]>,
        )
        .unwrap();
    users.save(&users_path).unwrap();

    let server = ServerProcess::start(
        tmp.path(),
        &[
            "--port",
            "0",
            "--users",
            "users.toml",
            "--cert-dir",
            "certs",
        ],
    );
    let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();

    for transport in [Transport::H2, Transport::H3] {
        let channel = connect(&server, &ca, transport).await;

        // Health is public.
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "zone.v1.Zones".into(),
            })
            .await
            .unwrap_or_else(|s| panic!("{transport}: health: {s:?}"));
        assert_eq!(health.get_ref().status, ServingStatus::Serving as i32);

        let ok = zones_client(channel.clone(), Some(("alice", "alice-pw")))
            .get_record(query("example.com.", "ns1.example.com."))
            .await
            .unwrap_or_else(|s| panic!("{transport}: alice get: {s:?}"));
        assert!(!ok.get_ref().records.is_empty(), "{transport}");

        let none = zones_client(channel.clone(), None)
            .get_record(query("example.com.", "ns1.example.com."))
            .await
            .unwrap_err();
        assert_eq!(none.code(), Code::Unauthenticated, "{transport}: {none:?}");

        let wrong = zones_client(channel.clone(), Some(("alice", "bob-pw")))
            .get_record(query("example.com.", "ns1.example.com."))
            .await
            .unwrap_err();
        assert_eq!(
            wrong.code(),
            Code::Unauthenticated,
            "{transport}: {wrong:?}"
        );

        // Method right: bob may read records but not transfer zones.
        let mut bob = zones_client(channel.clone(), Some(("bob", "bob-pw")));
        bob.get_record(query("example.org.", "ns1.example.org."))
            .await
            .unwrap_or_else(|s| panic!("{transport}: bob get: {s:?}"));
        let denied = bob
            .transfer_zone(TransferRequest {
                zone: "example.org.".into(),
                since_serial: None,
                batch_size: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(
            denied.code(),
            Code::PermissionDenied,
            "{transport}: {denied:?}"
        );

        // Zone right: alice is limited to example.com.
        let other_zone = zones_client(channel.clone(), Some(("alice", "alice-pw")))
            .get_record(query("example.org.", "ns1.example.org."))
            .await
            .unwrap_err();
        assert_eq!(
            other_zone.code(),
            Code::PermissionDenied,
            "{transport}: {other_zone:?}"
        );
    }

    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_every_method_is_open_and_synthetic_zone_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        tmp.path(),
        &[
            "--port",
            "0",
            "--cert-dir",
            "certs",
            "--synthetic",
            "50",
            "--transport",
            "h2",
        ],
    );
    let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();
    let channel = Endpoint::new(format!("https://{}", server.addr))
        .unwrap()
        .transport(Transport::H2)
        .ca_certificate_pem(&ca)
        .unwrap()
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let set = zones_client(channel, None)
        .get_record(query("synthetic.test.", "synthetic.test."))
        .await
        .unwrap();
    assert!(
        set.get_ref().records.iter().any(|r| r.r#type == "SOA"),
        "{:?}",
        set.get_ref()
    );
    drop(server);
}

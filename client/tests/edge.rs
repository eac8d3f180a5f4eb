//! Edges resuming through faults: a journaled zone server (grpc_h3 `Server`, HTTP/3 + HTTP/2) and
//! an [`Edge`] connected through a loopback proxy (TCP and UDP on one port). After each fault —
//! network drop, server restart on the same journal, edge restart from its state file, switching
//! between HTTP/2 and HTTP/3, QUIC connection migration — the edge resumes from its own serial
//! (no new snapshot) and ends with exactly the publisher's zone. Run over both transports.
//!
//! Also: `zone-client sync --follow` shows live changes from a journaled server, and the
//! `zone-edge` binary syncs, serves lookups, stops cleanly and answers `lookup` from its state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpc_h3::{Channel, Endpoint, QuicSettings, Server, Transport, Wires};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use zone_client::cli::connect::Credentials;
use zone_client::edge::{self, Edge, EdgeConfig, EdgeError};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_server::journal::RedbJournal;
use zone_server::zones::ZoneStore;

mod origin;
use origin::{Serving, certs, journaled_store};

const ZONE: &str = "edge.test.";
const ZONE_TEXT: &str = "$ORIGIN edge.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 1 7200 900 1209600 300\n\
    @ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.80\n";
const CONVERGE: Duration = Duration::from_secs(15);

/// The publisher: a journaled zone server that can restart on the same file and port.
struct Origin {
    dir: PathBuf,
    addr: SocketAddr,
    store: ZoneStore,
    journal: Arc<RedbJournal>,
    serving: Serving,
    pushed: u32,
}

impl Origin {
    async fn start(dir: &Path) -> Origin {
        Self::start_at(dir, "127.0.0.1:0".parse().unwrap(), 0).await
    }

    async fn start_at(dir: &Path, addr: SocketAddr, pushed: u32) -> Origin {
        let (store, journal) = journaled_store(dir, ZONE, ZONE_TEXT).await;
        let serving = Serving::start(&store, addr).await;
        Origin {
            dir: dir.to_path_buf(),
            addr: serving.addr,
            store,
            journal,
            serving,
            pushed,
        }
    }

    async fn stop(&mut self) {
        self.serving.stop().await;
        self.journal.close().await.unwrap();
    }

    /// Stops and starts again on the same journal file. (On a new port: a QUIC endpoint may
    /// keep its UDP port for a few seconds after shutdown; the edge reaches it through the proxy
    /// at the same address either way.)
    async fn restart(&mut self) {
        self.stop().await;
        *self = Origin::start_at(&self.dir, "127.0.0.1:0".parse().unwrap(), self.pushed).await;
    }

    /// Pushes `n` batches that create, edit and delete records.
    async fn publish(&mut self, n: u32) {
        for _ in 0..n {
            let i = self.pushed;
            let record = |name: String, rdata: String| pb::Record {
                name,
                r#type: "A".into(),
                class: String::new(),
                ttl: 60,
                rdata,
            };
            let change = |op: Op, record: pb::Record, previous: Option<pb::Record>| pb::Change {
                op: op.into(),
                record: Some(record),
                previous,
            };
            let mut changes = vec![
                change(
                    Op::Create,
                    record(format!("n{i}"), format!("192.0.2.{}", i % 250)),
                    None,
                ),
                change(
                    Op::Edit,
                    record("www".into(), format!("198.51.100.{}", i % 250)),
                    Some(record(
                        "www".into(),
                        if i == 0 {
                            "192.0.2.80".into()
                        } else {
                            format!("198.51.100.{}", (i - 1) % 250)
                        },
                    )),
                ),
            ];
            if i > 0 && i.is_multiple_of(2) {
                changes.push(change(
                    Op::Delete,
                    record(format!("n{}", i - 1), format!("192.0.2.{}", (i - 1) % 250)),
                    None,
                ));
            }
            self.store
                .push(pb::ChangeBatch {
                    zone: ZONE.into(),
                    changes,
                    expected_serial: None,
                })
                .await
                .unwrap();
            self.pushed += 1;
        }
    }

    fn serial(&self) -> u32 {
        self.store.zone(ZONE).unwrap().serial
    }

    fn lines(&self) -> BTreeSet<String> {
        lines(self.store.snapshot(ZONE).unwrap().records())
    }
}

fn lines(records: impl IntoIterator<Item = pb::Record>) -> BTreeSet<String> {
    records
        .into_iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.r#type, r.rdata))
        .collect()
}

/// A loopback proxy, TCP and UDP on one port, that can drop the network.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    tcp: Arc<Mutex<Vec<AbortHandle>>>,
    udp: Arc<Mutex<Vec<AbortHandle>>>,
    /// UDP datagrams are dropped while set.
    blackhole: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let (listener, udp) = loop {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            if let Ok(udp) = UdpSocket::bind(addr).await {
                break (listener, udp);
            }
        };
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let tcp = Arc::new(Mutex::new(Vec::new()));
        let blackhole = Arc::new(AtomicBool::new(false));
        let conns = Arc::clone(&tcp);
        let tcp_target = Arc::clone(&target);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = *tcp_target.lock().unwrap();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        let _ = inbound.shutdown().await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        let down = Arc::new(udp);
        let dropping = Arc::clone(&blackhole);
        let udp_target = Arc::clone(&target);
        let udp_relays = Arc::new(Mutex::new(Vec::new()));
        let relays = Arc::clone(&udp_relays);
        let relay = tokio::spawn(async move {
            let mut sessions: HashMap<(SocketAddr, SocketAddr), Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = down.recv_from(&mut buf).await {
                if dropping.load(Ordering::Relaxed) {
                    continue;
                }
                let target = *udp_target.lock().unwrap();
                let up = match sessions.get(&(from, target)) {
                    Some(up) => Arc::clone(up),
                    None => {
                        // One upstream socket per client address: a client that moves shows
                        // up at the server from a new address, as after a NAT rebinding.
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        up.connect(target).await.unwrap();
                        let (up2, down2, dropping2) =
                            (Arc::clone(&up), Arc::clone(&down), Arc::clone(&dropping));
                        let task = tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = up2.recv(&mut buf).await {
                                if !dropping2.load(Ordering::Relaxed) {
                                    let _ = down2.send_to(&buf[..n], from).await;
                                }
                            }
                        });
                        relays.lock().unwrap().push(task.abort_handle());
                        sessions.insert((from, target), Arc::clone(&up));
                        up
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        });
        Proxy {
            addr,
            target,
            tcp,
            udp: udp_relays,
            blackhole,
            tasks: vec![accept, relay],
        }
    }

    /// Forwards new connections (and datagrams) to `target` from now on.
    fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    /// Drops the network: TCP connections are cut at once; UDP datagrams vanish for `outage`
    /// (QUIC notices through its idle timeout).
    async fn cut(&self, outage: Duration) {
        for conn in self.tcp.lock().unwrap().drain(..) {
            conn.abort();
        }
        self.blackhole.store(true, Ordering::Relaxed);
        tokio::time::sleep(outage).await;
        self.blackhole.store(false, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for conn in self.tcp.lock().unwrap().drain(..) {
            conn.abort();
        }
        for relay in self.udp.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

/// An edge syncing through the proxy; the transport of the next connection can be switched.
struct EdgeRun {
    edge: Edge,
    transport: Arc<Mutex<Transport>>,
    channel: Arc<Mutex<Option<Channel>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), EdgeError>>,
}

impl EdgeRun {
    fn start(state: &Path, addr: SocketAddr, transport: Transport) -> EdgeRun {
        let config = EdgeConfig::new([ZONE])
            .state_file(state)
            .persist_delay(Duration::from_millis(20))
            .backoff(Duration::from_millis(50), Duration::from_millis(400));
        let edge = Edge::open(config).unwrap();
        let transport = Arc::new(Mutex::new(transport));
        let channel = Arc::new(Mutex::new(None));
        let (stop, stopped) = oneshot::channel::<()>();
        let (t, slot) = (Arc::clone(&transport), Arc::clone(&channel));
        let connect = move || {
            let quic = QuicSettings::default().idle_timeout(Duration::from_millis(1000));
            let endpoint = Endpoint::new(format!("https://{addr}"))
                .unwrap()
                .ca_certificate_pem(&certs().ca_pem)
                .unwrap()
                .server_name("localhost")
                .transport(*t.lock().unwrap())
                .connect_timeout(Duration::from_secs(1))
                .keep_alive_interval(Duration::from_millis(250))
                .keep_alive_timeout(Duration::from_millis(500))
                .quic_settings(quic);
            let slot = Arc::clone(&slot);
            async move {
                let channel = endpoint
                    .connect()
                    .await
                    .map_err(|e| EdgeError::Connect(e.to_string()))?;
                *slot.lock().unwrap() = Some(channel.clone());
                Ok(edge::client(channel, Credentials::none()))
            }
        };
        let runner = edge.clone();
        let task = tokio::spawn(async move {
            runner
                .run(connect, async {
                    let _ = stopped.await;
                })
                .await
        });
        EdgeRun {
            edge,
            transport,
            channel,
            stop: Some(stop),
            task,
        }
    }

    fn channel(&self) -> Channel {
        self.channel.lock().unwrap().clone().unwrap()
    }

    /// Waits for the edge to reach the origin's serial and compares the zones.
    async fn converge(&self, origin: &Origin, step: &str) {
        let serial = origin.serial();
        assert!(
            self.edge.wait_for_serial(ZONE, serial, CONVERGE).await,
            "{step}: edge stuck at {:?}, origin at {serial}; {:?}",
            self.edge.serial(ZONE),
            self.edge.stats()
        );
        let copy = lines(self.edge.snapshot(ZONE).unwrap().records);
        assert_eq!(
            copy,
            origin.lines(),
            "{step}: edge copy differs from the publisher"
        );
    }

    /// Stops like a crash: no final persist, whatever was persisted stays. Returns once the
    /// runner is gone (an abort takes effect at the task's next poll, which on a loaded machine
    /// can come after changes published meanwhile).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn other(t: Transport) -> Transport {
    if t == Transport::H3 {
        Transport::H2
    } else {
        Transport::H3
    }
}

/// Moves the H3 connection to a new local UDP port mid-stream: the stream goes on.
async fn migrate(run: &EdgeRun, origin: &mut Origin) {
    let channel = run.channel();
    assert_eq!(channel.transport_in_use(), Transport::H3);
    let sessions = run.edge.stats().sessions;
    origin.publish(2).await;
    run.converge(origin, "before migration").await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    channel.rebind(socket).unwrap();
    origin.publish(3).await;
    run.converge(origin, "after migration").await;
    assert_eq!(
        run.edge.stats().sessions,
        sessions,
        "migration must not reconnect"
    );
}

async fn resume_through_faults(start: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("edge.state");
    let mut origin = Origin::start(dir.path()).await;
    let proxy = Proxy::start(origin.addr).await;
    let run = EdgeRun::start(&state, proxy.addr, start);
    origin.publish(3).await;
    run.converge(&origin, "initial sync").await;
    assert_eq!(run.edge.stats().snapshots, 1);
    assert_eq!(run.channel().transport_in_use(), start);

    // Network drop, with changes published during the outage.
    let sessions = run.edge.stats().sessions;
    let cut = proxy.cut(Duration::from_millis(1500));
    let during = origin.publish(4);
    tokio::join!(cut, during);
    run.converge(&origin, "network drop").await;
    assert!(
        run.edge.stats().sessions > sessions,
        "the drop went unnoticed"
    );

    // Server restart on the same journal.
    origin.restart().await;
    proxy.retarget(origin.addr);
    origin.publish(3).await;
    run.converge(&origin, "server restart").await;
    assert_eq!(
        run.edge.stats().snapshots,
        1,
        "resumed with increments, not a snapshot"
    );
    assert_eq!(run.edge.stats().resyncs, 0);

    // QUIC connection migration (while on HTTP/3).
    if start == Transport::H3 {
        migrate(&run, &mut origin).await;
    }

    // Edge restart: killed once its serial is persisted (and acked), changes published
    // meanwhile, started again from its state file.
    let serial = run.edge.serial(ZONE);
    let deadline = Instant::now() + CONVERGE;
    while run.edge.persisted_serial(ZONE) != serial {
        assert!(Instant::now() < deadline, "never persisted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let persisted = run.edge.persisted_serial(ZONE).unwrap();
    run.kill().await;
    origin.publish(3).await;
    // Read before the restarted edge runs: once running it may sync past the file at once.
    let reopened = Edge::open(EdgeConfig::new([ZONE]).state_file(&state)).unwrap();
    assert_eq!(
        reopened.serial(ZONE),
        Some(persisted),
        "state file holds the acked serial"
    );
    drop(reopened);
    let run = EdgeRun::start(&state, proxy.addr, start);
    run.converge(&origin, "edge restart").await;
    assert_eq!(
        run.edge.stats().snapshots,
        0,
        "a restarted edge resumes from its state file"
    );

    // Switch transport: the next connection uses the other wire.
    *run.transport.lock().unwrap() = other(start);
    proxy.cut(Duration::from_millis(1500)).await;
    origin.publish(3).await;
    run.converge(&origin, "transport switch").await;
    assert_eq!(run.channel().transport_in_use(), other(start));
    if start == Transport::H2 {
        migrate(&run, &mut origin).await;
    }
    assert_eq!(run.edge.stats().snapshots, 0);
    assert_eq!(run.edge.stats().resyncs, 0);

    // Clean stop persists what was applied.
    let serial = run.edge.serial(ZONE).unwrap();
    run.shutdown().await;
    let saved = edge::load_state(&state).unwrap();
    assert_eq!(saved[ZONE].serial(), serial);
    assert_eq!(lines(saved[ZONE].records()), origin.lines());
    drop(proxy);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_resumes_through_faults_over_h2() {
    resume_through_faults(Transport::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_resumes_through_faults_over_h3() {
    resume_through_faults(Transport::H3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_refuses_zones_it_has_no_right_to_and_serves_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let mut origin = Origin::start(dir.path()).await;
    // Unknown zone: the server's refusal ends the edge (retrying cannot fix it).
    let edge = Edge::open(EdgeConfig::new(["nope.test."])).unwrap();
    let addr = origin.addr;
    let connect = move || async move {
        let channel = Endpoint::new(format!("https://{addr}"))
            .unwrap()
            .ca_certificate_pem(&certs().ca_pem)
            .unwrap()
            .server_name("localhost")
            .transport(Transport::H2)
            .connect()
            .await
            .map_err(|e| EdgeError::Connect(e.to_string()))?;
        Ok(edge::client(channel, Credentials::none()))
    };
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        edge.run(connect, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains("nope.test."), "{err}");

    // Lookups from the copy, served read-only over gRPC.
    let run = EdgeRun::start(&dir.path().join("e.state"), origin.addr, Transport::H3);
    origin.publish(2).await;
    run.converge(&origin, "sync").await;
    let bound = Server::builder()
        .wires(Wires::H2)
        .add_service(edge::serve::zones_server(run.edge.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let local = bound.h2_addr().unwrap();
    tokio::spawn(bound.serve_with_shutdown(std::future::pending()));
    let channel = Endpoint::new(format!("http://{local}"))
        .unwrap()
        .transport(Transport::H2)
        .connect()
        .await
        .unwrap();
    let mut client = ZonesClient::new(channel);
    let query = |name: &str, rtype: &str| pb::RecordQuery {
        zone: "EDGE.test".into(),
        name: name.into(),
        r#type: rtype.into(),
    };
    let www = client
        .get_record(query("www", "A"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((www.serial, www.records.len()), (origin.serial(), 1));
    assert_eq!(www.records[0].rdata, "198.51.100.1");
    assert!(
        client
            .get_record(query("www", "MX"))
            .await
            .unwrap()
            .into_inner()
            .records
            .is_empty()
    );
    let err = client.get_record(query("absent", "")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client
        .push_changes(futures::stream::iter(Vec::<pb::ChangeBatch>::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    run.shutdown().await;
    origin.stop().await;
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `want`.
async fn expect_line(rx: &std::sync::mpsc::Receiver<String>, want: &str) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        match rx.try_recv() {
            Ok(line) if line.contains(want) => return line,
            Ok(_) => {}
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no line with {want:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("output ended before {want:?}: {e}"),
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_follow_and_the_zone_edge_binary_work_with_a_journaled_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs().ca_pem).unwrap();
    let mut origin = Origin::start(dir.path()).await;
    origin.publish(1).await;
    let addr = origin.addr.to_string();

    // zone-client sync --follow prints live changes.
    let mut follow = Killed(
        Command::new(env!("CARGO_BIN_EXE_zone-client"))
            .args([
                "--addr",
                &addr,
                "--transport",
                "h3",
                "--ca",
                ca.to_str().unwrap(),
            ])
            .args([
                "sync",
                ZONE,
                "--from",
                &origin.serial().to_string(),
                "--follow",
            ])
            .env_remove("ZONE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let follow_lines = lines_of(&mut follow.0);

    // zone-edge run, serving lookups over h2c.
    let state = dir.path().join("bin-edge.state");
    let mut edge = Command::new(env!("CARGO_BIN_EXE_zone-edge"))
        .args([
            "run",
            "--addr",
            &addr,
            "--transport",
            "h2",
            "--ca",
            ca.to_str().unwrap(),
        ])
        .args([
            "--state",
            state.to_str().unwrap(),
            "--serve",
            "127.0.0.1:0",
            "--serve-plaintext",
            "--metrics",
            "127.0.0.1:0",
        ])
        .arg(ZONE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let edge_lines = lines_of(&mut edge);
    let mut edge = Killed(edge);
    let ready = expect_line(&edge_lines, "READY serve=").await;
    let field = |name: &str| -> SocketAddr {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {ready:?}"))
            .parse()
            .unwrap()
    };
    let (serve, metrics) = (field("serve="), field("metrics="));

    // Give the follower a moment to subscribe, then publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    origin.publish(2).await;
    let serial = origin.serial();
    expect_line(&follow_lines, &format!("serial {serial}")).await;

    let channel = Endpoint::new(format!("http://{serve}"))
        .unwrap()
        .transport(Transport::H2)
        .connect()
        .await
        .unwrap();
    let mut client = ZonesClient::new(channel);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let set = client
            .get_record(pb::RecordQuery {
                zone: ZONE.into(),
                name: "n2".into(),
                r#type: "A".into(),
            })
            .await;
        if let Ok(set) = set
            && set.get_ref().serial == serial
        {
            assert_eq!(set.get_ref().records[0].rdata, "192.0.2.2");
            break;
        }
        assert!(Instant::now() < deadline, "edge binary did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // --metrics: the copy's serial, and the edge's HTTP/2 connection to the zone server.
    let text = {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    };
    for line in [
        format!("zone_edge_zone_serial{{zone=\"{ZONE}\"}} {serial}"),
        "grpc_h3_connections_open{side=\"client\",network_protocol_version=\"2\"} 1".to_string(),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }

    // SIGTERM: clean exit, state persisted; lookups from the state file.
    let status = Command::new("kill")
        .args(["-TERM", &edge.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = edge.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "zone-edge did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let lookup = Command::new(env!("CARGO_BIN_EXE_zone-edge"))
        .args(["lookup", "--state", state.to_str().unwrap(), ZONE, "www"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&lookup.stdout);
    assert!(lookup.status.success(), "{out}");
    assert!(out.contains("198.51.100.2"), "{out}");
    assert!(out.contains(&format!("serial {serial}")), "{out}");
    let missing = Command::new(env!("CARGO_BIN_EXE_zone-edge"))
        .args(["lookup", "--state", state.to_str().unwrap(), ZONE, "absent"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    drop(follow);
    origin.stop().await;
}

/// A zone server on the shared JetStream journal, in a runtime of its own (killable as kill -9
/// would); pushes go straight to its store.
struct Replica {
    addr: SocketAddr,
    store: ZoneStore,
    runtime: test_support::killable::KillableRuntime,
}

impl Replica {
    async fn start(nats_url: String) -> Replica {
        let (runtime, (addr, store)) = test_support::killable::KillableRuntime::start(async move {
            let store = ZoneStore::new();
            store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
            let (_journal, _, tail) = zone_server::journal::attach_nats(
                &store,
                &nats_url,
                zone_server::journal::JournalOptions::default(),
                zone_server::journal::NatsOptions::default(),
            )
            .await
            .unwrap();
            // Serves on this runtime until it is killed; the tail lives as long.
            let serving = Serving::start(&store, "127.0.0.1:0".parse().unwrap()).await;
            let addr = serving.addr;
            tokio::spawn(async move {
                let _keep = (tail, serving);
                std::future::pending::<()>().await;
            });
            (addr, store)
        })
        .await;
        Replica {
            addr,
            store,
            runtime,
        }
    }

    /// Pushes a batch creating `n{i}`, retrying (bounded) while this replica catches up with a
    /// serial another one appended.
    async fn publish(&self, i: u32) {
        let batch = pb::ChangeBatch {
            zone: ZONE.into(),
            changes: vec![pb::Change {
                op: Op::Create.into(),
                record: Some(pb::Record {
                    name: format!("n{i}"),
                    r#type: "A".into(),
                    class: String::new(),
                    ttl: 60,
                    rdata: format!("192.0.2.{}", i % 250),
                }),
                previous: None,
            }],
            expected_serial: None,
        };
        for _ in 0..100 {
            if self.store.push(batch.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("push {i} kept failing");
    }

    fn serial(&self) -> u32 {
        self.store.zone(ZONE).unwrap().serial
    }
}

/// An edge given two servers (`--addr A,B`) whose server is killed resumes its Sync from its
/// serial on the other (both hold the history: one JetStream journal), misses no serial, and ends
/// with the survivor's zone.
async fn edge_fails_over_to_a_second_server(t: Transport) {
    let nats = test_support::nats_or_skip!();
    let mut replicas = [
        Replica::start(nats.url()).await,
        Replica::start(nats.url()).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let config = EdgeConfig::new([ZONE])
        .state_file(dir.path().join("edge.state"))
        .persist_delay(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(400));
    let edge = Edge::open(config).unwrap();
    let connector =
        edge::EdgeConnector::new(format!("{},{}", replicas[0].addr, replicas[1].addr), t)
            .ca_pem(certs().ca_pem.clone())
            .server_name("localhost")
            .keep_alive(Duration::from_millis(250));
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let (edge, connector) = (edge.clone(), connector.clone());
        tokio::spawn(async move {
            edge.run(|| connector.connect(), async {
                let _ = stopped.await;
            })
            .await
        })
    };
    for i in 0..3 {
        replicas[0].publish(i).await;
    }
    let serial = replicas[0].serial();
    assert!(
        edge.wait_for_serial(ZONE, serial, CONVERGE).await,
        "{:?}",
        edge.stats()
    );

    // The replica carrying the edge's Sync stream dies.
    let channel = connector.channel().unwrap();
    let on = channel
        .backends()
        .iter()
        .position(|b| b.in_flight == 1)
        .unwrap_or_else(|| panic!("no Sync in flight: {:?}", channel.backends()));
    replicas[on].runtime.kill();
    let survivor = &replicas[1 - on];
    for i in 3..8 {
        survivor.publish(i).await;
    }
    let serial = survivor.serial();
    assert!(
        edge.wait_for_serial(ZONE, serial, CONVERGE).await,
        "edge stuck at {:?}, survivor at {serial}: {:?} {:?}",
        edge.serial(ZONE),
        edge.stats(),
        channel.backends()
    );
    assert_eq!(
        lines(edge.snapshot(ZONE).unwrap().records),
        lines(survivor.store.snapshot(ZONE).unwrap().records()),
    );
    let stats = edge.stats();
    assert_eq!(
        stats.snapshots, 1,
        "resumed by serial, not from a snapshot: {stats:?}"
    );
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert!(stats.sessions >= 2, "{stats:?}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fails_over_to_a_second_server_over_h2() {
    edge_fails_over_to_a_second_server(Transport::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fails_over_to_a_second_server_over_h3() {
    edge_fails_over_to_a_second_server(Transport::H3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fails_over_to_a_second_server_over_auto() {
    edge_fails_over_to_a_second_server(Transport::Auto).await;
}

//! `journal-redb-vs-nats` (issue #8): the one-machine journal (redb, fsync'd) against the shared
//! one (NATS JetStream), by publish rate and publish → edge propagation for 1 and 64 `Sync`
//! subscribers.
//!
//! redb: one server; the publisher pushes to its store, the subscribers are on that server.
//! JetStream: a `nats-server -js` child on a free loopback port (temporary store directory) and
//! two zone stores sharing it; the publisher pushes to store A, the subscribers are on a server
//! over store B, so the figure is the scale-out path: append to JetStream, B's tail learns the
//! batch, reads it back, applies it, and B's followers send it. Without nats-server on the
//! machine (`scripts/install-nats.sh`) only the redb figures are reported, with a printed reason.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dev_certs::DevCerts;
use grpc_h3::{Endpoint, Server, ServerTls, Transport, Wires};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use zone_proto::zone::v1::change::Op as ChangeOp;
use zone_proto::zone::v1::{Change, ChangeBatch, Record};
use zone_server::journal::{JournalOptions, NatsOptions, NatsTail, attach_nats, attach_redb};
use zone_server::zones::{ZoneStore, synthetic_zone, zones_server};

use super::{Case, Sample};
use crate::load::latency_histogram;
use crate::target::Wire;

const ZONE: &str = "journal.example.";
/// Longest wait for every subscriber to receive one batch.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Subscribers sharing one connection.
const PER_CHANNEL: usize = 64;
/// Subscriber counts and their metric keys, per journal.
const REDB_COUNTS: [(usize, &str, &str); 2] = [
    (1, "redb_p50_ms_1", "redb_p99_ms_1"),
    (64, "redb_p50_ms_64", "redb_p99_ms_64"),
];
const NATS_COUNTS: [(usize, &str, &str); 2] = [
    (1, "nats_p50_ms_1", "nats_p99_ms_1"),
    (64, "nats_p50_ms_64", "nats_p99_ms_64"),
];
/// Upper bound of the publish-rate loop, whatever the budget.
const MAX_RATE_PUBLISHES: u64 = 20_000;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A temporary file or directory removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(kind: &str) -> Self {
        Self(std::env::temp_dir().join(format!(
            "zone-bench-{kind}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `nats-server` from PATH or the usual system directories.
pub(crate) fn nats_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// A `nats-server -js` child on a free loopback port; killed (and its store removed) on drop.
struct NatsChild {
    child: Child,
    port: u16,
    _dir: Temp,
}

impl NatsChild {
    fn start(binary: &PathBuf) -> anyhow::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let dir = Temp::new("nats");
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn new_store() -> anyhow::Result<ZoneStore> {
    let store = ZoneStore::new();
    let origin = ZONE.trim_end_matches('.');
    store
        .insert_zone_text(origin, &synthetic_zone(origin, 16, 3))
        .context("loading the zone")?;
    Ok(store)
}

/// Batch `n`: creates one A record on even `n`, deletes it on odd (the zone stays small).
fn batch(n: u64) -> ChangeBatch {
    let record = Record {
        name: format!("j{}.{ZONE}", n / 2),
        r#type: "A".to_string(),
        class: String::new(),
        ttl: 300,
        rdata: format!("192.0.2.{}", 1 + (n / 2) % 254),
    };
    let op = if n.is_multiple_of(2) {
        ChangeOp::Create
    } else {
        ChangeOp::Delete
    };
    ChangeBatch {
        zone: ZONE.to_string(),
        changes: vec![Change {
            op: op as i32,
            record: Some(record),
            previous: None,
        }],
        expected_serial: None,
    }
}

/// What one journal's pass runs on: the store publishes go to, the server subscribers use.
struct Setup {
    publisher: ZoneStore,
    edge: ZoneStore,
    server: EdgeServer,
    /// Kept alive for the pass: temp files, nats-server, tails.
    _keep: (Option<Temp>, Option<NatsChild>, Vec<NatsTail>),
}

/// The grpc-h3 server (h2 and h3 on one port) the subscribers connect to.
struct EdgeServer {
    h2: SocketAddr,
    h3: SocketAddr,
    ca_pem: Vec<u8>,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), grpc_h3::Error>>,
}

async fn serve(edge: &ZoneStore) -> anyhow::Result<EdgeServer> {
    let certs = DevCerts::generate().context("generating dev certificates")?;
    let bound = Server::builder()
        .tls(ServerTls::from_pem(
            &certs.server_cert_pem,
            &certs.server_key_pem,
        )?)
        .wires(Wires::Both)
        .drain_timeout(Duration::from_millis(200))
        .add_service(zones_server(edge.clone()))
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("binding the edge server")?;
    let (h2, h3) = bound
        .h2_addr()
        .zip(bound.h3_addr())
        .context("the edge server did not bind TCP and UDP")?;
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    Ok(EdgeServer {
        h2,
        h3,
        ca_pem: certs.ca_pem,
        shutdown,
        task,
    })
}

async fn redb_setup() -> anyhow::Result<Setup> {
    let store = new_store()?;
    let file = Temp::new("journal-redb");
    attach_redb(&store, &file.0)
        .await
        .with_context(|| format!("attaching the redb journal {}", file.0.display()))?;
    let server = serve(&store).await?;
    Ok(Setup {
        publisher: store.clone(),
        edge: store,
        server,
        _keep: (Some(file), None, Vec::new()),
    })
}

async fn nats_setup(binary: &PathBuf) -> anyhow::Result<Setup> {
    let nats = NatsChild::start(binary)?;
    let attach = |store: ZoneStore, url: String| async move {
        attach_nats(
            &store,
            &url,
            JournalOptions::default(),
            NatsOptions::default(),
        )
        .await
        .map(|(_, _, tail)| (store, tail))
        .context("attaching the JetStream journal")
    };
    let (publisher, tail_a) = attach(new_store()?, nats.url()).await?;
    let (edge, tail_b) = attach(new_store()?, nats.url()).await?;
    let server = serve(&edge).await?;
    Ok(Setup {
        publisher,
        edge,
        server,
        _keep: (None, Some(nats), vec![tail_a, tail_b]),
    })
}

impl Setup {
    async fn stop(self) {
        let _ = self.server.shutdown.send(());
        let abort = self.server.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.server.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Sequential pushes for `duration` (at most [`MAX_RATE_PUBLISHES`]): publishes per second.
    async fn publish_rate(&self, n: &AtomicU64, duration: Duration) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut done = 0u64;
        while done == 0 || (started.elapsed() < duration && done < MAX_RATE_PUBLISHES) {
            self.publisher
                .push(batch(n.fetch_add(1, Ordering::Relaxed)))
                .await?;
            done += 1;
        }
        Ok(done as f64 / started.elapsed().as_secs_f64())
    }

    /// Opens `count` Sync streams on the edge server at its current serial; each forwards
    /// (serial, receive time in ns since `epoch`).
    async fn subscribe(
        &self,
        wire: Wire,
        count: usize,
        epoch: Instant,
        deliveries: &mpsc::UnboundedSender<(u32, u64)>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let serial = self.edge.zone(ZONE)?.serial;
        let (transport, addr) = if wire == Wire::H3 {
            (Transport::H3, self.server.h3)
        } else {
            (Transport::H2, self.server.h2)
        };
        let mut channel = None;
        for i in 0..count {
            if i % PER_CHANNEL == 0 {
                channel = Some(
                    Endpoint::new(format!("https://{addr}"))?
                        .transport(transport)
                        .server_name("localhost")
                        .ca_certificate_pem(&self.server.ca_pem)?
                        .connect()
                        .await?,
                );
            }
            let channel = channel.clone().context("no channel")?;
            tasks.spawn(super::fanout::open_sync(channel, ZONE, serial, epoch, deliveries).await?);
        }
        Ok(())
    }

    /// Publishes one batch and waits until all `count` subscribers have it; their latencies (ns).
    async fn publish_once(
        &self,
        n: &AtomicU64,
        count: usize,
        epoch: Instant,
        deliveries: &mut mpsc::UnboundedReceiver<(u32, u64)>,
    ) -> anyhow::Result<Vec<u64>> {
        let sent = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let serial = self
            .publisher
            .push(batch(n.fetch_add(1, Ordering::Relaxed)))
            .await?
            .serial;
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let (got, at) = tokio::time::timeout_at(deadline, deliveries.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "only {} of {count} subscribers received serial {serial} within {:?}",
                        latencies.len(),
                        DELIVERY_TIMEOUT
                    )
                })?
                .context("every subscriber stream ended")?;
            anyhow::ensure!(
                got == serial,
                "subscriber got serial {got}, expected {serial}"
            );
            latencies.push(at.saturating_sub(sent));
        }
        Ok(latencies)
    }

    /// p50 and p99 (ms) of `count` subscribers over up to `publishes` timed publishes.
    async fn propagation(
        &self,
        wire: Wire,
        count: usize,
        publishes: usize,
        duration: Duration,
        n: &AtomicU64,
    ) -> anyhow::Result<(f64, f64)> {
        // The subscribers' server learns the publisher's batches through the shared journal:
        // subscribing before it caught up would start them behind the next publish.
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while self.edge.zone(ZONE)?.serial != self.publisher.zone(ZONE)?.serial {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the subscribers' server did not catch up with the publisher in {DELIVERY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let epoch = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        self.subscribe(wire, count, epoch, &tx, &mut tasks).await?;
        drop(tx);
        self.publish_once(n, count, epoch, &mut rx)
            .await
            .context("first (untimed) publish")?;
        let mut histogram: Histogram<u64> = latency_histogram()?;
        let started = Instant::now();
        for i in 0..publishes.max(1) {
            if i > 0 && started.elapsed() >= duration {
                break;
            }
            for ns in self.publish_once(n, count, epoch, &mut rx).await? {
                histogram.saturating_record(ns.max(1));
            }
        }
        tasks.abort_all();
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
        Ok((ms(0.5), ms(0.99)))
    }
}

/// One journal's pass: publish rate, then propagation for each subscriber count.
async fn pass(
    case: &Case,
    setup: Setup,
    rate_key: &'static str,
    counts: &[(usize, &'static str, &'static str)],
    metrics: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<()> {
    let n = AtomicU64::new(0);
    let mut outcome = setup
        .publish_rate(&n, case.budget.duration)
        .await
        .map(|rate| metrics.push((rate_key, rate)));
    if outcome.is_ok() {
        // `propagation` waits until the edge store has caught up before it subscribes.
        for &(count, p50, p99) in counts {
            match setup
                .propagation(
                    case.wire,
                    count,
                    case.settings.fanout_publishes,
                    case.budget.duration,
                    &n,
                )
                .await
            {
                Ok((a, b)) => metrics.extend([(p50, a), (p99, b)]),
                Err(e) => {
                    outcome = Err(e.context(format!("{count} subscriber(s)")));
                    break;
                }
            }
        }
    }
    setup.stop().await;
    outcome
}

pub(super) async fn redb_vs_nats(case: &Case) -> anyhow::Result<Sample> {
    anyhow::ensure!(
        !case.wire.is_peer(),
        "journal-redb-vs-nats runs over grpc-h3 only"
    );
    let mut metrics = Vec::new();
    pass(
        case,
        redb_setup().await?,
        "redb_rate",
        &REDB_COUNTS,
        &mut metrics,
    )
    .await
    .context("redb journal")?;
    match nats_binary() {
        Some(binary) => {
            pass(
                case,
                nats_setup(&binary).await?,
                "nats_rate",
                &NATS_COUNTS,
                &mut metrics,
            )
            .await
            .context("NATS JetStream journal")?;
        }
        None => eprintln!(
            "journal-redb-vs-nats: skipping the JetStream half: nats-server not installed \
             (run scripts/install-nats.sh)"
        ),
    }
    Ok(Sample {
        metrics,
        latency: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_journals_deliver_every_publish_to_every_subscriber() {
        let mut setups = vec![("redb", redb_setup().await.unwrap())];
        match nats_binary() {
            Some(binary) => setups.push(("nats", nats_setup(&binary).await.unwrap())),
            None => eprintln!("skipping the JetStream half: nats-server not installed"),
        }
        for (name, setup) in setups {
            let n = AtomicU64::new(0);
            let rate = setup
                .publish_rate(&n, Duration::from_millis(100))
                .await
                .unwrap();
            assert!(rate > 0.0, "{name}");
            let (p50, p99) = setup
                .propagation(Wire::H2, 3, 5, Duration::from_secs(5), &n)
                .await
                .unwrap();
            assert!(p50 > 0.0 && p99 >= p50, "{name}: p50 {p50} p99 {p99}");
            // The edge store holds every publish (for nats: learnt from the shared journal).
            let serial = setup.publisher.zone(ZONE).unwrap().serial;
            assert_eq!(setup.edge.zone(ZONE).unwrap().serial, serial, "{name}");
            setup.stop().await;
        }
    }
}

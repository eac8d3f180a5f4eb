//! Edge-push fan-out (issue #6): how long a published change batch takes to reach every `Sync`
//! subscriber, for 1, 64 and 1000 subscribers.
//!
//! Each case starts its own grpc-h3 server over a store with a [`MemoryJournal`] attached (pushes
//! take the durable path: validate, append, apply, wake followers), so the shared bench servers'
//! load does not mix in; a second pass uses a [`RedbJournal`](zone_server::journal::RedbJournal)
//! on a temporary file, so the figure includes the fsync'd commit. The publisher is a gRPC client
//! of the same server over the wire being measured: one `PushChanges` call per batch, on its own
//! connection. The clock starts before that call and stops when a subscriber's stream yields the
//! batch's serial, so a figure is publish RPC + commit + fan-out. `zone-bench netlab` reuses
//! this with the server and its publisher in one lab namespace and the subscribers in the other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dev_certs::DevCerts;
use grpc_h3::{Channel, Endpoint, Server, ServerTls, Transport, Wires};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use zone_proto::zone::v1::change::Op as ChangeOp;
use zone_proto::zone::v1::sync_message::Kind as SyncKind;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_proto::zone::v1::{Change, ChangeBatch, Record, Subscribe, SyncMessage, ZoneCursor};
use zone_server::journal::{JournalOptions, MemoryJournal, attach_redb};
use zone_server::zones::{ZoneStore, synthetic_zone, zones_server};

use super::{Case, Sample};
use crate::load::latency_histogram;
use crate::target::Wire;

/// The zone the publisher edits.
pub(crate) const FANOUT_ZONE: &str = "fanout.example.";
/// Subscribers sharing one connection.
const PER_CHANNEL: usize = 64;
/// Longest wait for every subscriber to receive one batch.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Subscriber counts and their metric keys (p50, p99).
const COUNTS: [(usize, &str, &str); 3] = [
    (1, "p50_ms_1", "p99_ms_1"),
    (64, "p50_ms_64", "p99_ms_64"),
    (1000, "p50_ms_1000", "p99_ms_1000"),
];
/// The same with the redb journal (1000 subscribers add nothing the fsync would change).
const REDB_COUNTS: [(usize, &str, &str); 2] = [
    (1, "redb_p50_ms_1", "redb_p99_ms_1"),
    (64, "redb_p50_ms_64", "redb_p99_ms_64"),
];

/// Which journal the fan-out server's store commits to before publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JournalKind {
    /// In memory: the figure is propagation alone.
    Memory,
    /// redb on a temporary file, fsync'd per batch.
    Redb,
}

/// Deletes the temporary redb file when the server is done with it.
struct TempJournal(PathBuf);

impl Drop for TempJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

static NEXT_JOURNAL: AtomicU64 = AtomicU64::new(0);

/// A received serial, its receive time (ns since the case's epoch).
type Delivery = (u32, u64);

/// What subscribers and the publisher need: where to connect and the store to push to.
#[derive(Clone)]
pub(crate) struct FanoutTarget {
    pub(crate) h2: SocketAddr,
    pub(crate) h3: SocketAddr,
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) store: ZoneStore,
    /// The publisher's channels (lazy; connected by the first push), HTTP/2 and HTTP/3.
    publishers: (Channel, Channel),
    /// Runtime to publish on (the server's, when the measuring task runs on another one, e.g.
    /// in the other lab namespace); `None` publishes on the caller's.
    publish_on: Option<tokio::runtime::Handle>,
}

/// The running server; [`FanoutServer::stop`] ends it.
pub(crate) struct FanoutServer {
    target: FanoutTarget,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), grpc_h3::Error>>,
    _journal_file: Option<TempJournal>,
}

/// Starts a fan-out server (h2 and h3 on one port) on `ip` with `journal` attached.
pub(crate) async fn start_server(ip: IpAddr, journal: JournalKind) -> anyhow::Result<FanoutServer> {
    let certs = DevCerts::generate().context("generating dev certificates")?;
    let store = ZoneStore::new();
    let origin = FANOUT_ZONE.trim_end_matches('.');
    store
        .insert_zone_text(origin, &synthetic_zone(origin, 16, 3))
        .context("loading the fan-out zone")?;
    let journal_file = match journal {
        JournalKind::Memory => {
            store
                .attach_journal(MemoryJournal::new(), JournalOptions::default())
                .await
                .context("attaching the memory journal")?;
            None
        }
        JournalKind::Redb => {
            let path = std::env::temp_dir().join(format!(
                "zone-bench-fanout-{}-{}.redb",
                std::process::id(),
                NEXT_JOURNAL.fetch_add(1, Ordering::Relaxed)
            ));
            let file = TempJournal(path.clone());
            attach_redb(&store, &path)
                .await
                .with_context(|| format!("attaching the redb journal {}", path.display()))?;
            Some(file)
        }
    };
    let bound = Server::builder()
        .tls(ServerTls::from_pem(
            &certs.server_cert_pem,
            &certs.server_key_pem,
        )?)
        .wires(Wires::Both)
        .drain_timeout(Duration::from_millis(200))
        .add_service(zones_server(store.clone()))
        .bind(SocketAddr::new(ip, 0))
        .await
        .context("binding the fan-out server")?;
    let (h2, h3) = bound
        .h2_addr()
        .zip(bound.h3_addr())
        .context("the fan-out server did not bind TCP and UDP")?;
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    let publishers = (
        endpoint(Transport::H2, h2, &certs.ca_pem)?.connect_lazy(),
        endpoint(Transport::H3, h3, &certs.ca_pem)?.connect_lazy(),
    );
    Ok(FanoutServer {
        target: FanoutTarget {
            h2,
            h3,
            ca_pem: certs.ca_pem,
            store,
            publishers,
            publish_on: None,
        },
        shutdown,
        task,
        _journal_file: journal_file,
    })
}

impl FanoutServer {
    /// What the measurement needs; `publish_on` set to the current runtime.
    pub(crate) fn target(&self) -> FanoutTarget {
        FanoutTarget {
            publish_on: tokio::runtime::Handle::try_current().ok(),
            ..self.target.clone()
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// A client endpoint of the fan-out server over `transport` at `addr`.
fn endpoint(transport: Transport, addr: SocketAddr, ca_pem: &[u8]) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::new(format!("https://{addr}"))?
        .transport(transport)
        .server_name("localhost")
        .ca_certificate_pem(ca_pem)?)
}

impl FanoutTarget {
    async fn channel(&self, wire: Wire) -> anyhow::Result<Channel> {
        let (transport, addr) = if wire == Wire::H3 {
            (Transport::H3, self.h3)
        } else {
            (Transport::H2, self.h2)
        };
        Ok(endpoint(transport, addr, &self.ca_pem)?.connect().await?)
    }

    /// Pushes `batch` with one `PushChanges` call over `wire`, on the publishing runtime;
    /// returns the serial it got.
    pub(crate) async fn publish(&self, wire: Wire, batch: ChangeBatch) -> anyhow::Result<u32> {
        let channel = if wire == Wire::H3 {
            self.publishers.1.clone()
        } else {
            self.publishers.0.clone()
        };
        let push = async move {
            ZonesClient::new(channel)
                .push_changes(tokio_stream::iter([batch]))
                .await
                .map(|r| r.into_inner().serial)
        };
        Ok(match &self.publish_on {
            Some(rt) => rt
                .spawn(push)
                .await
                .context("the publisher task failed")??,
            None => push.await?,
        })
    }
}

/// Opens `count` Sync streams (at the zone's current serial), [`PER_CHANNEL`] per connection;
/// each forwards every update's serial and receive time to `deliveries`. The streams of one
/// connection are opened concurrently: one after the other, 1000 subscribers cost 1000 round trips
/// before the first publish (50 s at 50 ms RTT).
async fn subscribe(
    server: &FanoutTarget,
    wire: Wire,
    count: usize,
    epoch: Instant,
    deliveries: &mpsc::UnboundedSender<Delivery>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let serial = server.store.zone(FANOUT_ZONE)?.serial;
    let mut left = count;
    while left > 0 {
        let n = left.min(PER_CHANNEL);
        left -= n;
        let channel = server.channel(wire).await?;
        let opened = futures::future::join_all(
            (0..n).map(|_| open_sync(channel.clone(), FANOUT_ZONE, serial, epoch, deliveries)),
        )
        .await;
        for stream in opened {
            tasks.spawn(stream?);
        }
    }
    Ok(())
}

/// Opens one Sync stream following `zone` from `serial` on `channel`; the returned future (to
/// spawn) forwards every update's serial and receive time (since `epoch`) to `deliveries`.
pub(crate) async fn open_sync(
    channel: Channel,
    zone: &str,
    serial: u32,
    epoch: Instant,
    deliveries: &mpsc::UnboundedSender<Delivery>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(SyncMessage {
        kind: Some(SyncKind::Subscribe(Subscribe {
            zones: vec![ZoneCursor {
                zone: zone.to_string(),
                serial,
            }],
        })),
    })
    .await
    .map_err(|_| anyhow::anyhow!("subscribe not sent"))?;
    let mut updates = ZonesClient::new(channel)
        .sync(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let deliveries = deliveries.clone();
    Ok(async move {
        // Held open: a half-close is allowed, but an open request is what an edge does.
        let _requests = tx;
        while let Some(message) = updates.message().await? {
            if let Some(SyncKind::Update(update)) = message.kind {
                let at = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if deliveries.send((update.serial, at)).is_err() {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// Batch `n` of the publisher: creates one A record on even `n`, deletes it on odd.
fn batch(n: u64) -> ChangeBatch {
    let record = Record {
        name: format!("f{}.{FANOUT_ZONE}", n / 2),
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
        zone: FANOUT_ZONE.to_string(),
        changes: vec![Change {
            op: op as i32,
            record: Some(record),
            previous: None,
        }],
        expected_serial: None,
    }
}

/// Publishes one batch and waits until all `count` subscribers have it; returns each
/// subscriber's latency in ns.
async fn publish_once(
    target: &FanoutTarget,
    wire: Wire,
    n: &AtomicU64,
    count: usize,
    epoch: Instant,
    deliveries: &mut mpsc::UnboundedReceiver<Delivery>,
) -> anyhow::Result<Vec<u64>> {
    let sent = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let serial = target
        .publish(wire, batch(n.fetch_add(1, Ordering::Relaxed)))
        .await?;
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        let (got, at) = tokio::time::timeout_at(deadline, deliveries.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {} of {count} subscribers received serial {} within {:?}",
                    latencies.len(),
                    serial,
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

/// p50 and p99 (ms) of `count` subscribers over up to `publishes` timed publishes within
/// `duration` (at least one). Subscribers connect from the calling runtime.
pub(crate) async fn measure(
    server: &FanoutTarget,
    wire: Wire,
    count: usize,
    publishes: usize,
    duration: Duration,
    n: &AtomicU64,
) -> anyhow::Result<(f64, f64)> {
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    subscribe(server, wire, count, epoch, &tx, &mut tasks).await?;
    drop(tx);
    // Untimed: every stream is registered with the server once it has delivered a batch.
    publish_once(server, wire, n, count, epoch, &mut rx)
        .await
        .context("first (untimed) publish")?;
    let mut histogram: Histogram<u64> = latency_histogram()?;
    let started = Instant::now();
    for i in 0..publishes.max(1) {
        if i > 0 && started.elapsed() >= duration {
            break;
        }
        for ns in publish_once(server, wire, n, count, epoch, &mut rx).await? {
            histogram.saturating_record(ns.max(1));
        }
    }
    tasks.abort_all();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
    Ok((ms(0.5), ms(0.99)))
}

/// One journal's pass over `counts`, appending p50/p99 to `metrics`.
async fn pass(
    case: &Case,
    journal: JournalKind,
    counts: &[(usize, &'static str, &'static str)],
    metrics: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<()> {
    let server = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), journal).await?;
    let target = server.target();
    let n = AtomicU64::new(0);
    let mut outcome = Ok(());
    for &(count, p50, p99) in counts {
        let publishes = if count >= 1000 {
            case.settings.fanout_publishes_1000
        } else {
            case.settings.fanout_publishes
        };
        match measure(
            &target,
            case.wire,
            count,
            publishes,
            case.budget.duration,
            &n,
        )
        .await
        {
            Ok((a, b)) => metrics.extend([(p50, a), (p99, b)]),
            Err(e) => {
                outcome = Err(e.context(format!("{journal:?} journal, {count} subscriber(s)")));
                break;
            }
        }
    }
    server.stop().await;
    outcome
}

pub(super) async fn edge_fanout(case: &Case) -> anyhow::Result<Sample> {
    anyhow::ensure!(!case.wire.is_peer(), "edge-fanout runs over grpc-h3 only");
    let mut metrics = Vec::new();
    pass(case, JournalKind::Memory, &COUNTS, &mut metrics).await?;
    pass(case, JournalKind::Redb, &REDB_COUNTS, &mut metrics).await?;
    Ok(Sample {
        metrics,
        latency: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_create_then_delete_the_same_record() {
        let (a, b) = (batch(4), batch(5));
        assert_eq!(a.changes[0].op, ChangeOp::Create as i32);
        assert_eq!(b.changes[0].op, ChangeOp::Delete as i32);
        assert_eq!(a.changes[0].record, b.changes[0].record);
        assert_ne!(a.changes[0].record, batch(6).changes[0].record);
    }

    #[tokio::test]
    async fn every_subscriber_receives_every_publish_over_both_wires() {
        for (wire, journal) in [
            (Wire::H2, JournalKind::Memory),
            (Wire::H3, JournalKind::Memory),
            (Wire::H3, JournalKind::Redb),
        ] {
            let server = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), journal)
                .await
                .unwrap();
            let target = server.target();
            let n = AtomicU64::new(0);
            let (p50, p99) = measure(&target, wire, 70, 5, Duration::from_secs(5), &n)
                .await
                .unwrap();
            assert!(p50 > 0.0 && p99 >= p50, "{wire}: p50 {p50} p99 {p99}");
            // One untimed and five timed publishes went through the journaled store.
            assert_eq!(n.load(Ordering::Relaxed), 6);
            let serial = target.store.zone(FANOUT_ZONE).unwrap().serial;
            let file = server._journal_file.as_ref().map(|f| f.0.clone());
            if journal == JournalKind::Redb {
                assert!(file.as_ref().is_some_and(|f| f.exists()), "{file:?}");
            }
            server.stop().await;
            assert!(serial >= 6, "{serial}");
            // The temporary journal is removed with the server.
            assert!(file.is_none_or(|f| !f.exists()));
        }
    }
}

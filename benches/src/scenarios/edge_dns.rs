//! Edge propagation to a DNS answer (issue #21 item 5): from the `PushChanges` call that edits an
//! A record to the first DNS answer from an edge that carries the new address, for 1 and 64 edges.
//!
//! The server and publisher are [`super::fanout`]'s (MemoryJournal, one `PushChanges` call per
//! batch over the measured wire). The edges are in-process [`Edge`]s, each with its own
//! connection and Sync stream over that wire, its own DNS server ([`DnsServer`], what
//! `zone-edge run --dns` starts) on 127.0.0.1:0, and its own UDP DNS client. Each round edits the
//! probe name's A record to a new address; per edge, an observer waits for the edge's
//! applied-serial notification ([`Edge::wait_for_serial`]: "applied"), then queries the edge's DNS
//! server until an answer carries the new address ("answered"). Querying on the notification
//! rather than on a timer gives the earliest answer that can carry the change, with no poll
//! interval in the figure and without 64 pollers loading a 2-core machine; a query after the
//! notification that still gets the old address is counted (`stale_answers`), and re-asked every
//! [`REPOLL`]. `zone-bench netlab` reuses this with the server in one namespace and the edges and
//! their DNS clients in the other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use grpc_h3::Transport;
use hdrhistogram::Histogram;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zone_client::edge::dns::{DnsConfig, DnsServer};
use zone_client::edge::{Edge, EdgeConfig, EdgeConnector};
use zone_proto::zone::v1::change::Op as ChangeOp;
use zone_proto::zone::v1::{Change, ChangeBatch, Record};

use super::fanout::{DELIVERY_TIMEOUT, FANOUT_ZONE, FanoutTarget, JournalKind, start_server};
use super::{Case, Sample};
use crate::load::latency_histogram;
use crate::target::Wire;

/// Edge counts and their metric keys: answered p50, p99, applied p50, p99.
pub(crate) const COUNTS: [(usize, [&str; 4]); 2] = [
    (
        1,
        [
            "p50_ms_1",
            "p99_ms_1",
            "applied_p50_ms_1",
            "applied_p99_ms_1",
        ],
    ),
    (
        64,
        [
            "p50_ms_64",
            "p99_ms_64",
            "applied_p50_ms_64",
            "applied_p99_ms_64",
        ],
    ),
];
/// Longest wait for every edge to load the zone's snapshot.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one DNS answer before the query is sent again (UDP may drop it).
const QUERY_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause before asking again after an answer without the change.
pub(crate) const REPOLL: Duration = Duration::from_micros(500);
/// Queries per edge and round at most (bounds the loop with the round's deadline).
const MAX_QUERIES: u32 = 1000;

/// Why a DNS answer could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("undecodable DNS response: {0}")]
    Decode(String),
    #[error("the edge answered {0} for the probe name")]
    Rcode(ResponseCode),
}

/// What one DNS response says about the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The answer carries the new address.
    Carries,
    /// An answer to this query without it.
    Stale,
    /// Not the answer to this query (another ID, not a response): keep waiting.
    Other,
}

/// The probe's A-record address of round `step`: RFC 2544's benchmarking range 198.18.0.0/15
/// (RFC 6890 §2.2.2), a different address every round.
pub(crate) fn address(step: u64) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    // `% 2^17` keeps it in the /15; the cast cannot truncate after it.
    Ipv4Addr::from(base + (step % (1 << 17)) as u32)
}

/// The batch of round `step` on `name`: round 0 creates the A record, later ones edit it from
/// the previous round's address to this one's (one change, one serial).
pub(crate) fn batch(name: &str, step: u64) -> ChangeBatch {
    let record = |step: u64| Record {
        name: name.to_string(),
        r#type: "A".to_string(),
        class: String::new(),
        ttl: 60,
        rdata: address(step).to_string(),
    };
    let change = match step.checked_sub(1) {
        None => Change {
            op: ChangeOp::Create as i32,
            record: Some(record(0)),
            previous: None,
        },
        Some(last) => Change {
            op: ChangeOp::Edit as i32,
            record: Some(record(step)),
            previous: Some(record(last)),
        },
    };
    ChangeBatch {
        zone: FANOUT_ZONE.to_string(),
        changes: vec![change],
        expected_serial: None,
    }
}

/// A standard query for `name` A with `id`, RD clear (the edge is authoritative; RFC 1035 §4.1.1).
pub(crate) fn query(name: &str, id: u16) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message
        .queries
        .push(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

/// Reads a response to query `id`: does its answer section hold an A record with `want`?
pub(crate) fn reply(bytes: &[u8], id: u16, want: Ipv4Addr) -> Result<Reply, ProbeError> {
    let message = Message::from_vec(bytes).map_err(|e| ProbeError::Decode(e.to_string()))?;
    let meta = &message.metadata;
    if meta.id != id || meta.message_type != MessageType::Response {
        return Ok(Reply::Other);
    }
    if meta.response_code != ResponseCode::NoError {
        return Err(ProbeError::Rcode(meta.response_code));
    }
    let carries = message
        .answers
        .iter()
        .any(|r| matches!(&r.data, RData::A(a) if a.0 == want));
    Ok(if carries {
        Reply::Carries
    } else {
        Reply::Stale
    })
}

/// One edge with its DNS server's client socket (connected to it).
struct Member {
    edge: Edge,
    socket: Arc<UdpSocket>,
}

/// `count` running edges with their DNS servers; [`Fleet::stop`] ends them.
pub(crate) struct Fleet {
    members: Vec<Member>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Resolves once `stop` says so.
fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Fleet {
    /// Starts `count` edges syncing from `target` over `wire` (DNS and its clients on
    /// 127.0.0.1 of the calling thread's namespace) and waits until each has the zone.
    pub(crate) async fn start(
        target: &FanoutTarget,
        wire: Wire,
        count: usize,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet {
            members: Vec::with_capacity(count),
            stop: watch::Sender::new(false),
            tasks: JoinSet::new(),
        };
        match fleet.grow(target, wire, count).await {
            Ok(()) => Ok(fleet),
            Err(e) => {
                fleet.stop().await;
                Err(e)
            }
        }
    }

    async fn grow(
        &mut self,
        target: &FanoutTarget,
        wire: Wire,
        count: usize,
    ) -> anyhow::Result<()> {
        let (transport, server) = if wire == Wire::H3 {
            (Transport::H3, target.h3)
        } else {
            (Transport::H2, target.h2)
        };
        let mut config = DnsConfig::default();
        // 64 servers share two cores: one receiving thread each is plenty.
        config.udp_workers = 1;
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..count {
            let edge = Edge::open(EdgeConfig::new([FANOUT_ZONE]))?;
            let dns = DnsServer::bind(SocketAddr::new(localhost, 0), config.clone()).await?;
            let dns_addr = dns.local_addr()?;
            self.tasks
                .spawn(dns.serve(edge.clone(), stopped(&self.stop)));
            let connector = EdgeConnector::new(server.to_string(), transport)
                .ca_pem(target.ca_pem.clone())
                .server_name("localhost");
            let (syncing, shutdown) = (edge.clone(), stopped(&self.stop));
            self.tasks.spawn(async move {
                if let Err(e) = syncing.run(|| connector.connect(), shutdown).await {
                    tracing::warn!(error = %e, "bench edge stopped");
                }
            });
            let socket = UdpSocket::bind(SocketAddr::new(localhost, 0)).await?;
            socket.connect(dns_addr).await?;
            self.members.push(Member {
                edge,
                socket: Arc::new(socket),
            });
        }
        let serial = target.store.zone(FANOUT_ZONE)?.serial;
        for (i, m) in self.members.iter().enumerate() {
            anyhow::ensure!(
                m.edge
                    .wait_for_serial(FANOUT_ZONE, serial, SYNC_TIMEOUT)
                    .await,
                "edge {i} of {count} did not load {FANOUT_ZONE} within {SYNC_TIMEOUT:?}"
            );
        }
        Ok(())
    }

    /// Stops the edges and DNS servers (their UDP threads notice within 200 ms).
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
    }
}

fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One observer: waits until `edge` applied `serial`, then asks its DNS server until the answer
/// carries `want`. Returns (applied, answered) in ns since `epoch`, and the stale answers.
async fn observe(
    member: (Edge, Arc<UdpSocket>),
    query: Arc<[u8]>,
    (id, want, serial): (u16, Ipv4Addr, u32),
    epoch: Instant,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(u64, u64, u64)> {
    let (edge, socket) = member;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    anyhow::ensure!(
        edge.wait_for_serial(FANOUT_ZONE, serial, left).await,
        "the edge did not apply serial {serial} within {DELIVERY_TIMEOUT:?}"
    );
    let applied = since(epoch);
    let mut buffer = vec![0u8; 4096];
    let mut stale = 0;
    for _ in 0..MAX_QUERIES {
        socket.send(&query).await?;
        let wait = deadline.min(tokio::time::Instant::now() + QUERY_TIMEOUT);
        let got = tokio::time::timeout_at(wait, async {
            loop {
                let len = socket.recv(&mut buffer).await?;
                match reply(buffer.get(..len).unwrap_or_default(), id, want)? {
                    Reply::Other => continue,
                    r => return anyhow::Ok(r),
                }
            }
        })
        .await;
        match got {
            Ok(Ok(Reply::Carries)) => return Ok((applied, since(epoch), stale)),
            Ok(Ok(_)) => {
                stale += 1;
                tokio::time::sleep(REPOLL).await;
            }
            Ok(Err(e)) => return Err(e),
            // Lost on the way: ask again.
            Err(_) => {}
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no DNS answer with {want} within {DELIVERY_TIMEOUT:?} ({stale} stale)"
        );
    }
    anyhow::bail!("no DNS answer with {want} after {MAX_QUERIES} queries")
}

/// Per-edge (applied ns, answered ns) of one round, and the stale answers.
type Round = (Vec<(u64, u64)>, u64);

/// One round: the observers start, the publisher edits the probe to round `step`'s address, and
/// every edge's DNS server answers with it.
async fn round(
    target: &FanoutTarget,
    fleet: &Fleet,
    wire: Wire,
    name: &str,
    step: u64,
    epoch: Instant,
) -> anyhow::Result<Round> {
    let serial = target.store.zone(FANOUT_ZONE)?.serial.wrapping_add(1);
    // The ID only tells this round's answers from late ones of the last: wrapping is fine.
    let id = step as u16;
    let want = address(step);
    let bytes: Arc<[u8]> = query(name, id)?.into();
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    let mut observers = JoinSet::new();
    for m in &fleet.members {
        observers.spawn(observe(
            (m.edge.clone(), Arc::clone(&m.socket)),
            Arc::clone(&bytes),
            (id, want, serial),
            epoch,
            deadline,
        ));
    }
    let sent = since(epoch);
    target.publish(wire, batch(name, step)).await?;
    let mut latencies = Vec::with_capacity(fleet.members.len());
    let mut stale = 0;
    while let Some(joined) = observers.join_next().await {
        let (applied, answered, s) = joined.context("an observer failed")??;
        latencies.push((applied.saturating_sub(sent), answered.saturating_sub(sent)));
        stale += s;
    }
    Ok((latencies, stale))
}

/// p50 and p99 (ms) of "answered" and "applied", and the stale answers, of one fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figures {
    pub answered: (f64, f64),
    pub applied: (f64, f64),
    pub stale: u64,
}

/// Up to `publishes` timed rounds within `duration` (at least one) after an untimed one that
/// creates a fresh probe name (`probes` numbers them).
pub(crate) async fn measure(
    target: &FanoutTarget,
    fleet: &Fleet,
    wire: Wire,
    publishes: usize,
    duration: Duration,
    probes: &AtomicU64,
) -> anyhow::Result<Figures> {
    let name = format!(
        "dns{}.{FANOUT_ZONE}",
        probes.fetch_add(1, Ordering::Relaxed)
    );
    let epoch = Instant::now();
    round(target, fleet, wire, &name, 0, epoch)
        .await
        .context("first (untimed) round")?;
    let mut applied: Histogram<u64> = latency_histogram()?;
    let mut answered: Histogram<u64> = latency_histogram()?;
    let mut stale = 0;
    let started = Instant::now();
    for step in 1..=publishes.max(1) as u64 {
        if step > 1 && started.elapsed() >= duration {
            break;
        }
        let (latencies, s) = round(target, fleet, wire, &name, step, epoch).await?;
        for (a, b) in latencies {
            applied.saturating_record(a.max(1));
            answered.saturating_record(b.max(1));
        }
        stale += s;
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
    Ok(Figures {
        answered: (ms(&answered, 0.5), ms(&answered, 0.99)),
        applied: (ms(&applied, 0.5), ms(&applied, 0.99)),
        stale,
    })
}

/// Starts a fleet of `count`, measures, stops it.
pub(crate) async fn measure_fleet(
    target: &FanoutTarget,
    wire: Wire,
    count: usize,
    publishes: usize,
    duration: Duration,
    probes: &AtomicU64,
) -> anyhow::Result<Figures> {
    let fleet = Fleet::start(target, wire, count).await?;
    let figures = measure(target, &fleet, wire, publishes, duration, probes).await;
    fleet.stop().await;
    figures
}

pub(super) async fn edge_dns(case: &Case) -> anyhow::Result<Sample> {
    anyhow::ensure!(!case.wire.is_peer(), "edge-dns runs over grpc-h3 only");
    let server = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), JournalKind::Memory).await?;
    let target = server.target();
    let probes = AtomicU64::new(0);
    let mut metrics = Vec::new();
    let mut stale = 0;
    let mut outcome = Ok(());
    for (count, [p50, p99, applied_p50, applied_p99]) in COUNTS {
        let publishes = case.settings.fanout_publishes;
        let duration = case.budget.duration;
        match measure_fleet(&target, case.wire, count, publishes, duration, &probes).await {
            Ok(f) => {
                metrics.extend([
                    (p50, f.answered.0),
                    (p99, f.answered.1),
                    (applied_p50, f.applied.0),
                    (applied_p99, f.applied.1),
                ]);
                stale += f.stale;
            }
            Err(e) => {
                outcome = Err(e.context(format!("{count} edge(s)")));
                break;
            }
        }
    }
    server.stop().await;
    outcome?;
    metrics.push(("stale_answers", stale as f64));
    Ok(Sample {
        metrics,
        latency: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use hickory_proto::rr::rdata::A;

    use super::*;

    #[test]
    fn rounds_create_then_edit_the_probe_to_a_new_address() {
        let name = "dns0.fanout.example.";
        let first = &batch(name, 0).changes[0];
        assert_eq!(first.op, ChangeOp::Create as i32);
        assert_eq!(first.record.as_ref().unwrap().rdata, "198.18.0.0");
        let third = &batch(name, 2).changes[0];
        assert_eq!(third.op, ChangeOp::Edit as i32);
        assert_eq!(third.previous.as_ref().unwrap().rdata, "198.18.0.1");
        assert_eq!(third.record.as_ref().unwrap().rdata, "198.18.0.2");
        // Stays in 198.18.0.0/15.
        assert_eq!(address((1 << 17) + 5), address(5));
        assert_eq!(address((1 << 17) - 1), Ipv4Addr::new(198, 19, 255, 255));
    }

    fn response(id: u16, rcode: ResponseCode, addresses: &[Ipv4Addr]) -> Vec<u8> {
        let request = Message::from_vec(&query("dns0.fanout.example.", id).unwrap()).unwrap();
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.queries = request.queries.clone();
        for &a in addresses {
            message.answers.push(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("dns0.fanout.example.").unwrap(),
                60,
                RData::A(A(a)),
            ));
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn replies_are_told_apart_by_id_rcode_and_address() {
        let want = address(3);
        let ok = |id, addresses: &[Ipv4Addr]| {
            reply(&response(id, ResponseCode::NoError, addresses), 7, want)
        };
        assert_eq!(ok(7, &[address(2), want]).unwrap(), Reply::Carries);
        assert_eq!(ok(7, &[address(2)]).unwrap(), Reply::Stale);
        assert_eq!(ok(7, &[]).unwrap(), Reply::Stale);
        // Another round's answer, or our own query echoed: not this query's answer.
        assert_eq!(ok(6, &[want]).unwrap(), Reply::Other);
        assert_eq!(
            reply(&query("x.example.", 7).unwrap(), 7, want).unwrap(),
            Reply::Other
        );
        let refused = reply(&response(7, ResponseCode::Refused, &[]), 7, want);
        assert!(matches!(
            refused,
            Err(ProbeError::Rcode(ResponseCode::Refused))
        ));
        assert!(matches!(
            reply(&[1, 2, 3], 7, want),
            Err(ProbeError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn every_edge_answers_every_round_over_both_wires() {
        let server = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), JournalKind::Memory)
            .await
            .unwrap();
        let target = server.target();
        let probes = AtomicU64::new(0);
        for wire in [Wire::H2, Wire::H3] {
            let f = measure_fleet(&target, wire, 3, 4, Duration::from_secs(5), &probes)
                .await
                .unwrap();
            let (p50, p99) = f.answered;
            assert!(p50 > 0.0 && p99 >= p50, "{wire}: {f:?}");
            // An answer comes after the edge applied the batch.
            assert!(f.answered.0 >= f.applied.0, "{wire}: {f:?}");
        }
        // Two probe names, each created then edited four times.
        assert_eq!(probes.load(Ordering::Relaxed), 2);
        server.stop().await;
    }
}

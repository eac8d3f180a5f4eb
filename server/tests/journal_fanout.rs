//! Fan-out to many Sync subscribers: 999 that read (HTTP/2) get every batch in order, without
//! gaps or duplicates, while one that never reads (HTTP/3, small receive window so its backlog is
//! far beyond what the transport holds) keeps a bounded number of messages in the server (the
//! rest of its backlog stays in the journal) and does not slow the publisher down. Once it reads
//! again it catches up from the journal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grpc_h3::{Channel, Endpoint, QuicSettings, Server, ServerTls, Transport};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::sync_message::Kind;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_server::journal::{JournalOptions, RedbJournal};
use zone_server::zones::{SYNC_BUFFER, StoreConfig, ZoneStore, zones_server};

const FAN: &str = "fan.test.";
const HEAVY: &str = "heavy.test.";
const READERS: usize = 999;
const STREAMS_PER_CONNECTION: usize = 250;
const FAN_BATCHES: u32 = 10;
/// ~4 KB each: the stuck subscriber's backlog (~500 KB) is far beyond its 64 KiB stream window.
const HEAVY_BATCHES: u32 = 120;
const STUCK_WINDOW: u32 = 64 * 1024;
const READ_AHEAD: usize = 64;

fn zone_text(origin: &str) -> String {
    format!(
        "$ORIGIN {origin}\n$TTL 300\n@ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
         @ NS ns1\nns1 A 192.0.2.53\n"
    )
}

fn create(zone: &str, name: String, rtype: &str, rdata: String) -> pb::Change {
    pb::Change {
        op: Op::Create.into(),
        record: Some(pb::Record {
            name: format!("{name}.{zone}"),
            r#type: rtype.into(),
            class: String::new(),
            ttl: 60,
            rdata,
        }),
        previous: None,
    }
}

fn fan_batch(i: u32) -> pb::ChangeBatch {
    pb::ChangeBatch {
        zone: FAN.into(),
        changes: vec![create(FAN, format!("f{i}"), "A", "192.0.2.1".into())],
        expected_serial: None,
    }
}

fn heavy_batch(i: u32) -> pb::ChangeBatch {
    let text = format!("\"{}\"", "x".repeat(250));
    let rdata = [text.as_str(); 4].join(" ");
    pb::ChangeBatch {
        zone: HEAVY.into(),
        changes: (0..4)
            .map(|j| create(HEAVY, format!("h{i}-{j}"), "TXT", rdata.clone()))
            .collect(),
        expected_serial: None,
    }
}

fn line(record: Option<&pb::Record>) -> String {
    let r = record.unwrap();
    format!("{} {} {} {}", r.name, r.ttl, r.r#type, r.rdata)
}

/// A subscriber's copy of one zone.
#[derive(Debug, Default, Clone, PartialEq)]
struct Copy {
    serial: u32,
    lines: BTreeSet<String>,
}

impl Copy {
    /// The zone as its file defines it (serial 100).
    fn initial(zone: &str) -> Copy {
        let store = ZoneStore::new();
        store.insert_zone_text(zone, &zone_text(zone)).unwrap();
        Copy::of(&store, zone)
    }

    fn of(store: &ZoneStore, zone: &str) -> Copy {
        let snapshot = store.snapshot(zone).unwrap();
        Copy {
            serial: snapshot.serial(),
            lines: snapshot.records().map(|r| line(Some(&r))).collect(),
        }
    }

    /// Applies a message; panics on a gap or duplicate.
    fn apply(&mut self, kind: Kind) {
        match kind {
            Kind::Snapshot(s) => {
                self.serial = s.serial;
                self.lines = s.records.iter().map(|r| line(Some(r))).collect();
            }
            Kind::Update(u) => {
                assert_eq!(u.serial, self.serial + 1, "gap or duplicate in {}", u.zone);
                for c in u.changes {
                    match Op::try_from(c.op).unwrap() {
                        Op::Create => assert!(self.lines.insert(line(c.record.as_ref()))),
                        Op::Delete => assert!(self.lines.remove(&line(c.record.as_ref()))),
                        Op::Edit => {
                            assert!(self.lines.remove(&line(c.previous.as_ref())));
                            assert!(self.lines.insert(line(c.record.as_ref())));
                        }
                        Op::Unspecified => panic!("unspecified op"),
                    }
                }
                self.serial = u.serial;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn subscribe(zones: &[(&str, u32)]) -> pb::SyncMessage {
    pb::SyncMessage {
        kind: Some(Kind::Subscribe(pb::Subscribe {
            zones: zones
                .iter()
                .map(|(zone, serial)| pb::ZoneCursor {
                    zone: zone.to_string(),
                    serial: *serial,
                })
                .collect(),
        })),
    }
}

async fn connect(addr: SocketAddr, ca: &[u8], transport: Transport) -> ZonesClient<Channel> {
    let quic = QuicSettings::default().stream_receive_window(STUCK_WINDOW);
    let channel = Endpoint::new(format!("https://{addr}"))
        .unwrap()
        .ca_certificate_pem(ca)
        .unwrap()
        .server_name("localhost")
        .transport(transport)
        .quic_settings(quic)
        .connect()
        .await
        .unwrap();
    ZonesClient::new(channel).max_decoding_message_size(zone_proto::MAX_ZONE_MESSAGE_SIZE)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_one_stuck_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZoneStore::with_config(StoreConfig {
        history_batches: 100,
        broadcast_capacity: READ_AHEAD,
        ..StoreConfig::default()
    });
    store.insert_zone_text(FAN, &zone_text(FAN)).unwrap();
    store.insert_zone_text(HEAVY, &zone_text(HEAVY)).unwrap();
    let journal = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    let certs = dev_certs::DevCerts::generate().unwrap();
    let ca = certs.ca_pem.clone();
    let bound = Server::builder()
        .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::Both)
        .add_service(zones_server(store.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h2_addr().unwrap();
    assert_eq!(bound.h3_addr(), Some(addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    // The stuck subscriber: its own connection, both zones, never reads.
    let mut stuck_client = connect(addr, &ca, Transport::H3).await;
    let (stuck_tx, stuck_rx) = mpsc::channel(4);
    stuck_tx
        .send(subscribe(&[(FAN, 100), (HEAVY, 100)]))
        .await
        .unwrap();
    let mut stuck = stuck_client
        .sync(ReceiverStream::new(stuck_rx))
        .await
        .unwrap()
        .into_inner();

    let mut clients = Vec::new();
    for _ in 0..READERS.div_ceil(STREAMS_PER_CONNECTION) {
        clients.push(connect(addr, &ca, Transport::H2).await);
    }
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(READERS);
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut client = clients[i / STREAMS_PER_CONNECTION].clone();
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(8);
            tx.send(subscribe(&[(FAN, 100)])).await.unwrap();
            let mut stream = client
                .sync(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            ready.send(()).await.unwrap();
            let mut copy = Copy::initial(FAN);
            let mut updates = 0;
            while copy.serial < 100 + FAN_BATCHES {
                let message = stream.message().await.unwrap().unwrap();
                copy.apply(message.kind.unwrap());
                updates += 1;
                let ack = pb::SyncMessage {
                    kind: Some(Kind::Ack(pb::Ack {
                        zone: FAN.into(),
                        serial: copy.serial,
                    })),
                };
                let _ = tx.send(ack).await;
            }
            (updates, copy)
        }));
    }
    drop(ready_tx);
    for _ in 0..READERS {
        ready_rx.recv().await.unwrap();
    }

    let rss_before = rss_kib();
    let publish = Instant::now();
    let pushes = async {
        let mut client = connect(addr, &ca, Transport::H2).await;
        for i in 0..HEAVY_BATCHES {
            client
                .push_changes(futures::stream::iter([heavy_batch(i)]))
                .await
                .unwrap();
            if i < FAN_BATCHES {
                client
                    .push_changes(futures::stream::iter([fan_batch(i)]))
                    .await
                    .unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), pushes)
        .await
        .expect("publishing stalled behind the stuck subscriber");
    let publish_time = publish.elapsed();

    // Every reader got exactly the 100 batches in order (checked while applying) and ends
    // with the publisher's zone.
    let want = Copy::of(&store, FAN);
    for reader in readers {
        let (updates, copy) = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("reader stalled")
            .unwrap();
        assert_eq!(updates, FAN_BATCHES);
        assert_eq!(copy, want);
    }

    // Only the stuck stream is left; let its session settle (its queue fills, then it waits).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = store.fanout_stats();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = store.fanout_stats();
        if now == stats && now.followers == 1 && now.queued_messages >= SYNC_BUFFER {
            break;
        }
        stats = now;
    }
    let rss_after = rss_kib();
    eprintln!(
        "{READERS} readers + 1 stuck: published {} batches in {publish_time:?}; stuck \
         subscriber holds {stats:?}; RSS {rss_before} KiB -> {rss_after} KiB",
        FAN_BATCHES + HEAVY_BATCHES
    );
    assert_eq!(stats.followers, 1, "{stats:?}");
    // Backpressure reached the session (its queue is full) ...
    assert!(stats.queued_messages >= SYNC_BUFFER, "{stats:?}");
    // ... and what it holds is bounded by the queue plus one read-ahead page, although
    // hundreds of heavy batches are still to be delivered.
    assert!(stats.queued_messages <= SYNC_BUFFER + 1, "{stats:?}");
    assert!(stats.pending_events <= READ_AHEAD, "{stats:?}");

    // Reading again, it catches up from the journal (the history holds only 100 batches).
    let (mut fan, mut heavy) = (Copy::initial(FAN), Copy::initial(HEAVY));
    let (mut snapshots, mut received) = (0, 0usize);
    while fan.serial < want.serial || heavy.serial < 100 + HEAVY_BATCHES {
        let message = tokio::time::timeout(Duration::from_secs(10), stuck.message())
            .await
            .expect("stuck subscriber did not catch up")
            .unwrap()
            .unwrap();
        let kind = message.kind.unwrap();
        snapshots += usize::from(matches!(kind, Kind::Snapshot(_)));
        received += 1;
        let zone = match &kind {
            Kind::Update(u) => u.zone.clone(),
            Kind::Snapshot(s) => s.zone.clone(),
            _ => panic!("unexpected message"),
        };
        if zone == FAN {
            fan.apply(kind)
        } else {
            heavy.apply(kind)
        }
    }
    assert_eq!(snapshots, 0, "a journal-backed catch-up needs no snapshot");
    // Most of the backlog was never in memory: what the server held plus what the stream
    // window can hold (~4 KB messages) is well under what arrived.
    let window_messages = usize::try_from(STUCK_WINDOW).unwrap() / 4000 + 1;
    let held = stats.queued_messages + stats.pending_events;
    assert!(
        received > 2 * (held + window_messages),
        "received {received}, held {held}"
    );
    assert_eq!(fan, want);
    assert_eq!(heavy, Copy::of(&store, HEAVY));
    drop((stuck, stuck_tx));
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    journal.close().await.unwrap();
}

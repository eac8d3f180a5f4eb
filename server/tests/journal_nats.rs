//! The journal on NATS JetStream against a real `nats-server -js` (started per test on a free
//! loopback port with a temporary store directory): the journal contract, replay and rebase;
//! reading from the middle of a long journal (in order, bounded, consumers cleaned up); a batch
//! resent after a nats-server restart or a lost answer is applied once;
//! two zone stores sharing one journal see each other's pushes in order; a subscriber moves
//! between two `zone-server` processes and resumes by serial; nats-server restarted mid-stream
//! (pushes get UNAVAILABLE meanwhile, no acknowledged batch lost, none applied twice); a
//! `zone-server` SIGKILLed mid-push.
//!
//! Skipped (with a printed reason) only when nats-server is not installed: `scripts/install-nats.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use grpc_h3::{Endpoint, Transport};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::sync_message::Kind;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_server::journal::{
    BasePolicy, Journal, JournalOptions, NatsJournal, NatsOptions, NatsTail, ReadAfter,
    ReplayOutcome, attach_nats,
};
use zone_server::zones::{StoreConfig, ZoneEvent, ZoneStore};

const BIN: &str = env!("CARGO_BIN_EXE_zone-server");
const ZONE: &str = "example.test.";
const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
    @ NS ns1\n\
    ns1 A 192.0.2.53\n\
    www A 192.0.2.1\n";
use test_support::nats_or_skip;

fn rec(name: &str, rtype: &str, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.into(),
        r#type: rtype.into(),
        class: String::new(),
        ttl: 300,
        rdata: rdata.into(),
    }
}

fn create(name: &str, rdata: &str) -> pb::Change {
    pb::Change {
        op: Op::Create.into(),
        record: Some(rec(name, "A", rdata)),
        previous: None,
    }
}

/// Batch `i`: creates `h{i}` (a batch applied twice would fail: the record exists).
fn numbered(zone: &str, i: u32) -> pb::ChangeBatch {
    pb::ChangeBatch {
        zone: zone.into(),
        changes: vec![create(&format!("h{i}"), "192.0.2.1")],
        expected_serial: None,
    }
}

fn zone_text(origin: &str) -> String {
    ZONE_TEXT.replace("example.test.", origin)
}

fn store_with(text: &str) -> ZoneStore {
    let store = ZoneStore::with_config(StoreConfig::default());
    store.insert_zone_text(ZONE, text).unwrap();
    store
}

fn zone_lines(store: &ZoneStore, zone: &str) -> BTreeSet<String> {
    store
        .snapshot(zone)
        .unwrap()
        .records()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.r#type, r.rdata))
        .collect()
}

async fn connect(url: &str) -> Arc<NatsJournal> {
    NatsJournal::connect(url, NatsOptions::default())
        .await
        .unwrap()
}

async fn attach(url: &str, text: &str) -> (ZoneStore, Arc<NatsJournal>, NatsTail) {
    let store = store_with(text);
    let (journal, _, tail) = attach_nats(
        &store,
        url,
        JournalOptions::default(),
        NatsOptions::default(),
    )
    .await
    .unwrap();
    (store, journal, tail)
}

/// Pushes, retrying (bounded) when another server got the serial first.
async fn push_retrying(store: &ZoneStore, batch: pb::ChangeBatch) -> u32 {
    for _ in 0..50 {
        match store.push(batch.clone()).await {
            Ok(applied) => return applied.serial,
            Err(err) if err.code() == Code::Aborted => {}
            Err(err) => panic!("push failed: {err}"),
        }
    }
    panic!("push kept conflicting");
}

/// Reads updates until `last`; asserts they are consecutive from `from + 1`.
async fn updates_until(follower: &mut zone_server::zones::ZoneFollower, from: u32, last: u32) {
    let mut at = from;
    while at < last {
        let event = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .unwrap_or_else(|_| panic!("no event after serial {at}"))
            .unwrap();
        match event {
            ZoneEvent::Update(batch) => assert_eq!(batch.serial(), at + 1, "gap or duplicate"),
            other => panic!("want update {}, got {other:?}", at + 1),
        }
        at += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_journal_keeps_the_journal_contract() {
    let nats = nats_or_skip!();
    let journal = connect(&nats.url()).await;
    let store = store_with(ZONE_TEXT);
    let report = store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(report[0].outcome, ReplayOutcome::Registered);
    for i in 0..10 {
        assert_eq!(store.push(numbered(ZONE, i)).await.unwrap().serial, 101 + i);
    }
    let ReadAfter::Entries(entries) = journal.read_after(ZONE, 103, 4).await.unwrap() else {
        panic!("entries expected")
    };
    let serials: Vec<_> = entries.iter().map(|b| b.serial()).collect();
    assert_eq!(serials, [104, 105, 106, 107]);
    assert!(matches!(
        journal.read_after(ZONE, 110, 4).await.unwrap(),
        ReadAfter::Entries(e) if e.is_empty()
    ));
    assert!(matches!(
        journal.read_after(ZONE, 111, 4).await.unwrap(),
        ReadAfter::Ahead { last_serial: 110 }
    ));
    // Appending at a stale serial is a conflict (the server's conditional append) and writes
    // nothing.
    let err = journal.append(entries[0].clone(), 103).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    let state = journal.zone_state(ZONE).await.unwrap().unwrap();
    assert_eq!(
        (state.base_serial, state.last_serial, state.entries),
        (100, 110, 10)
    );
    journal
        .compact(store.snapshot(ZONE).unwrap(), 108)
        .await
        .unwrap();
    assert!(matches!(
        journal.read_after(ZONE, 107, 4).await.unwrap(),
        ReadAfter::Compacted { oldest_after: 108 }
    ));
    let ReadAfter::Entries(kept) = journal.read_after(ZONE, 108, 10).await.unwrap() else {
        panic!("entries expected")
    };
    assert_eq!(kept.len(), 2);
    let snapshot = journal.load_snapshot(ZONE).await.unwrap().unwrap();
    assert_eq!(snapshot.serial, 110);
    assert_eq!(snapshot.records.len(), store.snapshot(ZONE).unwrap().len());
    let state = journal.zone_state(ZONE).await.unwrap().unwrap();
    assert_eq!(
        (state.snapshot_serial, state.oldest_after, state.entries),
        (Some(110), 108, 2)
    );
    // Appends go on after a compaction that purged the stream up to its last batch.
    assert_eq!(store.push(numbered(ZONE, 10)).await.unwrap().serial, 111);
    let lines = zone_lines(&store, ZONE);
    drop(store);

    // Another process (new connection) replays from the snapshot.
    let restarted = store_with(ZONE_TEXT);
    let report = restarted
        .attach_journal(connect(&nats.url()).await, JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            report[0].outcome,
            report[0].from_serial,
            report[0].batches,
            report[0].serial
        ),
        (ReplayOutcome::Replayed, 110, 1, 111)
    );
    assert_eq!(zone_lines(&restarted, ZONE), lines);
    drop(restarted);

    // Changed zone files: refused, or rebased into a new epoch above every journaled serial.
    let edited = format!("{ZONE_TEXT}new A 192.0.2.77\n");
    let err = store_with(&edited)
        .attach_journal(connect(&nats.url()).await, JournalOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let rebased = store_with(&edited);
    let journal = connect(&nats.url()).await;
    let report = rebased
        .attach_journal(
            journal.clone(),
            JournalOptions::default().base_policy(BasePolicy::Rebase),
        )
        .await
        .unwrap();
    assert_eq!(
        (report[0].outcome, report[0].serial),
        (ReplayOutcome::Rebased, 112)
    );
    assert_eq!(rebased.push(numbered(ZONE, 0)).await.unwrap().serial, 113);
    let state = journal.zone_state(ZONE).await.unwrap().unwrap();
    assert_eq!(
        (state.base_serial, state.last_serial, state.snapshot_serial),
        (112, 113, None)
    );
    assert!(journal.load_snapshot(ZONE).await.unwrap().is_none());
}

/// Every batch after `after` via pages of `limit`; asserts consecutive serials and that each
/// batch is `numbered` batch `serial - 101`.
async fn read_all_after(journal: &NatsJournal, after: u32, limit: usize) -> Vec<u32> {
    let mut serials = Vec::new();
    let mut at = after;
    loop {
        let ReadAfter::Entries(page) = journal.read_after(ZONE, at, limit).await.unwrap() else {
            panic!("entries expected after {at}")
        };
        if page.is_empty() {
            return serials;
        }
        assert!(
            page.len() <= limit,
            "page of {} > limit {limit}",
            page.len()
        );
        for batch in page {
            assert_eq!(batch.serial(), at + 1, "gap or disorder");
            let record = batch.changes()[0].record.as_ref().unwrap();
            assert_eq!(record.name, format!("h{}.{ZONE}", batch.serial() - 101));
            at = batch.serial();
            serials.push(at);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_from_the_middle_of_a_long_journal_streams_in_order() {
    let nats = nats_or_skip!();
    let journal = connect(&nats.url()).await;
    let store = store_with(ZONE_TEXT);
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    for i in 0..500 {
        store.push(numbered(ZONE, i)).await.unwrap();
    }
    // From serial 350 (after 250 batches) to the last one: the read ends at the stream's last
    // sequence instead of waiting for more.
    let started = Instant::now();
    let ReadAfter::Entries(tail) = journal.read_after(ZONE, 350, 1000).await.unwrap() else {
        panic!("entries expected")
    };
    let one_read = started.elapsed();
    let serials: Vec<_> = tail.iter().map(|b| b.serial()).collect();
    assert_eq!(serials, (351..=600).collect::<Vec<_>>());
    let started = Instant::now();
    assert_eq!(
        read_all_after(&journal, 350, 64).await,
        (351..=600).collect::<Vec<_>>()
    );
    let paged = started.elapsed();
    let started = Instant::now();
    for after in 350..400 {
        let ReadAfter::Entries(one) = journal.read_after(ZONE, after, 1).await.unwrap() else {
            panic!("entries expected")
        };
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].serial(), after + 1);
    }
    let singles = started.elapsed() / 50;
    // A read in the middle of a stream, bounded by the limit.
    let ReadAfter::Entries(middle) = journal.read_after(ZONE, 250, 10).await.unwrap() else {
        panic!("entries expected")
    };
    let serials: Vec<_> = middle.iter().map(|b| b.serial()).collect();
    assert_eq!(serials, (251..=260).collect::<Vec<_>>());
    assert!(matches!(
        journal.read_after(ZONE, 600, 10).await.unwrap(),
        ReadAfter::Entries(e) if e.is_empty()
    ));
    // The readers' ephemeral consumers are deleted, not left to expire.
    let js = async_nats::jetstream::new(journal.client().clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut consumers = 0;
        let mut names = js.stream_names();
        while let Some(name) = names.next().await {
            let mut stream = js.get_stream(name.unwrap()).await.unwrap();
            consumers += stream.info().await.unwrap().state.consumer_count;
        }
        if consumers == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{consumers} read consumers left behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "read 250 batches after serial 350: {one_read:?} in one read, {paged:?} in pages of 64; \
         one-batch read: {singles:?}"
    );
}

/// The zone's `h*` record names in the journal, with their serials.
async fn journaled_names(journal: &NatsJournal, zone: &str, after: u32) -> Vec<(String, u32)> {
    let mut names = Vec::new();
    let mut at = after;
    loop {
        let ReadAfter::Entries(page) = journal.read_after(zone, at, 256).await.unwrap() else {
            panic!("entries expected")
        };
        if page.is_empty() {
            return names;
        }
        for batch in page {
            at = batch.serial();
            for change in batch.changes() {
                let record = change.record.as_ref().unwrap();
                if record.name.starts_with('h') {
                    names.push((record.name.clone(), at));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resent_after_a_nats_server_restart_is_applied_once() {
    let mut nats = nats_or_skip!();
    let store = store_with(ZONE_TEXT);
    let journal = NatsJournal::connect(
        &nats.url(),
        NatsOptions::default().timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    for i in 0..3 {
        store.push(numbered(ZONE, i)).await.unwrap();
    }
    let pinned = pb::ChangeBatch {
        expected_serial: Some(103),
        ..numbered(ZONE, 3)
    };
    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.client().connection_state() == async_nats::connection::State::Connected {
        assert!(
            Instant::now() < deadline,
            "the client did not notice the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = store.push(pinned.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_eq!(store.zone(ZONE).unwrap().serial, 103);
    nats.restart();
    // The publisher resends the same batch (same expected serial) until NATS answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    let serial = loop {
        match store.push(pinned.clone()).await {
            Ok(applied) => break applied.serial,
            Err(err) if err.code() == Code::Unavailable => {
                assert!(Instant::now() < deadline, "pushes did not resume: {err}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("resend after the restart: {err}"),
        }
    };
    assert_eq!(serial, 104);
    // Resent once more (as after a lost answer): refused, nothing written twice.
    let err = store.push(pinned.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    let names = journaled_names(&journal, ZONE, 100).await;
    let h3: Vec<_> = names.iter().filter(|(n, _)| n.starts_with("h3.")).collect();
    assert_eq!(h3, [&(format!("h3.{ZONE}"), 104)]);
    assert_eq!(names.len(), 4);
    assert_eq!(
        journal.zone_state(ZONE).await.unwrap().unwrap().last_serial,
        104
    );
    assert_eq!(store.zone(ZONE).unwrap().serial, 104);
    eprintln!("{refused} resends refused while NATS came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resent_after_its_ack_was_lost_is_aborted_not_duplicated() {
    let nats = nats_or_skip!();
    // Journal level: the second append of a stored batch names a sequence that is no longer
    // the last one.
    let journal = connect(&nats.url()).await;
    let a = store_with(ZONE_TEXT);
    a.attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    let pinned = pb::ChangeBatch {
        expected_serial: Some(100),
        ..numbered(ZONE, 0)
    };
    a.push(pinned.clone()).await.unwrap();
    let ReadAfter::Entries(stored) = journal.read_after(ZONE, 100, 1).await.unwrap() else {
        panic!("entries expected")
    };
    let err = journal.append(stored[0].clone(), 100).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");

    // Store level: server A stored and applied it but the answer was lost; the client resends
    // the same batch to A, and to B (sharing the journal, not caught up yet: no tail).
    let b = store_with(ZONE_TEXT);
    b.attach_journal(connect(&nats.url()).await, JournalOptions::default())
        .await
        .unwrap();
    let b_before = b.zone(ZONE).unwrap().serial;
    a.push(numbered(ZONE, 1)).await.unwrap();
    let resent = pb::ChangeBatch {
        expected_serial: Some(101),
        ..numbered(ZONE, 1)
    };
    for (name, store) in [("A", &a), ("B", &b)] {
        let err = store.push(resent.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "resent to {name}: {err}");
        // The refusal leaves the store caught up with the journal, the batch applied once.
        assert_eq!(store.zone(ZONE).unwrap().serial, 102, "{name}");
    }
    assert_eq!(b_before, 101);
    assert_eq!(zone_lines(&a, ZONE), zone_lines(&b, ZONE));
    assert_eq!(
        journaled_names(&journal, ZONE, 100).await,
        [(format!("h0.{ZONE}"), 101), (format!("h1.{ZONE}"), 102)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_a_jetstream_journal_see_each_others_pushes_in_order() {
    let nats = nats_or_skip!();
    let (a, _ja, _ta) = attach(&nats.url(), ZONE_TEXT).await;
    let (b, _jb, _tb) = attach(&nats.url(), ZONE_TEXT).await;
    let mut follow_a = a.follow([(ZONE, 100)]).unwrap();
    let mut follow_b = b.follow([(ZONE, 100)]).unwrap();
    // Alternating servers, and a few racing pairs: each serial is taken once.
    for i in 0..10 {
        let store = if i % 2 == 0 { &a } else { &b };
        push_retrying(store, numbered(ZONE, i)).await;
    }
    for i in (10..20).step_by(2) {
        let (x, y) = tokio::join!(
            push_retrying(&a, numbered(ZONE, i)),
            push_retrying(&b, numbered(ZONE, i + 1))
        );
        assert_ne!(x, y);
    }
    // Every batch reaches the followers of both servers, in the journal's order.
    updates_until(&mut follow_b, 100, 120).await;
    updates_until(&mut follow_a, 100, 120).await;
    assert_eq!(zone_lines(&a, ZONE), zone_lines(&b, ZONE));
    assert_eq!(a.zone(ZONE).unwrap().serial, 120);
}

/// Starts `zone-server --journal URL` serving `dir/zones`; returns it with its h2c address.
fn start_zone_server(dir: &Path, url: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--port",
            "0",
            "--plaintext",
            "--zones",
            "zones",
            "--journal",
            url,
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("h2="))
        .unwrap_or_else(|| panic!("no READY line: {line:?}"));
    (child, addr.parse().unwrap())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn client(addr: SocketAddr) -> ZonesClient<grpc_h3::Channel> {
    let channel = Endpoint::new(format!("http://{addr}"))
        .unwrap()
        .transport(Transport::H2)
        .connect()
        .await
        .unwrap();
    ZonesClient::new(channel)
}

fn zone_dir(origin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(
        dir.path().join(format!("zones/{origin}zone")),
        zone_text(origin),
    )
    .unwrap();
    dir
}

async fn grpc_push(client: &mut ZonesClient<grpc_h3::Channel>, batch: pb::ChangeBatch) -> u32 {
    for _ in 0..50 {
        match client
            .push_changes(futures::stream::iter([batch.clone()]))
            .await
        {
            Ok(result) => return result.into_inner().serial,
            Err(status) if status.code() == Code::Aborted => {}
            Err(status) => panic!("push failed: {status}"),
        }
    }
    panic!("push kept conflicting");
}

/// A Sync subscription from `(zone, serial)`; returns the sender (kept open) and the stream.
async fn subscribe(
    client: &mut ZonesClient<grpc_h3::Channel>,
    zone: &str,
    serial: u32,
) -> (
    mpsc::Sender<pb::SyncMessage>,
    tonic::Streaming<pb::SyncMessage>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::SyncMessage {
        kind: Some(Kind::Subscribe(pb::Subscribe {
            zones: vec![pb::ZoneCursor {
                zone: zone.into(),
                serial,
            }],
        })),
    })
    .await
    .unwrap();
    let stream = client
        .sync(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

/// Reads updates until `last`, asserting they follow `from` without gaps or duplicates.
async fn sync_until(stream: &mut tonic::Streaming<pb::SyncMessage>, from: u32, last: u32) {
    let mut at = from;
    while at < last {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no Sync message after serial {at}"))
            .unwrap()
            .unwrap();
        match message.kind {
            Some(Kind::Update(update)) => {
                assert_eq!(update.serial, at + 1, "gap or duplicate");
                at = update.serial;
            }
            other => panic!("want update {}, got {other:?}", at + 1),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_moves_between_zone_servers_and_resumes_by_serial() {
    let nats = nats_or_skip!();
    const MOVE: &str = "move.test.";
    let dir = zone_dir(MOVE);
    let (a, addr_a) = start_zone_server(dir.path(), &nats.url());
    let _a = Killed(a);
    let (b, addr_b) = start_zone_server(dir.path(), &nats.url());
    let _b = Killed(b);
    let (mut ca, mut cb) = (client(addr_a).await, client(addr_b).await);

    // Subscribed to B; pushes go to A: B's subscriber sees them, in order.
    let (_keep_b, mut on_b) = subscribe(&mut cb, MOVE, 100).await;
    let (_keep_a, mut on_a) = subscribe(&mut ca, MOVE, 100).await;
    for i in 0..5 {
        assert_eq!(grpc_push(&mut ca, numbered(MOVE, i)).await, 101 + i);
    }
    sync_until(&mut on_b, 100, 105).await;
    // The subscriber on A reads up to 105, leaves A, and resumes on B from its serial while
    // pushes go on on both servers.
    sync_until(&mut on_a, 100, 105).await;
    drop(on_a);
    let (_keep_moved, mut moved) = subscribe(&mut cb, MOVE, 105).await;
    for i in 5..15 {
        let client = if i % 2 == 0 { &mut ca } else { &mut cb };
        grpc_push(client, numbered(MOVE, i)).await;
    }
    sync_until(&mut moved, 105, 115).await;
    sync_until(&mut on_b, 105, 115).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_mid_stream_loses_no_acknowledged_batch() {
    let mut nats = nats_or_skip!();
    const ZONE_R: &str = "restart.test.";
    let store = ZoneStore::new();
    store.insert_zone_text(ZONE_R, &zone_text(ZONE_R)).unwrap();
    let (journal, _, _tail) = attach_nats(
        &store,
        &nats.url(),
        JournalOptions::default(),
        NatsOptions::default().timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (store, acked, unavailable, stop) = (
            store.clone(),
            Arc::clone(&acked),
            Arc::clone(&unavailable),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                match store.push(numbered(ZONE_R, i)).await {
                    Ok(applied) => acked.lock().unwrap().push((i, applied.serial)),
                    Err(err) if err.code() == Code::Unavailable => {
                        *unavailable.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // A batch stored just before the kill whose ack was lost: the store learns
                    // it on the next push (ABORTED) or from the tail.
                    Err(err) if err.code() == Code::Aborted => {}
                    Err(err) => panic!("push {i}: {err}"),
                }
                i += 1;
            }
        })
    };
    let wait_acked = |n: usize| {
        let acked = Arc::clone(&acked);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while acked.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "pushes did not resume");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_acked(20).await;
    nats.kill();
    // While nats-server is down, pushes fail with UNAVAILABLE (and are not queued).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = acked.lock().unwrap().len();
    let refused = *unavailable.lock().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(acked.lock().unwrap().len(), before, "acked while down");
    assert!(*unavailable.lock().unwrap() > refused, "pushes must fail");
    nats.restart();
    wait_acked(before + 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pusher.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    let serials: Vec<u32> = acked.iter().map(|(_, s)| *s).collect();
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    // The journal holds every acknowledged batch at its serial, and nothing twice.
    let mut journaled = Vec::new();
    let mut at = 100;
    loop {
        let ReadAfter::Entries(page) = journal.read_after(ZONE_R, at, 256).await.unwrap() else {
            panic!("entries expected")
        };
        if page.is_empty() {
            break;
        }
        for batch in page {
            at = batch.serial();
            let record = batch.changes()[0].record.as_ref().unwrap();
            journaled.push((record.name.clone(), batch.serial()));
        }
    }
    let names: BTreeSet<_> = journaled.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), journaled.len(), "a batch journaled twice");
    for (i, serial) in &acked {
        let name = format!("h{i}.{ZONE_R}");
        assert!(
            journaled.contains(&(name.clone(), *serial)),
            "acked {name} at {serial} missing"
        );
    }
    // The store converges on the journal (a batch stored but unacknowledged is learnt too).
    let last = journal
        .zone_state(ZONE_R)
        .await
        .unwrap()
        .unwrap()
        .last_serial;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.zone(ZONE_R).unwrap().serial != last {
        assert!(Instant::now() < deadline, "store did not converge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replayed = ZoneStore::new();
    replayed
        .insert_zone_text(ZONE_R, &zone_text(ZONE_R))
        .unwrap();
    replayed
        .attach_journal(connect(&nats.url()).await, JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(zone_lines(&replayed, ZONE_R), zone_lines(&store, ZONE_R));
    eprintln!(
        "{} acked, {} journaled, {} refused while nats-server was down",
        acked.len(),
        journaled.len(),
        unavailable.lock().unwrap()
    );
}

/// The zone's serial and its `h*` records, over TransferZone.
async fn transferred(
    client: &mut ZonesClient<grpc_h3::Channel>,
    zone: &str,
) -> (u32, BTreeSet<String>) {
    let request = pb::TransferRequest {
        zone: zone.into(),
        since_serial: None,
        batch_size: 0,
    };
    let mut stream = client.transfer_zone(request).await.unwrap().into_inner();
    let (mut serial, mut names) = (0, BTreeSet::new());
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        serial = batch.serial;
        names.extend(
            batch
                .records
                .into_iter()
                .filter(|r| r.name.starts_with('h'))
                .map(|r| r.name),
        );
    }
    (serial, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_server_killed_mid_push_keeps_every_acknowledged_batch() {
    let nats = nats_or_skip!();
    const KILL: &str = "kill.test.";
    let dir = zone_dir(KILL);
    let mut acked_total = Vec::new();
    let mut next = 0u32;
    for round in 0..4u64 {
        let (child, addr) = start_zone_server(dir.path(), &nats.url());
        let mut child = Killed(child);
        let mut zones = client(addr).await;
        let (serial, names) = transferred(&mut zones, KILL).await;
        // Every acknowledged batch is there; the one in flight at the kill may be too.
        for (i, s) in &acked_total {
            assert!(
                names.contains(&format!("h{i}.{KILL}")),
                "round {round}: h{i} lost"
            );
            assert!(*s <= serial);
        }
        assert_eq!(serial - 100, u32::try_from(names.len()).unwrap());
        let acked = Arc::new(Mutex::new(Vec::new()));
        let pusher = {
            let (acked, mut zones, first) = (Arc::clone(&acked), zones.clone(), next);
            tokio::spawn(async move {
                for i in first..first + 100_000 {
                    let Ok(result) = zones
                        .push_changes(futures::stream::iter([numbered(KILL, i)]))
                        .await
                    else {
                        return;
                    };
                    acked.lock().unwrap().push((i, result.into_inner().serial));
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + round * 97)).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        tokio::time::timeout(Duration::from_secs(5), pusher)
            .await
            .expect("pusher did not notice the kill")
            .unwrap();
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        // The batch in flight got a new index: a retry is a different batch here.
        next = acked.last().unwrap().0 + 2;
        acked_total.extend(acked);
    }
    let (child, addr) = start_zone_server(dir.path(), &nats.url());
    let _child = Killed(child);
    let (_, names) = transferred(&mut client(addr).await, KILL).await;
    for (i, _) in &acked_total {
        assert!(names.contains(&format!("h{i}.{KILL}")), "h{i} lost");
    }
}

//! The journaled zone store: durable pushes, replay after a restart, compaction, bad input that
//! leaves zone and journal untouched, changed zone files, concurrent writers, and followers that
//! read what they missed from the journal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_server::journal::{
    BasePolicy, Journal, JournalOptions, MemoryJournal, RedbJournal, ReplayOutcome,
    ZoneJournalState,
};
use zone_server::zones::{StoreConfig, ZoneEvent, ZoneStore};

const ZONE: &str = "example.test.";
const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
    @ NS ns1\n\
    ns1 A 192.0.2.53\n\
    www A 192.0.2.1\n";

fn rec(name: &str, rtype: &str, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.into(),
        r#type: rtype.into(),
        class: String::new(),
        ttl: 300,
        rdata: rdata.into(),
    }
}

fn change(op: Op, record: pb::Record) -> pb::Change {
    pb::Change {
        op: op.into(),
        record: Some(record),
        previous: None,
    }
}

fn batch(changes: Vec<pb::Change>) -> pb::ChangeBatch {
    pb::ChangeBatch {
        zone: ZONE.into(),
        changes,
        expected_serial: None,
    }
}

/// Batch `i`: creates `h{i}` and deletes `h{i-1}`'s second record, so partial application shows.
fn numbered(i: u32) -> pb::ChangeBatch {
    let mut changes = vec![
        change(Op::Create, rec(&format!("h{i}"), "A", "192.0.2.1")),
        change(Op::Create, rec(&format!("h{i}"), "TXT", "\"batch\"")),
    ];
    if i > 0 {
        changes.push(change(
            Op::Delete,
            rec(&format!("h{}", i - 1), "TXT", "\"batch\""),
        ));
    }
    batch(changes)
}

fn store_with(config: StoreConfig, text: &str) -> ZoneStore {
    let store = ZoneStore::with_config(config);
    store.insert_zone_text(ZONE, text).unwrap();
    store
}

fn zone_lines(store: &ZoneStore) -> BTreeSet<String> {
    store
        .snapshot(ZONE)
        .unwrap()
        .records()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.r#type, r.rdata))
        .collect()
}

fn serial(store: &ZoneStore) -> u32 {
    store.zone(ZONE).unwrap().serial
}

async fn journal_state(journal: &dyn Journal) -> ZoneJournalState {
    journal.zone_state(ZONE).await.unwrap().unwrap()
}

#[tokio::test]
async fn pushes_survive_a_restart_and_replay_to_the_same_zone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let journal = RedbJournal::open(&path).unwrap();
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    let report = store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(report[0].outcome, ReplayOutcome::Registered);
    for i in 0..20 {
        let applied = store.push(numbered(i)).await.unwrap();
        assert_eq!(applied.serial, 101 + i);
    }
    // The synchronous path would bypass the journal: refused.
    let err = store.apply(&numbered(20)).unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let state = journal_state(journal.as_ref()).await;
    assert_eq!(
        (state.base_serial, state.last_serial, state.entries),
        (100, 120, 20)
    );
    let before = zone_lines(&store);
    drop(store);
    journal.close().await.unwrap();

    let journal = RedbJournal::open(&path).unwrap();
    let restarted = store_with(StoreConfig::default(), ZONE_TEXT);
    let report = restarted
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(report[0].outcome, ReplayOutcome::Replayed);
    assert_eq!(
        (report[0].from_serial, report[0].batches, report[0].serial),
        (100, 20, 120)
    );
    assert_eq!(zone_lines(&restarted), before);
    assert!(
        before
            .iter()
            .any(|l| l.contains("hostmaster.example.test. 120 ")),
        "{before:?}"
    );
    // The replayed history serves increments at once.
    let mut follower = restarted.follow([(ZONE, 110)]).unwrap();
    let first = follower.next().await.unwrap();
    assert!(matches!(first, ZoneEvent::Update(ref b) if b.serial() == 111));
    assert_eq!(restarted.push(numbered(20)).await.unwrap().serial, 121);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn bad_batches_change_neither_zone_nor_journal() {
    let journal = MemoryJournal::new();
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    store.push(numbered(0)).await.unwrap();
    let lines = zone_lines(&store);
    let state = journal_state(journal.as_ref()).await;

    let future = pb::ChangeBatch {
        expected_serial: Some(500),
        ..numbered(1)
    };
    let unknown = pb::ChangeBatch {
        zone: "nope.test.".into(),
        ..numbered(1)
    };
    let cases = [
        (
            // Valid first change, invalid second: nothing of the batch may stay.
            batch(vec![
                change(Op::Create, rec("ok", "A", "192.0.2.9")),
                change(Op::Create, rec("bad", "A", "not-an-address")),
            ]),
            Code::InvalidArgument,
        ),
        (
            batch(vec![
                change(Op::Create, rec("ok", "A", "192.0.2.9")),
                change(Op::Delete, rec("missing", "A", "192.0.2.99")),
            ]),
            Code::FailedPrecondition,
        ),
        (future, Code::Aborted),
        (unknown, Code::NotFound),
        (batch(vec![]), Code::InvalidArgument),
    ];
    for (bad, code) in cases {
        let err = store.push(bad).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(
            journal_state(journal.as_ref()).await,
            state,
            "journal changed by {err}"
        );
        assert_eq!(zone_lines(&store), lines, "zone changed by {err}");
        assert_eq!(serial(&store), 101);
    }
}

#[tokio::test]
async fn compaction_keeps_recent_batches_and_replays_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let journal = RedbJournal::open(&path).unwrap();
    // A tiny history, so followers must read the journal.
    let config = StoreConfig {
        history_batches: 2,
        ..StoreConfig::default()
    };
    let options = JournalOptions::default().compact_every(0).retain(5);
    let store = store_with(config.clone(), ZONE_TEXT);
    store
        .attach_journal(journal.clone(), options.clone())
        .await
        .unwrap();
    for i in 0..30 {
        store.push(numbered(i)).await.unwrap();
    }
    assert_eq!(store.compact_journal(ZONE).await.unwrap(), 130);
    let state = journal_state(journal.as_ref()).await;
    assert_eq!(
        (
            state.snapshot_serial,
            state.oldest_after,
            state.entries,
            state.last_serial
        ),
        (Some(130), 125, 5, 130)
    );

    // Behind the history but within the journal: every batch, no snapshot.
    let mut follower = store.follow([(ZONE, 125)]).unwrap();
    for want in 126..=130 {
        match follower.next().await.unwrap() {
            ZoneEvent::Update(b) => assert_eq!(b.serial(), want),
            other => panic!("want update {want}, got {other:?}"),
        }
    }
    // Older than the compacted journal: a snapshot.
    let mut old = store.follow([(ZONE, 110)]).unwrap();
    match old.next().await.unwrap() {
        ZoneEvent::Snapshot(s) => assert_eq!(s.serial(), 130),
        other => panic!("want snapshot, got {other:?}"),
    }

    for i in 30..33 {
        store.push(numbered(i)).await.unwrap();
    }
    let before = zone_lines(&store);
    drop((store, follower, old));
    journal.close().await.unwrap();

    let journal = RedbJournal::open(&path).unwrap();
    let restarted = store_with(config, ZONE_TEXT);
    let report = restarted
        .attach_journal(journal.clone(), options)
        .await
        .unwrap();
    assert_eq!(
        (report[0].from_serial, report[0].batches, report[0].serial),
        (130, 3, 133)
    );
    assert_eq!(zone_lines(&restarted), before);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn automatic_compaction_bounds_the_journal() {
    let journal = MemoryJournal::new();
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    store
        .attach_journal(
            journal.clone(),
            JournalOptions::default().compact_every(10).retain(3),
        )
        .await
        .unwrap();
    for i in 0..45 {
        store.push(numbered(i)).await.unwrap();
    }
    // Compaction runs in the background: wait for it (bounded).
    let mut state = journal_state(journal.as_ref()).await;
    for _ in 0..200 {
        if state.snapshot_serial == Some(140) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        state = journal_state(journal.as_ref()).await;
    }
    assert_eq!(state.snapshot_serial, Some(140), "{state:?}");
    assert_eq!(state.oldest_after, 137);
    assert_eq!(state.entries, 145 - 137);
}

#[tokio::test]
async fn changed_zone_files_are_refused_or_rebased_above_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let journal = RedbJournal::open(&path).unwrap();
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    for i in 0..5 {
        store.push(numbered(i)).await.unwrap();
    }
    drop(store);
    journal.close().await.unwrap();

    // The zone file got a new record (same SOA serial): refused by default.
    let edited = format!("{ZONE_TEXT}new A 192.0.2.77\n");
    let journal = RedbJournal::open(&path).unwrap();
    let store = store_with(StoreConfig::default(), &edited);
    let err = store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let message = err.to_string();
    for part in ["example.test.", "105", "--journal-rebase"] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(
        journal_state(journal.as_ref()).await.last_serial,
        105,
        "refusal changed the journal"
    );
    drop(store);

    // Rebased: the file's records, at a serial above every journaled one.
    let store = store_with(StoreConfig::default(), &edited);
    let report = store
        .attach_journal(
            journal.clone(),
            JournalOptions::default().base_policy(BasePolicy::Rebase),
        )
        .await
        .unwrap();
    assert_eq!(
        (report[0].outcome, report[0].serial),
        (ReplayOutcome::Rebased, 106)
    );
    assert!(
        zone_lines(&store)
            .iter()
            .any(|l| l.starts_with("new.example.test."))
    );
    assert!(!zone_lines(&store).iter().any(|l| l.starts_with("h0.")));
    assert_eq!(store.push(numbered(0)).await.unwrap().serial, 107);
    let lines = zone_lines(&store);
    drop(store);
    journal.close().await.unwrap();

    // The next start on the same (edited) file replays normally.
    let journal = RedbJournal::open(&path).unwrap();
    let store = store_with(StoreConfig::default(), &edited);
    let report = store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (report[0].outcome, report[0].serial),
        (ReplayOutcome::Replayed, 107)
    );
    assert_eq!(zone_lines(&store), lines);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn two_writers_on_one_journal_one_wins_the_loser_catches_up() {
    // Two servers sharing one log (as they would share a JetStream stream).
    let journal = MemoryJournal::new();
    let a = store_with(StoreConfig::default(), ZONE_TEXT);
    let b = store_with(StoreConfig::default(), ZONE_TEXT);
    a.attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    b.attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    assert_eq!(a.push(numbered(0)).await.unwrap().serial, 101);
    // b still thinks the zone is at 100: its append expects 100 and loses.
    let other = || batch(vec![change(Op::Create, rec("b-side", "A", "192.0.2.50"))]);
    let err = b.push(other()).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    assert_eq!(journal_state(journal.as_ref()).await.last_serial, 101);
    // b applied a's batch while handling the conflict, so the retry goes through.
    assert_eq!(zone_lines(&b), zone_lines(&a));
    assert_eq!(b.push(other()).await.unwrap().serial, 102);
}

#[tokio::test]
async fn a_cancelled_push_is_either_fully_applied_or_not_at_all() {
    let journal = MemoryJournal::new();
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    for i in 0..20 {
        // Dropped at its first await: the journaling task runs on regardless.
        let push = store.push(numbered(i));
        let _ = tokio::time::timeout(Duration::ZERO, push).await;
    }
    // Pushes that started finish; memory and journal agree.
    for _ in 0..100 {
        if serial(&store) == journal_state(journal.as_ref()).await.last_serial {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state = journal_state(journal.as_ref()).await;
    assert_eq!(serial(&store), state.last_serial);
    assert_eq!(u64::from(serial(&store) - 100), state.entries);
}

#[tokio::test]
async fn journal_contract_holds_for_redb_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbJournal::open(dir.path().join("j.redb")).unwrap();
    let journals: [Arc<dyn Journal>; 2] = [redb.clone(), MemoryJournal::new()];
    for journal in journals {
        let store = store_with(StoreConfig::default(), ZONE_TEXT);
        store
            .attach_journal(journal.clone(), JournalOptions::default())
            .await
            .unwrap();
        for i in 0..10 {
            store.push(numbered(i)).await.unwrap();
        }
        use zone_server::journal::ReadAfter;
        let page = journal.read_after(ZONE, 103, 4).await.unwrap();
        let ReadAfter::Entries(entries) = page else {
            panic!("{page:?}")
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
        // Appending at a stale serial is a conflict and writes nothing.
        let stale = entries[0].clone();
        let err = journal.append(stale, 103).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted);
        assert_eq!(journal_state(journal.as_ref()).await.entries, 10);
        journal
            .compact(store.snapshot(ZONE).unwrap(), 108)
            .await
            .unwrap();
        assert!(matches!(
            journal.read_after(ZONE, 107, 4).await.unwrap(),
            ReadAfter::Compacted { oldest_after: 108 }
        ));
        let snapshot = journal.load_snapshot(ZONE).await.unwrap().unwrap();
        assert_eq!(snapshot.serial, 110);
        assert_eq!(snapshot.records.len(), store.snapshot(ZONE).unwrap().len());
    }
    redb.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_the_zone_right_change_nothing_over_h2_and_h3() {
    use grpc_h3::{Endpoint, Server, ServerTls, Transport};
    use tokio_stream::wrappers::ReceiverStream;
    use zone_proto::zone::v1::sync_message::Kind;
    use zone_proto::zone::v1::zones_client::ZonesClient;
    use zone_server::auth::{AuthLayer, Users};

    const OTHER: &str = "other.test.";
    let store = store_with(StoreConfig::default(), ZONE_TEXT);
    store
        .insert_zone_text(OTHER, &ZONE_TEXT.replace("example.test.", OTHER))
        .unwrap();
    let journal = MemoryJournal::new();
    store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await
        .unwrap();
    let mut users = Users::new();
    users
        .add("edge", b"pw", &["zone.v1.Zones/*"], Some(&[OTHER]))
        .unwrap();
    let certs = dev_certs::DevCerts::generate().unwrap();
    let bound = Server::builder()
        .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::Both)
        .layer(AuthLayer::new(users))
        .add_service(zone_server::zones::zones_server(store.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h2_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let state = journal_state(journal.as_ref()).await;
    let lines = zone_lines(&store);

    for transport in [Transport::H2, Transport::H3] {
        let channel = Endpoint::new(format!("https://{addr}"))
            .unwrap()
            .ca_certificate_pem(&certs.ca_pem)
            .unwrap()
            .server_name("localhost")
            .transport(transport)
            .connect()
            .await
            .unwrap();
        // base64("edge:pw")
        let auth: tonic::metadata::MetadataValue<_> = "Basic ZWRnZTpwdw==".parse().unwrap();
        let mut client = ZonesClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", auth.clone());
            Ok(r)
        });
        let err = client
            .push_changes(futures::stream::iter([numbered(0)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{transport}: {err:?}");

        let subscribe = |zone: &str| pb::SyncMessage {
            kind: Some(Kind::Subscribe(pb::Subscribe {
                zones: vec![pb::ZoneCursor {
                    zone: zone.into(),
                    serial: 0,
                }],
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(subscribe(ZONE)).await.unwrap();
        let mut stream = client
            .sync(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let err = stream.message().await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{transport}: {err:?}");

        // The zone it has the right to works.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(subscribe(OTHER)).await.unwrap();
        let mut stream = client
            .sync(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(matches!(first.kind, Some(Kind::Snapshot(ref s)) if s.zone == OTHER));
    }
    assert_eq!(journal_state(journal.as_ref()).await, state);
    assert_eq!(zone_lines(&store), lines);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

//! The zone store through its public API: loading, lookups, atomic batches, history, followers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tonic::Code;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_server::zones::{
    StoreConfig, StoreError, ZoneChanges, ZoneEvent, ZoneStore, synthetic_zone,
};

const ZONE: &str = "example.test.";
const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
    @ NS ns1\n\
    ns1 A 192.0.2.53\n\
    www A 192.0.2.1\n\
    _sip._tcp SRV 10 5 5060 ns1\n";

fn store_with(config: StoreConfig) -> ZoneStore {
    let store = ZoneStore::with_config(config);
    store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
    store
}

fn store() -> ZoneStore {
    store_with(StoreConfig::default())
}

fn rec(name: &str, rtype: &str, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.into(),
        r#type: rtype.into(),
        class: String::new(),
        ttl: 300,
        rdata: rdata.into(),
    }
}

fn create(record: pb::Record) -> pb::Change {
    pb::Change {
        op: Op::Create.into(),
        record: Some(record),
        previous: None,
    }
}

fn delete(record: pb::Record) -> pb::Change {
    pb::Change {
        op: Op::Delete.into(),
        record: Some(record),
        previous: None,
    }
}

fn edit(previous: pb::Record, record: pb::Record) -> pb::Change {
    pb::Change {
        op: Op::Edit.into(),
        record: Some(record),
        previous: Some(previous),
    }
}

fn batch(changes: Vec<pb::Change>) -> pb::ChangeBatch {
    pb::ChangeBatch {
        zone: ZONE.into(),
        changes,
        expected_serial: None,
    }
}

fn query(name: &str, rtype: &str) -> pb::RecordQuery {
    pb::RecordQuery {
        zone: ZONE.into(),
        name: name.into(),
        r#type: rtype.into(),
    }
}

/// Every record as one comparable line.
fn lines<'a>(records: impl IntoIterator<Item = &'a pb::Record>) -> BTreeSet<String> {
    records
        .into_iter()
        .map(|r| format!("{} {} {} {} {}", r.name, r.ttl, r.class, r.r#type, r.rdata))
        .collect()
}

fn zone_lines(store: &ZoneStore) -> BTreeSet<String> {
    let records: Vec<_> = store.snapshot(ZONE).unwrap().records().collect();
    lines(&records)
}

fn serial(store: &ZoneStore) -> u32 {
    store.zone(ZONE).unwrap().serial
}

#[test]
fn example_zones_load_with_origin_from_origin_directive_or_file_stem() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("zones");
    let store = ZoneStore::new();
    let loaded = store.load_dir(&dir).unwrap();
    let names: Vec<_> = loaded.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(
        names,
        ["2.0.192.in-addr.arpa.", "example.com.", "example.org."]
    );
    let org = store.zone("example.org").unwrap();
    assert_eq!(org.serial, 2024010101);

    let www = store
        .lookup(&pb::RecordQuery {
            zone: "example.com".into(),
            name: "WWW".into(),
            r#type: String::new(),
        })
        .unwrap();
    assert_eq!(
        lines(&www.records),
        BTreeSet::from(["www.example.com. 300 IN CNAME example.com.".to_owned()])
    );
    assert_eq!(www.serial, 2024060101);

    let ptr = store
        .lookup(&pb::RecordQuery {
            zone: "2.0.192.in-addr.arpa.".into(),
            name: "25".into(),
            r#type: "ptr".into(),
        })
        .unwrap();
    assert_eq!(ptr.records[0].rdata, "mail.example.com.");

    let snapshot = store.snapshot("example.com.").unwrap();
    let first = snapshot.records().next().unwrap();
    assert_eq!(
        (first.name.as_str(), first.r#type.as_str()),
        ("example.com.", "SOA")
    );
    assert_eq!(
        first.rdata,
        "ns1.example.com. hostmaster.example.com. 2024060101 7200 900 1209600 300"
    );
}

#[test]
fn zone_file_errors_name_file_and_line_and_load_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.test.zone"),
        ZONE_TEXT.replace("example.test.", "a.test."),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.test.zone"),
        "$TTL 60\n@ SOA ns1 hm 1 2 3 4 5\nwww A 192.0.2.1\nbad A 192.0.2.300\n",
    )
    .unwrap();
    let store = ZoneStore::new();
    let err = store.load_dir(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("b.test.zone:4:"), "{message}");
    assert!(message.contains("192.0.2.300"), "{message}");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(store.zones().is_empty(), "a failed load must add no zone");

    let err = ZoneStore::new()
        .insert_zone_text("x.test.", "www 60 A 192.0.2.1\n")
        .unwrap_err();
    assert!(err.to_string().contains("no SOA"), "{err}");
}

#[test]
fn lookup_distinguishes_nxdomain_from_nodata() {
    let store = store();
    // NODATA: the name exists, the type does not.
    assert!(
        store
            .lookup(&query("www", "AAAA"))
            .unwrap()
            .records
            .is_empty()
    );
    // Empty non-terminal: `_tcp` exists only as the parent of `_sip._tcp`.
    assert!(store.lookup(&query("_tcp", "")).unwrap().records.is_empty());
    assert_eq!(
        store.lookup(&query("nope", "")).unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        store
            .lookup(&query("www.other.test.", ""))
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        store.lookup(&query("www", "NOPE")).unwrap_err().code(),
        Code::InvalidArgument
    );
    let all = store.lookup(&query("@", "")).unwrap();
    let types: Vec<_> = all.records.iter().map(|r| r.r#type.as_str()).collect();
    assert_eq!(types, ["SOA", "NS"]);
}

#[test]
fn applied_batch_bumps_serial_and_soa_and_is_normalized() {
    let store = store();
    let applied = store
        .apply(&batch(vec![
            create(rec("mail", "A", "192.0.2.25")),
            edit(
                rec("www", "A", "192.0.2.1"),
                pb::Record {
                    ttl: 60,
                    ..rec("WWW.example.test.", "a", "192.0.2.2")
                },
            ),
            delete(pb::Record {
                ttl: 0,
                ..rec("_sip._tcp", "SRV", "10 5 5060 ns1.example.test.")
            }),
        ]))
        .unwrap();
    assert_eq!((applied.serial, applied.changes), (101, 3));
    assert_eq!(serial(&store), 101);

    let soa = store.lookup(&query("@", "SOA")).unwrap();
    assert_eq!(
        soa.records[0].rdata,
        "ns1.example.test. hostmaster.example.test. 101 7200 900 1209600 300"
    );
    let www = store.lookup(&query("www", "")).unwrap();
    assert_eq!(
        lines(&www.records),
        BTreeSet::from(["www.example.test. 60 IN A 192.0.2.2".to_owned()])
    );
    assert_eq!(
        store.lookup(&query("_sip._tcp", "")).unwrap_err().code(),
        Code::NotFound
    );

    let ZoneChanges::Incremental(batches) = store.changes_since(ZONE, 100).unwrap() else {
        panic!("expected incremental changes");
    };
    let published = batches[0].changes();
    // The delete carries the stored TTL; the SOA serial update is the last change.
    assert_eq!(published[2].record.as_ref().unwrap().ttl, 300);
    assert_eq!(published.len(), 4);
    assert_eq!(published[3].op, i32::from(Op::Edit));
    assert!(
        published[3]
            .record
            .as_ref()
            .unwrap()
            .rdata
            .contains(" 101 ")
    );
}

#[test]
fn a_failing_change_leaves_the_zone_untouched() {
    let store = store();
    let before = zone_lines(&store);
    let failing = [
        // Second change does not parse.
        (
            vec![
                create(rec("a", "A", "192.0.2.7")),
                create(rec("b", "A", "not-an-address")),
            ],
            Code::InvalidArgument,
        ),
        // Second change deletes a missing record (found only while applying).
        (
            vec![
                create(rec("a", "A", "192.0.2.7")),
                delete(rec("ghost", "A", "192.0.2.9")),
            ],
            Code::FailedPrecondition,
        ),
        // Third change duplicates the first: both were applied before the failure.
        (
            vec![
                create(rec("a", "A", "192.0.2.7")),
                edit(rec("www", "A", "192.0.2.1"), rec("www", "A", "192.0.2.5")),
                create(rec("a", "A", "192.0.2.7")),
            ],
            Code::AlreadyExists,
        ),
    ];
    for (changes, code) in failing {
        let err = store.apply(&batch(changes)).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(serial(&store), 100);
        assert_eq!(zone_lines(&store), before);
    }
    let changes = store.changes_since(ZONE, 100).unwrap();
    assert!(matches!(changes, ZoneChanges::Incremental(b) if b.is_empty()));
}

#[test]
fn every_store_error_maps_to_its_status_code() {
    let store = store();
    let soa = store.lookup(&query("@", "SOA")).unwrap().records.remove(0);
    let cases: Vec<(StoreError, Code)> = vec![
        (
            store
                .apply(&pb::ChangeBatch {
                    zone: "nope.test.".into(),
                    ..batch(vec![])
                })
                .unwrap_err(),
            Code::NotFound,
        ),
        (
            store.apply(&batch(vec![])).unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store
                .apply(&batch(vec![pb::Change {
                    op: Op::Unspecified.into(),
                    record: Some(rec("a", "A", "192.0.2.1")),
                    previous: None,
                }]))
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store
                .apply(&batch(vec![pb::Change {
                    op: 42,
                    ..create(rec("a", "A", "192.0.2.1"))
                }]))
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store
                .apply(&batch(vec![create(rec("a", "A", "192.0.2.1 extra"))]))
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store
                .apply(&batch(vec![create(pb::Record {
                    class: "CH".into(),
                    ..rec("a", "A", "192.0.2.1")
                })]))
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store
                .apply(&batch(vec![create(rec("www", "A", "192.0.2.1"))]))
                .unwrap_err(),
            Code::AlreadyExists,
        ),
        (
            store
                .apply(&batch(vec![delete(rec("www", "A", "192.0.2.99"))]))
                .unwrap_err(),
            Code::FailedPrecondition,
        ),
        (
            store
                .apply(&batch(vec![edit(
                    rec("www", "A", "192.0.2.99"),
                    rec("www", "A", "192.0.2.1"),
                )]))
                .unwrap_err(),
            Code::FailedPrecondition,
        ),
        (
            store.apply(&batch(vec![delete(soa.clone())])).unwrap_err(),
            Code::FailedPrecondition,
        ),
        (
            store
                .apply(&batch(vec![create(pb::Record {
                    rdata: "a. b. 1 2 3 4 5".into(),
                    ..soa.clone()
                })]))
                .unwrap_err(),
            Code::FailedPrecondition,
        ),
        (
            store
                .apply(&pb::ChangeBatch {
                    expected_serial: Some(7),
                    ..batch(vec![create(rec("a", "A", "192.0.2.1"))])
                })
                .unwrap_err(),
            Code::Aborted,
        ),
        (
            store.changes_since(ZONE, 101).unwrap_err(),
            Code::OutOfRange,
        ),
        (
            store.lookup(&query("nope", "")).unwrap_err(),
            Code::NotFound,
        ),
        (
            store.insert_zone_text(ZONE, ZONE_TEXT).unwrap_err(),
            Code::AlreadyExists,
        ),
        (
            store
                .insert_zone_text("y.test.", "@ 60 SOA a. b. 1 2 3 4\n")
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            store.load_dir("/nonexistent/zones-dir").unwrap_err(),
            Code::Internal,
        ),
    ];
    for (err, code) in cases {
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(!status.message().is_empty());
    }
    assert_eq!(serial(&store), 100, "no failed batch may change the zone");
}

#[test]
fn expected_serial_guards_concurrent_edits() {
    let store = store();
    let guarded = |expected| pb::ChangeBatch {
        expected_serial: Some(expected),
        ..batch(vec![create(rec(&format!("h{expected}"), "A", "192.0.2.1"))])
    };
    assert_eq!(store.apply(&guarded(100)).unwrap().serial, 101);
    assert_eq!(
        store.apply(&guarded(100)).unwrap_err().code(),
        Code::Aborted
    );
    assert_eq!(store.apply(&guarded(101)).unwrap().serial, 102);
}

#[test]
fn history_serves_incremental_transfers_until_it_is_trimmed() {
    let store = store_with(StoreConfig {
        history_batches: 3,
        ..StoreConfig::default()
    });
    for i in 0..5 {
        store
            .apply(&batch(vec![create(rec(
                &format!("h{i}"),
                "A",
                "192.0.2.1",
            ))]))
            .unwrap();
    }
    assert_eq!(serial(&store), 105);
    let ZoneChanges::Incremental(batches) = store.changes_since(ZONE, 103).unwrap() else {
        panic!("expected incremental changes");
    };
    let serials: Vec<_> = batches.iter().map(|b| b.serial()).collect();
    assert_eq!(serials, [104, 105]);
    let ZoneChanges::Incremental(batches) = store.changes_since(ZONE, 102).unwrap() else {
        panic!("expected incremental changes");
    };
    assert_eq!(batches.len(), 3);
    // 101 is gone from a history of 3 batches: the whole zone instead.
    let ZoneChanges::Full(snapshot) = store.changes_since(ZONE, 101).unwrap() else {
        panic!("expected a full transfer");
    };
    assert_eq!(snapshot.serial(), 105);
    assert_eq!(snapshot.len(), 5 + 5);
}

#[test]
fn snapshots_are_immutable_and_batched_in_order() {
    let store = store();
    let before = store.snapshot(ZONE).unwrap();
    store
        .apply(&batch(vec![create(rec("new", "A", "192.0.2.3"))]))
        .unwrap();
    let after = store.snapshot(ZONE).unwrap();
    assert_eq!((before.serial(), before.len()), (100, 5));
    assert_eq!((after.serial(), after.len()), (101, 6));
    assert!(!before.records().any(|r| r.name.starts_with("new.")));

    let batches: Vec<_> = after.batches(4).collect();
    let sizes: Vec<_> = batches.iter().map(|b| b.records.len()).collect();
    let last: Vec<_> = batches.iter().map(|b| b.last).collect();
    assert_eq!(sizes, [4, 2]);
    assert_eq!(last, [false, true]);
    assert!(batches.iter().all(|b| b.serial == 101 && b.zone == ZONE));
    let names: Vec<_> = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| r.name.as_str())
        .collect();
    // DNS canonical order: apex first, then by labels from the root.
    assert_eq!(
        names,
        [
            "example.test.",
            "example.test.",
            "_sip._tcp.example.test.",
            "new.example.test.",
            "ns1.example.test.",
            "www.example.test."
        ]
    );
    assert_eq!(after.batches(6).count(), 1);
}

/// Applies follower events to a replica, checking each update continues the previous serial.
#[derive(Default)]
struct Replica {
    serial: u32,
    records: BTreeSet<String>,
    snapshots: usize,
    serials: Vec<u32>,
}

impl Replica {
    fn apply(&mut self, event: ZoneEvent) {
        match event {
            ZoneEvent::Snapshot(snapshot) => {
                self.records = lines(&snapshot.records().collect::<Vec<_>>());
                self.serial = snapshot.serial();
                self.snapshots += 1;
            }
            ZoneEvent::Update(update) => {
                assert_eq!(update.serial(), self.serial + 1, "gap or duplicate");
                for change in update.changes() {
                    let line = |r: &Option<pb::Record>| lines(r.iter()).pop_first().unwrap();
                    match Op::try_from(change.op).unwrap() {
                        Op::Create => assert!(self.records.insert(line(&change.record))),
                        Op::Delete => assert!(self.records.remove(&line(&change.record))),
                        Op::Edit => {
                            assert!(self.records.remove(&line(&change.previous)));
                            assert!(self.records.insert(line(&change.record)));
                        }
                        Op::Unspecified => panic!("unspecified op published"),
                    }
                }
                self.serial = update.serial();
            }
            _ => panic!("unknown event"),
        }
        self.serials.push(self.serial);
    }
}

async fn follow_until(
    follower: &mut zone_server::zones::ZoneFollower,
    replica: &mut Replica,
    serial: u32,
) {
    while replica.serial < serial {
        let event = tokio::time::timeout(Duration::from_secs(5), follower.next())
            .await
            .expect("follower stalled")
            .expect("store closed");
        replica.apply(event);
    }
}

#[tokio::test]
async fn lagging_follower_catches_up_from_history_without_gaps() {
    let store = store_with(StoreConfig {
        broadcast_capacity: 4,
        ..StoreConfig::default()
    });
    let mut follower = store.follow([(ZONE, 100)]).unwrap();
    let mut replica = Replica {
        serial: 100,
        records: zone_lines(&store),
        ..Replica::default()
    };
    // 50 batches while the follower does not read: the broadcast (capacity 4) overflows.
    for i in 0..50 {
        store
            .apply(&batch(vec![create(rec(
                &format!("h{i}"),
                "A",
                "192.0.2.1",
            ))]))
            .unwrap();
    }
    follow_until(&mut follower, &mut replica, 150).await;
    assert_eq!(replica.serials, (101..=150).collect::<Vec<_>>());
    assert_eq!(replica.snapshots, 0);
    assert_eq!(replica.records, zone_lines(&store));

    // Live updates keep flowing afterwards.
    store
        .apply(&batch(vec![delete(rec("h0", "A", "192.0.2.1"))]))
        .unwrap();
    follow_until(&mut follower, &mut replica, 151).await;
    assert_eq!(replica.records, zone_lines(&store));
}

#[tokio::test]
async fn follower_beyond_history_gets_a_fresh_snapshot() {
    let store = store_with(StoreConfig {
        broadcast_capacity: 2,
        history_batches: 5,
        ..StoreConfig::default()
    });
    let mut follower = store.follow([(ZONE, 100)]).unwrap();
    let mut replica = Replica {
        serial: 100,
        records: zone_lines(&store),
        ..Replica::default()
    };
    for i in 0..20 {
        store
            .apply(&batch(vec![create(rec(
                &format!("h{i}"),
                "A",
                "192.0.2.1",
            ))]))
            .unwrap();
    }
    follow_until(&mut follower, &mut replica, 120).await;
    assert_eq!(replica.snapshots, 1);
    assert_eq!(replica.serials, [120]);
    assert_eq!(replica.records, zone_lines(&store));
}

#[tokio::test]
async fn follower_from_zero_or_ahead_starts_with_a_snapshot() {
    let store = store();
    store
        .apply(&batch(vec![create(rec("a", "A", "192.0.2.1"))]))
        .unwrap();
    for start in [0, 500] {
        let mut follower = store.follow([(ZONE, start)]).unwrap();
        let mut replica = Replica::default();
        follow_until(&mut follower, &mut replica, 101).await;
        assert_eq!((replica.snapshots, replica.serial), (1, 101));
        assert_eq!(replica.records, zone_lines(&store));
    }
    assert_eq!(
        store
            .follow([(ZONE, 0), ("Example.Test", 0)])
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        store.follow([("nope.test.", 0)]).unwrap_err().code(),
        Code::NotFound
    );
}

#[test]
fn synthetic_zone_parses_back_with_the_requested_record_count() {
    for count in [0, 2, 3, 4, 1000, 25_000] {
        let text = synthetic_zone("bench.test", count, 42);
        let store = ZoneStore::new();
        let summary = store.insert_zone_text("bench.test.", &text).unwrap();
        assert_eq!(summary.records, count.max(2), "count {count}");
    }
    assert_eq!(
        synthetic_zone("bench.test", 500, 1),
        synthetic_zone("bench.test.", 500, 1)
    );
    assert_ne!(
        synthetic_zone("bench.test", 500, 1),
        synthetic_zone("bench.test", 500, 2)
    );
    // The mix has every advertised type.
    let text = synthetic_zone("bench.test", 2000, 9);
    let store = ZoneStore::new();
    store.insert_zone_text("bench.test", &text).unwrap();
    let types: BTreeSet<_> = store
        .snapshot("bench.test")
        .unwrap()
        .records()
        .map(|r| r.r#type)
        .collect();
    let want: BTreeSet<_> = ["A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT"]
        .map(String::from)
        .into();
    assert_eq!(types, want);
}

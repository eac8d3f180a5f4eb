//! Property tests of the zone store's parsers: master files (RFC 1035 §5.1) through
//! `ZoneStore::insert_zone_text`, and change batches through `ZoneStore::apply` and the journaled
//! `ZoneStore::push`, checked against a reference model of the batch semantics.
//!
//! Case counts: `PROPTEST_CASES` (default 256; `scripts/fuzz.sh` runs many more).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_server::journal::{JournalOptions, MemoryJournal};
use zone_server::zones::{StoreError, ZoneRecord, ZoneStore};

const ORIGIN: &str = "fuzz.test.";

use test_support::bounded_proptest::{check, parser_config};

/// A record as the store shows it: (name, type, rdata) → ttl.
type Records = BTreeMap<(String, String, String), u32>;

fn records_of(store: &ZoneStore) -> (u32, Records) {
    let snapshot = store.snapshot(ORIGIN).unwrap();
    let records = snapshot
        .records()
        .map(|r| ((r.name, r.r#type, r.rdata), r.ttl))
        .collect();
    (snapshot.serial(), records)
}

// ---------------------------------------------------------------------------------------------
// Master files.

/// A DNS label, lower case (the text may shout it; the store lower-cases).
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?"
}

#[derive(Debug, Clone)]
enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Ns(String),
    Srv(u16, u16, u16, String),
    Txt(Vec<Vec<u8>>),
}

impl Rdata {
    fn rtype(&self) -> &'static str {
        match self {
            Rdata::A(_) => "A",
            Rdata::Aaaa(_) => "AAAA",
            Rdata::Mx(..) => "MX",
            Rdata::Ns(_) => "NS",
            Rdata::Srv(..) => "SRV",
            Rdata::Txt(_) => "TXT",
        }
    }

    /// As written in the file: targets relative to the origin, character-strings escaped.
    fn text(&self, shout: bool) -> String {
        let name = |l: &str| {
            if shout {
                l.to_uppercase()
            } else {
                l.to_owned()
            }
        };
        match self {
            Rdata::A(a) => a.to_string(),
            Rdata::Aaaa(a) => a.to_string(),
            Rdata::Mx(p, t) => format!("{p} {}", name(t)),
            Rdata::Ns(t) => name(t),
            Rdata::Srv(p, w, port, t) => format!("{p} {w} {port} {}.{ORIGIN}", name(t)),
            Rdata::Txt(strings) => strings
                .iter()
                .map(|s| {
                    let mut out = String::from("\"");
                    for &b in s {
                        if b.is_ascii_alphanumeric() {
                            out.push(char::from(b));
                        } else {
                            out.push_str(&format!("\\{b:03}"));
                        }
                    }
                    out.push('"');
                    out
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The canonical presentation form the store keeps.
    fn canonical(&self) -> String {
        match self {
            Rdata::A(a) => a.to_string(),
            Rdata::Aaaa(a) => a.to_string(),
            Rdata::Mx(p, t) => format!("{p} {t}.{ORIGIN}"),
            Rdata::Ns(t) => format!("{t}.{ORIGIN}"),
            Rdata::Srv(p, w, port, t) => format!("{p} {w} {port} {t}.{ORIGIN}"),
            Rdata::Txt(strings) => strings
                .iter()
                .map(|s| {
                    let mut out = String::from("\"");
                    for &b in s {
                        match b {
                            b'"' | b'\\' => {
                                out.push('\\');
                                out.push(char::from(b));
                            }
                            0x20..=0x7e => out.push(char::from(b)),
                            _ => out.push_str(&format!("\\{b:03}")),
                        }
                    }
                    out.push('"');
                    out
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn rdata() -> impl Strategy<Value = Rdata> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Rdata::A(a.into())),
        any::<[u8; 16]>().prop_map(|a| Rdata::Aaaa(a.into())),
        (any::<u16>(), label()).prop_map(|(p, t)| Rdata::Mx(p, t)),
        label().prop_map(Rdata::Ns),
        (any::<u16>(), any::<u16>(), any::<u16>(), label())
            .prop_map(|(p, w, port, t)| Rdata::Srv(p, w, port, t)),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..4)
            .prop_map(Rdata::Txt),
    ]
}

#[derive(Debug, Clone)]
enum Owner {
    Apex,
    Relative(String),
    Absolute(String),
    /// A leading blank: the previous record's owner.
    Inherit,
}

#[derive(Debug, Clone)]
struct GenRecord {
    owner: Owner,
    /// Explicit TTL, written as seconds or as hours.
    ttl: Option<(u32, bool)>,
    class_first: Option<bool>,
    shout: bool,
    comment: bool,
    rdata: Rdata,
}

fn gen_record() -> impl Strategy<Value = GenRecord> {
    let owner = prop_oneof![
        1 => Just(Owner::Apex),
        4 => label().prop_map(Owner::Relative),
        2 => label().prop_map(Owner::Absolute),
        2 => Just(Owner::Inherit),
    ];
    let ttl = proptest::option::of(prop_oneof![
        (0u32..=i32::MAX as u32).prop_map(|t| (t, false)),
        (0u32..1000).prop_map(|h| (h, true)),
    ]);
    (
        owner,
        ttl,
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        rdata(),
    )
        .prop_map(
            |(owner, ttl, class_first, shout, comment, rdata)| GenRecord {
                owner,
                ttl,
                class_first,
                shout,
                comment,
                rdata,
            },
        )
}

#[derive(Debug, Clone)]
struct GenZone {
    default_ttl: u32,
    soa_serial: u32,
    soa_timers: [u32; 4],
    soa_in_parens: bool,
    records: Vec<GenRecord>,
}

fn gen_zone() -> impl Strategy<Value = GenZone> {
    (
        0u32..100_000,
        any::<u32>(),
        any::<[u16; 4]>(),
        any::<bool>(),
        proptest::collection::vec(gen_record(), 0..12),
    )
        .prop_map(
            |(default_ttl, soa_serial, timers, soa_in_parens, records)| GenZone {
                default_ttl,
                soa_serial,
                soa_timers: timers.map(u32::from),
                soa_in_parens,
                records,
            },
        )
}

impl GenZone {
    /// The zone file text and the records it must load as.
    fn render(&self) -> (String, Records) {
        let mut text = format!("$ORIGIN {ORIGIN}\n$TTL {}\n", self.default_ttl);
        let [r, t, e, m] = self.soa_timers;
        let soa_rdata = if self.soa_in_parens {
            format!(
                "ns1 hostmaster (\n  {} ; serial\n  {r} {t}\n  {e} {m} )",
                self.soa_serial
            )
        } else {
            format!("ns1 hostmaster {} {r} {t} {e} {m}", self.soa_serial)
        };
        text.push_str(&format!("@ IN SOA {soa_rdata}\n"));
        let mut want = Records::new();
        want.insert(
            (
                ORIGIN.to_owned(),
                "SOA".to_owned(),
                format!(
                    "ns1.{ORIGIN} hostmaster.{ORIGIN} {} {r} {t} {e} {m}",
                    self.soa_serial
                ),
            ),
            self.default_ttl,
        );
        let mut last_owner = ORIGIN.to_owned();
        for rec in &self.records {
            let shout = |l: &str| {
                if rec.shout {
                    l.to_uppercase()
                } else {
                    l.to_owned()
                }
            };
            let (owner_text, owner) = match &rec.owner {
                Owner::Apex => ("@".to_owned(), ORIGIN.to_owned()),
                Owner::Relative(l) => (shout(l), format!("{l}.{ORIGIN}")),
                Owner::Absolute(l) => (format!("{}.{ORIGIN}", shout(l)), format!("{l}.{ORIGIN}")),
                Owner::Inherit => ("\t".to_owned(), last_owner.clone()),
            };
            last_owner = owner.clone();
            let ttl_text = rec.ttl.map(|(t, hours)| {
                if hours {
                    format!("{t}h")
                } else {
                    t.to_string()
                }
            });
            let ttl = rec.ttl.map_or(
                self.default_ttl,
                |(t, hours)| if hours { t * 3600 } else { t },
            );
            let mut line = owner_text;
            match (rec.class_first, ttl_text) {
                (Some(true), Some(t)) => line.push_str(&format!(" IN {t}")),
                (Some(false), Some(t)) => line.push_str(&format!(" {t} IN")),
                (Some(_), None) => line.push_str(" in"),
                (None, Some(t)) => line.push_str(&format!(" {t}")),
                (None, None) => {}
            }
            line.push_str(&format!(
                " {} {}",
                rec.rdata.rtype(),
                rec.rdata.text(rec.shout)
            ));
            if rec.comment {
                line.push_str(" ; a comment (with \"quotes\"");
            }
            text.push_str(&line);
            text.push('\n');
            // Duplicates collapse into the first.
            want.entry((owner, rec.rdata.rtype().to_owned(), rec.rdata.canonical()))
                .or_insert(ttl);
        }
        (text, want)
    }
}

#[test]
fn zone_text_never_panics() {
    let text = prop_oneof![
        any::<String>().boxed(),
        proptest::string::string_regex(
            r#"(\$ORIGIN|\$TTL|\$INCLUDE|@|IN|CH|SOA|A|TXT|MX|NS|SRV|CAA|TLSA|www|fuzz\.test\.|[0-9]{1,12}|1h|"|\\|\\2|\\999|\(|\)|;| |\t|\n|\.|:|é){0,40}"#
        )
        .unwrap()
        .boxed(),
        // A valid zone with a few bytes spliced in.
        (gen_zone(), proptest::collection::vec((any::<usize>(), any::<char>()), 1..4))
            .prop_map(|(zone, edits)| {
                let mut text = zone.render().0;
                for (at, c) in edits {
                    let mut at = at % (text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    text.insert(at, c);
                }
                text
            })
            .boxed(),
    ];
    let origin = prop_oneof![
        4 => Just(ORIGIN.to_owned()),
        1 => any::<String>(),
    ];
    check(
        "zone_text_arbitrary",
        parser_config(),
        (origin, text),
        |(origin, text)| {
            let store = ZoneStore::new();
            if store.insert_zone_text(&origin, &text).is_ok() {
                // Whatever loaded is a zone: it has a SOA and can be read back.
                let zone = store.zones().pop().unwrap();
                let snapshot = store.snapshot(&zone.name).unwrap();
                prop_assert_eq!(snapshot.records().filter(|r| r.r#type == "SOA").count(), 1);
            }
            Ok(())
        },
    );
}

#[test]
fn generated_zones_load_exactly_and_round_trip_through_snapshots() {
    check("zone_text_generated", parser_config(), gen_zone(), |zone| {
        let (text, want) = zone.render();
        let store = ZoneStore::new();
        let loaded = store.insert_zone_text(ORIGIN, &text);
        prop_assert!(loaded.is_ok(), "{text}\n{:?}", loaded.err());
        let (serial, got) = records_of(&store);
        prop_assert_eq!(serial, zone.soa_serial);
        prop_assert_eq!(&got, &want, "{}", text);
        // The snapshot, written back as a zone file, loads as the same zone.
        let mut again = String::new();
        for ((name, rtype, rdata), ttl) in &got {
            again.push_str(&format!("{name} {ttl} IN {rtype} {rdata}\n"));
        }
        let copy = ZoneStore::new();
        let reloaded = copy.insert_zone_text(ORIGIN, &again);
        prop_assert!(reloaded.is_ok(), "{again}\n{:?}", reloaded.err());
        prop_assert_eq!(records_of(&copy).1, got);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Change batches against a reference model.

const BASE_ZONE: &str = "$ORIGIN fuzz.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 7 7200 900 1209600 300\n\
    @ NS ns1\n\
    ns1 A 192.0.2.53\n\
    www A 192.0.2.1\n\
    www TXT \"hello\"\n";

/// A record likely to be valid and to collide with the zone's (so deletes and edits can hit).
fn plausible_record() -> impl Strategy<Value = pb::Record> {
    let name = prop_oneof![
        Just("@"),
        Just("www"),
        Just("ns1"),
        Just("new"),
        Just("WWW.Fuzz.Test.")
    ];
    let data = prop_oneof![
        (0u8..4).prop_map(|i| ("A", format!("192.0.2.{i}"))),
        Just(("A", "192.0.2.53".to_owned())),
        Just(("A", "192.0.2.1".to_owned())),
        (0u8..3).prop_map(|i| ("AAAA", format!("2001:db8::{i}"))),
        prop_oneof![Just("\"hello\""), Just("hello"), Just("\"a b\" c")]
            .prop_map(|t| ("TXT", t.to_owned())),
        Just(("NS", "ns1".to_owned())),
        (0u16..3).prop_map(|p| ("MX", format!("{p} mail"))),
        (7u32..10).prop_map(|serial| (
            "SOA",
            format!("ns1 hostmaster {serial} 7200 900 1209600 300")
        )),
    ];
    let ttl = prop_oneof![4 => Just(300u32), 1 => Just(60)];
    (name, data, ttl).prop_map(|(name, (rtype, rdata), ttl)| pb::Record {
        name: name.to_owned(),
        r#type: rtype.to_owned(),
        class: String::new(),
        ttl,
        rdata,
    })
}

/// Anything: bad names, types, classes, TTLs and rdata.
fn wild_record() -> impl Strategy<Value = pb::Record> {
    let name = prop_oneof![
        Just("@".to_owned()),
        Just("www".to_owned()),
        Just("x.other.".to_owned()),
        Just(String::new()),
        label(),
        any::<String>(),
    ];
    let rtype = prop_oneof![
        Just("A".to_owned()),
        Just("a".to_owned()),
        Just("SOA".to_owned()),
        Just("CNAME".to_owned()),
        Just("BOGUS".to_owned()),
        Just(String::new()),
        "[A-Z0-9]{1,8}",
    ];
    let class = prop_oneof![Just(""), Just("IN"), Just("CH"), Just("in")];
    let ttl = prop_oneof![
        Just(300u32),
        Just(i32::MAX as u32),
        Just(i32::MAX as u32 + 1),
        any::<u32>()
    ];
    let rdata = prop_oneof![
        Just("192.0.2.1".to_owned()),
        Just("ns1 hostmaster 9 7200 900 1209600 300".to_owned()),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        proptest::string::string_regex(r#"("|\\|[a-z0-9 ;().\n]){0,12}"#).unwrap(),
        any::<String>(),
    ];
    (name, rtype, class, ttl, rdata).prop_map(|(name, r#type, class, ttl, rdata)| pb::Record {
        name,
        r#type,
        class: class.to_owned(),
        ttl,
        rdata,
    })
}

fn gen_api_record() -> impl Strategy<Value = pb::Record> {
    prop_oneof![10 => plausible_record(), 1 => wild_record()]
}

fn gen_change() -> impl Strategy<Value = pb::Change> {
    let op = prop_oneof![
        8 => Just(Op::Create as i32),
        5 => Just(Op::Delete as i32),
        5 => Just(Op::Edit as i32),
        1 => prop_oneof![Just(Op::Unspecified as i32), any::<i32>()],
    ];
    let record = proptest::option::weighted(0.97, gen_api_record());
    let previous = proptest::option::weighted(0.7, gen_api_record());
    (op, record, previous).prop_map(|(op, record, previous)| pb::Change {
        op,
        record,
        previous,
    })
}

/// How `expected_serial` relates to the zone's serial when the batch is applied.
#[derive(Debug, Clone)]
enum Expect {
    None,
    Current,
    Off(u32),
}

fn gen_batch() -> impl Strategy<Value = (String, Vec<pb::Change>, Expect)> {
    let zone = prop_oneof![
        16 => Just(ORIGIN.to_owned()),
        2 => Just("FUZZ.test".to_owned()),
        1 => Just("other.test.".to_owned()),
        1 => Just(String::new()),
        1 => any::<String>(),
    ];
    let expect = prop_oneof![
        6 => Just(Expect::None),
        3 => Just(Expect::Current),
        1 => (1u32..).prop_map(Expect::Off),
    ];
    (zone, proptest::collection::vec(gen_change(), 0..3), expect)
}

/// The model's key of an API record, or `None` when the store must refuse it.
fn canonical(record: Option<&pb::Record>) -> Option<((String, String, String), u32)> {
    let origin = hickory_origin();
    let parsed = ZoneRecord::parse(record?, &origin).ok()?;
    let r = parsed.to_proto();
    Some(((r.name, r.r#type, r.rdata), r.ttl))
}

fn hickory_origin() -> hickory_proto::rr::Name {
    ORIGIN.parse().unwrap()
}

fn is_soa(key: &(String, String, String)) -> bool {
    key.1 == "SOA"
}

/// The batch semantics, written plainly: `Some(records after)` or `None` when refused.
fn model_apply(
    zone: &str,
    before: &Records,
    serial: u32,
    changes: &[pb::Change],
    expected: Option<u32>,
) -> Option<Records> {
    let key = zone.trim().to_ascii_lowercase();
    if key.trim_end_matches('.') != ORIGIN.trim_end_matches('.') || changes.is_empty() {
        return None;
    }
    if expected.is_some_and(|e| e != serial) {
        return None;
    }
    let mut records = before.clone();
    for change in changes {
        match Op::try_from(change.op).ok()? {
            Op::Unspecified => return None,
            Op::Create => {
                let (k, ttl) = canonical(change.record.as_ref())?;
                // One SOA per zone: a second is refused (EDIT the existing one).
                if records.contains_key(&k) || (is_soa(&k) && records.keys().any(is_soa)) {
                    return None;
                }
                records.insert(k, ttl);
            }
            Op::Delete => {
                let (k, _) = canonical(change.record.as_ref())?;
                if is_soa(&k) {
                    return None;
                }
                records.remove(&k)?;
            }
            Op::Edit => {
                let (prev, _) = canonical(change.previous.as_ref())?;
                let (k, ttl) = canonical(change.record.as_ref())?;
                if is_soa(&prev) != is_soa(&k) {
                    return None;
                }
                records.remove(&prev)?;
                if records.contains_key(&k) {
                    return None;
                }
                records.insert(k, ttl);
            }
        }
    }
    // The new serial is written into the SOA.
    let new_serial = serial.wrapping_add(1);
    let soa = records.keys().find(|k| is_soa(k))?.clone();
    let ttl = records.remove(&soa)?;
    let mut fields: Vec<String> = soa.2.split(' ').map(str::to_owned).collect();
    fields[2] = new_serial.to_string();
    records.insert((soa.0, soa.1, fields.join(" ")), ttl);
    Some(records)
}

/// Applies generated batches one after another (so the zone evolves) and checks each against
/// the model; `durable` goes through a journal and `push`.
fn batches_follow_the_model(name: &str, durable: bool) {
    let (applied_n, refused_n) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let base_serial = prop_oneof![Just(7u32), Just(u32::MAX - 1)];
    check(
        name,
        parser_config(),
        (base_serial, proptest::collection::vec(gen_batch(), 1..6)),
        |(base_serial, batches)| {
            let store = ZoneStore::new();
            let text = BASE_ZONE.replace(" 7 7200", &format!(" {base_serial} 7200"));
            store.insert_zone_text(ORIGIN, &text).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if durable {
                rt.block_on(store.attach_journal(MemoryJournal::new(), JournalOptions::default()))
                    .unwrap();
            }
            for (zone, changes, expect) in batches {
                let (serial, before) = records_of(&store);
                let expected_serial = match expect {
                    Expect::None => None,
                    Expect::Current => Some(serial),
                    Expect::Off(d) => Some(serial.wrapping_add(d)),
                };
                let batch = pb::ChangeBatch {
                    zone: zone.clone(),
                    changes: changes.clone(),
                    expected_serial,
                };
                let mut want = model_apply(&zone, &before, serial, &changes, expected_serial);
                if durable && serial == u32::MAX {
                    // The journal keys batches by serial: no wrap-around on the durable path.
                    want = None;
                }
                let got = if durable {
                    rt.block_on(store.push(batch))
                } else {
                    store.apply(&batch)
                };
                let (serial_after, after) = records_of(&store);
                match (&got, want) {
                    (Ok(applied), Some(want)) => {
                        prop_assert_eq!(applied.serial, serial.wrapping_add(1));
                        prop_assert_eq!(applied.changes, changes.len());
                        prop_assert_eq!(serial_after, applied.serial);
                        prop_assert_eq!(&after, &want);
                        applied_n.fetch_add(1, Ordering::Relaxed);
                    }
                    (Err(e), None) => {
                        prop_assert!(!matches!(e, StoreError::Internal(_)), "internal error: {e}");
                        prop_assert_eq!(serial_after, serial, "refused batch moved the serial");
                        prop_assert_eq!(&after, &before, "refused batch changed the zone");
                        refused_n.fetch_add(1, Ordering::Relaxed);
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "store {got:?} but model {want:?} for {changes:?}"
                        )));
                    }
                }
            }
            Ok(())
        },
    );
    let (applied, refused) = (applied_n.into_inner(), refused_n.into_inner());
    eprintln!("PROPS {name}: {applied} batches applied, {refused} refused, all as the model said");
    // Both outcomes must be exercised, or the comparison proves little.
    assert!(
        applied > 0 && refused > 0,
        "{applied} applied, {refused} refused"
    );
}

#[test]
fn change_batches_apply_exactly_as_the_model_says() {
    batches_follow_the_model("change_batch_apply", false);
}

#[test]
fn journaled_change_batches_push_exactly_as_the_model_says() {
    batches_follow_the_model("change_batch_push", true);
}

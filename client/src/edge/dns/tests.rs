//! Every authoritative case of docs/edge-dns.md with hand-built hickory-proto messages and
//! malformed bytes, through [`answer::respond`] and through a bound [`DnsServer`] on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::sync_message::Kind;

use super::answer::{self, Transport};
use super::{DnsConfig, DnsServer};
use crate::edge::{Edge, EdgeConfig};

const ZONE: &str = "example.com.";
const SOA_RDATA: &str = "ns1.example.com. hostmaster.example.com. 7 7200 900 1209600 300";

fn rec(name: &str, rtype: &str, ttl: u32, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.into(),
        r#type: rtype.into(),
        class: "IN".into(),
        ttl,
        rdata: rdata.into(),
    }
}

/// The zone every case runs against, in the canonical form the server sends.
fn zone_records() -> Vec<pb::Record> {
    let mut records = vec![
        rec(ZONE, "SOA", 3600, SOA_RDATA),
        rec(ZONE, "NS", 3600, "ns1.example.com."),
        rec(ZONE, "MX", 3600, "10 mail.example.com."),
        rec("ns1.example.com.", "A", 3600, "192.0.2.53"),
        rec("mail.example.com.", "A", 3600, "192.0.2.25"),
        rec("www.example.com.", "A", 300, "192.0.2.80"),
        rec("www.example.com.", "A", 300, "192.0.2.81"),
        rec("www.example.com.", "AAAA", 300, "2001:db8::80"),
        rec("alias.example.com.", "CNAME", 120, "www.example.com."),
        rec("chain.example.com.", "CNAME", 60, "alias.example.com."),
        rec("away.example.com.", "CNAME", 60, "www.example.org."),
        rec("dangling.example.com.", "CNAME", 60, "nothing.example.com."),
        rec("loop1.example.com.", "CNAME", 60, "loop2.example.com."),
        rec("loop2.example.com.", "CNAME", 60, "loop1.example.com."),
        rec("*.wild.example.com.", "TXT", 90, "\"wild\""),
        rec("*.wild.example.com.", "A", 90, "192.0.2.90"),
        rec("real.wild.example.com.", "A", 90, "192.0.2.91"),
        rec("x.ent.wild.example.com.", "A", 90, "192.0.2.92"),
        rec("a.b.deep.example.com.", "A", 30, "192.0.2.7"),
        rec("sub.example.com.", "NS", 86400, "ns.sub.example.com."),
        rec("sub.example.com.", "NS", 86400, "ns.other.net."),
        rec("ns.sub.example.com.", "A", 86400, "192.0.2.99"),
        rec("ns.sub.example.com.", "AAAA", 86400, "2001:db8::99"),
    ];
    // About 3 KB of TXT: more than 512 or 1232 bytes, less than 4096.
    for i in 0..30 {
        records.push(rec(
            "big.example.com.",
            "TXT",
            60,
            &format!("\"{i:02}{}\"", "x".repeat(95)),
        ));
    }
    records
}

fn edge() -> Edge {
    let edge = Edge::open(EdgeConfig::new([ZONE, "pending.org."])).unwrap();
    edge.apply(pb::SyncMessage {
        kind: Some(Kind::Snapshot(pb::ZoneSnapshot {
            zone: ZONE.into(),
            serial: 7,
            records: zone_records(),
        })),
    })
    .unwrap();
    edge
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn query(qname: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.queries.push(Query::query(name(qname), qtype));
    message
}

fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.edns = Some(edns);
    message
}

fn ask_bytes(edge: &Edge, bytes: &[u8], transport: Transport) -> Vec<Message> {
    answer::respond(edge, bytes, transport)
        .iter()
        .map(|bytes| Message::from_vec(bytes).unwrap())
        .collect()
}

fn ask(edge: &Edge, message: &Message, transport: Transport) -> Message {
    let mut responses = ask_bytes(edge, &message.to_vec().unwrap(), transport);
    assert_eq!(responses.len(), 1, "{responses:?}");
    let response = responses.remove(0);
    assert_eq!(response.metadata.id, message.metadata.id);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    response
}

fn udp(edge: &Edge, qname: &str, qtype: RecordType) -> Message {
    ask(edge, &query(qname, qtype), Transport::Udp)
}

/// (owner, type, TTL, rdata as text) of a section.
fn rows(records: &[Record]) -> Vec<(String, RecordType, u32, String)> {
    let mut rows: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.name.to_ascii(),
                r.record_type(),
                r.ttl,
                r.data.to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn row(owner: &str, rtype: RecordType, ttl: u32, rdata: &str) -> (String, RecordType, u32, String) {
    (owner.into(), rtype, ttl, rdata.into())
}

/// Asserts that `records` is exactly the one record given.
fn assert_one(records: &[Record], owner: &str, rtype: RecordType, ttl: u32, rdata: &str) {
    assert_eq!(rows(records), [row(owner, rtype, ttl, rdata)]);
}

/// The SOA as a negative answer carries it: TTL min(3600, MINIMUM 300) (RFC 2308 §3).
fn negative_soa() -> (String, RecordType, u32, String) {
    row(ZONE, RecordType::SOA, 300, SOA_RDATA)
}

#[test]
fn answers_are_authoritative_with_the_records_ttls() {
    let edge = edge();
    let response = udp(&edge, "www.example.com.", RecordType::A);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert!(!response.metadata.truncation);
    assert!(response.metadata.recursion_desired, "RD is copied");
    assert!(!response.metadata.recursion_available);
    assert_eq!(
        rows(&response.answers),
        [
            row("www.example.com.", RecordType::A, 300, "192.0.2.80"),
            row("www.example.com.", RecordType::A, 300, "192.0.2.81"),
        ]
    );
    assert!(response.authorities.is_empty());
    let apex = udp(&edge, "EXAMPLE.com.", RecordType::MX);
    assert_one(
        &apex.answers,
        ZONE,
        RecordType::MX,
        3600,
        "10 mail.example.com.",
    );
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let edge = edge();
    let nx = udp(&edge, "absent.example.com.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    assert_eq!(rows(&nx.authorities), [negative_soa()]);

    let nodata = udp(&edge, "www.example.com.", RecordType::MX);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.metadata.authoritative);
    assert!(nodata.answers.is_empty());
    assert_eq!(rows(&nodata.authorities), [negative_soa()]);

    // An empty non-terminal exists: NODATA, not NXDOMAIN (RFC 8020).
    for ent in ["b.deep.example.com.", "deep.example.com."] {
        let response = udp(&edge, ent, RecordType::A);
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{ent}"
        );
        assert_eq!(rows(&response.authorities), [negative_soa()], "{ent}");
    }
}

#[test]
fn in_zone_cnames_are_followed() {
    let edge = edge();
    let response = udp(&edge, "chain.example.com.", RecordType::A);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    let answers: Vec<_> = response
        .answers
        .iter()
        .map(|r| (r.name.to_ascii(), r.record_type(), r.data.to_string()))
        .collect();
    // In chain order, the CNAMEs first.
    assert_eq!(
        answers[..2],
        [
            (
                "chain.example.com.".into(),
                RecordType::CNAME,
                "alias.example.com.".into()
            ),
            (
                "alias.example.com.".into(),
                RecordType::CNAME,
                "www.example.com.".into()
            ),
        ]
    );
    assert_eq!(
        rows(&response.answers[2..]),
        [
            row("www.example.com.", RecordType::A, 300, "192.0.2.80"),
            row("www.example.com.", RecordType::A, 300, "192.0.2.81"),
        ]
    );

    // Asking for the CNAME itself does not follow it.
    let cname = udp(&edge, "alias.example.com.", RecordType::CNAME);
    assert_one(
        &cname.answers,
        "alias.example.com.",
        RecordType::CNAME,
        120,
        "www.example.com.",
    );
    // A target in no zone of ours is left to the resolver.
    let away = udp(&edge, "away.example.com.", RecordType::A);
    assert_eq!(away.metadata.response_code, ResponseCode::NoError);
    assert_eq!(away.answers.len(), 1);
    assert!(away.authorities.is_empty());
    // A target that does not exist: NXDOMAIN after the CNAME (RFC 6604 §3).
    let dangling = udp(&edge, "dangling.example.com.", RecordType::A);
    assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(dangling.answers.len(), 1);
    assert_eq!(rows(&dangling.authorities), [negative_soa()]);
    // A loop ends instead of spinning.
    let looped = udp(&edge, "loop1.example.com.", RecordType::A);
    assert_eq!(looped.answers.len(), 2);
}

#[test]
fn wildcards_synthesise_answers_for_names_that_do_not_exist() {
    let edge = edge();
    let response = udp(&edge, "anything.wild.example.com.", RecordType::TXT);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert_one(
        &response.answers,
        "anything.wild.example.com.",
        RecordType::TXT,
        90,
        "wild",
    );
    // Deeper names too: the closest encloser is wild.example.com. (RFC 4592 §3.3.1).
    let deeper = udp(&edge, "a.b.wild.example.com.", RecordType::A);
    assert_one(
        &deeper.answers,
        "a.b.wild.example.com.",
        RecordType::A,
        90,
        "192.0.2.90",
    );
    // The wildcard's NODATA.
    let nodata = udp(&edge, "anything.wild.example.com.", RecordType::MX);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(rows(&nodata.authorities), [negative_soa()]);
    // An existing name is not synthesised: NODATA for a type it lacks.
    let real = udp(&edge, "real.wild.example.com.", RecordType::TXT);
    assert!(real.answers.is_empty());
    assert_eq!(real.metadata.response_code, ResponseCode::NoError);
    // Below an empty non-terminal the closest encloser is that name, which has no `*` child.
    let blocked = udp(&edge, "y.ent.wild.example.com.", RecordType::A);
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    // The wildcard name itself is an ordinary name.
    let star = udp(&edge, "*.wild.example.com.", RecordType::A);
    assert_eq!(star.answers.len(), 1);
}

#[test]
fn delegations_get_a_referral_with_glue_and_aa_clear() {
    let edge = edge();
    for qname in [
        "www.sub.example.com.",
        "sub.example.com.",
        "ns.sub.example.com.",
    ] {
        let response = udp(&edge, qname, RecordType::A);
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{qname}"
        );
        assert!(!response.metadata.authoritative, "{qname}");
        assert!(response.answers.is_empty(), "{qname}");
        assert_eq!(
            rows(&response.authorities),
            [
                row("sub.example.com.", RecordType::NS, 86400, "ns.other.net."),
                row(
                    "sub.example.com.",
                    RecordType::NS,
                    86400,
                    "ns.sub.example.com."
                ),
            ],
            "{qname}"
        );
        // Glue only for the name server inside the cut.
        assert_eq!(
            rows(&response.additionals),
            [
                row("ns.sub.example.com.", RecordType::A, 86400, "192.0.2.99"),
                row(
                    "ns.sub.example.com.",
                    RecordType::AAAA,
                    86400,
                    "2001:db8::99"
                ),
            ],
            "{qname}"
        );
    }
    // The apex NS is the zone's own, answered with AA.
    let apex = udp(&edge, ZONE, RecordType::NS);
    assert!(apex.metadata.authoritative);
    assert_eq!(apex.answers.len(), 1);
}

#[test]
fn names_outside_the_zones_are_refused_and_pending_zones_fail() {
    let edge = edge();
    for qname in ["www.example.org.", "com.", "."] {
        let response = udp(&edge, qname, RecordType::A);
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::Refused,
            "{qname}"
        );
        assert!(!response.metadata.authoritative);
        assert!(response.answers.is_empty());
    }
    // Kept, but its first snapshot has not arrived.
    let pending = udp(&edge, "www.pending.org.", RecordType::A);
    assert_eq!(pending.metadata.response_code, ResponseCode::ServFail);
    // Class CH is not held.
    let mut chaos = query("www.example.com.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let response = ask(&edge, &chaos, Transport::Udp);
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn edns_payload_size_is_honoured_and_truncation_sends_the_client_to_tcp() {
    let edge = edge();
    // No EDNS: 512 bytes; the ~3 KB RRset does not fit.
    let plain = udp(&edge, "big.example.com.", RecordType::TXT);
    assert!(plain.metadata.truncation);
    assert!(plain.metadata.authoritative);
    assert!(plain.answers.is_empty());
    assert!(plain.edns.is_none());
    assert_eq!(
        plain.queries,
        query("big.example.com.", RecordType::TXT).queries
    );
    // EDNS 1232: still too small, TC=1 and an OPT in the answer (RFC 6891 §6.1.1).
    let small = ask(
        &edge,
        &with_edns(query("big.example.com.", RecordType::TXT), 1232),
        Transport::Udp,
    );
    assert!(small.metadata.truncation);
    let opt = small.edns.as_ref().expect("OPT in the response");
    assert_eq!(opt.max_payload(), answer::MAX_UDP_PAYLOAD);
    // EDNS 4096: whole, over UDP.
    let bytes = answer::respond(
        &edge,
        &with_edns(query("big.example.com.", RecordType::TXT), 4096)
            .to_vec()
            .unwrap(),
        Transport::Udp,
    );
    assert_eq!(bytes.len(), 1);
    assert!(
        bytes[0].len() > 1232 && bytes[0].len() <= 4096,
        "{}",
        bytes[0].len()
    );
    let whole = Message::from_vec(&bytes[0]).unwrap();
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 30);
    // A client size below 512 counts as 512 (RFC 6891 §6.2.5); above ours, as ours.
    let tiny = ask(
        &edge,
        &with_edns(query("www.example.com.", RecordType::A), 100),
        Transport::Udp,
    );
    assert!(!tiny.metadata.truncation);
    assert_eq!(tiny.answers.len(), 2);
    // The same query over TCP: whole, no EDNS needed.
    let tcp = ask(
        &edge,
        &query("big.example.com.", RecordType::TXT),
        Transport::Tcp,
    );
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 30);
}

#[test]
fn any_is_answered_with_one_rrset() {
    let edge = edge();
    let response = udp(&edge, "www.example.com.", RecordType::ANY);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    let types: std::collections::BTreeSet<_> =
        response.answers.iter().map(Record::record_type).collect();
    assert_eq!(types.len(), 1, "{:?}", response.answers);
    // www has A (2 records) and AAAA: one of the two RRsets, whole.
    let count = response.answers.len();
    assert!(
        (types.contains(&RecordType::A) && count == 2)
            || (types.contains(&RecordType::AAAA) && count == 1),
        "{:?}",
        response.answers
    );
    let nx = udp(&edge, "absent.example.com.", RecordType::ANY);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn malformed_queries_get_formerr_and_unknown_opcodes_notimp() {
    let edge = edge();
    let good = query("www.example.com.", RecordType::A).to_vec().unwrap();

    // A header with a question count but no question.
    let header_only = &good[..12];
    let response = ask_bytes(&edge, header_only, Transport::Udp);
    assert_eq!(response.len(), 1);
    assert_eq!(response[0].metadata.response_code, ResponseCode::FormErr);
    assert_eq!(response[0].metadata.id, 4242);

    // A question cut in the middle; a label pointer into nowhere.
    let mut cut = good.clone();
    cut.truncate(good.len() - 3);
    let mut bad_pointer = good[..12].to_vec();
    bad_pointer.extend_from_slice(&[0xc0, 0xff, 0, 1, 0, 1]);
    for bytes in [cut, bad_pointer] {
        let response = ask_bytes(&edge, &bytes, Transport::Udp);
        assert_eq!(response[0].metadata.response_code, ResponseCode::FormErr);
    }

    // No question, and two questions (RFC 9619).
    let mut none = query("www.example.com.", RecordType::A);
    none.queries.clear();
    let mut two = query("www.example.com.", RecordType::A);
    two.queries
        .push(Query::query(name("mail.example.com."), RecordType::A));
    for message in [none, two] {
        let response = ask(&edge, &message, Transport::Udp);
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
    }

    // Two OPT records (RFC 6891 §6.1.1).
    let mut double_opt = with_edns(query("www.example.com.", RecordType::A), 1232)
        .to_vec()
        .unwrap();
    let opt = double_opt[double_opt.len() - 11..].to_vec();
    double_opt.extend_from_slice(&opt);
    double_opt[11] = 2;
    let response = ask_bytes(&edge, &double_opt, Transport::Udp);
    assert_eq!(response[0].metadata.response_code, ResponseCode::FormErr);

    // EDNS version 1: BADVERS (RFC 6891 §6.1.3).
    let mut v1 = with_edns(query("www.example.com.", RecordType::A), 1232);
    v1.edns.as_mut().unwrap().set_version(1);
    let response = ask(&edge, &v1, Transport::Udp);
    // BADVERS is 16, which hickory decodes as BADSIG (the same code, RFC 8945).
    assert_eq!(u16::from(response.metadata.response_code), 16);
    assert_eq!(response.edns.as_ref().map(Edns::version), Some(0));

    // Unknown and unimplemented opcodes: NOTIMP with the question echoed.
    for opcode in [
        OpCode::Status,
        OpCode::Notify,
        OpCode::Update,
        OpCode::Unknown(9),
    ] {
        let mut message = query("www.example.com.", RecordType::A);
        message.metadata.op_code = opcode;
        let response = ask(&edge, &message, Transport::Udp);
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NotImp,
            "{opcode}"
        );
        assert_eq!(response.metadata.op_code, opcode);
    }

    // Too short for a header, or a response: no answer at all.
    assert!(answer::respond(&edge, &good[..5], Transport::Udp).is_empty());
    assert!(answer::respond(&edge, &[], Transport::Tcp).is_empty());
    let mut response = query("www.example.com.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    assert!(answer::respond(&edge, &response.to_vec().unwrap(), Transport::Udp).is_empty());
}

#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    let edge = edge();
    let good = with_edns(query("www.example.com.", RecordType::A), 1232)
        .to_vec()
        .unwrap();
    let config = ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                        flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..6))| {
        let _ = answer::respond(&edge, &bytes, Transport::Udp);
        let _ = answer::respond(&edge, &bytes, Transport::Tcp);
        // Mutations of a valid query reach deeper than random bytes.
        let mut mutated = good.clone();
        for (at, value) in &flips {
            if let Some(byte) = mutated.get_mut(*at) {
                *byte = *value;
            }
        }
        for response in answer::respond(&edge, &mutated, Transport::Udp) {
            prop_assert!(response.len() <= usize::from(answer::MAX_UDP_PAYLOAD));
        }
    });
}

fn soa_record(serial: u32) -> pb::Record {
    rec(
        ZONE,
        "SOA",
        3600,
        &format!("ns1.example.com. hostmaster.example.com. {serial} 7200 900 1209600 300"),
    )
}

/// An update to `serial`: www's second A moves on, a name per serial is created.
fn update(serial: u32) -> pb::SyncMessage {
    let change = |op: Op, record: pb::Record, previous: Option<pb::Record>| pb::Change {
        op: op.into(),
        record: Some(record),
        previous,
    };
    let a = |s: u32| {
        if s == 7 {
            "192.0.2.81".to_owned()
        } else {
            format!("198.51.100.{s}")
        }
    };
    pb::SyncMessage {
        kind: Some(Kind::Update(pb::ZoneUpdate {
            zone: ZONE.into(),
            serial,
            changes: vec![
                change(Op::Edit, soa_record(serial), Some(soa_record(serial - 1))),
                change(
                    Op::Edit,
                    rec("www.example.com.", "A", 300, &a(serial)),
                    Some(rec("www.example.com.", "A", 300, &a(serial - 1))),
                ),
                change(
                    Op::Create,
                    rec(&format!("n{serial}.example.com."), "A", 60, "192.0.2.1"),
                    None,
                ),
            ],
        })),
    }
}

fn ixfr(client_serial: u32) -> Message {
    let mut message = query(ZONE, RecordType::IXFR);
    let soa = SOA::new(
        name("ns1.example.com."),
        name("hostmaster.example.com."),
        client_serial,
        0,
        0,
        0,
        0,
    );
    message
        .authorities
        .push(Record::from_rdata(name(ZONE), 0, RData::SOA(soa)));
    message
}

fn soa_serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

#[test]
fn axfr_sends_the_zone_with_its_soa_first_and_last_over_tcp_only() {
    let edge = edge();
    let messages = ask_bytes(
        &edge,
        &query(ZONE, RecordType::AXFR).to_vec().unwrap(),
        Transport::Tcp,
    );
    assert!(!messages.is_empty());
    let records: Vec<Record> = messages.iter().flat_map(|m| m.answers.clone()).collect();
    for message in &messages {
        assert!(message.metadata.authoritative);
        assert_eq!(message.metadata.id, 4242);
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    }
    assert_eq!(soa_serial(&records[0]), Some(7));
    assert_eq!(soa_serial(&records[records.len() - 1]), Some(7));
    // Every record once in between, with its TTL.
    let expected: Vec<Record> = zone_records()
        .iter()
        .filter_map(|r| super::wire::record(&r.name, &r.r#type, r.ttl, &r.rdata))
        .collect();
    assert_eq!(rows(&records[..records.len() - 1]), rows(&expected));

    // Over UDP: FORMERR (RFC 5936 §4.2); below the apex: NOTAUTH.
    let udp = ask(&edge, &query(ZONE, RecordType::AXFR), Transport::Udp);
    assert_eq!(udp.metadata.response_code, ResponseCode::FormErr);
    let below = ask(
        &edge,
        &query("www.example.com.", RecordType::AXFR),
        Transport::Tcp,
    );
    assert_eq!(below.metadata.response_code, ResponseCode::NotAuth);
}

#[test]
fn large_transfers_span_several_messages() {
    let edge = Edge::open(EdgeConfig::new([ZONE])).unwrap();
    let mut records = vec![soa_record(1)];
    records.extend((0..5000).map(|i| rec(&format!("h{i}.example.com."), "A", 60, "192.0.2.1")));
    edge.apply(pb::SyncMessage {
        kind: Some(Kind::Snapshot(pb::ZoneSnapshot {
            zone: ZONE.into(),
            serial: 1,
            records,
        })),
    })
    .unwrap();
    let bytes = answer::respond(
        &edge,
        &query(ZONE, RecordType::AXFR).to_vec().unwrap(),
        Transport::Tcp,
    );
    assert!(bytes.len() > 2, "{} messages", bytes.len());
    assert!(bytes.iter().all(|b| b.len() <= usize::from(u16::MAX)));
    let total: usize = bytes
        .iter()
        .map(|b| Message::from_vec(b).unwrap().answers.len())
        .sum();
    assert_eq!(total, 5002);
}

#[test]
fn ixfr_sends_the_differences_and_falls_back_to_the_whole_zone() {
    let edge = edge();
    for serial in 8..=10 {
        edge.apply(update(serial)).unwrap();
    }
    let transfer = |client: u32, transport: Transport| -> Vec<Record> {
        ask_bytes(&edge, &ixfr(client).to_vec().unwrap(), transport)
            .iter()
            .flat_map(|m| m.answers.clone())
            .collect()
    };
    // From 8: two differences (RFC 1995 §4), each SOA(old), deleted, SOA(new), added.
    let diff = transfer(8, Transport::Tcp);
    let serials: Vec<Option<u32>> = diff.iter().map(soa_serial).collect();
    assert_eq!(
        serials,
        [
            Some(10),
            Some(8),
            None,
            Some(9),
            None,
            None,
            Some(9),
            None,
            Some(10),
            None,
            None,
            Some(10)
        ]
    );
    assert_one(
        &diff[2..3],
        "www.example.com.",
        RecordType::A,
        300,
        "198.51.100.8",
    );
    assert_eq!(
        rows(&diff[4..6]),
        [
            row("n9.example.com.", RecordType::A, 60, "192.0.2.1"),
            row("www.example.com.", RecordType::A, 300, "198.51.100.9"),
        ]
    );
    // Current: the SOA alone.
    let current = transfer(10, Transport::Tcp);
    assert_eq!(
        current.iter().map(soa_serial).collect::<Vec<_>>(),
        [Some(10)]
    );
    // Older than the history (the copy started at 7 from a snapshot, so 6 is unknown): the
    // whole zone, AXFR-style, in the IXFR answer.
    let full = transfer(6, Transport::Tcp);
    assert_eq!(soa_serial(&full[0]), Some(10));
    assert_eq!(soa_serial(&full[full.len() - 1]), Some(10));
    assert_eq!(full.len(), zone_records().len() + 3 + 1);
    // Over UDP a difference that fits comes whole; the full zone does not and becomes the SOA
    // alone (RFC 1995 §2).
    assert_eq!(transfer(9, Transport::Udp).len(), 7);
    assert_eq!(
        transfer(6, Transport::Udp)
            .iter()
            .map(soa_serial)
            .collect::<Vec<_>>(),
        [Some(10)]
    );
    // An IXFR without the client's SOA is malformed (RFC 1995 §3).
    let bare = ask(&edge, &query(ZONE, RecordType::IXFR), Transport::Tcp);
    assert_eq!(bare.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn a_change_batch_becomes_visible_whole() {
    // Each update moves both of `pair`'s records to the new serial; a query sees both old or
    // both new, never one of each, while updates run on another thread.
    let edge = Edge::open(EdgeConfig::new([ZONE])).unwrap();
    let pair = |s: u32| {
        [
            rec(
                "pair.example.com.",
                "A",
                60,
                &format!("10.0.{}.{}", s / 250, s % 250),
            ),
            rec(
                "pair.example.com.",
                "A",
                60,
                &format!("10.1.{}.{}", s / 250, s % 250),
            ),
        ]
    };
    let mut records = vec![soa_record(1)];
    records.extend(pair(1));
    edge.apply(pb::SyncMessage {
        kind: Some(Kind::Snapshot(pb::ZoneSnapshot {
            zone: ZONE.into(),
            serial: 1,
            records,
        })),
    })
    .unwrap();
    let writer = |edge: Edge| {
        std::thread::spawn(move || {
            for serial in 2..=2000u32 {
                let [old_a, old_b] = pair(serial - 1);
                let [new_a, new_b] = pair(serial);
                let changes = [(new_a, old_a), (new_b, old_b)]
                    .into_iter()
                    .map(|(record, previous)| pb::Change {
                        op: Op::Edit.into(),
                        record: Some(record),
                        previous: Some(previous),
                    })
                    .collect();
                edge.apply(pb::SyncMessage {
                    kind: Some(Kind::Update(pb::ZoneUpdate {
                        zone: ZONE.into(),
                        serial,
                        changes,
                    })),
                })
                .unwrap();
            }
        })
    };
    let message = query("pair.example.com.", RecordType::A).to_vec().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut look = || {
        let responses = ask_bytes(&edge, &message, Transport::Udp);
        let serials: Vec<String> = responses[0]
            .answers
            .iter()
            .map(|r| {
                r.data
                    .to_string()
                    .splitn(3, '.')
                    .nth(2)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(serials.len(), 2, "{:?}", responses[0].answers);
        assert_eq!(serials[0], serials[1], "half-applied batch: {serials:?}");
        seen.insert(serials[0].clone());
    };
    look();
    let writer = writer(edge.clone());
    while !writer.is_finished() {
        look();
    }
    writer.join().unwrap();
    look();
    assert!(seen.len() >= 2, "queries saw only {seen:?}");
}

async fn server(
    edge: &Edge,
    config: DnsConfig,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(edge.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn send_framed(stream: &mut TcpStream, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
}

async fn read_framed(stream: &mut TcpStream) -> Message {
    let mut prefix = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut prefix))
        .await
        .expect("no response")
        .unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

#[tokio::test]
async fn a_tcp_connection_survives_bad_messages_and_carries_many_queries() {
    let edge = edge();
    let (addr, _stop) = server(&edge, DnsConfig::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let good = query("www.example.com.", RecordType::A).to_vec().unwrap();
    // Garbage with a parsable header: FORMERR, and the connection stays.
    let mut garbage = good[..12].to_vec();
    garbage.extend_from_slice(&[0xff; 20]);
    send_framed(&mut stream, &garbage).await;
    assert_eq!(
        read_framed(&mut stream).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // Too short for a header: no answer, still open.
    send_framed(&mut stream, &[1, 2, 3]).await;
    send_framed(&mut stream, &[]).await;
    // Pipelined good queries, answered in order (RFC 7766 §6.2.1.1).
    send_framed(&mut stream, &good).await;
    send_framed(
        &mut stream,
        &query("big.example.com.", RecordType::TXT).to_vec().unwrap(),
    )
    .await;
    let first = read_framed(&mut stream).await;
    assert_eq!(first.answers.len(), 2);
    let second = read_framed(&mut stream).await;
    assert_eq!(second.answers.len(), 30);
    assert!(!second.metadata.truncation);

    // UDP on the same port, truncated for the big RRset.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(
            &query("big.example.com.", RecordType::TXT).to_vec().unwrap(),
            addr,
        )
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(len <= 512);
    assert!(
        Message::from_vec(&buffer[..len])
            .unwrap()
            .metadata
            .truncation
    );
}

#[tokio::test]
async fn tcp_connections_are_bounded_in_number_and_idle_time() {
    let edge = edge();
    let config = DnsConfig {
        max_tcp_connections: 2,
        tcp_idle: Duration::from_millis(300),
        ..DnsConfig::default()
    };
    let (addr, _stop) = server(&edge, config).await;
    let good = query("www.example.com.", RecordType::A).to_vec().unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    send_framed(&mut first, &good).await;
    send_framed(&mut second, &good).await;
    read_framed(&mut first).await;
    read_framed(&mut second).await;
    // A third is closed at once while two are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte))
        .await
        .expect("third connection not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Idle connections are closed after tcp_idle, which frees their slots.
    let read = tokio::time::timeout(Duration::from_secs(2), first.read(&mut byte))
        .await
        .expect("idle connection not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    send_framed(&mut fourth, &good).await;
    assert_eq!(read_framed(&mut fourth).await.answers.len(), 2);
}

//! The sans-IO core of the edge's DNS server: one request's bytes in, the response messages out,
//! answered authoritatively from the zone copies (RFC 1034 §4.3.2, RFC 1035 §4.1).
//!
//! [`respond`] takes the copies under the edge's read lock only while it picks and clones the
//! records, so an answer comes from one serial of its zone (an update is applied under the write
//! lock, whole) and encoding happens outside the lock.

use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::super::copy::ZoneCopy;
use super::super::{Edge, canonical_zone};
use super::wire;

/// UDP payload size this server offers and sends at most (RFC 6891 §6.2.5).
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// Without EDNS a UDP response has at most 512 bytes (RFC 1035 §4.2.1).
const PLAIN_UDP_PAYLOAD: u16 = 512;
/// CNAMEs followed inside a zone before the chain is cut (RFC 1034 §4.3.2 step 3a).
const MAX_CNAME_CHAIN: usize = 8;
/// Bytes of records per AXFR/IXFR message over TCP, well under the 65535 a message may have.
const TRANSFER_CHUNK: usize = 16 * 1024;

/// How a request arrived: it bounds the response size and allows zone transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The response messages to a request (several for a zone transfer over TCP; none for a request
/// that gets no answer: too short to have a header, or itself a response).
pub(crate) fn respond(edge: &Edge, request: &[u8], transport: Transport) -> Vec<Vec<u8>> {
    let request = match parse(request) {
        Ok(request) => request,
        Err(Reject::Drop) => return Vec::new(),
        Err(Reject::Error(message)) => return encode_single(&message, PLAIN_UDP_PAYLOAD),
    };
    let limit = match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => request.edns.as_ref().map_or(PLAIN_UDP_PAYLOAD, |e| {
            e.max_payload().clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        }),
    };
    let plan = {
        let zones = edge.read_zones();
        answer(&zones, &edge.inner.config.zones, &request, transport)
    };
    match plan {
        Plan::Message(message) => encode_single(&message, limit),
        Plan::Transfer { head, records } => encode_transfer(head, records, transport, limit),
    }
}

/// A request that parsed.
struct Request {
    metadata: Metadata,
    query: Query,
    edns: Option<Edns>,
    /// The client's SOA serial of an IXFR request (RFC 1995 §3: in the authority section).
    ixfr_serial: Option<u32>,
}

enum Reject {
    /// Not worth an answer.
    Drop,
    /// FORMERR, NOTIMP or BADVERS, ready to send.
    Error(Box<Message>),
}

fn parse(bytes: &[u8]) -> Result<Request, Reject> {
    // The header first, so that even an unparsable body gets FORMERR with its ID (RFC 1035 §4.1.1).
    let header =
        hickory_proto::op::Header::read(&mut BinDecoder::new(bytes)).map_err(|_| Reject::Drop)?;
    if header.metadata.message_type == MessageType::Response {
        // Answering a response could start a loop between two servers.
        return Err(Reject::Drop);
    }
    let error = |code: ResponseCode, message: Option<&Message>| {
        let mut response = Message::new(0, MessageType::Response, header.metadata.op_code);
        response.metadata = Metadata::response_from_request(&header.metadata);
        response.metadata.response_code = code;
        if let Some(request) = message {
            response.queries.clone_from(&request.queries);
            response.edns = request.edns.as_ref().map(response_edns);
        }
        Reject::Error(Box::new(response))
    };
    let message = Message::from_vec(bytes);
    if header.metadata.op_code != OpCode::Query {
        // RFC 1035 §4.1.1: an opcode this server does not implement.
        return Err(error(ResponseCode::NotImp, message.as_ref().ok()));
    }
    let Ok(message) = message else {
        return Err(error(ResponseCode::FormErr, None));
    };
    if message.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: only version 0 is implemented.
        return Err(error(ResponseCode::BADVERS, Some(&message)));
    }
    let [query] = message.queries.as_slice() else {
        // RFC 9619: a QUERY carries exactly one question.
        return Err(error(ResponseCode::FormErr, Some(&message)));
    };
    let ixfr_serial = message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if r.record_type() == RecordType::SOA => Some(soa.serial),
        _ => None,
    });
    if query.query_type == RecordType::IXFR && ixfr_serial.is_none() {
        // RFC 1995 §3: the client's SOA is required.
        return Err(error(ResponseCode::FormErr, Some(&message)));
    }
    Ok(Request {
        metadata: message.metadata,
        query: query.clone(),
        edns: message.edns,
        ixfr_serial,
    })
}

/// The response's OPT record (RFC 6891 §6.1.1: present when the request had one).
fn response_edns(request: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    // RFC 3225 §3: the DO bit is copied.
    edns.set_dnssec_ok(request.flags().dnssec_ok);
    edns
}

/// What to send, with the records cloned out of the copies.
enum Plan {
    Message(Message),
    /// AXFR or IXFR: `records` spread over as many messages as they need.
    Transfer {
        head: Message,
        records: Vec<Record>,
    },
}

fn answer(
    zones: &BTreeMap<String, ZoneCopy>,
    kept: &[String],
    request: &Request,
    transport: Transport,
) -> Plan {
    let mut response = Message::new(0, MessageType::Response, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.queries.push(request.query.clone());
    response.edns = request.edns.as_ref().map(response_edns);
    let set = |mut response: Message, code: ResponseCode| {
        response.metadata.response_code = code;
        Plan::Message(response)
    };
    let query = &request.query;
    if query.query_type == RecordType::OPT {
        return set(response, ResponseCode::FormErr);
    }
    // Meta-types this server has no answer for (RFC 1035 §3.2.3: MAILB 253, MAILA 254; TSIG).
    if matches!(u16::from(query.query_type), 250 | 253 | 254) {
        return set(response, ResponseCode::NotImp);
    }
    if !matches!(query.query_class, DNSClass::IN) {
        // Only class IN is held (RFC 1035 §3.2.4).
        return set(response, ResponseCode::Refused);
    }
    let qname = query.name.to_lowercase();
    let Some((apex, zone)) = closest_zone(&qname, zones, kept) else {
        // Not a name this server is authoritative for; it does not recurse.
        return set(response, ResponseCode::Refused);
    };
    let Some(copy) = zone else {
        // A kept zone whose first snapshot has not arrived (RFC 1035 §4.1.1: server failure).
        return set(response, ResponseCode::ServFail);
    };
    let Some(soa) = copy
        .rrset(&apex, RecordType::SOA)
        .first()
        .map(|r| (*r).clone())
    else {
        return set(response, ResponseCode::ServFail);
    };
    match query.query_type {
        RecordType::AXFR | RecordType::IXFR => {
            if transport == Transport::Udp && query.query_type == RecordType::AXFR {
                // RFC 5936 §4.2: AXFR runs over TCP only.
                return set(response, ResponseCode::FormErr);
            }
            if qname != apex {
                // RFC 5936 §2.2.1: not the apex of a zone this server serves.
                return set(response, ResponseCode::NotAuth);
            }
            response.metadata.authoritative = true;
            let records = match request.ixfr_serial {
                Some(serial) if query.query_type == RecordType::IXFR => {
                    incremental(copy, &soa, serial)
                }
                _ => full_zone(copy, &soa),
            };
            Plan::Transfer {
                head: response,
                records,
            }
        }
        qtype => {
            response.metadata.authoritative = true;
            lookup(copy, &apex, &soa, &query.name, qtype, &mut response);
            Plan::Message(response)
        }
    }
}

/// The kept zone with the longest apex that `qname` is in: its apex and its copy (`None` before
/// its first snapshot).
fn closest_zone<'z>(
    qname: &Name,
    zones: &'z BTreeMap<String, ZoneCopy>,
    kept: &[String],
) -> Option<(Name, Option<&'z ZoneCopy>)> {
    (0..=qname.num_labels()).rev().find_map(|labels| {
        let apex = qname.trim_to(usize::from(labels));
        let key = canonical_zone(&apex.to_ascii());
        kept.contains(&key).then(|| (apex, zones.get(&key)))
    })
}

/// RFC 1034 §4.3.2 steps 3a–3c within one zone, with RFC 4592 wildcards and RFC 2308 negative
/// answers; `response` gets the records and the RCODE.
fn lookup(
    copy: &ZoneCopy,
    apex: &Name,
    soa: &Record,
    qname: &Name,
    qtype: RecordType,
    response: &mut Message,
) {
    let mut name = qname.clone();
    let mut visited = vec![name.to_lowercase()];
    for _ in 0..MAX_CNAME_CHAIN {
        // Step 3b: a zone cut between the apex and the name makes this a referral.
        if let Some(cut) = delegation(copy, apex, &name) {
            if response.answers.is_empty() {
                response.metadata.authoritative = false;
            }
            referral(copy, &cut, response);
            return;
        }
        let source = if copy.has_node(&name) {
            name.clone()
        } else if copy.name_exists(&name) {
            // An empty non-terminal: the name exists without records (RFC 8020 §2).
            negative(soa, ResponseCode::NoError, response);
            return;
        } else {
            match wildcard(copy, apex, &name) {
                Some(source) => source,
                None => {
                    // RFC 2308 §2.1; after a CNAME the RCODE is the last name's (RFC 6604 §3).
                    negative(soa, ResponseCode::NXDomain, response);
                    return;
                }
            }
        };
        // A record synthesised from a wildcard takes the query name as owner (RFC 4592 §3.3.1).
        let synthesised = source != name;
        let owned = |record: &Record| {
            let mut record = record.clone();
            if synthesised {
                record.name = name.clone();
            }
            record
        };
        let cname = copy.rrset(&source, RecordType::CNAME);
        if let Some(target) = cname.first().filter(|_| qtype != RecordType::CNAME) {
            response.answers.push(owned(target));
            let RData::CNAME(next) = &target.data else {
                return;
            };
            let next = next.0.to_lowercase();
            // Step 3a: restart at the target when it lies in this zone and was not seen yet.
            if !apex.zone_of(&next) || visited.contains(&next) {
                return;
            }
            visited.push(next.clone());
            name = next;
            continue;
        }
        let records = if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one RRset of the name rather than all of them.
            let all = copy.node_records(&source);
            let first = all.first().map(|r| r.record_type());
            all.into_iter()
                .filter(|r| Some(r.record_type()) == first)
                .collect()
        } else {
            copy.rrset(&source, qtype)
        };
        if records.is_empty() {
            negative(soa, ResponseCode::NoError, response);
        } else {
            response.answers.extend(records.into_iter().map(owned));
        }
        return;
    }
}

/// The highest zone cut strictly below the apex at or above `name` (an NS RRset there).
fn delegation(copy: &ZoneCopy, apex: &Name, name: &Name) -> Option<Name> {
    (apex.num_labels() + 1..=name.num_labels())
        .map(|labels| name.trim_to(usize::from(labels)))
        .find(|cut| !copy.rrset(cut, RecordType::NS).is_empty())
}

/// A referral (RFC 1034 §4.3.2 step 3b): the cut's NS RRset in the authority section and the
/// addresses of name servers inside the cut (glue) in the additional section.
fn referral(copy: &ZoneCopy, cut: &Name, response: &mut Message) {
    let ns = copy.rrset(cut, RecordType::NS);
    for record in &ns {
        if let RData::NS(target) = &record.data {
            let target = target.0.to_lowercase();
            if cut.zone_of(&target) {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    let glue = copy.rrset(&target, rtype).into_iter().cloned();
                    response.additionals.extend(glue);
                }
            }
        }
    }
    response.authorities.extend(ns.into_iter().cloned());
}

/// The wildcard that synthesises `name` (RFC 4592 §3.3.1): `*` under the closest encloser, the
/// longest existing ancestor; `None` when there is none.
fn wildcard(copy: &ZoneCopy, apex: &Name, name: &Name) -> Option<Name> {
    let encloser = (apex.num_labels()..name.num_labels())
        .rev()
        .map(|labels| name.trim_to(usize::from(labels)))
        .find(|ancestor| copy.name_exists(ancestor))?;
    let source = encloser.prepend_label("*").ok()?;
    copy.has_node(&source).then_some(source)
}

/// NXDOMAIN or NODATA: the zone's SOA in the authority section with the TTL a negative answer
/// may be cached for, min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
fn negative(soa: &Record, code: ResponseCode, response: &mut Message) {
    let mut soa = soa.clone();
    if let RData::SOA(data) = &soa.data {
        soa.ttl = soa.ttl.min(data.minimum);
    }
    response.metadata.response_code = code;
    response.authorities.push(soa);
}

/// AXFR's records (RFC 5936 §2.2): the SOA first and last, everything else between.
fn full_zone(copy: &ZoneCopy, soa: &Record) -> Vec<Record> {
    let mut records = vec![soa.clone()];
    records.extend(
        copy.wire_records()
            .filter(|r| r.record_type() != RecordType::SOA)
            .cloned(),
    );
    records.push(soa.clone());
    records
}

/// IXFR's records (RFC 1995 §4): the current SOA alone when the client is current; the
/// differences from its serial when the history reaches back that far; else the whole zone.
fn incremental(copy: &ZoneCopy, soa: &Record, client: u32) -> Vec<Record> {
    let current = copy.serial();
    if client == current || serial_greater(client, current) {
        return vec![soa.clone()];
    }
    let Some(diffs) = copy.diffs_since(client) else {
        return full_zone(copy, soa);
    };
    let mut records = vec![soa.clone()];
    for diff in diffs {
        let (Some(old_soa), Some(new_soa)) = (
            diff.old_soa.as_ref().and_then(to_wire),
            diff.new_soa.as_ref().and_then(to_wire),
        ) else {
            return full_zone(copy, soa);
        };
        records.push(old_soa);
        records.extend(diff.deleted.iter().filter_map(to_wire));
        records.push(new_soa);
        records.extend(diff.added.iter().filter_map(to_wire));
    }
    records.push(soa.clone());
    records
}

fn to_wire(record: &zone_proto::zone::v1::Record) -> Option<Record> {
    wire::record(&record.name, &record.r#type, record.ttl, &record.rdata)
}

/// Serial number arithmetic (RFC 1982 §3.2): `a` is after `b`.
fn serial_greater(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// One message, or when it does not fit `limit`, its header and question with TC set
/// (RFC 2181 §9, RFC 1035 §4.2.1); the client then asks over TCP (RFC 7766 §5).
fn encode_single(message: &Message, limit: u16) -> Vec<Vec<u8>> {
    match encode(message) {
        Some(bytes) if bytes.len() <= usize::from(limit) => vec![bytes],
        _ => {
            let mut truncated = message.clone();
            truncated.answers.clear();
            truncated.authorities.clear();
            truncated.additionals.clear();
            if limit == u16::MAX {
                // Over TCP there is no retry with more room: an answer over 64 KiB is a failure.
                truncated.metadata.response_code = ResponseCode::ServFail;
            } else {
                truncated.metadata.truncation = true;
            }
            encode(&truncated).into_iter().collect()
        }
    }
}

/// Zone transfer messages. Over TCP the records fill as many messages as needed, all with the
/// question (RFC 5936 §2.2). Over UDP (IXFR only) a diff that does not fit becomes the current
/// SOA alone, which tells the client to use TCP (RFC 1995 §2).
fn encode_transfer(
    head: Message,
    records: Vec<Record>,
    transport: Transport,
    limit: u16,
) -> Vec<Vec<u8>> {
    let mut whole = head.clone();
    whole.answers.clone_from(&records);
    if transport == Transport::Udp {
        if let Some(bytes) = encode(&whole).filter(|b| b.len() <= usize::from(limit)) {
            return vec![bytes];
        }
        let mut soa_only = head;
        soa_only.answers.extend(records.into_iter().take(1));
        return encode_single(&soa_only, limit);
    }
    let mut messages = Vec::new();
    let mut current = head.clone();
    let mut size = 0;
    for record in records {
        let record_size = encoded_len(&record);
        if size + record_size > TRANSFER_CHUNK && !current.answers.is_empty() {
            messages.extend(encode_single(&current, u16::MAX));
            current = head.clone();
            size = 0;
        }
        size += record_size;
        current.answers.push(record);
    }
    messages.extend(encode_single(&current, u16::MAX));
    messages
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    message.to_vec().ok()
}

/// A record's size without name compression: an upper bound of what it adds to a message.
fn encoded_len(record: &Record) -> usize {
    let mut buffer = Vec::new();
    let mut encoder = BinEncoder::new(&mut buffer);
    match record.emit(&mut encoder) {
        Ok(()) => buffer.len(),
        Err(_) => TRANSFER_CHUNK,
    }
}

//! Records from the canonical presentation form the zone server sends (RFC 1035 §5.1) to
//! hickory-proto records, once per record when it enters a copy, so queries only copy them.
//!
//! TXT and HINFO character-strings are decoded here (`\"`, `\\`, `\DDD` decimal, RFC 1035 §5.1)
//! rather than by hickory's lexer, which decodes `\DDD` wrongly in 0.26; every other type goes
//! through `RData::try_from_str`, whose output the server's canonical form came from.

use std::str::FromStr;

use hickory_proto::rr::rdata::{HINFO, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// `name type ttl rdata` as a wire-ready record; `None` when hickory cannot represent it.
pub(crate) fn record(name: &str, rtype: &str, ttl: u32, rdata: &str) -> Option<Record> {
    let owner = Name::from_ascii(name).ok()?;
    let rtype = RecordType::from_str(rtype).ok()?;
    let data = match rtype {
        RecordType::TXT => {
            let strings = character_strings(rdata)?;
            if strings.is_empty() {
                return None;
            }
            RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
        }
        RecordType::HINFO => {
            let [cpu, os]: [Vec<u8>; 2] = character_strings(rdata)?.try_into().ok()?;
            RData::HINFO(HINFO::from_bytes(cpu.into(), os.into()))
        }
        _ => RData::try_from_str(rtype, rdata).ok()?,
    };
    Some(Record::from_rdata(owner, ttl, data))
}

/// Space-separated character-strings, quoted or not, escapes decoded; `None` if malformed or
/// longer than 255 bytes (RFC 1035 §3.3).
fn character_strings(text: &str) -> Option<Vec<Vec<u8>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&first) = bytes.get(i) else {
            return Some(out);
        };
        let quoted = first == b'"';
        if quoted {
            i += 1;
        }
        let mut current = Vec::new();
        loop {
            match bytes.get(i) {
                None if quoted => return None,
                None => break,
                Some(b'"') if quoted => {
                    i += 1;
                    break;
                }
                Some(b) if !quoted && b.is_ascii_whitespace() => break,
                Some(b'\\') => {
                    let digits = bytes.get(i + 1..i + 4);
                    match digits {
                        Some(d) if d.iter().all(u8::is_ascii_digit) => {
                            let value =
                                d.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                            current.push(u8::try_from(value).ok()?);
                            i += 4;
                        }
                        _ => {
                            current.push(*bytes.get(i + 1)?);
                            i += 2;
                        }
                    }
                }
                Some(&b) => {
                    current.push(b);
                    i += 1;
                }
            }
        }
        if current.len() > 255 {
            return None;
        }
        out.push(current);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_becomes_wire_records() {
        let a = record("www.example.com.", "A", 300, "192.0.2.1").unwrap();
        assert_eq!(a.record_type(), RecordType::A);
        assert_eq!(a.ttl, 300);
        assert_eq!(a.data.to_string(), "192.0.2.1");
        let soa = record(
            "example.com.",
            "SOA",
            60,
            "ns1.example.com. h.example.com. 7 3600 600 86400 300",
        )
        .unwrap();
        let RData::SOA(soa) = &soa.data else {
            panic!("not a SOA: {soa:?}");
        };
        assert_eq!((soa.serial, soa.minimum), (7, 300));
        let mx = record("example.com.", "MX", 60, "10 mail.example.com.").unwrap();
        assert_eq!(mx.data.to_string(), "10 mail.example.com.");
    }

    #[test]
    fn character_strings_decode_escapes_as_decimal() {
        let txt = record("t.example.com.", "TXT", 1, r#""a\"b" "\255\\" "x y""#).unwrap();
        let RData::TXT(txt) = &txt.data else {
            panic!("not TXT");
        };
        let strings: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
        assert_eq!(strings, [&b"a\"b"[..], &[255, b'\\'][..], &b"x y"[..]]);
        assert!(record("t.example.com.", "TXT", 1, r#""unterminated"#).is_none());
        assert!(record("t.example.com.", "TXT", 1, r#""\256""#).is_none());
        let hinfo = record("h.example.com.", "HINFO", 1, r#""cpu" "os""#).unwrap();
        assert_eq!(hinfo.record_type(), RecordType::HINFO);
        assert!(record("h.example.com.", "HINFO", 1, r#""cpu""#).is_none());
    }

    #[test]
    fn unparsable_records_are_none() {
        assert!(record("www.example.com.", "A", 1, "not-an-address").is_none());
        assert!(record("www.example.com.", "NOPE", 1, "x").is_none());
    }
}

//! Resource records in canonical presentation form (RFC 1035 §5.1): validating owner names, types,
//! classes and rdata, and printing them one way only so equal records compare equal as text.
//!
//! Canonical form: owner and rdata names lower-case ASCII FQDNs with a trailing dot (IDNs as
//! punycode); addresses as `Ipv4Addr`/`Ipv6Addr` print them (RFC 5952 for IPv6); character-strings
//! quoted with `\"`, `\\` and `\DDD` escapes for anything outside printable ASCII; numbers in
//! decimal. Types hickory prints faithfully (CAA, SSHFP, TLSA, NAPTR, SVCB, HTTPS, CSYNC,
//! OPENPGPKEY, SMIMEA) use hickory's parser and `Display`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::parse_ttl;
use zone_proto::zone::v1 as pb;

use super::master::{Token, tokenize_rdata};

/// Largest TTL a record may carry (RFC 2181 §8: TTLs are 31-bit).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// The class every record has; the only one this server stores.
pub(crate) const CLASS_IN: &str = "IN";

/// A record field that failed validation, named after the `zone.v1.Record` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RecordError {
    /// `name`, `type`, `class`, `ttl` or `rdata`.
    pub field: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl RecordError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A validated record: owner a lower-case FQDN inside its zone, rdata in canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    pub name: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdata: String,
}

impl ZoneRecord {
    /// Validates an API record for the zone `origin`; relative names are relative to `origin`.
    pub fn parse(record: &pb::Record, origin: &Name) -> Result<Self, RecordError> {
        let name = parse_owner(&record.name, origin).map_err(|e| RecordError::new("name", e))?;
        let rtype = parse_type(&record.r#type).map_err(|e| RecordError::new("type", e))?;
        parse_class(&record.class).map_err(|e| RecordError::new("class", e))?;
        if record.ttl > MAX_TTL {
            return Err(RecordError::new(
                "ttl",
                format!("{} exceeds 2^31-1 (RFC 2181 §8)", record.ttl),
            ));
        }
        if rtype == RecordType::SOA && name != *origin {
            return Err(RecordError::new(
                "name",
                "a SOA record must be at the zone apex",
            ));
        }
        let tokens = tokenize_rdata(&record.rdata).map_err(|e| RecordError::new("rdata", e))?;
        let rdata = canonical_rdata(rtype, &tokens, origin).map_err(|e| {
            RecordError::new(
                "rdata",
                format!("`{}` is not valid {rtype} rdata: {e}", record.rdata),
            )
        })?;
        Ok(Self {
            name,
            rtype,
            ttl: record.ttl,
            rdata,
        })
    }

    /// The record in API form.
    pub fn to_proto(&self) -> pb::Record {
        proto_record(&name_text(&self.name), self.rtype, self.ttl, &self.rdata)
    }
}

pub(crate) fn proto_record(name: &str, rtype: RecordType, ttl: u32, rdata: &str) -> pb::Record {
    pb::Record {
        name: name.to_owned(),
        r#type: rtype.to_string(),
        class: CLASS_IN.to_owned(),
        ttl,
        rdata: rdata.to_owned(),
    }
}

/// The canonical text of a name: lower-case ASCII, trailing dot when fully qualified.
pub fn name_text(name: &Name) -> String {
    name.to_lowercase().to_ascii()
}

/// Parses a domain name; `@` is `origin`, relative names are appended to `origin`; lower-cased.
pub(crate) fn parse_domain(text: &str, origin: &Name) -> Result<Name, String> {
    if text.is_empty() {
        return Err("empty name".to_owned());
    }
    if text == "@" {
        return Ok(origin.to_lowercase());
    }
    // from_ascii keeps names like `host_1` that IDNA processing would refuse; non-ASCII input
    // goes through IDNA to punycode.
    let name = if text.is_ascii() {
        Name::from_ascii(text)
    } else {
        Name::from_utf8(text)
    }
    .map_err(|e| e.to_string())?;
    let name = if name.is_fqdn() {
        name
    } else {
        name.append_domain(origin).map_err(|e| e.to_string())?
    };
    Ok(name.to_lowercase())
}

/// Parses an owner name and checks it lies inside the zone `origin`.
pub fn parse_owner(text: &str, origin: &Name) -> Result<Name, String> {
    let name = parse_domain(text.trim(), origin).map_err(|e| format!("`{text}`: {e}"))?;
    if !origin.zone_of(&name) {
        return Err(format!(
            "`{}` is outside zone `{}`",
            name_text(&name),
            name_text(origin)
        ));
    }
    Ok(name)
}

/// Parses a type mnemonic (case-insensitive) this server can store.
pub fn parse_type(text: &str) -> Result<RecordType, String> {
    let rtype = parse_known_type(text)?;
    if is_supported(rtype) {
        Ok(rtype)
    } else {
        Err(format!("record type {rtype} is not supported"))
    }
}

/// Parses any type mnemonic hickory knows (for queries).
pub(crate) fn parse_known_type(text: &str) -> Result<RecordType, String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Err("empty record type".to_owned());
    }
    RecordType::from_str(&upper).map_err(|_| format!("unknown record type `{text}`"))
}

/// Types with a presentation-form parser and printer that round-trip.
fn is_supported(rtype: RecordType) -> bool {
    use RecordType::*;
    matches!(
        rtype,
        A | AAAA
            | ANAME
            | CAA
            | CNAME
            | CSYNC
            | HINFO
            | HTTPS
            | MX
            | NAPTR
            | NS
            | OPENPGPKEY
            | PTR
            | SMIMEA
            | SOA
            | SRV
            | SSHFP
            | SVCB
            | TLSA
            | TXT
    )
}

pub(crate) fn is_class_mnemonic(text: &str) -> bool {
    ["IN", "CH", "HS", "CS", "NONE", "ANY"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(text))
}

/// Accepts an empty class or `IN`; other classes are refused.
pub fn parse_class(text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case(CLASS_IN) {
        Ok(())
    } else if is_class_mnemonic(text) {
        Err(format!(
            "class {} is not supported (only IN)",
            text.to_ascii_uppercase()
        ))
    } else {
        Err(format!("unknown class `{text}`"))
    }
}

/// Validates rdata tokens for `rtype` and prints them canonically; names relative to `origin`.
pub(crate) fn canonical_rdata(
    rtype: RecordType,
    tokens: &[Token<'_>],
    origin: &Name,
) -> Result<String, String> {
    use RecordType::*;
    let mut out = String::new();
    match rtype {
        A => {
            let [addr] = fields::<1>(tokens)?;
            let addr = Ipv4Addr::from_str(addr).map_err(|e| format!("`{addr}`: {e}"))?;
            write!(out, "{addr}").map_err(fmt_err)?;
        }
        AAAA => {
            let [addr] = fields::<1>(tokens)?;
            let addr = Ipv6Addr::from_str(addr).map_err(|e| format!("`{addr}`: {e}"))?;
            write!(out, "{addr}").map_err(fmt_err)?;
        }
        NS | CNAME | PTR | ANAME => {
            let [target] = fields::<1>(tokens)?;
            out = domain(target, origin)?;
        }
        MX => {
            let [preference, exchange] = fields::<2>(tokens)?;
            let preference: u16 = number(preference, "preference")?;
            write!(out, "{preference} {}", domain(exchange, origin)?).map_err(fmt_err)?;
        }
        SRV => {
            let [priority, weight, port, target] = fields::<4>(tokens)?;
            let priority: u16 = number(priority, "priority")?;
            let weight: u16 = number(weight, "weight")?;
            let port: u16 = number(port, "port")?;
            let target = domain(target, origin)?;
            write!(out, "{priority} {weight} {port} {target}").map_err(fmt_err)?;
        }
        SOA => {
            let [mname, rname, serial, refresh, retry, expire, minimum] = fields::<7>(tokens)?;
            let (mname, rname) = (domain(mname, origin)?, domain(rname, origin)?);
            let serial: u32 = number(serial, "serial")?;
            let timers = [
                timer(refresh, "refresh")?,
                timer(retry, "retry")?,
                timer(expire, "expire")?,
                timer(minimum, "minimum")?,
            ];
            write!(
                out,
                "{mname} {rname} {serial} {} {} {} {}",
                timers[0], timers[1], timers[2], timers[3]
            )
            .map_err(fmt_err)?;
        }
        TXT => {
            if tokens.is_empty() {
                return Err("TXT needs at least one character-string".to_owned());
            }
            for (i, token) in tokens.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                push_quoted(&mut out, &character_string(token.text)?);
            }
        }
        HINFO => {
            let [cpu, os] = fields::<2>(tokens)?;
            push_quoted(&mut out, &character_string(cpu)?);
            out.push(' ');
            push_quoted(&mut out, &character_string(os)?);
        }
        _ if is_supported(rtype) => out = via_hickory(rtype, tokens, origin)?,
        _ => return Err(format!("record type {rtype} is not supported")),
    }
    Ok(out)
}

/// Exactly `N` token texts, or an error saying how many the type expects.
fn fields<'t, const N: usize>(tokens: &[Token<'t>]) -> Result<[&'t str; N], String> {
    if tokens.len() != N {
        return Err(format!("expected {N} field(s), got {}", tokens.len()));
    }
    let mut out = [""; N];
    for (slot, token) in out.iter_mut().zip(tokens) {
        *slot = token.text;
    }
    Ok(out)
}

fn domain(text: &str, origin: &Name) -> Result<String, String> {
    parse_domain(text, origin)
        .map(|n| n.to_ascii())
        .map_err(|e| format!("name `{text}`: {e}"))
}

fn number<T: FromStr>(text: &str, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{text}` is not a decimal number"));
    }
    text.parse().map_err(|e| format!("{what} `{text}`: {e}"))
}

/// A SOA timer: decimal seconds or BIND-style units (`1h`), at most 2^31-1.
fn timer(text: &str, what: &str) -> Result<u32, String> {
    let value = parse_ttl(text).map_err(|e| format!("{what} `{text}`: {e}"))?;
    if value > MAX_TTL {
        return Err(format!("{what} {value} exceeds 2^31-1"));
    }
    Ok(value)
}

fn fmt_err(e: std::fmt::Error) -> String {
    e.to_string()
}

/// Decodes a character-string's escapes (RFC 1035 §5.1: `\X`, `\DDD`) into bytes, at most 255.
fn character_string(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1..i + 4) {
            Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                let byte =
                    u8::try_from(value).map_err(|_| format!("escape \\{value} is above \\255"))?;
                out.push(byte);
                i += 4;
            }
            _ => match bytes.get(i + 1) {
                Some(&next) => {
                    out.push(next);
                    i += 2;
                }
                None => return Err("dangling '\\'".to_owned()),
            },
        }
    }
    if out.len() > 255 {
        return Err(format!(
            "character-string of {} bytes exceeds 255",
            out.len()
        ));
    }
    Ok(out)
}

/// Prints a character-string quoted; everything but printable ASCII as `\DDD`.
pub(crate) fn push_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

/// Types whose hickory parser and `Display` round-trip; their names are made absolute here
/// because `RData::try_from_str` has no origin.
fn via_hickory(rtype: RecordType, tokens: &[Token<'_>], origin: &Name) -> Result<String, String> {
    let mut text = String::new();
    for token in tokens {
        if !text.is_empty() {
            text.push(' ');
        }
        if token.quoted {
            text.push('"');
            text.push_str(token.text);
            text.push('"');
        } else {
            text.push_str(token.text);
        }
    }
    let mut rdata = RData::try_from_str(rtype, &text).map_err(|e| e.to_string())?;
    let absolute = |name: &mut Name| -> Result<(), String> {
        if !name.is_fqdn() {
            *name = name
                .clone()
                .append_domain(origin)
                .map_err(|e| e.to_string())?;
        }
        *name = name.to_lowercase();
        Ok(())
    };
    match &mut rdata {
        RData::NAPTR(naptr) => absolute(&mut naptr.replacement)?,
        RData::SVCB(svcb) => absolute(&mut svcb.target_name)?,
        RData::HTTPS(https) => absolute(&mut https.0.target_name)?,
        _ => {}
    }
    Ok(rdata.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_str("example.com.").unwrap()
    }

    fn record(name: &str, rtype: &str, rdata: &str) -> pb::Record {
        pb::Record {
            name: name.into(),
            r#type: rtype.into(),
            class: String::new(),
            ttl: 300,
            rdata: rdata.into(),
        }
    }

    fn canonical(name: &str, rtype: &str, rdata: &str) -> Result<pb::Record, RecordError> {
        ZoneRecord::parse(&record(name, rtype, rdata), &origin()).map(|r| r.to_proto())
    }

    #[test]
    fn good_records_are_normalized() {
        let cases = [
            (
                ("WWW", "a", "192.0.2.1"),
                ("www.example.com.", "A", "192.0.2.1"),
            ),
            (
                ("@", "AAAA", "2001:DB8:0:0::1"),
                ("example.com.", "AAAA", "2001:db8::1"),
            ),
            (
                ("Mail.Example.Com.", "MX", "10 MX1"),
                ("mail.example.com.", "MX", "10 mx1.example.com."),
            ),
            (
                ("x", "CNAME", "Target.Example.NET."),
                ("x.example.com.", "CNAME", "target.example.net."),
            ),
            (
                ("_sip._tcp", "SRV", "10 5 5060 sip"),
                (
                    "_sip._tcp.example.com.",
                    "SRV",
                    "10 5 5060 sip.example.com.",
                ),
            ),
            (
                ("t", "TXT", "\"v=spf1 -all\" x \"a\\\"b\""),
                ("t.example.com.", "TXT", "\"v=spf1 -all\" \"x\" \"a\\\"b\""),
            ),
            (
                ("t", "TXT", "\"caf\\195\\169\""),
                ("t.example.com.", "TXT", "\"caf\\195\\169\""),
            ),
            (
                ("h", "HINFO", "PC \"Linux 6\""),
                ("h.example.com.", "HINFO", "\"PC\" \"Linux 6\""),
            ),
            (
                ("@", "SOA", "ns1 hostmaster ( 1 1h 15m 1w 300 )"),
                (
                    "example.com.",
                    "SOA",
                    "ns1.example.com. hostmaster.example.com. 1 3600 900 604800 300",
                ),
            ),
            (
                ("@", "CAA", "0 issue \"ca.example.net\""),
                ("example.com.", "CAA", "0 issue \"ca.example.net\""),
            ),
            (
                ("s", "HTTPS", "1 svc alpn=h3"),
                ("s.example.com.", "HTTPS", "1 svc.example.com. alpn=h3,"),
            ),
            (
                ("*.w", "A", "192.0.2.9"),
                ("*.w.example.com.", "A", "192.0.2.9"),
            ),
            (
                ("host_1", "A", "192.0.2.9"),
                ("host_1.example.com.", "A", "192.0.2.9"),
            ),
        ];
        for ((name, rtype, rdata), (want_name, want_type, want_rdata)) in cases {
            let got = canonical(name, rtype, rdata)
                .unwrap_or_else(|e| panic!("{name} {rtype} {rdata}: {e}"));
            assert_eq!(
                (
                    got.name.as_str(),
                    got.r#type.as_str(),
                    got.rdata.as_str(),
                    got.class.as_str()
                ),
                (want_name, want_type, want_rdata, "IN"),
                "{name} {rtype} {rdata}"
            );
        }
    }

    #[test]
    fn canonical_rdata_is_a_fixed_point() {
        for (rtype, rdata) in [
            ("TXT", "\"a;b\" \"\\\\\" \"\\009tab\""),
            ("SOA", "a. b. 1 2 3 4 5"),
            (
                "NAPTR",
                "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
            ),
            ("SSHFP", "1 1 123456789abcdef67890123456789abcdef67890"),
            (
                "TLSA",
                "3 1 1 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
            ),
        ] {
            let once = canonical("@", rtype, rdata).unwrap();
            let twice = canonical("@", rtype, &once.rdata).unwrap();
            assert_eq!(once, twice, "{rtype} {rdata}");
        }
    }

    #[test]
    fn bad_records_name_the_field() {
        let cases = [
            (record("a b", "A", "192.0.2.1"), "name"),
            (record("x..y", "A", "192.0.2.1"), "name"),
            (record("", "A", "192.0.2.1"), "name"),
            (record("www.example.net.", "A", "192.0.2.1"), "name"),
            (record("www", "BOGUS", "1"), "type"),
            (record("www", "", "1"), "type"),
            (record("www", "DNSKEY", "256 3 8 AAAA"), "type"),
            (record("www", "A", "192.0.2"), "rdata"),
            (record("www", "A", "192.0.2.1 192.0.2.2"), "rdata"),
            (record("www", "AAAA", "192.0.2.1"), "rdata"),
            (record("www", "MX", "ten mail"), "rdata"),
            (record("www", "MX", "70000 mail"), "rdata"),
            (record("www", "TXT", ""), "rdata"),
            (record("www", "TXT", "\"unterminated"), "rdata"),
            (record("www", "TXT", "\"a\"\nwww A 192.0.2.1"), "rdata"),
            (record("www", "SOA", "a. b. 1 2 3 4 5"), "name"),
            (record("@", "SOA", "a. b. 1 2 3 4"), "rdata"),
            (
                pb::Record {
                    class: "CH".into(),
                    ..record("www", "A", "192.0.2.1")
                },
                "class",
            ),
            (
                pb::Record {
                    class: "XX".into(),
                    ..record("www", "A", "192.0.2.1")
                },
                "class",
            ),
            (
                pb::Record {
                    ttl: u32::MAX,
                    ..record("www", "A", "192.0.2.1")
                },
                "ttl",
            ),
        ];
        for (rec, field) in cases {
            let err = ZoneRecord::parse(&rec, &origin()).expect_err(&format!("{rec:?} accepted"));
            assert_eq!(err.field, field, "{rec:?}: {err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn class_in_is_accepted_in_any_case() {
        let rec = pb::Record {
            class: "in".into(),
            ..record("www", "A", "192.0.2.1")
        };
        assert!(ZoneRecord::parse(&rec, &origin()).is_ok());
    }

    #[test]
    fn character_strings_reject_oversized_and_bad_escapes() {
        assert!(character_string(&"a".repeat(256)).is_err());
        assert!(character_string("\\256").is_err());
        assert_eq!(character_string("\\065\\\"").unwrap(), b"A\"");
    }
}

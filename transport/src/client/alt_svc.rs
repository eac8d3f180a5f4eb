//! `Alt-Svc` (RFC 7838) parsing and a process-wide cache of learnt HTTP/3 endpoints, so a second
//! channel to the same origin goes straight to HTTP/3 as browsers do (RFC 9114 §3.1.1).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// RFC 7838 §3.1: `ma` defaults to 24 hours.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);
/// Largest `ma` kept: delta-seconds beyond 2^31 mean 2^31 (RFC 9111 §1.2.2); a larger value
/// would overflow the cache's expiry `Instant`.
const MAX_MAX_AGE: u64 = 1 << 31;

/// What an `Alt-Svc` header says about HTTP/3 for the origin that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AltSvc {
    /// HTTP/3 on this UDP port of the same host, valid for `max_age`.
    H3 { port: u16, max_age: Duration },
    /// `clear`: forget every alternative (RFC 7838 §3).
    Clear,
}

/// Parses an `Alt-Svc` field value and returns its first usable `h3` alternative on the same host.
///
/// Alternatives on another host are ignored: following them needs that host's certificate to
/// cover our origin, which gRPC clients do not check for (RFC 7838 §2.1).
pub(crate) fn parse(value: &str) -> Option<AltSvc> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("clear") {
        return Some(AltSvc::Clear);
    }
    for alternative in split_outside_quotes(value, ',') {
        let mut params = split_outside_quotes(alternative, ';').into_iter();
        let Some((protocol, authority)) = params.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        if protocol.trim() != "h3" {
            continue;
        }
        let authority = authority.trim();
        let Some(authority) = authority
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
        else {
            continue;
        };
        // Only ":port" (same host) is followed.
        let Some(port) = authority
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let mut max_age = DEFAULT_MAX_AGE;
        for param in params {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("ma")
                && let Some(secs) = delta_seconds(v.trim().trim_matches('"'))
            {
                max_age = Duration::from_secs(secs);
            }
        }
        return Some(AltSvc::H3 { port, max_age });
    }
    None
}

/// `delta-seconds` (RFC 9111 §1.2.2), capped at [`MAX_MAX_AGE`] however many digits it has.
fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_MAX_AGE))
}

/// Splits at `sep` outside quoted-strings; a quoted-pair (`\"`) does not end one (RFC 9110 §5.6.4).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Learnt HTTP/3 ports by origin authority (`host:port`), with expiry.
fn cache() -> &'static Mutex<HashMap<String, (u16, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<String, (u16, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The cached HTTP/3 port of `authority`, if still fresh.
pub(crate) fn lookup(authority: &str) -> Option<u16> {
    let mut cache = cache().lock().unwrap_or_else(PoisonError::into_inner);
    match cache.get(authority) {
        Some(&(port, expires)) if expires > Instant::now() => Some(port),
        Some(_) => {
            cache.remove(authority);
            None
        }
        None => None,
    }
}

/// Records what `authority` advertised.
pub(crate) fn learn(authority: &str, alt: AltSvc) {
    let mut cache = cache().lock().unwrap_or_else(PoisonError::into_inner);
    match alt {
        AltSvc::H3 { port, max_age } => {
            cache.insert(authority.to_string(), (port, Instant::now() + max_age));
        }
        AltSvc::Clear => {
            cache.remove(authority);
        }
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_h3_with_max_age() {
        assert_eq!(
            parse(r#"h3=":4433"; ma=3600"#),
            Some(AltSvc::H3 {
                port: 4433,
                max_age: Duration::from_secs(3600)
            })
        );
        assert_eq!(
            parse(r#"h3-29=":1", h3=":443""#),
            Some(AltSvc::H3 {
                port: 443,
                max_age: DEFAULT_MAX_AGE
            })
        );
        assert_eq!(parse("clear"), Some(AltSvc::Clear));
    }

    #[test]
    fn ignores_other_hosts_and_garbage() {
        for v in [
            r#"h3="other.example:443""#,
            r#"h2=":443""#,
            r#"h3=":0""#,
            r#"h3=":99999""#,
            r#"h3=443"#,
            "",
            ";;;,,,",
            r#"h3=":443"#,
            "h3",
        ] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }

    #[test]
    fn quoted_separators_do_not_split() {
        assert_eq!(
            parse(r#"h2="a,b;c", h3=":8443"; ma="60""#),
            Some(AltSvc::H3 {
                port: 8443,
                max_age: Duration::from_secs(60)
            })
        );
    }
}

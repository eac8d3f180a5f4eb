//! Property tests of the `Alt-Svc` parser against the grammar (RFC 7838 §3), with case counts from
//! `PROPTEST_CASES` (see `test_support::bounded_proptest`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;

use super::AltSvc;
use test_support::bounded_proptest::{check, parser_config};

// ---------------------------------------------------------------------------------------------
// Alt-Svc (RFC 7838 §3): alt-value list of `protocol-id "=" alt-authority *( ";" parameter )`.

/// Largest `ma` kept (RFC 9111 §1.2.2: delta-seconds beyond what fits are 2^31).
const MAX_AGE_CAP: u64 = 1 << 31;
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// A quoted-string body: may hold separators and quoted-pairs (RFC 9110 §5.6.4).
fn quoted_body() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("h3"),
            Just(":"),
            Just("443"),
            Just(","),
            Just(";"),
            Just("="),
            Just(" "),
            Just("\\\""),
            Just("\\\\"),
            Just("é"),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
enum Param {
    /// `ma=` delta-seconds, possibly quoted, possibly too large for any integer.
    MaxAge { digits: String, quoted: bool },
    /// Any other parameter, token or quoted value.
    Other { name: String, value: String },
}

impl Param {
    fn text(&self) -> String {
        match self {
            Param::MaxAge {
                digits,
                quoted: true,
            } => format!("ma=\"{digits}\""),
            Param::MaxAge { digits, .. } => format!("ma={digits}"),
            Param::Other { name, value } => format!("{name}={value}"),
        }
    }
}

fn param() -> impl Strategy<Value = Param> {
    prop_oneof![
        ("[0-9]{1,25}", any::<bool>())
            .prop_map(|(digits, quoted)| Param::MaxAge { digits, quoted }),
        (
            "[a-z][a-z0-9]{0,5}".prop_filter("not ma", |n| n != "ma"),
            prop_oneof![
                "[a-zA-Z0-9.]{1,6}".boxed(),
                quoted_body().prop_map(|b| format!("\"{b}\"")).boxed()
            ]
        )
            .prop_map(|(name, value)| Param::Other { name, value }),
    ]
}

#[derive(Debug, Clone)]
enum Alternative {
    /// `h3=":port"`: the one the client follows (unless port 0).
    SameHost { port: u16, params: Vec<Param> },
    /// `h3="host:port"`: ignored (another host).
    OtherHost { host: String, port: u16 },
    /// Another protocol with any authority: ignored.
    OtherProtocol { protocol: String, authority: String },
}

impl Alternative {
    fn text(&self) -> String {
        match self {
            Alternative::SameHost { port, params } => {
                let mut s = format!("h3=\":{port}\"");
                for p in params {
                    s.push_str("; ");
                    s.push_str(&p.text());
                }
                s
            }
            Alternative::OtherHost { host, port } => format!("h3=\"{host}:{port}\""),
            Alternative::OtherProtocol {
                protocol,
                authority,
            } => format!("{protocol}=\"{authority}\""),
        }
    }

    /// What the client should learn from this alternative, if it is usable.
    fn expected(&self) -> Option<AltSvc> {
        let Alternative::SameHost { port, params } = self else {
            return None;
        };
        if *port == 0 {
            return None;
        }
        let mut max_age = DEFAULT_MAX_AGE;
        for p in params {
            if let Param::MaxAge { digits, .. } = p {
                let secs = digits.parse::<u64>().unwrap_or(u64::MAX).min(MAX_AGE_CAP);
                max_age = Duration::from_secs(secs);
            }
        }
        Some(AltSvc::H3 {
            port: *port,
            max_age,
        })
    }
}

fn alternative() -> impl Strategy<Value = Alternative> {
    prop_oneof![
        (
            any::<u16>(),
            proptest::collection::vec(param(), 0..3).prop_filter("one ma at most", |ps| {
                ps.iter()
                    .filter(|p| matches!(p, Param::MaxAge { .. }))
                    .count()
                    <= 1
            })
        )
            .prop_map(|(port, params)| Alternative::SameHost { port, params }),
        ("[a-z][a-z0-9.-]{0,10}", any::<u16>())
            .prop_map(|(host, port)| Alternative::OtherHost { host, port }),
        (
            prop_oneof![
                Just("h2".to_owned()),
                Just("h3-29".to_owned()),
                "[a-z][a-z0-9-]{0,6}"
            ]
            .prop_filter("not h3", |p| p != "h3"),
            quoted_body()
        )
            .prop_map(|(protocol, authority)| Alternative::OtherProtocol {
                protocol,
                authority
            }),
    ]
}

#[test]
fn alt_svc_parser_survives_arbitrary_input() {
    let strategy = prop_oneof![
        any::<String>().boxed(),
        proptest::string::string_regex(r#"(h3|=|"|:|[0-9]{1,6}|;|,| |ma|\\|clear){0,16}"#)
            .unwrap()
            .boxed(),
    ];
    check("alt_svc_arbitrary", parser_config(), strategy, |value| {
        // Never panics, and never yields what a client cannot use.
        if let Some(AltSvc::H3 { port, max_age }) = super::parse(&value) {
            prop_assert!(port != 0, "{value:?}");
            prop_assert!(max_age <= Duration::from_secs(MAX_AGE_CAP), "{value:?}");
        }
        Ok(())
    });
}

#[test]
fn alt_svc_generated_headers_parse_to_their_first_usable_h3_alternative() {
    let separators = proptest::collection::vec(prop_oneof![Just(","), Just(", "), Just(" ,  ")], 8);
    let strategy = (proptest::collection::vec(alternative(), 1..5), separators);
    check(
        "alt_svc_generated",
        parser_config(),
        strategy,
        |(alternatives, separators)| {
            let mut header = String::new();
            for (i, alt) in alternatives.iter().enumerate() {
                if i > 0 {
                    header.push_str(separators[i % separators.len()]);
                }
                header.push_str(&alt.text());
            }
            let want = alternatives.iter().find_map(Alternative::expected);
            prop_assert_eq!(super::parse(&header), want, "{}", header);
            Ok(())
        },
    );
}

#[test]
fn alt_svc_regressions() {
    // A server-chosen `ma` too large for an Instant once panicked the client when it was learnt.
    assert_eq!(
        super::parse(r#"h3=":443"; ma=18446744073709551615"#),
        Some(AltSvc::H3 {
            port: 443,
            max_age: Duration::from_secs(MAX_AGE_CAP)
        })
    );
    // An escaped quote inside another alternative's quoted-string does not end it.
    assert_eq!(
        super::parse(r#"h2="a\",b", h3=":8443""#),
        Some(AltSvc::H3 {
            port: 8443,
            max_age: DEFAULT_MAX_AGE
        })
    );
}

//! Property tests of the `grpc-timeout` parser against the grammar (gRPC PROTOCOL-HTTP2.md, "Requests"), with case counts from
//! `PROPTEST_CASES` (see `test_support::bounded_proptest`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use test_support::bounded_proptest::{check, parser_config};

// ---------------------------------------------------------------------------------------------
// grpc-timeout: TimeoutValue = 1*8 ASCII digits, TimeoutUnit = H / M / S / m / u / n.

const UNITS: [(u8, u64); 6] = [
    (b'H', 3_600_000_000_000),
    (b'M', 60_000_000_000),
    (b'S', 1_000_000_000),
    (b'm', 1_000_000),
    (b'u', 1_000),
    (b'n', 1),
];

/// The grammar as a reference model: the nanoseconds a value means, or `None` when malformed.
fn timeout_model(value: &[u8]) -> Option<u128> {
    let (&unit, digits) = value.split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let scale = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    let n: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(n * u128::from(scale))
}

#[test]
fn grpc_timeout_parser_agrees_with_the_grammar_on_any_bytes() {
    // Mostly near-misses of the grammar, plus arbitrary bytes.
    let near = proptest::string::bytes_regex("[0-9 +.-]{0,10}[HMSmunhsx]?")
        .unwrap()
        .boxed();
    let any = proptest::collection::vec(any::<u8>(), 0..16).boxed();
    check(
        "grpc_timeout_any_bytes",
        parser_config(),
        prop_oneof![near, any],
        |value| {
            let got = super::parse(&value).map(|d| d.as_nanos());
            prop_assert_eq!(got.ok(), timeout_model(&value), "{:?}", value);
            Ok(())
        },
    );
}

#[test]
fn grpc_timeout_valid_values_parse_exactly() {
    let strategy = (1u32..=8, any::<u64>(), 0usize..6).prop_map(|(digits, n, unit)| {
        let n = n % 10u64.pow(digits);
        // Leading zeros are part of the grammar: pad to the chosen width.
        format!(
            "{n:0width$}{}",
            UNITS[unit].0 as char,
            width = digits as usize
        )
    });
    check("grpc_timeout_valid", parser_config(), strategy, |value| {
        let d = super::parse(value.as_bytes());
        prop_assert!(d.is_ok(), "{value} refused");
        prop_assert_eq!(Some(d.unwrap().as_nanos()), timeout_model(value.as_bytes()));
        Ok(())
    });
}

#[test]
fn grpc_timeout_encoding_round_trips_rounding_up_by_less_than_one_unit() {
    let durations = prop_oneof![
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..400_000_000_000).prop_map(Duration::from_secs),
    ];
    check("grpc_timeout_round_trip", parser_config(), durations, |d| {
        let header = super::encode(d);
        let text = header.as_bytes();
        let Some(nanos) = timeout_model(text) else {
            return Err(TestCaseError::fail(format!(
                "{d:?} encoded as malformed {header:?}"
            )));
        };
        let parsed = super::parse(text).unwrap();
        prop_assert_eq!(parsed.as_nanos(), nanos);
        let max = 99_999_999u128 * 3_600_000_000_000;
        if d.as_nanos() <= max {
            // Never less time than allowed, and the finest unit that fits.
            let unit = UNITS
                .iter()
                .find(|(u, _)| Some(u) == text.last())
                .unwrap()
                .1;
            prop_assert!(parsed >= d, "{d:?} -> {header:?}");
            prop_assert!(
                parsed.as_nanos() - d.as_nanos() < u128::from(unit),
                "{d:?} -> {header:?}"
            );
        } else {
            prop_assert_eq!(text, b"99999999H");
        }
        Ok(())
    });
}

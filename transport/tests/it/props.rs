//! Property tests of what the transport parses from the network, through its public API (the
//! `grpc-timeout` and `Alt-Svc` parsers are tested beside them, in the crate): percent-encoded
//! `grpc-message`, `-bin` metadata, and the length-prefixed message framing ("Length-Prefixed-Message"); and, on the
//! client's receive path, arbitrary `grpc-message` and `-bin` values sent by a raw server.
//!
//! Case counts: `PROPTEST_CASES` for the pure parsers (default 256), `PROPTEST_NET_CASES` for the
//! ones that go through a server over both wires (default 32), so `cargo test` stays fast and
//! `scripts/fuzz.sh` can run long.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use common::{
    FUZZ_BIN, Fixture, Options, RAW_BIN, RAW_CODE, RAW_DETAILS, RAW_MESSAGE, RAW_TRAILERS_ONLY, hex,
};
use grpc_h3::Transport;
use http_body::Frame;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tonic::Code;
use tonic::codec::{DecodeBuf, Decoder, Streaming};
use tower::ServiceExt;
use zone_proto::grpc_testing::*;

use test_support::bounded_proptest::{cases_from, check, config, parser_config};

fn net_config() -> proptest::test_runner::Config {
    config(cases_from("PROPTEST_NET_CASES", 32))
}

// ---------------------------------------------------------------------------------------------
// Length-prefixed messages, decoded by tonic's `Streaming` (what the server runs on a request body).

/// Yields each message's bytes untouched, so only the framing is under test.
#[derive(Debug, Default)]
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

const DECODE_LIMIT: usize = 64;

/// One frame as generated: flag, declared length (may lie) and payload.
#[derive(Debug, Clone)]
struct RawFrame {
    flag: u8,
    declared: u32,
    payload: Vec<u8>,
}

impl RawFrame {
    fn is_valid(&self) -> bool {
        self.flag == 0
            && self.declared as usize == self.payload.len()
            && self.payload.len() <= DECODE_LIMIT
    }
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    let payload = proptest::collection::vec(any::<u8>(), 0..80);
    (
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => any::<u8>()],
        payload,
        prop_oneof![
            6 => Just(0i64),
            1 => -3i64..=3,
            1 => Just(i64::from(u32::MAX)),
            1 => Just(DECODE_LIMIT as i64 + 1),
        ],
    )
        .prop_map(|(flag, payload, delta)| {
            let declared = if delta == i64::from(u32::MAX) || delta == DECODE_LIMIT as i64 + 1 {
                delta as u32
            } else {
                (payload.len() as i64 + delta).max(0) as u32
            };
            RawFrame {
                flag,
                declared,
                payload,
            }
        })
}

fn encode_frames(frames: &[RawFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.push(f.flag);
        out.extend_from_slice(&f.declared.to_be_bytes());
        out.extend_from_slice(&f.payload);
    }
    out
}

type ChunkedBody = http_body_util::StreamBody<
    futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
>;

/// `bytes` as a body delivered in chunks cut at `cuts` (offsets modulo the length).
fn chunked_body(bytes: Vec<u8>, cuts: &[usize]) -> ChunkedBody {
    let mut offsets: Vec<usize> = cuts
        .iter()
        .map(|c| if bytes.is_empty() { 0 } else { c % bytes.len() })
        .collect();
    offsets.push(0);
    offsets.push(bytes.len());
    offsets.sort_unstable();
    offsets.dedup();
    let bytes = Bytes::from(bytes);
    let chunks: Vec<_> = offsets
        .windows(2)
        .map(|w| Ok(Frame::data(bytes.slice(w[0]..w[1]))))
        .collect();
    http_body_util::StreamBody::new(futures::stream::iter(chunks))
}

/// Decodes a request body completely: the messages, then how it ended.
fn decode_all(body: Vec<u8>, cuts: &[usize]) -> (Vec<Vec<u8>>, Result<(), tonic::Status>) {
    let mut stream = Streaming::new_request(
        RawDecoder,
        chunked_body(body, cuts),
        None,
        Some(DECODE_LIMIT),
    );
    futures::executor::block_on(async {
        let mut messages = Vec::new();
        // Bounded: every message consumes at least its 5-byte prefix.
        for _ in 0..10_000 {
            match stream.message().await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return (messages, Ok(())),
                Err(e) => return (messages, Err(e)),
            }
        }
        (
            messages,
            Err(tonic::Status::internal("decoder did not end")),
        )
    })
}

#[test]
fn length_prefixed_decoder_handles_any_framing() {
    let strategy = (
        prop_oneof![
            proptest::collection::vec(raw_frame(), 0..5)
                .prop_map(|frames| (encode_frames(&frames), Some(frames)))
                .boxed(),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| (b, None))
                .boxed(),
        ],
        proptest::option::of(0usize..400),
        proptest::collection::vec(any::<usize>(), 0..6),
    );
    check(
        "length_prefixed_decoder",
        parser_config(),
        strategy,
        |((mut body, frames), truncate, cuts)| {
            let truncated = truncate.is_some_and(|t| t < body.len());
            if let Some(t) = truncate {
                body.truncate(t);
            }
            let total = body.len();
            let (messages, end) = decode_all(body, &cuts);
            if let Err(status) = &end {
                prop_assert!(
                    matches!(
                        status.code(),
                        Code::Internal | Code::OutOfRange | Code::ResourceExhausted
                    ),
                    "unclean status {status:?}"
                );
            }
            prop_assert!(messages.len() * 5 <= total);
            // Well-formed frames come out exactly, wherever the body was cut into chunks.
            if let Some(frames) = frames.filter(|_| !truncated) {
                let valid = frames.iter().take_while(|f| f.is_valid()).count();
                let want: Vec<_> = frames[..valid].iter().map(|f| f.payload.clone()).collect();
                prop_assert!(messages.len() >= valid && messages[..valid] == want[..]);
                match frames.get(valid) {
                    None => {
                        prop_assert_eq!(&messages, &want);
                        prop_assert!(end.is_ok(), "{:?}", end);
                    }
                    // A bad flag or an over-limit length fails at once; a length that lies
                    // otherwise reframes the rest, which may or may not parse.
                    Some(bad) if bad.flag != 0 || bad.declared as usize > DECODE_LIMIT => {
                        prop_assert_eq!(&messages, &want);
                        prop_assert!(end.is_err(), "{:?} accepted", bad);
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Through a server, over both wires.

matrix!(
    grpc_message_round_trips_byte_identical,
    bin_metadata_round_trips_byte_identical,
    malformed_request_bodies_get_clean_statuses_and_the_connection_survives,
    any_received_grpc_message_and_bin_value_yields_a_status,
);

/// Runs a property whose cases are async calls, on the test's own (multi-thread) runtime.
fn check_async<S: Strategy, F>(name: &str, strategy: S, test: impl Fn(S::Value) -> F)
where
    F: std::future::Future<Output = Result<(), TestCaseError>>,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        check(name, net_config(), strategy, |value| {
            handle.block_on(test(value))
        })
    });
}

/// Any Unicode, control characters and `%` included.
fn unicode_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('%'),
            Just('\0'),
            Just('\r'),
            Just('\n'),
            Just(' ')
        ],
        0..48,
    )
    .prop_map(String::from_iter)
}

async fn grpc_message_round_trips_byte_identical(t: Transport) {
    let f = Fixture::start(t).await;
    check_async(
        &format!("grpc_message_{t}"),
        (1i32..=16, unicode_text()),
        |(code, message)| {
            let mut client = f.client();
            async move {
                let err = client
                    .unary_call(SimpleRequest {
                        response_status: Some(EchoStatus {
                            code,
                            message: message.clone(),
                        }),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err();
                prop_assert_eq!(err.code(), Code::from(code), "{:?}", err);
                prop_assert_eq!(err.message().as_bytes(), message.as_bytes());
                Ok(())
            }
        },
    );
}

async fn bin_metadata_round_trips_byte_identical(t: Transport) {
    let f = Fixture::start(t).await;
    check_async(
        &format!("bin_metadata_{t}"),
        proptest::collection::vec(any::<u8>(), 0..200),
        |value| {
            let mut client = f.client();
            async move {
                let mut req = tonic::Request::new(Empty {});
                req.metadata_mut().insert_bin(
                    "x-echo-initial-bin",
                    tonic::metadata::MetadataValue::from_bytes(&value),
                );
                let resp = client.empty_call(req).await;
                prop_assert!(resp.is_ok(), "{:?}", resp.err());
                let echoed = resp
                    .unwrap()
                    .metadata()
                    .get_bin("x-echo-initial-bin")
                    .map(|v| v.to_bytes());
                prop_assert!(
                    matches!(&echoed, Some(Ok(b)) if b[..] == value[..]),
                    "{:?}",
                    echoed
                );
                Ok(())
            }
        },
    );
}

async fn grpc_status_of(resp: http::Response<tonic::body::Body>) -> Result<Code, String> {
    use http_body_util::BodyExt;
    let headers = resp.headers().clone();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body error {e:?}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&headers))
        .map(|s| s.code())
        .ok_or_else(|| "no grpc-status".to_owned())
}

async fn malformed_request_bodies_get_clean_statuses_and_the_connection_survives(t: Transport) {
    let f = Fixture::start(t).await;
    let bodies = prop_oneof![
        proptest::collection::vec(raw_frame(), 0..4)
            .prop_map(|frames| encode_frames(&frames))
            .boxed(),
        proptest::collection::vec(any::<u8>(), 0..64).boxed(),
        // Over the server's limit (16 MiB) or the largest length a prefix can declare.
        prop_oneof![Just(common::MAX_MESSAGE as u32 + 1), Just(u32::MAX)]
            .prop_map(|len| encode_frames(&[RawFrame {
                flag: 0,
                declared: len,
                payload: vec![0; 16]
            }]))
            .boxed(),
    ];
    check_async(
        &format!("malformed_bodies_{t}"),
        (bodies, any::<bool>()),
        |(body, gzip)| {
            let channel = f.channel.clone();
            let mut client = f.client();
            async move {
                let mut req = http::Request::builder()
                    .method(http::Method::POST)
                    .uri("/grpc.testing.TestService/EmptyCall")
                    .header("content-type", "application/grpc")
                    .header("te", "trailers");
                if gzip {
                    req = req.header("grpc-encoding", "gzip");
                }
                let req = req
                    .body(tonic::body::Body::new(http_body_util::Full::new(
                        Bytes::from(body.clone()),
                    )))
                    .unwrap();
                let resp = channel.oneshot(req).await;
                prop_assert!(resp.is_ok(), "{body:?}: {:?}", resp.err());
                let code = grpc_status_of(resp.unwrap()).await;
                prop_assert!(
                    matches!(
                        code,
                        Ok(Code::Ok | Code::Internal | Code::ResourceExhausted)
                    ),
                    "{body:?} gzip={gzip}: {code:?}"
                );
                // The same connection still serves ordinary calls.
                let next = client.empty_call(Empty {}).await;
                prop_assert!(next.is_ok(), "after {body:?}: {:?}", next.err());
                Ok(())
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// What our client receives: a raw server answers with any `grpc-message` and `-bin` bytes a field
// value can carry, and the client (tonic's decoding, over our wires) must still yield a Status.

/// A byte an HTTP field value may hold (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB).
fn field_byte() -> impl Strategy<Value = u8> {
    prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff, Just(b'\t')]
}

/// Percent-decoding as PROTOCOL-HTTP2.md specifies it: `%` and two hex digits is one byte, and
/// anything else — a lone or truncated `%`, bad hex digits — stays as it is ("a receiver must
/// not fail on invalid encoding"). `None` when the bytes are not UTF-8 once decoded.
fn grpc_message_model(raw: &[u8]) -> Option<String> {
    let hex_digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let escaped = raw.get(i + 1..i + 3).and_then(|pair| {
            let (hi, lo) = (hex_digit(pair[0])?, hex_digit(pair[1])?);
            Some(hi << 4 | lo)
        });
        match escaped {
            Some(b) if raw[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes `text` as a gRPC sender should: `%`, and every byte outside 0x20–0x7E.
fn percent_encode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in text.as_bytes() {
        if b == b'%' || !(0x20..=0x7e).contains(&b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8], pad: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize]);
            } else if pad {
                out.push(b'=');
            }
        }
    }
    out
}

/// `-bin` decoding as PROTOCOL-HTTP2.md specifies it: base64 (RFC 4648 §4) where
/// "implementations MUST accept padded and un-padded values"; `=`s, when present, at most
/// complete the last quantum (a partial `Zg=` is accepted too, as tonic does: lenient, not
/// wrong), and the unused low bits of the last character are zero (RFC 4648 §3.5, canonical).
fn bin_model(raw: &[u8]) -> Option<Vec<u8>> {
    let pads = raw.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &raw[..raw.len() - pads];
    let rem = body.len() % 4;
    if rem == 1 || (rem == 0 && pads > 0) || pads > (4 - rem) % 4 {
        return None;
    }
    let sextets: Vec<u32> = body
        .iter()
        .map(|b| BASE64.iter().position(|c| c == b).map(|p| p as u32))
        .collect::<Option<_>>()?;
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &s)| n | s << (18 - 6 * i));
        let bytes = chunk.len() - 1;
        if n & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return None;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..=bytes]);
    }
    Some(out)
}

#[test]
fn reference_models_agree_with_the_specs_examples() {
    // PROTOCOL-HTTP2.md's and RFC 4648 §10's examples, and the invalid forms the models refuse.
    assert_eq!(grpc_message_model(b"a%20b%25c").as_deref(), Some("a b%c"));
    assert_eq!(grpc_message_model(b"%zz%4%").as_deref(), Some("%zz%4%"));
    assert_eq!(grpc_message_model(b"%C3%A9").as_deref(), Some("é"));
    assert_eq!(grpc_message_model(b"%C3%28"), None);
    assert_eq!(base64_encode(b"fo", true), b"Zm8=");
    assert_eq!(base64_encode(b"fo", false), b"Zm8");
    assert_eq!(bin_model(b"Zm9vYg==").unwrap(), b"foob");
    assert_eq!(bin_model(b"Zm9vYg").unwrap(), b"foob");
    assert_eq!(bin_model(b"Zm9vYg=").unwrap(), b"foob");
    assert_eq!(bin_model(b""), Some(vec![]));
    for bad in [
        &b"Zm9vYg==="[..],
        b"Zm9v=",
        b"Zm9vY",
        b"Zm9vYh==",
        b"Zm-_",
        b"Zm8==",
        b"====",
    ] {
        assert_eq!(bin_model(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

/// `grpc-message` values: arbitrary field bytes, near-misses of percent-encoding, and well-formed
/// encodings of any text.
fn raw_grpc_message() -> impl Strategy<Value = Vec<u8>> {
    let pieces = proptest::collection::vec(
        prop_oneof![
            Just(&b"%"[..]),
            Just(&b"%4"[..]),
            Just(&b"%zz"[..]),
            Just(&b"%25"[..]),
            Just(&b"%20"[..]),
            Just(&b"%00"[..]),
            Just(&b"%C3%A9"[..]),
            Just(&b"%c3%a9"[..]),
            Just(&b"%C3"[..]),
            Just(&b"%C3%28"[..]),
            Just(&b"%E2%82"[..]),
            Just(&b"%FF"[..]),
            Just(&b"\xc3\xa9"[..]),
            Just(&b"\xff"[..]),
            Just(&b"a"[..]),
            Just(&b" "[..]),
        ],
        0..12,
    )
    .prop_map(|p| p.concat());
    prop_oneof![
        proptest::collection::vec(field_byte(), 0..48).boxed(),
        pieces.boxed(),
        unicode_text().prop_map(|t| percent_encode(&t)).boxed(),
    ]
}

/// `-bin` values: padded and unpadded encodings, mutated ones, and arbitrary field bytes.
fn raw_bin_value() -> impl Strategy<Value = Vec<u8>> {
    let encoded = (proptest::collection::vec(any::<u8>(), 0..40), any::<bool>())
        .prop_map(|(bytes, pad)| base64_encode(&bytes, pad));
    let mutated = (
        encoded.clone(),
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(None),
            Just(Some(b'=')),
            Just(Some(b'-')),
            Just(Some(b'_')),
            Just(Some(b' ')),
            Just(Some(b'A')),
            Just(Some(b'/')),
        ],
    )
        .prop_map(|(mut value, at, byte)| {
            let at = at.index(value.len() + 1);
            match byte {
                None if at < value.len() => {
                    value.remove(at);
                }
                None => value.push(b'='),
                Some(b) => value.insert(at, b),
            }
            value
        });
    prop_oneof![
        3 => encoded,
        3 => mutated,
        2 => proptest::collection::vec(field_byte(), 0..32),
    ]
}

async fn any_received_grpc_message_and_bin_value_yields_a_status(t: Transport) {
    // `Misbehave` answers the raw status fields a call asks for (common::RAW_CODE).
    let f = Fixture::start_with(
        t,
        Options {
            misbehave: true,
            ..Default::default()
        },
    )
    .await;
    let channel = f.channel.clone();
    let strategy = (
        0i32..=16,
        raw_grpc_message(),
        raw_bin_value(),
        proptest::option::weighted(0.25, raw_bin_value()),
        any::<bool>(),
    );
    check_async(
        &format!("received_status_{t}"),
        strategy,
        |(code, message, bin, details, trailers_only)| {
            let mut client = zone_proto::grpc_testing::test_service_client::TestServiceClient::new(
                channel.clone(),
            );
            async move {
                let mut req = tonic::Request::new(Empty {});
                let m = req.metadata_mut();
                m.insert(RAW_CODE, code.to_string().parse().unwrap());
                m.insert(RAW_MESSAGE, hex(&message).parse().unwrap());
                m.insert(RAW_BIN, hex(&bin).parse().unwrap());
                if let Some(details) = &details {
                    m.insert(RAW_DETAILS, hex(details).parse().unwrap());
                }
                if trailers_only {
                    m.insert(RAW_TRAILERS_ONLY, "1".parse().unwrap());
                }
                // A panic here (tonic 0.14.9 `expect`s valid details) fails the case.
                let (got_code, got_message, got_details, metadata) =
                    match client.empty_call(req).await {
                        Ok(resp) => (Code::Ok, String::new(), None, resp.metadata().clone()),
                        Err(s) => (
                            s.code(),
                            s.message().to_owned(),
                            Some(s.details().to_vec()),
                            s.metadata().clone(),
                        ),
                    };
                let case = format!(
                    "code {code}, grpc-message {:?}, bin {:?}, details {:?}, trailers-only \
                     {trailers_only}",
                    String::from_utf8_lossy(&message),
                    String::from_utf8_lossy(&bin),
                    details.as_deref().map(String::from_utf8_lossy),
                );
                let details_model = details.as_deref().map(bin_model);
                if let Some(None) = details_model {
                    // Details that cannot be decoded cannot be passed on: INTERNAL, as grpc-go.
                    prop_assert_eq!(got_code, Code::Internal, "{}", case);
                    prop_assert_eq!(got_message, "malformed grpc-status-details-bin", "{}", case);
                } else if trailers_only && code == 0 {
                    // No message at all for a unary call that succeeded: tonic reports the
                    // broken promise (Trailers-Only is for "an immediate error").
                    prop_assert_eq!(got_code, Code::Internal, "{}", case);
                    return Ok(());
                } else {
                    // Not UTF-8 once decoded: PROTOCOL-HTTP2.md keeps the status and "at worst"
                    // gives the raw value as the message.
                    let text = grpc_message_model(&message)
                        .unwrap_or_else(|| String::from_utf8_lossy(&message).into_owned());
                    prop_assert_eq!(got_code, Code::from(code), "{}", case);
                    if code != 0 {
                        prop_assert_eq!(got_message, text, "{}", case);
                        let want = details_model.flatten().unwrap_or_default();
                        prop_assert_eq!(got_details, Some(want), "{}", case);
                    }
                }
                let got_bin = metadata
                    .get_bin(FUZZ_BIN)
                    .map(|v| v.to_bytes().map(|b| b.to_vec()).ok());
                prop_assert_eq!(got_bin, Some(bin_model(&bin)), "{}", case);
                Ok(())
            }
        },
    );
    // The connection that carried all of it still serves ordinary calls.
    let mut client =
        zone_proto::grpc_testing::test_service_client::TestServiceClient::new(channel.clone());
    client.empty_call(Empty {}).await.unwrap();
}

//! Observability over HTTP/2, HTTP/3 and Auto: gRFC A66 metrics read back through a recorder
//! installed for the whole process, and per-call tracing spans (with trace-context propagation)
//! through a process-wide subscriber — so this is a binary of its own; its cases take turns,
//! each reading only what it recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use grpc_h3::Transport;
use grpc_h3::metrics as m;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use test_support::fixture::{self, Fixture};
use tokio::sync::Mutex;
use zone_proto::grpc_testing::{
    EchoStatus, Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
};

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in this binary");
        snapshotter
    })
}

/// One case at a time: the recorder is the process's.
static TURN: Mutex<()> = Mutex::const_new(());

/// A metric's name and its attributes, sorted.
type Id = (String, Vec<(String, String)>);

/// What was recorded since the last read: counter totals and histogram values by metric.
#[derive(Debug, Default)]
struct Recorded {
    counters: HashMap<Id, u64>,
    /// Net change since the last read (the recorder hands gauges out and zeroes them).
    gauges: HashMap<Id, f64>,
    histograms: HashMap<Id, Vec<f64>>,
}

impl Recorded {
    fn take() -> Recorded {
        let mut out = Recorded::default();
        for (key, _, _, value) in snapshotter().snapshot().into_vec() {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            let id = (key.key().name().to_string(), labels);
            match value {
                DebugValue::Counter(n) if n > 0 => *out.counters.entry(id).or_default() += n,
                DebugValue::Gauge(v) => *out.gauges.entry(id).or_default() += v.into_inner(),
                DebugValue::Histogram(v) if !v.is_empty() => out
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
                _ => {}
            }
        }
        out
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters.get(&id(name, labels)).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.gauges.get(&id(name, labels)).copied().unwrap_or(0.0)
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .get(&id(name, labels))
            .cloned()
            .unwrap_or_default()
    }
}

fn id(name: &str, labels: &[(&str, &str)]) -> Id {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_string(), labels)
}

fn version(t: Transport) -> &'static str {
    match fixture::carried_over(t) {
        Transport::H3 => "3",
        _ => "2",
    }
}

const UNARY: &str = "grpc.testing.TestService/UnaryCall";
const STREAM: &str = "grpc.testing.TestService/StreamingOutputCall";

fn unary_request(size: usize, code: i32) -> SimpleRequest {
    SimpleRequest {
        response_size: 200,
        payload: Some(Payload {
            r#type: 0,
            body: vec![1; size],
        }),
        response_status: (code != 0).then(|| EchoStatus {
            code,
            message: "as asked".into(),
        }),
        ..SimpleRequest::default()
    }
}

/// Three OK calls and one UNAVAILABLE: counted per method, status and wire on both sides, with
/// the message sizes each side saw.
async fn unary_calls_are_counted_with_status_sizes_and_wire(t: Transport) {
    let _turn = TURN.lock().await;
    // The recorder first: handles are bound to the recorder present when they register.
    Recorded::take();
    let fx = Fixture::start(t).await;
    let mut client = fx.client();
    // A first call carries any connection set-up; then start counting.
    client.unary_call(unary_request(1, 0)).await.unwrap();
    Recorded::take();
    let ok = unary_request(100, 0);
    let request_bytes = prost::Message::encoded_len(&ok) as f64;
    for _ in 0..3 {
        client.unary_call(ok.clone()).await.unwrap();
    }
    let err = client.unary_call(unary_request(100, 14)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let r = Recorded::take();
    let v = version(t);
    let target = format!("https://{}", fx.addr);

    assert_eq!(
        r.counter(
            m::SERVER_CALL_STARTED,
            &[(m::METHOD, UNARY), (m::PROTOCOL_VERSION, v)]
        ),
        4,
        "{r:#?}"
    );
    let ok_labels = [
        (m::METHOD, UNARY),
        (m::STATUS, "OK"),
        (m::PROTOCOL_VERSION, v),
    ];
    let durations = r.histogram(m::SERVER_CALL_DURATION, &ok_labels);
    assert_eq!(durations.len(), 3, "{r:#?}");
    assert!(
        durations
            .iter()
            .all(|d| d.is_finite() && *d > 0.0 && *d < 10.0)
    );
    assert_eq!(
        r.histogram(m::SERVER_CALL_RCVD, &ok_labels),
        [request_bytes; 3]
    );
    let sent = r.histogram(m::SERVER_CALL_SENT, &ok_labels);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|&b| b >= 200.0), "{sent:?}");
    let failed = [
        (m::METHOD, UNARY),
        (m::STATUS, "UNAVAILABLE"),
        (m::PROTOCOL_VERSION, v),
    ];
    assert_eq!(r.histogram(m::SERVER_CALL_DURATION, &failed).len(), 1);

    assert_eq!(
        r.counter(
            m::CLIENT_ATTEMPT_STARTED,
            &[
                (m::METHOD, UNARY),
                (m::TARGET, &target),
                (m::PROTOCOL_VERSION, v)
            ]
        ),
        4,
        "{r:#?}"
    );
    let client_ok = [
        (m::METHOD, UNARY),
        (m::TARGET, &target),
        (m::STATUS, "OK"),
        (m::PROTOCOL_VERSION, v),
    ];
    assert_eq!(r.histogram(m::CLIENT_ATTEMPT_DURATION, &client_ok).len(), 3);
    assert_eq!(r.histogram(m::CLIENT_CALL_DURATION, &client_ok).len(), 3);
    assert_eq!(
        r.histogram(m::CLIENT_ATTEMPT_SENT, &client_ok),
        [request_bytes; 3]
    );
    assert_eq!(r.histogram(m::CLIENT_ATTEMPT_RCVD, &client_ok), sent);
    let client_failed = [
        (m::METHOD, UNARY),
        (m::TARGET, &target),
        (m::STATUS, "UNAVAILABLE"),
        (m::PROTOCOL_VERSION, v),
    ];
    assert_eq!(
        r.histogram(m::CLIENT_CALL_DURATION, &client_failed).len(),
        1
    );
}

/// A server stream's messages add up on both sides.
async fn a_server_stream_records_its_total_message_bytes(t: Transport) {
    let _turn = TURN.lock().await;
    // The recorder first: handles are bound to the recorder present when they register.
    Recorded::take();
    let fx = Fixture::start(t).await;
    let mut client = fx.client();
    client.unary_call(unary_request(1, 0)).await.unwrap();
    Recorded::take();
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 1000,
                ..ResponseParameters::default()
            };
            3
        ],
        ..StreamingOutputCallRequest::default()
    };
    let mut stream = client
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    let mut payload = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        payload += msg.payload.map_or(0, |p| p.body.len());
    }
    assert_eq!(payload, 3000);
    let r = Recorded::take();
    let v = version(t);
    let labels = [
        (m::METHOD, STREAM),
        (m::STATUS, "OK"),
        (m::PROTOCOL_VERSION, v),
    ];
    let sent = r.histogram(m::SERVER_CALL_SENT, &labels);
    assert_eq!(sent.len(), 1, "{r:#?}");
    // Each message is its payload plus a few bytes of protobuf framing.
    assert!((3000.0..3100.0).contains(&sent[0]), "{sent:?}");
}

/// A method the server does not serve is `other`, so made-up names cannot grow the label set.
async fn methods_the_server_does_not_serve_are_other(t: Transport) {
    let _turn = TURN.lock().await;
    // The recorder first: handles are bound to the recorder present when they register.
    Recorded::take();
    let fx = Fixture::start(t).await;
    let mut channel = fx.channel.clone();
    Recorded::take();
    let request = fixture::grpc_request("/made.Up/Method", tonic::body::Body::empty());
    let response = tower::ServiceExt::oneshot(&mut channel, request).await;
    // UNIMPLEMENTED arrives as a Trailers-Only response or as an error status.
    if let Ok(response) = response {
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    }
    let r = Recorded::take();
    let v = version(t);
    assert_eq!(
        r.counter(
            m::SERVER_CALL_STARTED,
            &[(m::METHOD, "other"), (m::PROTOCOL_VERSION, v)]
        ),
        1,
        "{r:#?}"
    );
    assert_eq!(
        r.histogram(
            m::SERVER_CALL_DURATION,
            &[
                (m::METHOD, "other"),
                (m::STATUS, "UNIMPLEMENTED"),
                (m::PROTOCOL_VERSION, v)
            ]
        )
        .len(),
        1,
        "{r:#?}"
    );
}

/// A connection is counted open on both ends while it lives, its handshake as "ok"; a QUIC
/// connection's RTT, congestion window and UDP counters are sampled when it ends.
async fn connections_and_handshakes_are_counted_and_quic_is_sampled(t: Transport) {
    let _turn = TURN.lock().await;
    // The recorder first: handles are bound to the recorder present when they register.
    Recorded::take();
    let mut fx = Fixture::start(t).await;
    fx.client().unary_call(unary_request(1, 0)).await.unwrap();
    let r = Recorded::take();
    let v = version(t);
    for side in ["server", "client"] {
        let labels = [(m::SIDE, side), (m::PROTOCOL_VERSION, v)];
        assert_eq!(r.gauge(m::CONNECTIONS_OPEN, &labels), 1.0, "{side} {r:#?}");
        let ok = [(m::SIDE, side), (m::PROTOCOL_VERSION, v), (m::RESULT, "ok")];
        assert_eq!(r.counter(m::HANDSHAKES, &ok), 1, "{side} {r:#?}");
    }
    assert_eq!(
        r.gauge(m::SERVER_ACTIVE_CALLS, &[(m::PROTOCOL_VERSION, v)]),
        0.0,
        "every call ended"
    );
    // Closing both ends: the gauges come back down and QUIC's figures are sampled.
    let channel = fx.channel.clone();
    fx.shutdown();
    if let Some(server) = fx.server.take() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    }
    drop(fx);
    drop(channel);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = Recorded::default();
    loop {
        let r = Recorded::take();
        for (k, v) in r.gauges {
            *seen.gauges.entry(k).or_default() += v;
        }
        for (k, v) in r.histograms {
            seen.histograms.entry(k).or_default().extend(v);
        }
        for (k, v) in r.counters {
            *seen.counters.entry(k).or_default() += v;
        }
        let client_closed = seen.gauge(
            m::CONNECTIONS_OPEN,
            &[(m::SIDE, "client"), (m::PROTOCOL_VERSION, v)],
        ) == -1.0;
        let sampled = v == "2"
            || !seen
                .histogram(m::QUIC_RTT, &[(m::SIDE, "client")])
                .is_empty();
        if client_closed && sampled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection not counted closed / sampled: {seen:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.gauge(
            m::CONNECTIONS_OPEN,
            &[(m::SIDE, "server"), (m::PROTOCOL_VERSION, v)]
        ),
        -1.0,
        "{seen:#?}"
    );
    if v == "3" {
        for side in ["server", "client"] {
            let rtt = seen.histogram(m::QUIC_RTT, &[(m::SIDE, side)]);
            assert!(rtt.iter().all(|s| *s > 0.0 && *s < 1.0), "{side}: {rtt:?}");
            assert!(!rtt.is_empty(), "{side}");
            assert!(!seen.histogram(m::QUIC_CWND, &[(m::SIDE, side)]).is_empty());
            assert!(seen.counter(m::QUIC_DATAGRAMS_SENT, &[(m::SIDE, side)]) > 0);
            assert!(seen.counter(m::QUIC_BYTES_RECEIVED, &[(m::SIDE, side)]) > 0);
        }
    } else {
        assert!(
            seen.histogram(m::QUIC_RTT, &[(m::SIDE, "client")])
                .is_empty()
        );
    }
}

/// HTTP/2 and HTTP/3 only: an Auto channel may open both connections while it races them.
mod connections {
    use super::connections_and_handshakes_are_counted_and_quic_is_sampled;

    test_support::matrix!(
        @wires [h2 H2, h3 H3] connections_and_handshakes_are_counted_and_quic_is_sampled
    );
}

/// A span's name and its fields as text.
type SpanRecord = (String, HashMap<String, String>);

/// Spans seen by the process-wide subscriber, by span id.
#[derive(Default)]
struct Spans(std::sync::Mutex<HashMap<u64, SpanRecord>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for &'static Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_string();
        let mut spans = self.0.lock().unwrap();
        spans.insert(id.into_u64(), (name, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some((_, fields)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

fn spans() -> &'static Spans {
    static SPANS: OnceLock<&'static Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans: &'static Spans = Box::leak(Box::default());
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(spans);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        spans
    })
}

/// Writes a `traceparent` naming the client span's id; the server side records what it got.
#[derive(Clone, Default)]
struct TestPropagator {
    extracted: Arc<std::sync::Mutex<Vec<String>>>,
}

impl grpc_h3::Propagator for TestPropagator {
    fn inject(&self, span: &tracing::Span, headers: &mut http::HeaderMap) {
        let id = span.id().map_or(0, |id| id.into_u64());
        let value = format!("00-{:032x}-{id:016x}-01", 0x5eed_u64);
        headers.insert("traceparent", value.parse().unwrap());
    }

    fn extract(&self, headers: &http::HeaderMap, _span: &tracing::Span) {
        if let Some(v) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            self.extracted.lock().unwrap().push(v.to_string());
        }
    }
}

/// One span per call on each side with method, wire, peer, status and duration; the client's
/// trace context reaches the server through `traceparent` when both ends have a propagator.
async fn calls_have_spans_and_carry_trace_context(t: Transport) {
    let _turn = TURN.lock().await;
    // The recorder first: handles are bound to the recorder present when they register.
    Recorded::take();
    let spans = spans();
    let propagator = TestPropagator::default();
    let fx = Fixture::start_custom(t, fixture::Options::default(), |b| {
        b.propagator(propagator.clone())
    })
    .await;
    let addr = fx.addr;
    let channel = fixture::endpoint(t, addr)
        .propagator(propagator.clone())
        .connect()
        .await
        .unwrap();
    let mut client = zone_proto::grpc_testing::test_service_client::TestServiceClient::new(channel);
    client.unary_call(unary_request(1, 0)).await.unwrap();
    spans.0.lock().unwrap().clear();
    propagator.extracted.lock().unwrap().clear();
    client.unary_call(unary_request(10, 0)).await.unwrap();
    // The server records its span's end when the response body ends: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (client_span, server_span) = loop {
        let found = |name: &str| {
            spans
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(_, (n, f))| n == name && f.contains_key("grpc.status"))
                .map(|(id, (_, f))| (*id, f.clone()))
        };
        if let (Some(c), Some(s)) = (found("grpc.client"), found("grpc.server")) {
            break (c, s);
        }
        assert!(std::time::Instant::now() < deadline, "no finished spans");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let v = version(t);
    for (side, fields) in [("client", &client_span.1), ("server", &server_span.1)] {
        assert_eq!(fields["rpc.method"], UNARY, "{side} {fields:?}");
        assert_eq!(fields["network.protocol.version"], v, "{side} {fields:?}");
        assert_eq!(fields["grpc.status"], "OK", "{side} {fields:?}");
        let ms: f64 = fields["duration_ms"].parse().unwrap();
        assert!(ms > 0.0 && ms < 10_000.0, "{side} {fields:?}");
    }
    assert!(
        server_span.1.contains_key("client.address"),
        "{server_span:?}"
    );
    assert_eq!(client_span.1["server.address"], addr.to_string());
    let extracted = propagator.extracted.lock().unwrap().clone();
    assert_eq!(
        extracted,
        [format!("00-{:032x}-{:016x}-01", 0x5eed_u64, client_span.0)],
        "the server got the client span's context"
    );
}

test_support::matrix!(
    calls_have_spans_and_carry_trace_context,
    unary_calls_are_counted_with_status_sizes_and_wire,
    a_server_stream_records_its_total_message_bytes,
    methods_the_server_does_not_serve_are_other,
);

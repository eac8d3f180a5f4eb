//! Per-call metrics of gRFC A66 ("OpenTelemetry Metrics"), recorded through the `metrics` facade
//! on both wires, server and client side. The library installs no recorder: an application that
//! wants the figures installs one (a Prometheus exporter, an OpenTelemetry bridge); without one
//! every record is a no-op.
//!
//! Names, units and attributes follow A66; each metric also carries the wire as
//! `network.protocol.version` ("2" or "3", OpenTelemetry semantic conventions). Durations are in
//! seconds, sizes in bytes of gRPC message payload as sent (compressed if compression is on,
//! without the 5-byte message prefix or TLS).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Code;

use crate::Transport;

/// Server: calls started (A66 `grpc.server.call.started`); attributes method, wire.
pub const SERVER_CALL_STARTED: &str = "grpc.server.call.started";
/// Server: seconds from request headers to the end of the response (A66
/// `grpc.server.call.duration`); attributes method, status, wire.
pub const SERVER_CALL_DURATION: &str = "grpc.server.call.duration";
/// Server: message bytes sent per call (A66
/// `grpc.server.call.sent_total_compressed_message_size`); attributes method, status, wire.
pub const SERVER_CALL_SENT: &str = "grpc.server.call.sent_total_compressed_message_size";
/// Server: message bytes received per call (A66
/// `grpc.server.call.rcvd_total_compressed_message_size`); attributes method, status, wire.
pub const SERVER_CALL_RCVD: &str = "grpc.server.call.rcvd_total_compressed_message_size";
/// Client: attempts started (A66 `grpc.client.attempt.started`); attributes method, target,
/// wire. A [`Channel`](crate::Channel) makes one attempt per call (it never retries).
pub const CLIENT_ATTEMPT_STARTED: &str = "grpc.client.attempt.started";
/// Client: seconds of one attempt (A66 `grpc.client.attempt.duration`); attributes method,
/// target, status, wire.
pub const CLIENT_ATTEMPT_DURATION: &str = "grpc.client.attempt.duration";
/// Client: message bytes sent per attempt (A66
/// `grpc.client.attempt.sent_total_compressed_message_size`).
pub const CLIENT_ATTEMPT_SENT: &str = "grpc.client.attempt.sent_total_compressed_message_size";
/// Client: message bytes received per attempt (A66
/// `grpc.client.attempt.rcvd_total_compressed_message_size`).
pub const CLIENT_ATTEMPT_RCVD: &str = "grpc.client.attempt.rcvd_total_compressed_message_size";
/// Client: seconds of a call as the application sees it (A66 `grpc.client.call.duration`);
/// attributes method, target, status, wire.
pub const CLIENT_CALL_DURATION: &str = "grpc.client.call.duration";

/// Attribute: the full method name without the leading slash (`pkg.Service/Method`), or
/// `other` for methods the server does not serve.
pub const METHOD: &str = "grpc.method";
/// Attribute: the status code name (`OK`, `UNAVAILABLE`, ...).
pub const STATUS: &str = "grpc.status";
/// Attribute: the channel's target (`https://host:port`).
pub const TARGET: &str = "grpc.target";
/// Attribute: the HTTP version of the wire, "2" or "3".
pub const PROTOCOL_VERSION: &str = "network.protocol.version";

/// Connections open now (gauge); attributes `side` ("server"/"client"), wire.
pub const CONNECTIONS_OPEN: &str = "grpc_h3.connections.open";
/// Handshakes (TLS over TCP, QUIC) by outcome (counter); attributes `side`, wire, `result`
/// ("ok", "failed", "timeout").
pub const HANDSHAKES: &str = "grpc_h3.handshakes";
/// gRPC calls in progress on a server (gauge; one per request stream); attribute wire.
pub const SERVER_ACTIVE_CALLS: &str = "grpc_h3.server.active_calls";
/// QUIC Retry packets a server sent to validate a client's address (counter; RFC 9000 §8.1.2).
pub const QUIC_RETRIES: &str = "grpc_h3.quic.retries_sent";
/// QUIC 0-RTT attempts of a client by outcome (counter); `result` "accepted" / "rejected".
pub const QUIC_ZERO_RTT: &str = "grpc_h3.quic.zero_rtt";
/// QUIC connections that ended with a stateless reset from the peer (counter; RFC 9000 §10.3).
pub const QUIC_STATELESS_RESETS: &str = "grpc_h3.quic.stateless_resets";
/// Client address changes a server saw on a QUIC connection (counter; RFC 9000 §9).
pub const QUIC_MIGRATIONS: &str = "grpc_h3.quic.migrations";
/// Smoothed RTT of QUIC connections, sampled (histogram, seconds); attribute `side`.
pub const QUIC_RTT: &str = "grpc_h3.quic.rtt";
/// Congestion window of QUIC connections, sampled (histogram, bytes); attribute `side`.
pub const QUIC_CWND: &str = "grpc_h3.quic.congestion_window";
/// Packets QUIC declared lost (counter); attribute `side`.
pub const QUIC_LOST_PACKETS: &str = "grpc_h3.quic.lost_packets";
/// Bytes in packets QUIC declared lost (counter); attribute `side`.
pub const QUIC_LOST_BYTES: &str = "grpc_h3.quic.lost_bytes";
/// Congestion events (counter); attribute `side`.
pub const QUIC_CONGESTION_EVENTS: &str = "grpc_h3.quic.congestion_events";
/// QUIC packets sent (counter); attribute `side`.
pub const QUIC_SENT_PACKETS: &str = "grpc_h3.quic.sent_packets";
/// UDP datagrams sent and received (counters); attribute `side`.
pub const QUIC_DATAGRAMS_SENT: &str = "grpc_h3.quic.udp.datagrams_sent";
/// See [`QUIC_DATAGRAMS_SENT`].
pub const QUIC_DATAGRAMS_RECEIVED: &str = "grpc_h3.quic.udp.datagrams_received";
/// UDP payload bytes sent and received (counters); attribute `side`.
pub const QUIC_BYTES_SENT: &str = "grpc_h3.quic.udp.bytes_sent";
/// See [`QUIC_BYTES_SENT`].
pub const QUIC_BYTES_RECEIVED: &str = "grpc_h3.quic.udp.bytes_received";

/// Attribute: which end recorded ("server" or "client").
pub const SIDE: &str = "side";
/// Attribute: the outcome of a handshake or 0-RTT attempt.
pub const RESULT: &str = "result";

/// Every metric above with its unit, for exporters that want descriptions.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(SERVER_CALL_STARTED, Unit::Count, "Server calls started");
    metrics::describe_histogram!(SERVER_CALL_DURATION, Unit::Seconds, "Server call duration");
    metrics::describe_histogram!(SERVER_CALL_SENT, Unit::Bytes, "Message bytes sent per call");
    metrics::describe_histogram!(
        SERVER_CALL_RCVD,
        Unit::Bytes,
        "Message bytes received per call"
    );
    metrics::describe_counter!(
        CLIENT_ATTEMPT_STARTED,
        Unit::Count,
        "Client attempts started"
    );
    metrics::describe_histogram!(
        CLIENT_ATTEMPT_DURATION,
        Unit::Seconds,
        "Client attempt duration"
    );
    metrics::describe_histogram!(
        CLIENT_ATTEMPT_SENT,
        Unit::Bytes,
        "Message bytes sent per attempt"
    );
    metrics::describe_histogram!(
        CLIENT_ATTEMPT_RCVD,
        Unit::Bytes,
        "Message bytes received per attempt"
    );
    metrics::describe_histogram!(CLIENT_CALL_DURATION, Unit::Seconds, "Client call duration");
    metrics::describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "Connections open");
    metrics::describe_counter!(HANDSHAKES, Unit::Count, "Handshakes by result");
    metrics::describe_gauge!(SERVER_ACTIVE_CALLS, Unit::Count, "Server calls in progress");
    metrics::describe_counter!(QUIC_RETRIES, Unit::Count, "QUIC Retry packets sent");
    metrics::describe_counter!(QUIC_ZERO_RTT, Unit::Count, "QUIC 0-RTT attempts by result");
    metrics::describe_counter!(QUIC_STATELESS_RESETS, Unit::Count, "QUIC stateless resets");
    metrics::describe_counter!(QUIC_MIGRATIONS, Unit::Count, "QUIC client address changes");
    metrics::describe_histogram!(QUIC_RTT, Unit::Seconds, "QUIC smoothed RTT, sampled");
    metrics::describe_histogram!(QUIC_CWND, Unit::Bytes, "QUIC congestion window, sampled");
    metrics::describe_counter!(QUIC_LOST_PACKETS, Unit::Count, "QUIC packets lost");
    metrics::describe_counter!(QUIC_LOST_BYTES, Unit::Bytes, "QUIC bytes lost");
    metrics::describe_counter!(
        QUIC_CONGESTION_EVENTS,
        Unit::Count,
        "QUIC congestion events"
    );
    metrics::describe_counter!(QUIC_SENT_PACKETS, Unit::Count, "QUIC packets sent");
    metrics::describe_counter!(QUIC_DATAGRAMS_SENT, Unit::Count, "UDP datagrams sent");
    metrics::describe_counter!(
        QUIC_DATAGRAMS_RECEIVED,
        Unit::Count,
        "UDP datagrams received"
    );
    metrics::describe_counter!(QUIC_BYTES_SENT, Unit::Bytes, "UDP bytes sent");
    metrics::describe_counter!(QUIC_BYTES_RECEIVED, Unit::Bytes, "UDP bytes received");
}

/// The `side` attribute's value.
pub(crate) fn side_name(side: Side) -> &'static str {
    match side {
        Side::Server => "server",
        Side::Client => "client",
    }
}

/// Counts a handshake's outcome.
pub(crate) fn handshake(side: Side, transport: Transport, result: &'static str) {
    metrics::counter!(
        HANDSHAKES,
        SIDE => side_name(side),
        PROTOCOL_VERSION => protocol_version(transport),
        RESULT => result
    )
    .increment(1);
}

/// Counts a client's 0-RTT attempt by whether the server accepted its early data.
pub(crate) fn zero_rtt(accepted: bool) {
    let result = if accepted { "accepted" } else { "rejected" };
    metrics::counter!(QUIC_ZERO_RTT, RESULT => result).increment(1);
}

/// Counts `name` once for `side`.
pub(crate) fn count(name: &'static str, side: Side) {
    metrics::counter!(name, SIDE => side_name(side)).increment(1);
}

/// An open connection, counted in [`CONNECTIONS_OPEN`] until dropped.
pub(crate) struct OpenConnection {
    gauge: metrics::Gauge,
}

impl OpenConnection {
    pub(crate) fn new(side: Side, transport: Transport) -> Self {
        let gauge = metrics::gauge!(
            CONNECTIONS_OPEN,
            SIDE => side_name(side),
            PROTOCOL_VERSION => protocol_version(transport)
        );
        gauge.increment(1.0);
        OpenConnection { gauge }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// Feeds a QUIC connection's statistics into the QUIC metrics: RTT and congestion window as
/// samples, the counters as increments since the previous sample.
pub(crate) struct QuicSampler {
    side: Side,
    previous: quinn::ConnectionStats,
}

impl QuicSampler {
    /// How often a long-lived connection is sampled (and once more when it ends).
    pub(crate) const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    pub(crate) fn new(side: Side) -> Self {
        QuicSampler {
            side,
            previous: quinn::ConnectionStats::default(),
        }
    }

    pub(crate) fn sample(&mut self, conn: &quinn::Connection) {
        let now = conn.stats();
        let side = side_name(self.side);
        let (p, q) = (&now.path, &self.previous.path);
        metrics::histogram!(QUIC_RTT, SIDE => side).record(p.rtt.as_secs_f64());
        metrics::histogram!(QUIC_CWND, SIDE => side).record(p.cwnd as f64);
        let counters = [
            (QUIC_LOST_PACKETS, p.lost_packets, q.lost_packets),
            (QUIC_LOST_BYTES, p.lost_bytes, q.lost_bytes),
            (
                QUIC_CONGESTION_EVENTS,
                p.congestion_events,
                q.congestion_events,
            ),
            (QUIC_SENT_PACKETS, p.sent_packets, q.sent_packets),
            (
                QUIC_DATAGRAMS_SENT,
                now.udp_tx.datagrams,
                self.previous.udp_tx.datagrams,
            ),
            (
                QUIC_DATAGRAMS_RECEIVED,
                now.udp_rx.datagrams,
                self.previous.udp_rx.datagrams,
            ),
            (
                QUIC_BYTES_SENT,
                now.udp_tx.bytes,
                self.previous.udp_tx.bytes,
            ),
            (
                QUIC_BYTES_RECEIVED,
                now.udp_rx.bytes,
                self.previous.udp_rx.bytes,
            ),
        ];
        for (name, now, before) in counters {
            metrics::counter!(name, SIDE => side).increment(now.saturating_sub(before));
        }
        self.previous = now;
    }
}

/// The `network.protocol.version` of a wire.
pub(crate) fn protocol_version(transport: Transport) -> &'static str {
    match transport {
        Transport::H3 => "3",
        _ => "2",
    }
}

/// A66's `grpc.status` value of a code: its name in the gRPC spec (statuscodes.md), as other
/// stacks print it (`UNAVAILABLE`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `grpc-status` of a header block (trailers, or the headers of a Trailers-Only response).
pub(crate) fn status_of(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code: i32 = value.to_str().ok()?.parse().ok()?;
    Some(Code::from_i32(code))
}

/// Counts gRPC message payload bytes in a body: the lengths of its Length-Prefixed-Messages
/// (PROTOCOL-HTTP2.md), whatever the DATA frame boundaries.
#[derive(Debug, Default)]
pub(crate) struct MessageBytes {
    prefix: [u8; 5],
    have: usize,
    left: u64,
    total: u64,
}

impl MessageBytes {
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = usize::try_from(self.left).map_or(data.len(), |l| l.min(data.len()));
                self.left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.left = u64::from(len);
                self.total += u64::from(len);
                self.have = 0;
            }
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

/// The interned per-method metric handles of one server or one channel: the path's method for
/// services a server serves (any, on a channel or for routes added whole), `other` for the rest
/// and past [`MethodTable::MAX`] names, so a peer cannot grow the label set with made-up names
/// (A66).
#[derive(Debug)]
pub(crate) struct MethodTable {
    side: Side,
    target: Option<metrics::SharedString>,
    /// Services added with `add_service`; `None`: any well-formed path counts.
    services: Option<Vec<String>>,
    seen: RwLock<HashMap<String, Arc<MethodMetrics>>>,
    other: Arc<MethodMetrics>,
}

impl MethodTable {
    /// Distinct method labels one table holds at most; later ones are `other`.
    const MAX: usize = 1024;

    /// A server's table; `services` as for [`MethodTable::services`].
    pub(crate) fn server(services: Option<Vec<String>>) -> Self {
        Self::new(Side::Server, None, services)
    }

    /// A channel's table, every method with `grpc.target` = `target`.
    pub(crate) fn client(target: metrics::SharedString) -> Self {
        Self::new(Side::Client, Some(target), None)
    }

    fn new(
        side: Side,
        target: Option<metrics::SharedString>,
        services: Option<Vec<String>>,
    ) -> Self {
        let other = Arc::new(MethodMetrics::new(
            side,
            metrics::SharedString::const_str("other"),
            target.clone(),
        ));
        MethodTable {
            side,
            target,
            services,
            seen: RwLock::new(HashMap::new()),
            other,
        }
    }

    /// The handles of the method `path` names.
    pub(crate) fn get(&self, path: &str) -> Arc<MethodMetrics> {
        let Some(method) = path.strip_prefix('/') else {
            return self.other.clone();
        };
        let Some((service, name)) = method.split_once('/') else {
            return self.other.clone();
        };
        if name.is_empty() || name.contains('/') {
            return self.other.clone();
        }
        if let Some(services) = &self.services
            && !services.iter().any(|s| s == service)
        {
            return self.other.clone();
        }
        if let Some(found) = self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(method)
        {
            return found.clone();
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = seen.get(method) {
            return found.clone();
        }
        if seen.len() >= Self::MAX {
            return self.other.clone();
        }
        let entry = Arc::new(MethodMetrics::new(
            self.side,
            metrics::SharedString::from_owned(method.to_owned()),
            self.target.clone(),
        ));
        seen.insert(method.to_owned(), entry.clone());
        entry
    }
}

/// One method's metric handles, registered with the recorder on first use of each wire and
/// status, then reused: a registry lookup per record (building the key, hashing its labels)
/// cost a small call ~10 % of its CPU. Handles are bound to the recorder installed when they
/// are registered, so install the recorder before the first call.
#[derive(Debug)]
pub(crate) struct MethodMetrics {
    side: Side,
    method: metrics::SharedString,
    target: Option<metrics::SharedString>,
    /// By wire: HTTP/2, HTTP/3.
    wires: [WireHandles; 2],
}

#[derive(Debug, Default)]
struct WireHandles {
    started: OnceLock<metrics::Counter>,
    active: OnceLock<metrics::Gauge>,
    /// By status code (0..=16).
    ended: [OnceLock<EndHandles>; 17],
}

#[derive(Debug)]
struct EndHandles {
    duration: metrics::Histogram,
    /// The client's `grpc.client.call.duration` (one attempt per call).
    call_duration: Option<metrics::Histogram>,
    sent: metrics::Histogram,
    received: metrics::Histogram,
}

/// The index of a `network.protocol.version` in [`MethodMetrics::wires`].
fn wire_index(version: &'static str) -> usize {
    usize::from(version == "3")
}

impl MethodMetrics {
    fn new(
        side: Side,
        method: metrics::SharedString,
        target: Option<metrics::SharedString>,
    ) -> Self {
        MethodMetrics {
            side,
            method,
            target,
            wires: Default::default(),
        }
    }

    /// The method's `grpc.method` value.
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    fn labels(&self, version: &'static str, status: Option<&'static str>) -> Vec<metrics::Label> {
        let mut labels = vec![metrics::Label::new(METHOD, self.method.clone())];
        if let Some(target) = &self.target {
            labels.push(metrics::Label::new(TARGET, target.clone()));
        }
        if let Some(status) = status {
            labels.push(metrics::Label::new(STATUS, status));
        }
        labels.push(metrics::Label::new(PROTOCOL_VERSION, version));
        labels
    }

    /// Counts a started call (and, on a server, one more active call).
    pub(crate) fn start(&self, version: &'static str) {
        let wire = &self.wires[wire_index(version)];
        let name = match self.side {
            Side::Server => SERVER_CALL_STARTED,
            Side::Client => CLIENT_ATTEMPT_STARTED,
        };
        wire.started
            .get_or_init(|| metrics::counter!(name, self.labels(version, None)))
            .increment(1);
        if self.side == Side::Server {
            wire.active
                .get_or_init(|| metrics::gauge!(SERVER_ACTIVE_CALLS, PROTOCOL_VERSION => version))
                .increment(1.0);
        }
    }

    fn end(&self, version: &'static str, code: Code, secs: f64, sent: f64, received: f64) {
        let wire = &self.wires[wire_index(version)];
        let index = usize::try_from(code as i32).map_or(2, |i| i.min(16));
        let status = code_name(code);
        let handles = wire.ended[index].get_or_init(|| {
            let labels = self.labels(version, Some(status));
            match self.side {
                Side::Server => EndHandles {
                    duration: metrics::histogram!(SERVER_CALL_DURATION, labels.clone()),
                    call_duration: None,
                    sent: metrics::histogram!(SERVER_CALL_SENT, labels.clone()),
                    received: metrics::histogram!(SERVER_CALL_RCVD, labels),
                },
                Side::Client => EndHandles {
                    duration: metrics::histogram!(CLIENT_ATTEMPT_DURATION, labels.clone()),
                    call_duration: Some(metrics::histogram!(CLIENT_CALL_DURATION, labels.clone())),
                    sent: metrics::histogram!(CLIENT_ATTEMPT_SENT, labels.clone()),
                    received: metrics::histogram!(CLIENT_ATTEMPT_RCVD, labels),
                },
            }
        });
        handles.duration.record(secs);
        if let Some(call) = &handles.call_duration {
            call.record(secs);
        }
        handles.sent.record(sent);
        handles.received.record(received);
        if let Some(active) = wire.active.get() {
            active.decrement(1.0);
        }
    }
}

/// A request body that counts its message bytes into a shared total (read when the call ends).
pub(crate) struct CountedBody<B> {
    inner: B,
    bytes: MessageBytes,
    total: Arc<AtomicU64>,
}

impl<B> CountedBody<B> {
    pub(crate) fn new(inner: B) -> (Self, Arc<AtomicU64>) {
        let total = Arc::new(AtomicU64::new(0));
        let body = CountedBody {
            inner,
            bytes: MessageBytes::default(),
            total: total.clone(),
        };
        (body, total)
    }
}

impl<B> HttpBody for CountedBody<B>
where
    B: HttpBody + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes.feed(data.chunk());
            this.total.store(this.bytes.total(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a call records when it ends: its method's handles, its wire and start.
pub(crate) struct CallEnd {
    pub(crate) metrics: Arc<MethodMetrics>,
    pub(crate) version: &'static str,
    pub(crate) started: Instant,
    /// Message bytes of the request: received by a server, sent by a client.
    pub(crate) request_bytes: Arc<AtomicU64>,
    /// The call's tracing span: its status and duration are recorded on it at the end.
    pub(crate) span: tracing::Span,
}

/// Which side records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

impl CallEnd {
    /// Records the ended call with `status`; `response_bytes` are the message bytes of the
    /// response body (sent by a server, received by a client).
    pub(crate) fn record(self, status: Code, response_bytes: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        let request = self.request_bytes.load(Ordering::Relaxed) as f64;
        let response = response_bytes as f64;
        self.span.record("grpc.status", code_name(status));
        self.span.record("duration_ms", secs * 1e3);
        let (sent, received) = match self.metrics.side {
            Side::Server => (response, request),
            Side::Client => (request, response),
        };
        self.metrics.end(self.version, status, secs, sent, received);
    }
}

/// A call not yet answered: recorded as CANCELLED if dropped before its response head (the
/// deadline or the caller ended it), else handed to the response body.
pub(crate) struct PendingEnd(Option<CallEnd>);

impl PendingEnd {
    pub(crate) fn new(end: CallEnd) -> Self {
        PendingEnd(Some(end))
    }

    pub(crate) fn take(mut self) -> Option<CallEnd> {
        self.0.take()
    }

    /// Records the call now, with `status` (a call that failed before any response body).
    pub(crate) fn fail(mut self, status: Code) {
        if let Some(end) = self.0.take() {
            end.record(status, 0);
        }
    }
}

impl Drop for PendingEnd {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end.record(Code::Cancelled, 0);
        }
    }
}

/// A response body that records the call when it ends: at its trailers (or the end of a
/// Trailers-Only response), or when dropped before that (CANCELLED: the peer or the caller went
/// away).
pub(crate) struct ObservedBody<B> {
    inner: B,
    bytes: MessageBytes,
    /// The status of a Trailers-Only response, from its headers.
    head_status: Option<Code>,
    end: Option<CallEnd>,
}

impl<B> ObservedBody<B> {
    pub(crate) fn new(inner: B, head_status: Option<Code>, end: CallEnd) -> Self {
        ObservedBody {
            inner,
            bytes: MessageBytes::default(),
            head_status,
            end: Some(end),
        }
    }

    fn finish(&mut self, status: Code) {
        if let Some(end) = self.end.take() {
            end.record(status, self.bytes.total());
        }
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        let status = self.head_status.unwrap_or(Code::Cancelled);
        self.finish(status);
    }
}

impl<B> HttpBody for ObservedBody<B>
where
    B: HttpBody<Error = tonic::Status> + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes.feed(data.chunk());
                } else if let Some(trailers) = frame.trailers_ref() {
                    let status = status_of(trailers).unwrap_or(Code::Unknown);
                    this.finish(status);
                }
            }
            Poll::Ready(Some(Err(status))) => this.finish(status.code()),
            Poll::Ready(None) => {
                // A body that ends without trailers: Trailers-Only, or a peer that broke off.
                let status = this.head_status.unwrap_or(Code::Unknown);
                this.finish(status);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn message_bytes_count_payloads_across_any_split() {
        let body: Vec<u8> = [message(3), message(0), message(300)].concat();
        for split in [1, 2, 4, 5, 6, 7, 64, 1000] {
            let mut count = MessageBytes::default();
            for chunk in body.chunks(split) {
                count.feed(chunk);
            }
            assert_eq!(count.total(), 303, "chunks of {split}");
        }
    }

    #[test]
    fn unserved_and_malformed_methods_are_other() {
        let labels = MethodTable::server(Some(vec!["pkg.Svc".into()]));
        assert_eq!(labels.get("/pkg.Svc/Get").method(), "pkg.Svc/Get");
        assert_eq!(labels.get("/pkg.Other/Get").method(), "other");
        assert_eq!(labels.get("/pkg.Svc").method(), "other");
        assert_eq!(labels.get("/pkg.Svc/").method(), "other");
        assert_eq!(labels.get("/pkg.Svc/a/b").method(), "other");
        assert_eq!(labels.get("pkg.Svc/Get").method(), "other");
        // Routes given whole: any service, but no more than MAX distinct labels.
        let open = MethodTable::server(None);
        for i in 0..MethodTable::MAX {
            assert_ne!(open.get(&format!("/s/m{i}")).method(), "other");
        }
        assert_eq!(open.get("/s/one-too-many").method(), "other");
        assert_eq!(open.get("/s/m0").method(), "s/m0");
        // The same method is the same handles.
        assert!(Arc::ptr_eq(&open.get("/s/m1"), &open.get("/s/m1")));
    }

    #[test]
    fn status_names_are_the_specs() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(status_of(&h), Some(Code::Unavailable));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(status_of(&h), None);
    }
}

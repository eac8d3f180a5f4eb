//! Per-call tracing spans on both wires, and the hook that carries trace context (W3C
//! `traceparent`) in call metadata when the application supplies a [`Propagator`].
//!
//! Every call gets a span: `grpc.server` around the handler, `grpc.client` around the call, with
//! the method, the wire (`network.protocol.version`), the peer, and — when the call ends — its
//! `grpc.status` and `duration_ms`. Without a subscriber the spans cost one disabled check.
//! grpc-h3 depends on no OpenTelemetry crate: an application that exports traces implements
//! [`Propagator`] with its SDK's propagator (for OpenTelemetry: `TraceContextPropagator` plus
//! tracing-opentelemetry's `OpenTelemetrySpanExt`), and server and client spans connect.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

/// Moves trace context between a call's span and its request headers, like an OpenTelemetry
/// `TextMapPropagator` (W3C Trace Context: `traceparent`, `tracestate`).
pub trait Propagator: Send + Sync + 'static {
    /// Client side: writes the context of `span` (the call's `grpc.client` span) into the
    /// request's headers before it is sent.
    fn inject(&self, span: &tracing::Span, headers: &mut HeaderMap);

    /// Server side: makes `span` (the call's `grpc.server` span) a child of the context found in
    /// the request's headers, if any.
    fn extract(&self, headers: &HeaderMap, span: &tracing::Span);
}

/// A shared [`Propagator`] (`Debug` so settings that hold one stay printable).
#[derive(Clone)]
pub(crate) struct SharedPropagator(pub(crate) Arc<dyn Propagator>);

impl fmt::Debug for SharedPropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Propagator")
    }
}

/// The span of a server call.
pub(crate) fn server_span(
    method: &str,
    version: &str,
    peer: Option<std::net::SocketAddr>,
) -> tracing::Span {
    tracing::info_span!(
        target: "grpc_h3",
        "grpc.server",
        rpc.method = method,
        network.protocol.version = version,
        client.address = peer.map(tracing::field::display),
        grpc.status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// The span of a client call.
pub(crate) fn client_span(method: &str, version: &str, server: &str) -> tracing::Span {
    tracing::info_span!(
        target: "grpc_h3",
        "grpc.client",
        rpc.method = method,
        network.protocol.version = version,
        server.address = server,
        grpc.status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

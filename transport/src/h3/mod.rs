//! gRPC over HTTP/3 (RFC 9114, QPACK RFC 9204), mapped as gRPC's PROTOCOL-HTTP2.md maps it onto
//! HTTP/2: one request stream per call, DATA frames carrying length-prefixed messages, trailing
//! HEADERS carrying the status.
//!
//! - [`client`] and [`server`]: the two ends of the wire.
//! - [`body`]: a request stream's receive half as an `http_body::Body`.
//! - [`write`]: a message body onto a request stream (HEADERS, DATA, trailers, FIN).
//! - [`backend`]: h3's `h3::quic` traits over quinn, with [`empty_data`] filtering the receive side.
//! - [`peer_cancel`] and [`repoll`]: the server's cancellation and scheduling fixes.

pub(crate) mod backend;
pub(crate) mod body;
pub(crate) mod client;
mod empty_data;
mod peer_cancel;
mod repoll;
pub(crate) mod server;
pub(crate) mod write;

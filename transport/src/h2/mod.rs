//! gRPC over HTTP/2 (RFC 9113) as gRPC's PROTOCOL-HTTP2.md specifies it, on hyper: the same tonic
//! routes and the same request extensions as the HTTP/3 wire.

pub(crate) mod client;
pub(crate) mod server;

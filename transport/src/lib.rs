//! grpc-h3 — a tonic-compatible gRPC transport over HTTP/3 (quinn + h3) with a switchable HTTP/2
//! fallback.
//!
//! Unmodified tonic-generated clients run over a [`Channel`]; unmodified tonic services are served
//! by a [`Server`] on HTTP/3 (UDP) and HTTP/2 (TCP) of the same port. [`Transport`] picks the wire:
//! `H3`, `H2`, or `Auto` (HTTP/3 when the server is known to offer it, see [`Endpoint::h3_port`]
//! and `Alt-Svc`, else HTTP/2). The protocol mapping follows gRPC's PROTOCOL-HTTP2.md with
//! HTTP/3 framing (RFC 9114), as grpc-dotnet does: deadlines (`grpc-timeout`), cancellation
//! (`H3_REQUEST_CANCELLED`), metadata, Trailers-Only responses, and the status of every transport
//! failure (table in [`Error`]'s module, `error.rs`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use grpc_h3::{Endpoint, Server, ServerTls, Transport};
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::HealthCheckRequest;
//!
//! let certs = dev_certs::DevCerts::generate()?;
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! let bound = Server::builder()
//!     .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?)
//!     .add_service(health)
//!     .bind("127.0.0.1:0".parse()?)
//!     .await?;
//! let port = bound.h3_addr().map(|a| a.port()).unwrap_or_default();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(bound.serve_with_shutdown(async { let _ = stopped.await; }));
//!
//! for transport in [Transport::H3, Transport::H2] {
//!     let channel = Endpoint::new(format!("https://localhost:{port}"))?
//!         .transport(transport)
//!         .ca_certificate_pem(&certs.ca_pem)?
//!         .connect()
//!         .await?;
//!     let reply = HealthClient::new(channel)
//!         .check(HealthCheckRequest { service: String::new() })
//!         .await?;
//!     assert_eq!(reply.get_ref().status, 1); // SERVING
//! }
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod error;
mod info;
mod quic;
mod server;
mod timeout;
mod tls;

pub use client::{Channel, Endpoint};
pub use error::Error;
pub use info::{ConnectionInfo, PeerCertificates};
pub use quic::{CongestionControl, QuicSettings};
pub use server::{BoundServer, BoxService, Server, ServerStats};
pub use timeout::InvalidTimeout;
pub use tls::ServerTls;

/// The header parsers, exposed for the property tests in `tests/props.rs` only: not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    use std::time::Duration;

    /// What an `Alt-Svc` value says about HTTP/3 (RFC 7838).
    #[non_exhaustive]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AltSvc {
        /// HTTP/3 on this port of the same host, valid for `max_age`.
        H3 { port: u16, max_age: Duration },
        /// `clear`.
        Clear,
    }

    /// Parses a `grpc-timeout` value (gRPC PROTOCOL-HTTP2.md).
    pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, crate::InvalidTimeout> {
        crate::timeout::parse(value)
    }

    /// Encodes a deadline as a `grpc-timeout` value.
    pub fn encode_grpc_timeout(timeout: Duration) -> http::HeaderValue {
        crate::timeout::encode(timeout)
    }

    /// Parses an `Alt-Svc` value as the client does.
    pub fn parse_alt_svc(value: &str) -> Option<AltSvc> {
        use crate::client::alt_svc::{self, AltSvc as Inner};
        alt_svc::parse(value).map(|alt| match alt {
            Inner::H3 { port, max_age } => AltSvc::H3 { port, max_age },
            Inner::Clear => AltSvc::Clear,
        })
    }
}

/// Per-stream receive window of both wires (quinn's default is 1.25 MB; HTTP/2's is 64 KiB).
pub(crate) const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Per-connection receive window of both wires.
pub(crate) const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Which wire protocol carries gRPC calls.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// HTTP/3 over QUIC (RFC 9114), UDP.
    H3,
    /// HTTP/2 over TCP (RFC 9113), TLS with ALPN `h2` or plaintext prior knowledge (`http://`).
    H2,
    /// Prefer HTTP/3 when the server is known to offer it, fall back to HTTP/2.
    #[default]
    Auto,
}

impl Transport {
    /// Lower-case name as used on command lines: `h3`, `h2`, `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::H3 => "h3",
            Transport::H2 => "h2",
            Transport::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h3" | "http3" => Ok(Transport::H3),
            "h2" | "http2" => Ok(Transport::H2),
            "auto" => Ok(Transport::Auto),
            other => Err(format!(
                "unknown transport `{other}` (expected h3, h2 or auto)"
            )),
        }
    }
}

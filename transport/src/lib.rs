//! grpc-h3 — a tonic-compatible gRPC transport over HTTP/3 (quinn + h3) with a switchable HTTP/2
//! fallback. (Crate docs are completed with the public API.)

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
pub use server::{BoundServer, BoxService, Server};
pub use timeout::InvalidTimeout;
pub use tls::ServerTls;

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

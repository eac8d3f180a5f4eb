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
//! Several servers behind one name: [`Balance`] (or [`Channel::balance_list`] /
//! [`Channel::balance_channel`]) makes one `Channel` over all of them, on any wire, with gRPC's
//! transparent retry of calls that never reached a server (gRFC A6).
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

#![warn(missing_docs)]

mod body;
mod client;
mod error;
mod h2;
mod h3;
mod info;
pub mod metrics;
mod path;
mod quic;
mod server;
mod timeout;
mod tls;
mod trace;
mod wire;

pub use client::{BackendStats, Balance, Change, Channel, Endpoint, Pick, Resolve};
pub use error::Error;
pub use info::{ConnectionInfo, PeerCertificates};
pub use path::PathStats;
pub use quic::{CongestionControl, QuicSettings};
pub use server::{BoundServer, RoutesService, Server, ServerStats};
pub use timeout::InvalidTimeout;
pub use tls::ServerTls;
pub use trace::Propagator;
pub use wire::{ParseTransportError, ParseWiresError, Transport, Wires};

/// Per-stream receive window of both wires (quinn's default is 1.25 MB; HTTP/2's is 64 KiB).
pub(crate) const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Per-connection receive window of both wires.
pub(crate) const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

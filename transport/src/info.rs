//! Per-connection facts that the server inserts into every request's extensions, identically for
//! HTTP/2 and HTTP/3, so handlers and tower layers (e.g. per-RPC auth) need not know the wire.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::Transport;

/// The peer's certificate chain (end-entity first) as presented in the TLS handshake.
pub type PeerCertificates = Arc<Vec<CertificateDer<'static>>>;

/// Connection facts for one request, found in `request.extensions()` (and in a
/// `tonic::Request`'s extensions) on both transports.
///
/// tonic's own `TcpConnectInfo` is inserted as well, so `tonic::Request::remote_addr()` works
/// unchanged over HTTP/3.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The transport that carried this call (`H2` or `H3`, never `Auto`).
    pub transport: Transport,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The server's local address for this connection.
    pub local_addr: Option<SocketAddr>,
    /// Whether the connection is protected by TLS (always true for HTTP/3).
    pub tls: bool,
    /// Client certificate chain when the client authenticated with mTLS.
    pub peer_certificates: Option<PeerCertificates>,
    /// The request arrived as 0-RTT early data (HTTP/3 only; see `Server::accept_early_data`).
    pub early_data: bool,
    /// Where [`ConnectionInfo::path_stats`] reads from.
    pub(crate) path: Option<crate::path::PathSource>,
}

impl ConnectionInfo {
    /// Facts for a request that did not come through a grpc-h3 server (tests, adapters of other
    /// servers): no peer certificates, no early data.
    pub fn new(
        transport: Transport,
        remote_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        tls: bool,
    ) -> Self {
        ConnectionInfo {
            transport,
            remote_addr,
            local_addr,
            tls,
            peer_certificates: None,
            early_data: false,
            path: None,
        }
    }

    /// The connection's path now — RTT, congestion window, losses — from quinn (HTTP/3) or the
    /// kernel's `TCP_INFO` (HTTP/2, Linux); `None` for requests that did not come through a
    /// grpc-h3 server, or where the figures cannot be read.
    pub fn path_stats(&self) -> Option<crate::PathStats> {
        self.path.as_ref().and_then(crate::path::PathSource::stats)
    }

    /// Reads the connection info of a tonic request, if the request came through a grpc-h3 server.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&ConnectionInfo> {
        request.extensions().get::<ConnectionInfo>()
    }

    /// Whether the connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

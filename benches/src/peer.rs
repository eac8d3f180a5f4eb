//! The comparison peer: tonic-h3 0.0.6 (gRPC over h3-quinn) serving the same tonic services with
//! its own server and client, on the same certificates.
//!
//! Fairness decisions: both sides of the peer get the QUIC transport settings that grpc-h3 uses
//! by default ([`grpc_h3::QuicSettings::default`]: 1024 concurrent streams, 2 MiB stream and
//! 16 MiB connection windows, Cubic), so differences come from the HTTP/3 and gRPC layers, not
//! from quinn knobs. 0-RTT stays off on both (rustls' default `max_early_data_size` of 0).
//!
//! tonic-h3 does not insert `grpc_h3::ConnectionInfo`, which the auth layer needs to see that the
//! call came over TLS (it fails closed otherwise). [`WithAuth`] inserts it (QUIC is always TLS)
//! in front of the very same [`AuthLayer`], so the peer pays the same per-call auth work.
//!
//! Behaviour of tonic-h3 0.0.6 that the scenarios work around (and that a user would hit):
//! its connection closes when the last clone of its channel is dropped, even with a call still
//! streaming; and dropping a streaming response while a read is pending panics inside h3-quinn
//! 0.0.10 (`stop_sending` unwraps a stream that the pending read future holds), so long-lived
//! calls are half-closed and read to their status before they are dropped.

use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use grpc_h3::{CongestionControl, ConnectionInfo, QuicSettings, Transport};
use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::{Layer as _, Service};
use zone_server::auth::{AuthLayer, AuthService};

/// The tonic-h3 client channel (tower-buffered, like tonic's `Channel`).
pub type PeerChannel = tonic_h3::H3Channel<tonic_h3::quinn::H3QuinnConnector>;

const ALPN_H3: &[u8] = b"h3";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The quinn transport config equal to what grpc-h3 derives from the same settings.
fn transport_config(s: &QuicSettings) -> anyhow::Result<Arc<TransportConfig>> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(
        grpc_h3::Server::DEFAULT_MAX_CONCURRENT_STREAMS,
    ))
    .stream_receive_window(VarInt::from_u32(s.get_stream_receive_window()))
    .receive_window(VarInt::from_u32(s.get_receive_window()))
    .send_window(s.get_send_window())
    .max_idle_timeout(Some(IdleTimeout::try_from(s.get_idle_timeout())?))
    .keep_alive_interval(s.get_keep_alive_interval())
    .enable_segmentation_offload(s.get_segmentation_offload());
    if let Some(delay) = s.get_peer_ack_delay() {
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.max_ack_delay(Some(delay))
            .reordering_threshold(VarInt::from_u32(1));
        t.ack_frequency_config(Some(ack));
    }
    match s.get_congestion() {
        CongestionControl::Bbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
        CongestionControl::NewReno => {
            t.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
        }
        // Cubic, and quinn's default for any controller added to the enum later.
        _ => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
    };
    Ok(Arc::new(t))
}

/// Client side of the peer: quinn client config (TLS 1.3, ALPN h3, grpc-h3's QUIC settings) for
/// one server. Channels made from one connector share its TLS session cache, so every channel
/// after the first can resume (RFC 8446 §2.2), as channels of one `grpc_h3::Endpoint` do.
#[derive(Clone)]
pub struct PeerConnector {
    addr: SocketAddr,
    server_name: String,
    config: quinn::ClientConfig,
}

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnector")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PeerConnector {
    pub fn new(addr: SocketAddr, ca_pem: &[u8], server_name: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert?)?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(&QuicSettings::default())?);
        Ok(PeerConnector {
            addr,
            server_name: server_name.to_string(),
            config,
        })
    }

    /// A tonic-h3 channel on a fresh quinn endpoint (new UDP socket); it connects on its first
    /// call.
    pub fn channel(&self) -> anyhow::Result<PeerChannel> {
        let local: SocketAddr = if self.addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local)?;
        endpoint.set_default_client_config(self.config.clone());
        let uri: http::Uri = format!("https://{}", self.addr).parse()?;
        let connector =
            tonic_h3::quinn::H3QuinnConnector::new(uri.clone(), self.server_name.clone(), endpoint);
        Ok(tonic_h3::H3Channel::new(connector, uri, None))
    }
}

/// A running tonic-h3 server.
#[derive(Debug)]
pub struct PeerServer {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    exited: Option<String>,
}

impl PeerServer {
    /// Serves `routes` over HTTP/3 on `addr` (UDP) with the given certificate chain and key.
    pub async fn start(
        routes: Routes,
        addr: SocketAddr,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> anyhow::Result<PeerServer> {
        let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport_config(&QuicSettings::default())?);
        let endpoint = quinn::Endpoint::server(config, addr)?;
        let addr = endpoint.local_addr()?;
        let acceptor = tonic_h3::quinn::H3QuinnAcceptor::new(endpoint.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic_h3::server::H3Router::new(routes)
                .serve_with_shutdown(acceptor, async {
                    let _ = rx.await;
                })
                .await
                .map_err(|e| e.to_string())
        });
        Ok(PeerServer {
            addr,
            endpoint,
            shutdown: Some(tx),
            task: Some(task),
            exited: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `Some(reason)` once the server task has ended on its own (error or panic): every later
    /// peer case would only time out, so the runner records this reason instead.
    pub fn exit_reason(&mut self) -> Option<String> {
        if self.exited.is_none() && self.task.as_ref().is_some_and(JoinHandle::is_finished) {
            // A finished task's result is ready at once.
            let result = self.task.take().and_then(FutureExt::now_or_never);
            self.exited = Some(match result {
                Some(Ok(Ok(()))) | None => "tonic-h3 server stopped".to_string(),
                Some(Ok(Err(e))) => format!("tonic-h3 server failed: {e}"),
                Some(Err(e)) if e.is_panic() => format!(
                    "tonic-h3 server panicked: {}",
                    crate::panics::describe(e.into_panic())
                ),
                Some(Err(e)) => format!("tonic-h3 server task failed: {e}"),
            });
        }
        self.exited.clone()
    }

    /// Stops accepting, closes the endpoint and waits (bounded) for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// A tonic service behind the auth layer, for the tonic-h3 server: inserts the
/// [`ConnectionInfo`] that grpc-h3's server would have inserted (HTTP/3, TLS), then runs the
/// [`AuthLayer`] and the service.
#[derive(Debug, Clone)]
pub struct WithAuth<S> {
    inner: AuthService<S>,
}

impl<S> WithAuth<S> {
    pub fn new(layer: &AuthLayer, service: S) -> Self {
        WithAuth {
            inner: layer.layer(service),
        }
    }
}

impl<S: NamedService> NamedService for WithAuth<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for WithAuth<S>
where
    AuthService<S>: Service<http::Request<B>, Error = Infallible>,
{
    type Response = <AuthService<S> as Service<http::Request<B>>>::Response;
    type Error = Infallible;
    type Future = <AuthService<S> as Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request
            .extensions_mut()
            .insert(ConnectionInfo::new(Transport::H3, None, None, true));
        self.inner.call(request)
    }
}

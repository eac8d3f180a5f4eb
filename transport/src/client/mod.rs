//! The client side: [`Endpoint`] (builder) and [`Channel`] (a tower `Service` that tonic-generated
//! clients accept), dispatching each call to the wire the endpoint selected.

pub(crate) mod alt_svc;
mod auto;
pub(crate) mod balance;
pub(crate) mod channel;
pub(crate) mod slot;

use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};

pub use balance::{BackendStats, Balance, Change, Pick, Resolve};
pub use channel::Channel;

use crate::Transport;
use crate::error::{Error, Kind};
use crate::quic::QuicSettings;
use crate::tls::{self, ClientTls};

/// Where and how to connect: the builder of a [`Channel`].
///
/// ```no_run
/// # async fn demo(ca_pem: &[u8]) -> Result<(), grpc_h3::Error> {
/// use grpc_h3::{Endpoint, Transport};
/// let channel = Endpoint::new("https://localhost:50051")?
///     .transport(Transport::H2)
///     .ca_certificate_pem(ca_pem)?
///     .connect()
///     .await?;
/// // `channel` now goes wherever a tonic Channel went: `FooClient::new(channel)`.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    pub(crate) tls: ClientTls,
    pub(crate) timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) user_agent: http::HeaderValue,
    pub(crate) quic: QuicSettings,
    pub(crate) h3_port: Option<u16>,
    pub(crate) auto_head_start: Duration,
    pub(crate) propagator: Option<crate::trace::SharedPropagator>,
    /// Connect to this address instead of resolving `host` (a balanced channel's backend: the
    /// origin and TLS name stay `host`'s).
    pub(crate) connect_addr: Option<std::net::SocketAddr>,
    /// Keep a copy of complete small requests on HTTP/2 too, so a stream the server did not
    /// process can go to another server (a balanced channel's backend).
    pub(crate) replay_unprocessed: bool,
}

/// `user-agent` sent unless the caller sets one (gRPC PROTOCOL-HTTP2.md, "User-Agent").
const USER_AGENT: &str = concat!("grpc-rust-h3/", env!("CARGO_PKG_VERSION"));

impl Endpoint {
    /// An endpoint for `uri`: `https://host:port` (TLS) or `http://host:port` (plaintext HTTP/2 with
    /// prior knowledge; HTTP/3 always needs TLS).
    pub fn new(uri: impl AsRef<str>) -> Result<Self, Error> {
        let text = uri.as_ref();
        let uri: Uri = text
            .parse()
            .map_err(|e| Error::with(Kind::InvalidUri, e).context(format!("`{text}`")))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| {
            Error::new(Kind::InvalidUri)
                .context(format!("`{text}` has no scheme (https:// or http://)"))
        })?;
        if scheme != Scheme::HTTPS && scheme != Scheme::HTTP {
            return Err(Error::new(Kind::InvalidUri)
                .context(format!("`{text}`: scheme must be https or http")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::new(Kind::InvalidUri).context(format!("`{text}` has no host")))?;
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        let host = authority.host().to_string();
        Ok(Endpoint {
            scheme,
            authority,
            host,
            port,
            transport: Transport::default(),
            tls: ClientTls::default(),
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            user_agent: http::HeaderValue::from_static(USER_AGENT),
            quic: QuicSettings::default(),
            h3_port: None,
            auto_head_start: Duration::from_millis(300),
            propagator: None,
            connect_addr: None,
            replay_unprocessed: false,
        })
    }

    /// Carries each call's trace context to the server: the call's `grpc.client` span is handed
    /// to `propagator` to write into the request headers (W3C `traceparent`; see
    /// [`Propagator`](crate::Propagator)). Without one, no trace header is sent.
    pub fn propagator(mut self, propagator: impl crate::Propagator) -> Self {
        self.propagator = Some(crate::trace::SharedPropagator(std::sync::Arc::new(
            propagator,
        )));
        self
    }

    /// Which wire to use (default [`Transport::Auto`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Trusts the CA certificate(s) in `pem` for verifying the server.
    pub fn ca_certificate_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let mut roots = self
            .tls
            .roots
            .take()
            .unwrap_or_else(rustls::RootCertStore::empty);
        for cert in tls::certs_from_pem(pem, "CA certificate")? {
            roots
                .add(cert)
                .map_err(|e| Error::with(Kind::Config, e).context("CA certificate"))?;
        }
        self.tls.roots = Some(roots);
        self.tls.changed();
        Ok(self)
    }

    /// Presents this client certificate chain and key (PEM) to servers that ask (mTLS).
    pub fn identity_pem(mut self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = tls::certs_from_pem(cert_chain_pem, "client certificate")?;
        let key = tls::key_from_pem(key_pem, "client private key")?;
        self.tls.identity = Some((chain, key));
        self.tls.changed();
        Ok(self)
    }

    /// Verifies the server certificate against `name` instead of the URI's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self.tls.changed();
        self
    }

    /// A deadline applied to every call that does not set its own (`Request::set_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long connecting (socket + handshake) may take; default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends keep-alive PINGs at this interval (HTTP/2 PING; QUIC PING frames on HTTP/3) and drops
    /// the connection when one is not answered within the keep-alive timeout. Off by default.
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = Some(interval);
        self
    }

    /// How long to wait for a keep-alive answer; default 20 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// QUIC transport settings for HTTP/3 (windows, stream limit, congestion control, ...).
    pub fn quic_settings(mut self, settings: QuicSettings) -> Self {
        self.quic = settings;
        self
    }

    /// With [`Transport::Auto`]: the server offers HTTP/3 on this UDP port (as if it had been
    /// learnt from `Alt-Svc`), so QUIC is tried first.
    pub fn h3_port(mut self, port: u16) -> Self {
        self.h3_port = Some(port);
        self
    }

    /// With [`Transport::Auto`]: how long QUIC may try alone before TCP starts racing it;
    /// default 300 ms.
    pub fn auto_head_start(mut self, head_start: Duration) -> Self {
        self.auto_head_start = head_start;
        self
    }

    /// Sends calls as TLS 1.3 / QUIC 0-RTT early data when resuming a session with a server that
    /// accepts it (HTTP/3 only; off by default). Only requests that are complete and small
    /// (≤ 64 KiB) go early — a copy is kept, and a call the server refuses as not idempotent
    /// (H3_REQUEST_REJECTED), or that the server's TLS refuses wholesale, is sent again once the
    /// handshake completes. Streaming calls wait for the handshake. Early data can be replayed by
    /// an attacker: servers must accept it only for idempotent methods (`Server::accept_early_data`).
    pub fn early_data(mut self, enabled: bool) -> Self {
        self.tls.early_data = enabled;
        self.tls.changed();
        self
    }

    /// Connects now and returns a channel over the selected wire.
    pub async fn connect(self) -> Result<Channel, Error> {
        let channel = self.connect_lazy_checked()?;
        channel.ready().await?;
        Ok(channel)
    }

    /// Returns a channel that connects on its first call (and reconnects after a loss).
    ///
    /// Configuration problems surface as the status of the first call.
    pub fn connect_lazy(self) -> Channel {
        match self.connect_lazy_checked() {
            Ok(channel) => channel,
            Err(err) => Channel::failed(err),
        }
    }

    fn connect_lazy_checked(self) -> Result<Channel, Error> {
        match self.transport {
            Transport::H2 => Channel::h2(self),
            Transport::H3 => Channel::h3(self),
            Transport::Auto => Channel::auto(self),
        }
    }
}

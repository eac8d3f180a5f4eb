//! The server side: [`Server`] (builder) serving tonic `Routes` over HTTP/2 (TCP) and HTTP/3 (UDP) on
//! the same port, with one service stack above the wire shared by both.
//!
//! Stack, outermost first: connection extensions (inserted by the wire) → deadline enforcement
//! (`grpc-timeout`, see `timeout.rs`) and the request-body stall guard (`limits.rs`) → user layers
//! (e.g. per-RPC auth) → tonic `Routes`. Admission limits (connections, handshakes) act in the
//! wires' accept loops, before any of this.

pub(crate) mod limits;
mod stack;

pub use limits::ServerStats;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::Wires;
use crate::error::{Error, Kind};
use crate::quic::QuicSettings;
use crate::tls::ServerTls;

/// The server's routes as one type-erased service: what every request goes through on both wires,
/// and what the layers given to [`Server::layer`] wrap.
pub type RoutesService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// How many ephemeral ports [`Server::bind`] tries before giving up on one free on both UDP and TCP.
const EPHEMERAL_BIND_ATTEMPTS: u32 = 16;

type LayerFn = Arc<dyn Fn(RoutesService) -> RoutesService + Send + Sync>;

/// Limits and timers of a server; defaults are documented on each [`Server`] setter.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) max_header_list_size: u32,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) request_body_timeout: Option<Duration>,
    /// `/pkg.Service/Method` paths served from 0-RTT early data; `None` = early data refused.
    pub(crate) early_data: Option<Arc<HashSet<String>>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_concurrent_streams: Server::DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_size: 16 * 1024,
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_pending_handshakes: 128,
            request_body_timeout: Some(Duration::from_secs(30)),
            early_data: None,
        }
    }
}

/// A gRPC server for tonic services over HTTP/3 and HTTP/2 (builder).
///
/// ```no_run
/// # async fn demo<S>(svc: S, cert: &[u8], key: &[u8]) -> Result<(), grpc_h3::Error>
/// # where S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
/// #   + tonic::server::NamedService + Clone + Send + Sync + 'static, S::Future: Send + 'static {
/// use grpc_h3::{Server, ServerTls};
/// let bound = Server::builder()
///     .tls(ServerTls::from_pem(cert, key)?)
///     .add_service(svc)
///     .bind("127.0.0.1:50051".parse().unwrap())
///     .await?;
/// bound.serve_with_shutdown(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
///
/// # Limits against abuse
///
/// The defaults are meant for a server reachable from the internet; each has a setter.
///
/// | limit | default | beyond it |
/// |---|---|---|
/// | [`max_connections`](Self::max_connections) (both wires together) | 1024 | TCP: closed right after accept; QUIC: refused (CONNECTION_REFUSED) |
/// | [`max_pending_handshakes`](Self::max_pending_handshakes) | 128 | TCP: closed right after accept; QUIC: Retry (address validation), then refused |
/// | [`handshake_timeout`](Self::handshake_timeout) (TLS/QUIC handshake, HTTP/2 preface, HTTP/3 request HEADERS) | 10 s | connection dropped / request stream reset |
/// | [`max_concurrent_streams`](Self::max_concurrent_streams) per connection (HTTP/2 SETTINGS, QUIC MAX_STREAMS) | 1024 | the client's next call waits for a free stream |
/// | [`max_header_list_size`](Self::max_header_list_size) | 16 KiB | HTTP 431 → RESOURCE_EXHAUSTED |
/// | [`request_body_timeout`](Self::request_body_timeout) (stall in the middle of a message) | 30 s | the handler's request stream fails with DEADLINE_EXCEEDED; the call ends |
/// | message size (tonic's `max_decoding_message_size`, per service) | 4 MiB | RESOURCE_EXHAUSTED, nothing allocated for it |
///
/// **Memory per connection** is bounded by flow control: the server never buffers more request
/// bytes than it advertised. With the defaults both wires grant 2 MiB per stream and 16 MiB per
/// connection ([`QuicSettings::stream_receive_window`](crate::QuicSettings) / `receive_window`; the
/// same values for HTTP/2's initial windows), so unread request data is at most 16 MiB per
/// connection, whatever the stream count; plus the header sections (≤ 16 KiB per open stream, i.e.
/// ≤ 16 MiB at 1024 streams, transient), plus at most one decoded message per active call (≤ the
/// service's decoding limit). Sending is bounded by the peer's windows and, for HTTP/2, hyper's
/// 400 KiB send buffer per stream; quinn's `send_window` caps unacknowledged data at 16 MiB.
/// Worst case, all connections full: `max_connections` × 16 MiB = 16 GiB; the windows exist for
/// throughput on fast paths — an edge with little memory and many clients should lower them
/// ([`quic_settings`](Self::quic_settings)) or `max_connections`.
///
/// Not limited here: connections per client address (put that in front, e.g. a firewall), and an
/// idle connection that keeps itself alive with PINGs, which holds a connection slot (QUIC's idle
/// timeout, 30 s, closes only silent ones).
pub struct Server {
    routes: Option<Routes>,
    /// Names of the services added one by one (`None` once whole routes were added): the
    /// `grpc.method` metric attribute names only methods of these (see `crate::metrics`).
    services: Option<Vec<String>>,
    propagator: Option<crate::trace::SharedPropagator>,
    layers: Vec<LayerFn>,
    tls: Option<ServerTls>,
    wires: Wires,
    settings: ServerSettings,
    quic: QuicSettings,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tls", &self.tls.is_some())
            .field("wires", &self.wires)
            .field("layers", &self.layers.len())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::builder()
    }
}

impl Server {
    /// The default of [`max_concurrent_streams`](Self::max_concurrent_streams): quinn's and h2's
    /// default of 100 throttles 256 concurrent calls; 1024 keeps memory modest.
    pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;

    /// A server with no services, no TLS, both transports and default limits.
    pub fn builder() -> Self {
        Server {
            routes: None,
            services: Some(Vec::new()),
            propagator: None,
            layers: Vec::new(),
            tls: None,
            wires: Wires::Both,
            settings: ServerSettings::default(),
            quic: QuicSettings::default(),
        }
    }

    /// Serves over TLS with these settings. Without TLS only plaintext HTTP/2 (h2c) is served.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Which wires to serve: HTTP/3 (UDP), HTTP/2 (TCP) or both (the default).
    pub fn wires(mut self, wires: Wires) -> Self {
        self.wires = wires;
        self
    }

    /// Adds a tonic service (what `tonic::transport::Server::add_service` takes).
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = Some(match self.routes.take() {
            Some(routes) => routes.add_service(svc),
            None => Routes::new(svc),
        });
        if let Some(services) = &mut self.services {
            services.push(S::NAME.to_string());
        }
        self
    }

    /// Continues the caller's trace: every call's `grpc.server` span is handed to `propagator`
    /// with the request headers (W3C `traceparent`), so it can become a child of the client's
    /// span (see [`Propagator`](crate::Propagator)). Without one, spans start new traces.
    pub fn propagator(mut self, propagator: impl crate::Propagator) -> Self {
        self.propagator = Some(crate::trace::SharedPropagator(std::sync::Arc::new(
            propagator,
        )));
        self
    }

    /// Adds every service of a tonic `Routes`.
    pub fn add_routes(mut self, routes: Routes) -> Self {
        self.services = None;
        self.routes = Some(match self.routes.take() {
            Some(mine) => {
                let mut merged = mine.into_axum_router();
                merged = merged.merge(routes.into_axum_router());
                Routes::from(merged)
            }
            None => routes,
        });
        self
    }

    /// Wraps every service in `layer` (the first added is the outermost), on both wires alike.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<RoutesService> + Send + Sync + 'static,
        L::Service: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<Body>>>::Future: Send + 'static,
    {
        self.layers.push(Arc::new(move |svc| {
            BoxCloneSyncService::new(layer.layer(svc))
        }));
        self
    }

    /// Most streams a client may have open at once on one connection; default 1024. Sent as HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS and as QUIC's bidirectional stream limit (MAX_STREAMS): a
    /// client's further calls wait until a stream ends.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.settings.max_concurrent_streams = n;
        self
    }

    /// Largest request header section accepted; default 16 KiB.
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.settings.max_header_list_size = bytes;
        self
    }

    /// Sends keep-alive PINGs to idle clients at this interval; off by default.
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.settings.keep_alive_interval = Some(interval);
        self
    }

    /// How long a client may take to complete the TLS/QUIC handshake, then to send the HTTP/2
    /// preface or a request stream's HEADERS; slower (e.g. slowloris) clients are dropped.
    /// Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Most connections served at once, over both wires together, counting those still in their
    /// handshake; default 1024. Beyond it a new TCP connection is closed right after accept and a
    /// new QUIC connection is refused (CONNECTION_REFUSED, RFC 9000 §20.1) without a handshake.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.settings.max_connections = n;
        self
    }

    /// Most handshakes in progress at once (TLS and QUIC handshakes, the HTTP/2 preface);
    /// default 128.
    ///
    /// A bound on concurrent handshakes rather than a rate: it caps exactly the resource a
    /// handshake flood consumes (CPU for signatures, per-handshake state) and adapts to how fast
    /// the machine completes them, where a per-second rate must be tuned per machine and refuses
    /// a legitimate reconnect storm (every edge after a restart) that the machine could serve.
    /// Beyond it a TCP connection is closed right after accept. A QUIC client whose address is
    /// not yet validated gets a Retry (RFC 9000 §8.1.2) — stateless for the server, and a
    /// spoofed source never answers it — and a validated one is refused (CONNECTION_REFUSED).
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.settings.max_pending_handshakes = n;
        self
    }

    /// How long a request body may stall in the middle of a gRPC message before the call fails
    /// (the handler's request stream yields DEADLINE_EXCEEDED, the stream is then reset); `None`
    /// disables it. Default 30 s. This closes slowloris-style "dribblers". Silence *between*
    /// messages is not limited: long-lived streams (subscriptions) legitimately idle there.
    pub fn request_body_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.request_body_timeout = timeout;
        self
    }

    /// How long in-flight calls may run after shutdown begins; default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// QUIC transport settings for HTTP/3 (windows, congestion control, MTU, ...). The stream limit
    /// is [`max_concurrent_streams`](Self::max_concurrent_streams), for both wires.
    pub fn quic_settings(mut self, settings: QuicSettings) -> Self {
        self.quic = settings;
        self
    }

    /// Accepts TLS 1.3 / QUIC 0-RTT early data (off by default) for these idempotent methods
    /// (`pkg.Service/Method`). Early data can be replayed by an attacker (RFC 8446 §8, RFC 9001
    /// §9.2), so calls to any other method that arrive in it are refused unprocessed with
    /// H3_REQUEST_REJECTED, and the client retries them after the handshake. HTTP/3 only.
    pub fn accept_early_data<I, M>(mut self, idempotent_methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        let paths = idempotent_methods
            .into_iter()
            .map(|m| format!("/{}", m.as_ref().trim_start_matches('/')))
            .collect();
        self.settings.early_data = Some(Arc::new(paths));
        self
    }

    /// Binds the listening sockets (TCP for HTTP/2, UDP for HTTP/3, same port) without serving yet,
    /// so callers can learn ephemeral ports first.
    pub async fn bind(self, addr: SocketAddr) -> Result<BoundServer, Error> {
        let serve_h2 = self.wires.h2();
        let serve_h3 = self.wires.h3() && self.tls.is_some();
        if self.wires == Wires::H3 && self.tls.is_none() {
            return Err(Error::new(Kind::Config).context("HTTP/3 needs TLS: call Server::tls"));
        }
        let service = stack::build(
            self.routes,
            &self.layers,
            self.settings.request_body_timeout,
            crate::metrics::MethodTable::server(self.services),
            self.propagator,
        );
        let mut quic = self.quic.clone();
        quic.max_concurrent_bidi_streams = self.settings.max_concurrent_streams;
        quic.keep_alive_interval = quic
            .keep_alive_interval
            .or(self.settings.keep_alive_interval);
        let h3_config = match (&self.tls, serve_h3) {
            (Some(tls), true) => {
                let reset_secret = tls.stateless_reset_secret();
                let mut tls = tls.server_config(crate::tls::ALPN_H3)?;
                if self.settings.early_data.is_some() {
                    // QUIC takes all-or-nothing: u32::MAX enables 0-RTT (RFC 9001 §4.6.1).
                    tls.max_early_data_size = u32::MAX;
                }
                Some((crate::quic::server_config(tls, &quic)?, reset_secret))
            }
            _ => None,
        };
        let h2_tls = match (&self.tls, serve_h2) {
            (Some(tls), true) => Some(tls.server_config(crate::tls::ALPN_H2)?),
            _ => None,
        };
        // HTTP/2 on the same port number as HTTP/3: an ephemeral UDP port is reused for TCP. The
        // kernel picks the UDP port without looking at TCP, so that port may already be taken
        // there (often by some outgoing connection's local port); then pick another, a bounded
        // number of times. A port the caller named is never swapped for another.
        let mut attempt = 0;
        let (h3, h2) = loop {
            attempt += 1;
            let h3 = match &h3_config {
                Some((config, reset_secret)) => Some(crate::h3::server::H3Listener::bind(
                    addr,
                    config.clone(),
                    *reset_secret,
                    &quic,
                )?),
                None => None,
            };
            if !serve_h2 {
                break (h3, None);
            }
            let tcp_addr = h3
                .as_ref()
                .map_or(addr, crate::h3::server::H3Listener::local_addr);
            match crate::h2::server::H2Listener::bind(tcp_addr, h2_tls.clone()).await {
                Ok(h2) => break (h3, Some(h2)),
                Err(e)
                    if h3.is_some()
                        && addr.port() == 0
                        && attempt < EPHEMERAL_BIND_ATTEMPTS
                        && e.is_addr_in_use() =>
                {
                    tracing::debug!(%tcp_addr, attempt, "ephemeral UDP port taken on TCP; retrying");
                }
                Err(e) => return Err(e),
            }
        };
        // RFC 7838: tell HTTP/2 clients where HTTP/3 is (same host, UDP port).
        let alt_svc = h3.as_ref().and_then(|l| {
            http::HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", l.local_addr().port()))
                .ok()
        });
        Ok(BoundServer {
            h2,
            h3,
            alt_svc,
            service,
            settings: Arc::new(self.settings),
            stats: ServerStats::default(),
        })
    }

    /// Binds `addr` and serves until `signal` completes, then drains gracefully.
    pub async fn serve_with_shutdown<F>(self, addr: SocketAddr, signal: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        self.bind(addr).await?.serve_with_shutdown(signal).await
    }
}

/// A [`Server`] whose sockets are bound; call [`serve_with_shutdown`](Self::serve_with_shutdown).
#[derive(Debug)]
pub struct BoundServer {
    h2: Option<crate::h2::server::H2Listener>,
    h3: Option<crate::h3::server::H3Listener>,
    alt_svc: Option<http::HeaderValue>,
    service: RoutesService,
    settings: Arc<ServerSettings>,
    stats: ServerStats,
}

impl BoundServer {
    /// Live counters (connections, handshakes, requests) of this server, to watch while it serves.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// The TCP address HTTP/2 is served on, if it is.
    pub fn h2_addr(&self) -> Option<SocketAddr> {
        self.h2
            .as_ref()
            .map(crate::h2::server::H2Listener::local_addr)
    }

    /// The UDP address HTTP/3 is served on, if it is.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3
            .as_ref()
            .map(crate::h3::server::H3Listener::local_addr)
    }

    /// Serves until `signal` completes; then stops accepting, lets in-flight calls finish for up to
    /// the drain timeout, and closes the connections.
    pub async fn serve_with_shutdown<F>(self, signal: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(listener) = self.h2 {
            tasks.spawn(listener.serve(
                self.service.clone(),
                self.settings.clone(),
                self.stats.clone(),
                self.alt_svc.clone(),
                stop_rx.clone(),
            ));
        }
        if let Some(listener) = self.h3 {
            tasks.spawn(listener.serve(
                self.service.clone(),
                self.settings.clone(),
                self.stats.clone(),
                stop_rx.clone(),
            ));
        }
        tokio::select! {
            () = signal => {}
            Some(res) = tasks.join_next() => {
                // A listener ended on its own: an accept error. Stop the others and report it.
                let _ = stop_tx.send(true);
                while tasks.join_next().await.is_some() {}
                return flatten(res);
            }
        }
        let _ = stop_tx.send(true);
        let mut result = Ok(());
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = flatten(res) {
                result = Err(e);
            }
        }
        result
    }
}

fn flatten(res: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    res.map_err(|e| Error::with(Kind::Io, e).context("server task failed"))?
}

impl std::fmt::Debug for crate::h2::server::H2Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Listener")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl std::fmt::Debug for crate::h3::server::H3Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Listener")
            .field("addr", &self.local_addr())
            .finish()
    }
}

/// Resolves once shutdown is signalled (or the signalling side is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it inside.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

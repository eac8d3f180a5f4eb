//! The HTTP/3 wire of the server: quinn endpoint on UDP, h3 connections, one task per request
//! stream (RFC 9114 §4.1) that hands the request to the shared service stack and writes the
//! response HEADERS, DATA and trailing HEADERS. Shutdown sends GOAWAY (§5.2), lets in-flight
//! requests finish, then closes with H3_NO_ERROR.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderMap, Response};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use super::backend::{self, StreamSignals};
use super::body::{ContentLength, H3Body};
use super::peer_cancel::{CancelOnReset, PeerCancel};
use super::repoll::Repoll;
use super::write::{Ahead, Written, write_body};
use crate::error::{Error, Kind, sent};
use crate::metrics;
use crate::server::limits::{ServerStats, Slot};
use crate::server::stopped;
use crate::server::{RoutesService, ServerSettings};
use crate::{ConnectionInfo, Transport};

type ServerStream<S> = h3::server::RequestStream<S, Bytes>;
type Resolver = h3::server::RequestResolver<backend::Connection, Bytes>;

/// How long a finished response may wait for the client's acknowledgement.
const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) struct H3Listener {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    /// The endpoint's server config and QUIC settings, to tailor a connection's transport to its
    /// peer (a loopback peer's path MTU is known: `QuicSettings::loopback_mtu`).
    config: quinn::ServerConfig,
    quic: crate::quic::QuicSettings,
}

impl H3Listener {
    pub(crate) fn bind(
        addr: SocketAddr,
        config: quinn::ServerConfig,
        reset_secret: [u8; 32],
        settings: &crate::quic::QuicSettings,
    ) -> Result<Self, Error> {
        let endpoint =
            crate::quic::endpoint(addr, Some(config.clone()), Some(reset_secret), settings)
                .map_err(|e| Error::with(Kind::Io, e).context(format!("bind UDP {addr}")))?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| Error::with(Kind::Io, e).context("UDP local address"))?;
        Ok(H3Listener {
            endpoint,
            local_addr,
            config,
            quic: settings.clone(),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) async fn serve(
        self,
        service: RoutesService,
        settings: Arc<ServerSettings>,
        stats: ServerStats,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => {
                        let Some(slots) = admit(incoming, &stats, &settings) else {
                            continue;
                        };
                        let config = crate::quic::server_config_for(
                            &self.config,
                            &self.quic,
                            slots.incoming.remote_address(),
                        );
                        // `Repoll`: requests served inline wake this task as they end.
                        conns.spawn(Repoll::new(serve_connection(
                            slots,
                            config,
                            self.local_addr,
                            service.clone(),
                            settings.clone(),
                            stats.clone(),
                            stop.clone(),
                        )));
                    }
                    None => break,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // New connection attempts are refused from now on; open ones drain (they watch `stop`).
        self.endpoint.set_server_config(None);
        let drained = tokio::time::timeout(settings.drain_timeout, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("drain timeout expired; closing remaining HTTP/3 connections");
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        self.endpoint.close(sent::SHUTDOWN, b"server shutting down");
        // Let CONNECTION_CLOSE frames reach the peers.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
            .await;
        Ok(())
    }
}

/// An incoming QUIC connection admitted under the limits, with its slots.
struct Admitted {
    incoming: quinn::Incoming,
    _connection: Slot,
    handshake: Slot,
}

/// Applies the connection and handshake limits to a new QUIC connection attempt (see
/// [`Server::max_pending_handshakes`](super::Server::max_pending_handshakes)): `None` when it was
/// refused or asked to Retry.
fn admit(
    incoming: quinn::Incoming,
    stats: &ServerStats,
    settings: &ServerSettings,
) -> Option<Admitted> {
    let remote = incoming.remote_address();
    let Some(connection) = stats.try_connection(settings.max_connections) else {
        tracing::debug!(%remote, "connection limit reached; refusing");
        incoming.refuse();
        return None;
    };
    let Some(handshake) = stats.try_handshake(settings.max_pending_handshakes) else {
        if incoming.remote_address_validated() {
            tracing::debug!(%remote, "handshake limit reached; refusing");
            incoming.refuse();
        } else {
            // Stateless for us; a spoofed source address never comes back with the token.
            tracing::debug!(%remote, "handshake limit reached; asking for address validation");
            match incoming.retry() {
                Ok(()) => metrics::count(metrics::QUIC_RETRIES, metrics::Side::Server),
                Err(err) => err.into_incoming().refuse(),
            }
        }
        return None;
    };
    Some(Admitted {
        incoming,
        _connection: connection,
        handshake,
    })
}

async fn serve_connection(
    admitted: Admitted,
    config: Option<Arc<quinn::ServerConfig>>,
    local_addr: SocketAddr,
    service: RoutesService,
    settings: Arc<ServerSettings>,
    stats: ServerStats,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted {
        incoming,
        _connection,
        handshake,
    } = admitted;
    let remote = incoming.remote_address();
    let accepted = match config {
        Some(config) => incoming.accept_with(config),
        None => incoming.accept(),
    };
    let connecting = match accepted {
        Ok(c) => c,
        Err(err) => {
            tracing::debug!(%remote, error = %err, "QUIC connection refused");
            return;
        }
    };
    let Some(conn) = establish(connecting, &settings, remote).await else {
        return;
    };
    drop(handshake);
    let _open = metrics::OpenConnection::new(metrics::Side::Server, Transport::H3);
    let mut sampler = metrics::QuicSampler::new(metrics::Side::Server);
    let mut sample_tick = tokio::time::interval(metrics::QuicSampler::INTERVAL);
    sample_tick.reset();
    let mut last_remote = remote;
    let peer_certificates = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|certs| Arc::new(*certs));
    let info = ConnectionInfo {
        transport: Transport::H3,
        remote_addr: Some(remote),
        local_addr: Some(local_addr),
        tls: true,
        peer_certificates,
        early_data: false,
        path: Some(crate::path::PathSource::Quic(conn.clone())),
    };
    let mut builder = h3::server::builder();
    builder.max_field_section_size(u64::from(settings.max_header_list_size));
    let stops = StreamSignals::default();
    let mut h3 = match builder
        .build::<_, Bytes>(backend::Connection::new(conn.clone(), Some(stops.clone())))
        .await
    {
        Ok(h3) => h3,
        Err(err) => {
            tracing::debug!(%remote, error = %err, "HTTP/3 connection setup failed");
            return;
        }
    };
    let mut requests = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            () = stopped(&mut stop), if !draining => {
                draining = true;
                // GOAWAY carries the first stream id that will NOT be processed (RFC 9114
                // §5.2): h3 computes last accepted + n, so n = 1 keeps every accepted request.
                if let Err(err) = h3.shutdown(1).await {
                    tracing::debug!(%remote, error = %err, "sending GOAWAY failed");
                }
                tokio::spawn(reject_beyond_goaway(conn.clone()));
                if requests.is_empty() {
                    break;
                }
            }
            // Not polled while draining: h3 0.0.8's accept(), once it deems the requests done,
            // sends a second GOAWAY naming the last accepted stream (`shutdown(0)`), which tells
            // the client that request was not processed (RFC 9114 §5.2: the id is the first
            // stream NOT processed). The GOAWAY above is the one we mean. Not reported upstream
            // (hyperium/h3) as of 2026-12-07; poll accept() while draining again once a released
            // h3 sends no GOAWAY below the first unprocessed stream.
            accepted = h3.accept(), if !draining => match accepted {
                Ok(Some(resolver)) => {
                    // The peer's address as of this request: it changes when the client migrates.
                    let mut info = info.clone();
                    let now_remote = conn.remote_address();
                    if now_remote != last_remote {
                        metrics::count(metrics::QUIC_MIGRATIONS, metrics::Side::Server);
                        last_remote = now_remote;
                    }
                    info.remote_addr = Some(now_remote);
                    let slot = stats.request();
                    let request = Box::pin(serve_request(
                        slot,
                        resolver,
                        service.clone(),
                        info,
                        stops.clone(),
                        settings.clone(),
                        stop.clone(),
                    ));
                    if let Some(rest) = poll_once(request).await {
                        requests.spawn(rest);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    if !err.is_h3_no_error() {
                        tracing::debug!(%remote, error = %err, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {
                if draining && requests.is_empty() {
                    break;
                }
            }
            _ = sample_tick.tick() => sampler.sample(&conn),
        }
    }
    while requests.join_next().await.is_some() {}
    sampler.sample(&conn);
    tracing::debug!(%remote, stats = ?conn.stats(), "QUIC connection statistics");
    if draining {
        // Responses that finished just before the drain began may still be unacknowledged, and
        // closing discards them: give the client about two round trips (+ its ACK delay).
        let grace = (conn.rtt() * 2 + std::time::Duration::from_millis(25))
            .min(std::time::Duration::from_secs(1));
        tokio::time::sleep(grace).await;
    }
    conn.close(sent::SHUTDOWN, if draining { b"shutdown" } else { b"" });
}

/// While a connection drains, h3's `accept` is no longer polled: the request streams the client
/// opened before it saw our GOAWAY wait in quinn's queue, all at or beyond the GOAWAY's stream id.
/// RFC 9114 §5.2: the server SHOULD cancel them; H3_REQUEST_REJECTED (§4.1.1) tells the client
/// they were not processed, so it can send them again on another connection instead of failing
/// when the connection closes. Ends with the connection.
async fn reject_beyond_goaway(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tracing::debug!(stream = %send.id(), "refusing a request stream beyond GOAWAY");
        let _ = send.reset(sent::BEYOND_GOAWAY);
        let _ = recv.stop(sent::BEYOND_GOAWAY);
    }
}

/// Polls a request once on the connection's own task and returns it if it is not done, to be
/// spawned. A unary call whose handler does not wait (most do not) is then read, handled and
/// answered right here: no task to spawn, and no wake-ups to hand it between workers. On a
/// 2-worker runtime a spawned request task was the third task in a row that tokio ran from its
/// LIFO slot (endpoint driver → connection driver → this task → the request), past which
/// tokio's anti-starvation cap sends every further wake-up through the shared queue and unparks
/// the other worker: ~0.6 futex calls per call at c=1 came from there (see
/// docs/performance-notes.md, 2026-12-05). The price: while a handler's first poll runs,
/// this connection accepts no other request, so a handler that computes for long before its
/// first await holds up the calls behind it (they would have waited for a worker anyway).
/// A panic in that poll fails only its request, as it would in a task of its own.
async fn poll_once<F>(mut request: Pin<Box<F>>) -> Option<Pin<Box<F>>>
where
    F: Future<Output = ()>,
{
    let polled = std::future::poll_fn(|cx| {
        Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
            request.as_mut().poll(cx)
        })))
    })
    .await;
    match polled {
        Ok(Poll::Ready(())) => None,
        Ok(Poll::Pending) => Some(request),
        Err(_) => {
            // The future is dropped half-run, as tokio drops a panicked task: its streams reset.
            tracing::error!("a request handler panicked");
            None
        }
    }
}

/// Completes the QUIC handshake — or, with early data accepted, hands the connection over at once
/// so 0-RTT requests are read before it completes (each is then checked in `serve_request`).
async fn establish(
    connecting: quinn::Connecting,
    settings: &ServerSettings,
    remote: SocketAddr,
) -> Option<quinn::Connection> {
    let connecting = if settings.early_data.is_some() {
        match connecting.into_0rtt() {
            Ok((conn, _accepted)) => return Some(conn),
            Err(connecting) => connecting,
        }
    } else {
        connecting
    };
    let side = metrics::Side::Server;
    match tokio::time::timeout(settings.handshake_timeout, connecting).await {
        Ok(Ok(conn)) => {
            metrics::handshake(side, Transport::H3, "ok");
            Some(conn)
        }
        Ok(Err(err)) => {
            tracing::debug!(%remote, error = %err, "QUIC handshake failed");
            metrics::handshake(side, Transport::H3, "failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "QUIC handshake timed out");
            metrics::handshake(side, Transport::H3, "timeout");
            None
        }
    }
}

async fn serve_request(
    _slot: Slot,
    resolver: Resolver,
    service: RoutesService,
    mut info: ConnectionInfo,
    stops: StreamSignals,
    settings: Arc<ServerSettings>,
    draining: watch::Receiver<bool>,
) {
    let header_timeout = settings.handshake_timeout;
    let early_data: Option<&HashSet<String>> = settings.early_data.as_deref();
    // A stream that never completes its HEADERS (slowloris) must not hold a task forever.
    // Boxed: h3's resolve future is ~2.5 KiB, over half of this task's state, and every request
    // would otherwise carry (and copy when spawned) that much for a phase that ends at once.
    let (request, stream) = match Box::pin(tokio::time::timeout(
        header_timeout,
        resolver.resolve_request(),
    ))
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "malformed HTTP/3 request");
            return;
        }
        Err(_) => {
            // Dropping the resolver drops the stream: quinn resets/stops it.
            tracing::debug!("request headers did not arrive in time");
            return;
        }
    };
    // The client's STOP_SENDING (it dropped the call, RFC 9114 §4.1.1) cancels the handler: the
    // selects below drop its future or its response stream.
    let (stopped, early) = match stops.take(stream.id().into_inner()) {
        Some(facts) => (Some(facts.stopped), facts.early),
        None => (None, false),
    };
    let mut stopped = pin!(async move {
        match stopped {
            Some(stopped) => stopped.await,
            None => std::future::pending().await,
        }
    });
    // Early data can be replayed by an attacker (RFC 9001 §9.2, RFC 8470): only methods declared
    // idempotent run from it; the others are refused unprocessed, which tells the client to retry
    // once the handshake is complete (RFC 9114 §4.1.1, H3_REQUEST_REJECTED).
    if early
        && !early_data
            .as_ref()
            .is_some_and(|ok| ok.contains(request.uri().path()))
    {
        tracing::debug!(
            path = request.uri().path(),
            "refusing a non-idempotent call in 0-RTT"
        );
        let (mut send, mut recv) = stream.split();
        send.stop_stream(sent::EARLY_DATA_REFUSED);
        recv.stop_sending(sent::EARLY_DATA_REFUSED);
        return;
    }
    if let Some(field) = connection_specific_field(request.headers()) {
        // RFC 9114 §4.2: such a message is malformed; §4.1.2: reset with H3_MESSAGE_ERROR.
        tracing::debug!(field, "malformed HTTP/3 request: connection-specific field");
        let (mut send, mut recv) = stream.split();
        send.stop_stream(sent::MALFORMED);
        recv.stop_sending(sent::MALFORMED);
        return;
    }
    info.early_data = early;
    let (mut send, recv) = stream.split();
    let tcp_info = TcpConnectInfo {
        local_addr: info.local_addr,
        remote_addr: info.remote_addr,
    };
    // A handler that stops reading early: "no more request data needed" (RFC 9114 §4.1.2).
    let mut body = H3Body::new(recv, sent::NO_MORE_REQUEST_DATA);
    // gRPC clients send no content-length; only when one is present is it checked.
    let mut malformed = None;
    if let Some(value) = request.headers().get(http::header::CONTENT_LENGTH) {
        let flag = Arc::new(AtomicBool::new(false));
        match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(declared) => {
                body = body.with_content_length(ContentLength {
                    declared,
                    received: 0,
                    malformed: flag.clone(),
                });
            }
            None => flag.store(true, Ordering::Release),
        }
        malformed = Some(flag);
    }
    // The client's reset of the request stream cancels the handler too (`peer_cancel`).
    let cancel = Arc::new(PeerCancel::default());
    let mut reset = cancel.wait();
    let mut request = request.map(|()| Body::new(CancelOnReset::new(body, cancel)));
    request.extensions_mut().insert(info);
    request.extensions_mut().insert(tcp_info);
    // Biased: a cancel seen in the same wake-up as the handler's progress wins, so the handler is
    // dropped rather than polled on into reading the reset as the end of its input.
    let response = tokio::select! {
        biased;
        by = cancelled(&mut stopped, &mut reset) => {
            tracing::debug!(by, "client cancelled the call before the response");
            // Reset rather than let the dropped stream finish: a FIN without HEADERS would read as
            // a malformed response (RFC 9114 §4.1.1).
            send.stop_stream(sent::CANCELLED);
            return;
        }
        response = service.oneshot(request) => match response {
            Ok(response) => response,
            Err(never) => match never {},
        },
    };
    if malformed.is_some_and(|m| m.load(Ordering::Acquire)) {
        // RFC 9114 §4.1.2: a malformed request is a stream error of type H3_MESSAGE_ERROR.
        tracing::debug!("malformed HTTP/3 request: content-length does not match");
        send.stop_stream(sent::MALFORMED);
        return;
    }
    let (parts, body) = response.into_parts();
    let mut body = Ahead::new(body);
    // A unary response is complete at once: its HEADERS wait for the frames behind them.
    let hold = body.is_ready();
    let head = send.send_response(Response::from_parts(parts, ()));
    if let Err(err) = backend::write(None, hold, head).await {
        tracing::debug!(error = %err, "sending response headers failed");
        return;
    }
    let finished = tokio::select! {
        biased;
        by = cancelled(&mut stopped, &mut reset) => {
            tracing::debug!(by, "client cancelled the call during the response");
            send.stop_stream(sent::CANCELLED);
            return;
        }
        finished = write_response(&mut send, &mut body) => finished,
    };
    if finished && *draining.borrow() {
        // During a drain, stay until the client has acknowledged the whole response (quinn's
        // `stopped` resolves then): the connection closes once the last request is done, and
        // closing discards unacknowledged stream data. Outside a drain this would only cost an
        // extra wake-up per call.
        let _ = tokio::time::timeout(DELIVERY_WAIT, stopped).await;
    }
}

/// Resolves when the client gives up on its call, naming the sign: STOP_SENDING on the response
/// (quinn's `stopped`) or the reset of the request that its body read (`peer_cancel`).
async fn cancelled<S, R>(stopped: S, reset: R) -> &'static str
where
    S: Future<Output = ()> + Unpin,
    R: Future<Output = ()> + Unpin,
{
    match futures::future::select(stopped, reset).await {
        futures::future::Either::Left(_) => "STOP_SENDING",
        futures::future::Either::Right(_) => "request reset",
    }
}

/// The first connection-specific field in `headers`, which HTTP/3 forbids (RFC 9114 §4.2):
/// `connection` and the fields it would name, and `te` with any value but `trailers`.
fn connection_specific_field(headers: &http::HeaderMap) -> Option<&'static str> {
    use http::header::{CONNECTION, HeaderName, TRANSFER_ENCODING, UPGRADE};
    // Typed names: a `&str` lookup parses and validates the name on every request.
    static FORBIDDEN: [HeaderName; 5] = [
        CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        TRANSFER_ENCODING,
        UPGRADE,
    ];
    if let Some(name) = FORBIDDEN.iter().find(|name| headers.contains_key(*name)) {
        return Some(name.as_str());
    }
    headers
        .get_all(http::header::TE)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        .then_some("te")
}

/// Writes the response body (see [`write_body`]). A failed write means the client stopped the
/// stream; dropping `body` then cancels the handler. Returns whether the response was finished
/// (so its delivery is worth waiting for).
async fn write_response<S>(send: &mut ServerStream<S>, body: &mut Ahead<Body>) -> bool
where
    S: h3::quic::SendStream<Bytes>,
{
    let err = match write_body(send, body).await {
        Written::Finished => return true,
        Written::Closed(err) => err,
        Written::Failed(status) => {
            // tonic reports handler errors as trailers itself; this is a body that failed.
            let mut trailers = HeaderMap::new();
            let _ = status.add_header(&mut trailers);
            match send.send_trailers(trailers).await {
                Ok(()) => match send.finish().await {
                    Ok(()) => return true,
                    Err(err) => err,
                },
                Err(err) => err,
            }
        }
    };
    tracing::debug!(error = %err, "response stream closed by the client");
    false
}

#[cfg(test)]
mod tests {
    /// The size of the future an `async fn` of seven arguments returns.
    fn future_size<A, B, C, D, E, F, G, R>(_: fn(A, B, C, D, E, F, G) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Each request is one task holding this future: its size is memory per in-flight call and a
    /// memcpy at every spawn (4.9 KiB with h3's resolve future inline, 3.0 KiB boxed).
    #[test]
    fn request_futures_stay_small() {
        let size = future_size(super::serve_request);
        assert!(size < 4 * 1024, "serve_request future is {size} bytes");
    }
}

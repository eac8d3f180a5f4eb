//! The HTTP/3 wire of the client: one QUIC connection (quinn) carrying each call on its own
//! bidirectional request stream (RFC 9114 §4.1), re-established on demand after a loss or GOAWAY.
//!
//! Per call: the caller's task sends the HEADERS and reads the response (headers, DATA, trailing
//! HEADERS) through [`H3ResponseBody`]; one spawned task pumps the request body into the stream,
//! because a streaming request must progress while the caller waits on the response. Dropping the
//! call resets the send side and stops the receive side with `H3_REQUEST_CANCELLED` (RFC 9114
//! §4.1.1: "a client can cancel a request by resetting the stream").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::Fuse;
use http::{Request, Response};
use http_body::Frame;
use tokio::sync::{oneshot, watch};
use tonic::Status;

use super::backend;
use super::body::H3Body;
use super::write::{Ahead, Written, write_body};
use crate::Transport;
use crate::body::{ReadyFrame, Replay, RequestBody, replay_copy, take_ready};
use crate::client::Endpoint;
use crate::client::channel::SendError;
use crate::client::slot::{self, Slot};
use crate::error::{Error, Kind, sent, status_from_h3};
use crate::metrics;
use crate::quic;
use crate::tls;

type SendRequest = h3::client::SendRequest<backend::OpenStreams, Bytes>;
type RecvHalf = h3::client::RequestStream<backend::RecvStream, Bytes>;
type SendHalf = h3::client::RequestStream<backend::SendStream<Bytes>, Bytes>;

struct Config {
    host: String,
    port: u16,
    /// Overrides resolving `host` (a balanced channel's backend).
    addr: Option<SocketAddr>,
    server_name: String,
    client_config: quinn::ClientConfig,
    connect_timeout: Duration,
    max_field_section_size: u64,
    early_data: bool,
    quic: quic::QuicSettings,
}

#[derive(Clone)]
struct Live {
    send: SendRequest,
    quic: quinn::Connection,
    /// On a connection opened with 0-RTT: `None` until the handshake completes, then whether the
    /// server accepted the early data. Absent on connections that completed the handshake first.
    handshake: Option<watch::Receiver<Option<bool>>>,
    /// Set once h3's connection driver has ended. Every call checks it: `close_reason()` would
    /// take quinn's connection lock, which the connection's driver holds while it sends, and at
    /// c=32 those waits were 0.05 futex calls per call (docs/performance-notes.md). A call that
    /// slips in between the close and the flag is refused before anything is sent and retried on
    /// a new connection (`send_on`).
    closed: Arc<AtomicBool>,
}

impl slot::Live for Live {
    fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
}

impl Live {
    /// The handshake watch, while the connection is still in 0-RTT.
    fn handshake_pending(&self) -> Option<watch::Receiver<Option<bool>>> {
        self.handshake
            .as_ref()
            .filter(|h| h.borrow().is_none())
            .cloned()
    }

    /// The server refused this connection's 0-RTT data wholesale (its streams were lost).
    fn early_data_rejected(&self) -> bool {
        self.handshake
            .as_ref()
            .is_some_and(|h| *h.borrow() == Some(false))
    }
}

/// A lazily (re)connected HTTP/3 connection shared by every clone of a channel.
pub(crate) struct H3Connection {
    config: Arc<Config>,
    endpoint: Mutex<Option<quinn::Endpoint>>,
    slot: Slot<Live>,
    /// The last destination the endpoint's socket got ICMP "unreachable" for (quic::unreachable).
    unreachable: watch::Sender<Option<SocketAddr>>,
}

impl H3Connection {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self, Error> {
        if endpoint.scheme != http::uri::Scheme::HTTPS {
            return Err(Error::new(Kind::Config)
                .context("HTTP/3 requires https:// (QUIC is always encrypted)"));
        }
        let tls = endpoint.tls.client_config(tls::ALPN_H3)?;
        let name = endpoint.tls.server_name(&endpoint.host)?;
        let mut settings = endpoint.quic.clone();
        // One keep-alive knob for both wires: HTTP/2 PINGs there, QUIC PINGs here.
        settings.keep_alive_interval = settings
            .keep_alive_interval
            .or(endpoint.keep_alive_interval);
        let client_config = quic::client_config(tls, &settings)?;
        let quic_settings = settings;
        Ok(H3Connection {
            config: Arc::new(Config {
                host: endpoint
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: endpoint.port,
                addr: endpoint.connect_addr,
                server_name: name.to_str().into_owned(),
                client_config,
                connect_timeout: endpoint.connect_timeout,
                max_field_section_size: 16 * 1024,
                early_data: endpoint.tls.early_data,
                quic: quic_settings,
            }),
            endpoint: Mutex::new(None),
            slot: Slot::new(),
            unreachable: watch::Sender::new(None),
        })
    }

    pub(crate) async fn connect_now(&self) -> Result<(), Error> {
        self.live().await.map(drop)
    }

    /// Moves the client's UDP socket to `socket`; open connections migrate with it (RFC 9000 §9).
    pub(crate) fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), Error> {
        let guard = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(ep) => {
                crate::quic::socket::QuicSocket::wrap_watched(socket, self.unreachable.clone())
                    .and_then(|socket| ep.rebind_abstract(socket))
            }
            .map_err(|e| Error::with(Kind::Io, e).context("rebind QUIC socket")),
            None => Err(Error::new(Kind::Closed).context("no QUIC endpoint to rebind yet")),
        }
    }

    async fn live(&self) -> Result<Live, Error> {
        let config = &self.config;
        let target = || format!("QUIC {}:{}", config.host, config.port);
        self.slot
            .get(|| self.connect(), config.connect_timeout, target)
            .await
    }

    /// Whether a live connection is up now (never connects).
    pub(crate) fn is_connected(&self) -> bool {
        self.slot.peek().is_some()
    }

    /// The current connection's path (quinn's figures), if connected.
    pub(crate) fn path_stats(&self) -> Option<crate::PathStats> {
        crate::path::PathSource::Quic(self.slot.peek()?.quic).stats()
    }

    fn forget(&self, quic: &quinn::Connection) {
        self.slot
            .forget_if(|l| l.quic.stable_id() == quic.stable_id());
    }

    fn quinn_endpoint(&self, target: SocketAddr) -> Result<quinn::Endpoint, Error> {
        let mut guard = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ep) = guard.as_ref() {
            let family_matches = ep
                .local_addr()
                .is_ok_and(|a| a.is_ipv4() == target.is_ipv4());
            if family_matches {
                return Ok(ep.clone());
            }
        }
        let bind = quic::wildcard_for(target);
        let ep = quic::client_endpoint(bind, &self.config.quic, self.unreachable.clone())
            .map_err(|e| Error::with(Kind::Io, e).context(format!("bind UDP {bind}")))?;
        *guard = Some(ep.clone());
        Ok(ep)
    }

    async fn connect(&self) -> Result<Live, Error> {
        let config = &self.config;
        let target = format!("{}:{}", config.host, config.port);
        let addr = match config.addr {
            Some(addr) => addr,
            None => tokio::net::lookup_host((config.host.as_str(), config.port))
                .await
                .map_err(|e| Error::with(Kind::Connect, e).context(target.clone()))?
                .next()
                .ok_or_else(|| {
                    Error::new(Kind::Connect).context(format!("{target}: no address"))
                })?,
        };
        let endpoint = self.quinn_endpoint(addr)?;
        // Per peer: a loopback server's path MTU is known up front (QuicSettings::loopback_mtu).
        let mut client_config = config.client_config.clone();
        client_config.transport_config(config.quic.transport_config_to(addr)?);
        let connecting = endpoint
            .connect_with(client_config, addr, &config.server_name)
            .map_err(|e| Error::with(Kind::Connect, e).context(target.clone()))?;
        let (quic, handshake) = match connecting.into_0rtt() {
            // Resuming with early data allowed: usable now; the handshake finishes meanwhile.
            Ok((quic, accepted)) if config.early_data => {
                tracing::debug!(%target, "resuming with 0-RTT");
                let (tx, rx) = watch::channel(None);
                tokio::spawn(async move {
                    let accepted = accepted.await;
                    metrics::handshake(metrics::Side::Client, Transport::H3, "ok");
                    metrics::zero_rtt(accepted);
                    let _ = tx.send(Some(accepted));
                });
                (quic, Some(rx))
            }
            Ok((quic, accepted)) => {
                // Only reachable when rustls offers early data we did not ask for; wait it out.
                accepted.await;
                (quic, None)
            }
            Err(connecting) => {
                match until_unreachable(connecting, self.unreachable.subscribe(), addr).await {
                    Ok(quic) => {
                        metrics::handshake(metrics::Side::Client, Transport::H3, "ok");
                        (quic, None)
                    }
                    Err(e) => {
                        metrics::handshake(metrics::Side::Client, Transport::H3, "failed");
                        return Err(connect_error(e, &target));
                    }
                }
            }
        };
        let mut builder = h3::client::builder();
        builder.max_field_section_size(config.max_field_section_size);
        let (mut driver, send) = builder
            .build::<_, _, Bytes>(backend::Connection::new(quic.clone(), None))
            .await
            .map_err(|e| Error::with(Kind::Protocol, e).context("HTTP/3 connection setup"))?;
        let ended = quic.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let closing = closed.clone();
        let open = metrics::OpenConnection::new(metrics::Side::Client, Transport::H3);
        let mut unreachable = self.unreachable.subscribe();
        unreachable.mark_unchanged();
        tokio::spawn(async move {
            let mut sampler = metrics::QuicSampler::new(metrics::Side::Client);
            let mut tick = tokio::time::interval(metrics::QuicSampler::INTERVAL);
            tick.reset();
            let mut close = std::pin::pin!(futures::future::poll_fn(|cx| driver.poll_close(cx)));
            let mut watching = true;
            let err = loop {
                tokio::select! {
                    err = &mut close => break err,
                    _ = tick.tick() => sampler.sample(&ended),
                    changed = unreachable.changed(), if watching => match changed {
                        Ok(()) if *unreachable.borrow_and_update() == Some(ended.remote_address()) => {
                            tokio::spawn(close_if_silent(ended.clone()));
                        }
                        Ok(()) => {}
                        Err(_) => watching = false,
                    },
                }
            };
            closing.store(true, Ordering::Release);
            sampler.sample(&ended);
            if matches!(ended.close_reason(), Some(quinn::ConnectionError::Reset)) {
                metrics::count(metrics::QUIC_STATELESS_RESETS, metrics::Side::Client);
            }
            drop(open);
            if !err.is_h3_no_error() {
                tracing::debug!(error = %err, "HTTP/3 connection ended");
            }
            // Losses, path MTU, congestion events: what a throughput question starts from.
            tracing::debug!(stats = ?ended.stats(), "QUIC connection statistics");
        });
        Ok(Live {
            send,
            quic,
            handshake,
            closed,
        })
    }

    /// Sends one call. With 0-RTT pending on the connection, a complete small request goes early
    /// (and once more after the handshake if it was refused); anything else waits for the
    /// handshake. See `Endpoint::early_data`.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        let live = match self.live().await {
            Ok(live) => live,
            Err(err) => return Err(SendError::Unsent(err.into(), Box::new(req))),
        };
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let token = body.token();
        // A unary request is complete at once: it is then written inline, without a pump task.
        let (ready, rest) = take_ready(body)?;
        match live.handshake_pending() {
            None => {
                // Kept so a request the server refuses unprocessed can go again (RFC 9114 §4.1.1).
                let copy = replay_copy(&ready, rest.as_ref());
                match self
                    .send_on(live, head, Replay::from_parts(ready, rest), copy)
                    .await
                {
                    Err(Refused::Rejected(why, head, replay)) => {
                        tracing::debug!(%why, "request refused unprocessed; sending it again");
                        self.send_again(head, replay)
                            .await
                            .map_err(|refused| refused.into_send_error(token))
                    }
                    other => other.map_err(|refused| refused.into_send_error(token)),
                }
            }
            Some(handshake) => Ok(self.send_early(live, handshake, head, ready, rest).await?),
        }
    }

    /// Sends a request the server refused unprocessed once more, on a fresh connection if the
    /// old one is closing; boxed, as it is the rare path.
    fn send_again(
        &self,
        head: Request<()>,
        replay: Replay,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Refused>> + Send + '_>> {
        Box::pin(async move {
            let copy = Some(replay.ready.iter().cloned().collect());
            match self.live().await {
                Ok(live) => self.send_on(live, head, replay, copy).await,
                Err(err) => Err(Refused::Unsent(err.into(), head, replay)),
            }
        })
    }

    /// [`Self::send`] while the connection is still in 0-RTT; boxed, as it is rare and would
    /// otherwise triple the size of every call's future.
    fn send_early(
        &self,
        live: Live,
        handshake: watch::Receiver<Option<bool>>,
        head: Request<()>,
        ready: Vec<ReadyFrame>,
        rest: Option<RequestBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Status>> + Send + '_>> {
        Box::pin(async move {
            let Some(copy) = replay_copy(&ready, rest.as_ref()) else {
                // A streaming or large call: not worth replaying, so not sent early.
                let live = self.after_handshake(live, handshake).await?;
                return self
                    .send_on(live, head, Replay::from_parts(ready, rest), None)
                    .await
                    .map_err(Refused::into_status);
            };
            match self
                .send_on(live.clone(), head.clone(), Replay::complete(ready), None)
                .await
            {
                Err(Refused::Early(why)) => {
                    let accepted = wait_handshake(handshake).await;
                    tracing::debug!(%why, accepted, "early call refused; sending it again after the handshake");
                    let live = self.live().await?;
                    self.send_on(live, head, Replay::complete(copy), None)
                        .await
                        .map_err(Refused::into_status)
                }
                other => other.map_err(Refused::into_status),
            }
        })
    }

    /// Waits for the handshake of `live`'s connection (or a replacement after a loss).
    async fn after_handshake(
        &self,
        live: Live,
        handshake: watch::Receiver<Option<bool>>,
    ) -> Result<Live, Status> {
        wait_handshake(handshake).await;
        if live.quic.close_reason().is_none() {
            return Ok(live);
        }
        Ok(self.live().await?)
    }

    /// Sends one call on `live`. A request the connection refused before anything was sent (GOAWAY,
    /// closed connection) is retried once on a fresh connection.
    async fn send_on(
        &self,
        mut live: Live,
        head: Request<()>,
        body: Replay,
        copy: Option<Vec<ReadyFrame>>,
    ) -> Result<Response<ResponseBody>, Refused> {
        let early = live.handshake_pending().is_some();
        let complete = body.is_complete();
        let mut body = Ahead::new(body);
        // A unary request is complete at once: its HEADERS wait for the frames behind them.
        let hold = body.is_ready();
        let opened = {
            let mut sender = live.send.clone();
            backend::write(None, hold, sender.send_request(head.clone())).await
        };
        let stream = match opened {
            Ok(stream) => stream,
            Err(err) if refused_before_sending(&err) => {
                tracing::debug!(error = %err, "HTTP/3 connection refused the request; reconnecting");
                self.forget(&live.quic);
                match self.resend(&head).await {
                    Ok((fresh, stream)) => {
                        live = fresh;
                        stream
                    }
                    Err(status) => return Err(Refused::unsent(status, head, body)),
                }
            }
            Err(err) => return Err(Refused::Failed(status_from_h3(&err))),
        };
        let (mut send, mut recv) = stream.split();
        // A request body that fails (the caller cancelled, or encoding failed) fails the call with
        // its status, as on HTTP/2. Fused: a receiver polled after it completed panics, a fused
        // one stays pending (a terminated one always is: a body in memory cannot fail).
        let mut failed = Fuse::terminated();
        if complete {
            // Everything is in hand: write it here (one task per call is enough).
            write_complete(&mut send, body).await;
        } else {
            let (failed_tx, failed_rx) = oneshot::channel();
            failed = failed_rx.fuse();
            // h3 closes the connection when its last SendRequest is dropped: the call keeps one,
            // so in-flight calls outlive the Channel handles (as they do on HTTP/2).
            tokio::spawn(pump_request(send, body, live.send.clone(), failed_tx));
        }
        let outcome = {
            let mut pending = pin!(recv.recv_response());
            loop {
                tokio::select! {
                    response = &mut pending => break response.map_err(|e| {
                        // Refused unprocessed (RFC 9114 §4.1.1), or lost with the rejected 0-RTT.
                        if early && (is_rejected(&e) || live.early_data_rejected()) {
                            Refused::Early(status_from_h3(&e))
                        } else if is_rejected(&e) && copy.is_some() {
                            // Refused unprocessed: the connection is likely draining (its GOAWAY
                            // may not be read yet), so the retry takes a fresh one.
                            self.forget(&live.quic);
                            Refused::Rejected(
                                status_from_h3(&e),
                                head.clone(),
                                Replay::complete(copy.clone().unwrap_or_default()),
                            )
                        } else {
                            Refused::Failed(status_from_h3(&e))
                        }
                    }),
                    failed = &mut failed => match failed {
                        Ok(status) => break Err(Refused::Failed(status)),
                        // The request body ended normally; keep waiting for the response.
                        Err(_) => continue,
                    },
                }
            }
        };
        let response = match outcome {
            Ok(response) => response,
            Err(refused) => {
                recv.stop_sending(sent::CANCELLED);
                return Err(refused);
            }
        };
        let body = ResponseBody {
            inner: H3Body::new(recv, sent::CANCELLED),
            failed,
            _connection: live.send,
        };
        Ok(response.map(|()| body))
    }
}

impl H3Connection {
    /// Opens the request stream again on a fresh connection; boxed, as it is the rare path.
    #[allow(clippy::type_complexity)]
    fn resend<'a>(
        &'a self,
        head: &'a Request<()>,
    ) -> Pin<
        Box<
            dyn Future<
                    Output = Result<
                        (
                            Live,
                            h3::client::RequestStream<backend::BidiStream<Bytes>, Bytes>,
                        ),
                        Status,
                    >,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            let live = self.live().await?;
            let stream = live
                .send
                .clone()
                .send_request(head.clone())
                .await
                .map_err(|e| status_from_h3(&e))?;
            Ok((live, stream))
        })
    }
}

/// Why a call failed: `Early` ones were refused unprocessed in 0-RTT and may be sent again;
/// `Unsent` ones never left this client (the request is returned whole).
enum Refused {
    Early(Status),
    Unsent(Status, Request<()>, Replay),
    /// Refused unprocessed by the server (H3_REQUEST_REJECTED): sent again once, then `Unsent`.
    Rejected(Status, Request<()>, Replay),
    Failed(Status),
}

impl Refused {
    /// `Unsent`, unless the body failed while it was peeked (then it cannot be sent again).
    fn unsent(status: Status, head: Request<()>, body: Ahead<Replay>) -> Self {
        let (mut replay, peeked) = body.into_parts();
        match peeked {
            None | Some(None) => {}
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => replay.ready.push_front(ReadyFrame::Data(data)),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        replay.ready.push_front(ReadyFrame::Trailers(trailers));
                    }
                }
            },
            Some(Some(Err(_))) => return Refused::Failed(status),
        }
        Refused::Unsent(status, head, replay)
    }

    fn into_status(self) -> Status {
        match self {
            Refused::Early(s)
            | Refused::Unsent(s, ..)
            | Refused::Rejected(s, ..)
            | Refused::Failed(s) => s,
        }
    }

    /// As the channel sees it: an unsent request is rebuilt, tied to its call's cancellation.
    fn into_send_error(self, token: crate::body::CancelToken) -> SendError {
        match self {
            Refused::Unsent(status, head, replay) | Refused::Rejected(status, head, replay) => {
                let (parts, ()) = head.into_parts();
                let body = token.wrap(tonic::body::Body::new(replay));
                SendError::Unsent(status, Box::new(Request::from_parts(parts, body)))
            }
            other => SendError::Failed(other.into_status()),
        }
    }
}

fn is_rejected(err: &h3::error::StreamError) -> bool {
    matches!(err, h3::error::StreamError::RemoteTerminate { code } if *code == h3::error::Code::H3_REQUEST_REJECTED)
}

/// Resolves with whether the server accepted 0-RTT, once the handshake is complete.
async fn wait_handshake(mut handshake: watch::Receiver<Option<bool>>) -> bool {
    match handshake.wait_for(Option::is_some).await {
        Ok(v) => v.unwrap_or(false),
        // The connection task is gone: the connection failed; callers find out when sending.
        Err(_) => false,
    }
}

/// `connecting`, unless the socket learns first that nobody answers at `addr` (ICMP unreachable):
/// a dead server fails the connect at once instead of at the connect timeout.
async fn until_unreachable(
    connecting: quinn::Connecting,
    mut unreachable: watch::Receiver<Option<SocketAddr>>,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    unreachable.mark_unchanged();
    let mut connecting = pin!(connecting);
    loop {
        tokio::select! {
            done = &mut connecting => return done,
            changed = unreachable.changed() => match changed {
                Ok(()) if *unreachable.borrow_and_update() == Some(addr) => {
                    return Err(quinn::ConnectionError::TransportError(quinn_proto::TransportError {
                        code: quinn_proto::TransportErrorCode::CONNECTION_REFUSED,
                        frame: None,
                        reason: "ICMP unreachable: nobody answers at this address".into(),
                    }));
                }
                Ok(()) => {}
                // The endpoint is gone; the handshake finds out by itself.
                Err(_) => return connecting.await,
            },
        }
    }
}

/// Closes `conn` after an ICMP "unreachable" for its peer, once the peer has also stayed silent
/// for a few round trips: a forged ICMP message cannot close a connection whose peer is alive
/// (RFC 5927 §4.1), and a dead peer's calls fail now instead of at the idle timeout.
async fn close_if_silent(conn: quinn::Connection) {
    let before = conn.stats().udp_rx.datagrams;
    let wait = (conn.rtt() * 3).clamp(Duration::from_millis(10), Duration::from_millis(500));
    tokio::time::sleep(wait).await;
    if conn.close_reason().is_none() && conn.stats().udp_rx.datagrams == before {
        tracing::debug!(peer = %conn.remote_address(), "QUIC peer unreachable (ICMP) and silent; closing");
        conn.close(sent::PEER_UNREACHABLE, b"peer unreachable");
    }
}

fn connect_error(e: quinn::ConnectionError, target: &str) -> Error {
    // RFC 9001 §4.8: TLS alerts travel as QUIC CRYPTO_ERROR codes 0x100..=0x1ff.
    let is_crypto = |code: u64| (0x100..=0x1ff).contains(&code);
    let kind = match &e {
        quinn::ConnectionError::TransportError(t) if is_crypto(u64::from(t.code)) => Kind::Tls,
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(u64::from(c.error_code)) => {
            Kind::Tls
        }
        quinn::ConnectionError::TimedOut => Kind::ConnectTimeout,
        _ => Kind::Connect,
    };
    Error::with(kind, e).context(format!("QUIC {target}"))
}

fn refused_before_sending(err: &h3::error::StreamError) -> bool {
    use h3::error::StreamError;
    matches!(
        err,
        StreamError::RemoteClosing | StreamError::ConnectionError(_)
    )
}

/// Writes a request body that is complete in memory, then FIN. A failed write means the server
/// answered or reset already; the response side reports what happened. Dropped midway (the call
/// was cancelled), the stream is reset rather than left to look complete.
async fn write_complete(send: &mut SendHalf, mut body: Ahead<Replay>) {
    struct ResetUnlessDone<'a>(&'a mut SendHalf, bool);
    impl Drop for ResetUnlessDone<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.stop_stream(sent::CANCELLED);
            }
        }
    }
    let mut guard = ResetUnlessDone(send, false);
    match write_body(&mut *guard.0, &mut body).await {
        Written::Finished => guard.1 = true,
        Written::Closed(err) => tracing::trace!(error = %err, "request write ended"),
        // Not for a body in memory; reset all the same rather than send it cut short.
        Written::Failed(err) => tracing::trace!(error = %err, "request body failed"),
    }
}

/// Streams the request body into the send half: DATA per chunk (no copy: `Bytes`), trailers if
/// any, FIN at the end. A cancelled call resets the stream with `H3_REQUEST_CANCELLED`.
async fn pump_request(
    mut send: SendHalf,
    mut body: Ahead<Replay>,
    _connection: SendRequest,
    failed: oneshot::Sender<Status>,
) {
    match write_body(&mut send, &mut body).await {
        Written::Finished => {}
        // The server stopped reading (it answered already, or reset): nothing to do.
        Written::Closed(err) => tracing::trace!(error = %err, "request body send ended"),
        Written::Failed(err) => {
            tracing::trace!(error = %err, "request body failed; resetting stream");
            send.stop_stream(sent::CANCELLED);
            let status = Status::try_from_error(err)
                .unwrap_or_else(|err| Status::cancelled(format!("request body failed: {err}")));
            let _ = failed.send(status);
        }
    }
}

/// A call's response body: keeps its connection open until dropped, and fails with the request
/// body's status if that failed first.
pub(crate) struct ResponseBody {
    inner: H3Body<RecvHalf>,
    failed: Fuse<oneshot::Receiver<Status>>,
    _connection: SendRequest,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Poll::Ready(Ok(status)) = Pin::new(&mut self.failed).poll(cx) {
            self.inner.abandon();
            return Poll::Ready(Some(Err(status)));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

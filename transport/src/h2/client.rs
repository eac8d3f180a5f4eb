//! The HTTP/2 wire of the client: one multiplexed hyper connection over TCP (+ TLS with ALPN `h2`,
//! RFC 9113 §3.2, or plaintext with prior knowledge, §3.3), re-established on demand after a loss.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::MapErr;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::Status;

use crate::Transport;
use crate::body::{Replay, RequestBody, replay_copy, take_ready};
use crate::metrics;
use crate::path::PathSource;

use crate::client::Endpoint;
use crate::client::channel::SendError;
use crate::client::slot::{Live, Slot};
use crate::error::{Error, Kind, status_from_hyper};
use crate::tls::{self};

pub(crate) type H2Body = MapErr<Incoming, fn(hyper::Error) -> Status>;

fn map_body_error(err: hyper::Error) -> Status {
    status_from_hyper(&err)
}

struct Config {
    host: String,
    port: u16,
    /// Overrides resolving `host` (a balanced channel's backend).
    addr: Option<std::net::SocketAddr>,
    /// Keeps a copy of complete small requests (see `send`).
    replay_unprocessed: bool,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    connect_timeout: Duration,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Duration,
}

/// What one attempt to send a request on a connection came to.
enum Sent {
    Response(Response<H2Body>),
    /// The connection refused it before sending anything (hyper returns the request).
    Refused(hyper::Error, Request<RequestBody>),
    /// Sent, but the server did not process it (the body is gone).
    Unprocessed(Status),
}

/// The stream was certainly not processed by the server: it was beyond the last stream id of the
/// server's GOAWAY (RFC 9113 §6.8; h2 fails exactly those streams with the remote GOAWAY's
/// NO_ERROR), or refused with RST_STREAM(REFUSED_STREAM) (§8.7).
fn unprocessed(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            let reason = h2.reason();
            return h2.is_remote()
                && ((h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
                    || (h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)));
        }
        source = e.source();
    }
    false
}

/// The request to send and, when it is complete and small, a copy to send again.
#[allow(clippy::type_complexity)]
fn with_copy(
    req: Request<RequestBody>,
) -> Result<(Request<RequestBody>, Option<Request<RequestBody>>), Status> {
    let (parts, body) = req.into_parts();
    let token = body.token();
    let (ready, rest) = take_ready(body)?;
    let head = Request::from_parts(parts, ());
    let copy = replay_copy(&ready, rest.as_ref()).map(|copy| {
        let (parts, ()) = head.clone().into_parts();
        let body = tonic::body::Body::new(Replay::complete(copy));
        Request::from_parts(parts, token.clone().wrap(body))
    });
    let (parts, ()) = head.into_parts();
    let body = tonic::body::Body::new(Replay::from_parts(ready, rest));
    Ok((Request::from_parts(parts, token.wrap(body)), copy))
}

/// A stream the server did not process: the copy goes back as unsent, if there is one.
fn not_processed(status: Status, copy: Option<Request<RequestBody>>) -> SendError {
    match copy {
        Some(req) => {
            tracing::debug!(%status, "HTTP/2 stream not processed; the request goes back unsent");
            SendError::Unsent(status, Box::new(req))
        }
        None => SendError::Failed(status),
    }
}

/// A lazily (re)connected HTTP/2 connection shared by every clone of a channel.
pub(crate) struct H2Connection {
    config: Arc<Config>,
    slot: Slot<H2Live>,
}

/// The live HTTP/2 connection: hyper's sender and where its path figures come from.
#[derive(Clone)]
struct H2Live {
    sender: SendRequest<RequestBody>,
    path: Option<PathSource>,
}

impl H2Connection {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Self, Error> {
        let tls = if endpoint.scheme == http::uri::Scheme::HTTPS {
            let config = endpoint.tls.client_config(tls::ALPN_H2)?;
            let name = endpoint.tls.server_name(&endpoint.host)?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        Ok(H2Connection {
            config: Arc::new(Config {
                host: endpoint
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: endpoint.port,
                addr: endpoint.connect_addr,
                replay_unprocessed: endpoint.replay_unprocessed,
                tls,
                connect_timeout: endpoint.connect_timeout,
                keep_alive_interval: endpoint.keep_alive_interval,
                keep_alive_timeout: endpoint.keep_alive_timeout,
            }),
            slot: Slot::new(),
        })
    }

    pub(crate) async fn connect_now(&self) -> Result<(), Error> {
        self.sender().await.map(drop)
    }

    async fn sender(&self) -> Result<SendRequest<RequestBody>, Error> {
        let config = &self.config;
        let target = || format!("{}:{}", config.host, config.port);
        self.slot
            .get(|| connect(config), config.connect_timeout, target)
            .await
            .map(|live| live.sender)
    }

    /// Whether a live connection is up now (never connects).
    pub(crate) fn is_connected(&self) -> bool {
        self.slot.peek().is_some()
    }

    /// The current connection's path (TCP_INFO), if connected.
    pub(crate) fn path_stats(&self) -> Option<crate::PathStats> {
        self.slot.peek()?.path?.stats()
    }

    /// Sends one call. A request the connection refused before sending anything (the connection
    /// was closing: GOAWAY, reset) is retried once on a fresh connection, as gRPC allows for
    /// requests that never reached the server; if that fails too, or connecting fails, the
    /// request comes back unsent. With `replay_unprocessed`, so does a complete small request
    /// whose stream the server did not process (see [`unprocessed`]), from a copy.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<H2Body>, SendError> {
        let (req, copy) = if self.config.replay_unprocessed {
            with_copy(req)?
        } else {
            (req, None)
        };
        let unsent = match self.send_once(req).await? {
            Sent::Response(resp) => return Ok(resp),
            Sent::Refused(err, unsent) => {
                tracing::debug!(error = %err, "HTTP/2 connection refused the request; reconnecting");
                self.forget_dead();
                unsent
            }
            Sent::Unprocessed(status) => return Err(not_processed(status, copy)),
        };
        match self.send_once(unsent).await? {
            Sent::Response(resp) => Ok(resp),
            Sent::Refused(err, unsent) => {
                Err(SendError::Unsent(status_from_hyper(&err), Box::new(unsent)))
            }
            Sent::Unprocessed(status) => Err(not_processed(status, copy)),
        }
    }

    /// One attempt on the current (or a new) connection.
    async fn send_once(&self, req: Request<RequestBody>) -> Result<Sent, SendError> {
        let mut sender = match self.sender().await {
            Ok(sender) => sender,
            Err(err) => return Err(SendError::Unsent(err.into(), Box::new(req))),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                Ok(Sent::Response(resp.map(|b| {
                    b.map_err(map_body_error as fn(hyper::Error) -> Status)
                })))
            }
            Err(mut err) => match err.take_message() {
                Some(unsent) => Ok(Sent::Refused(err.into_error(), unsent)),
                None => {
                    let err = err.into_error();
                    let status = status_from_hyper(&err);
                    if unprocessed(&err) {
                        Ok(Sent::Unprocessed(status))
                    } else {
                        Err(SendError::Failed(status))
                    }
                }
            },
        }
    }

    fn forget_dead(&self) {
        self.slot
            .forget_if(|s| s.sender.is_closed() || !s.sender.is_ready());
    }
}

impl Live for H2Live {
    fn is_alive(&self) -> bool {
        !self.sender.is_closed()
    }
}

async fn connect(config: &Config) -> Result<H2Live, Error> {
    let target = format!("{}:{}", config.host, config.port);
    let tcp = match config.addr {
        Some(addr) => TcpStream::connect(addr).await,
        None => TcpStream::connect((config.host.as_str(), config.port)).await,
    }
    .map_err(|e| Error::with(Kind::Connect, e).context(target.clone()))?;
    // gRPC messages are small and latency-bound; Nagle only adds delay.
    let _ = tcp.set_nodelay(true);
    let path = PathSource::tcp(&tcp);
    match &config.tls {
        Some((connector, name)) => {
            let tls = match connector.connect(name.clone(), tcp).await {
                Ok(tls) => {
                    metrics::handshake(metrics::Side::Client, Transport::H2, "ok");
                    tls
                }
                Err(e) => {
                    metrics::handshake(metrics::Side::Client, Transport::H2, "failed");
                    return Err(Error::with(Kind::Tls, e).context(target.clone()));
                }
            };
            let alpn = tls.get_ref().1.alpn_protocol();
            if alpn != Some(tls::ALPN_H2) {
                return Err(Error::new(Kind::Tls)
                    .context(format!("{target}: server did not negotiate ALPN h2")));
            }
            handshake(tls, config).await
        }
        None => handshake(tcp, config).await,
    }
    .map(|sender| H2Live { sender, path })
}

async fn handshake<T>(io: T, config: &Config) -> Result<SendRequest<RequestBody>, Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // Large fixed windows (see h2/server.rs): transfers are not capped by the 64 KiB default
        // window, and many concurrent small streams stay within h2's DATA-frame budget.
        .initial_stream_window_size(crate::STREAM_WINDOW)
        .initial_connection_window_size(crate::CONNECTION_WINDOW)
        .max_header_list_size(16 * 1024);
    if let Some(interval) = config.keep_alive_interval {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(config.keep_alive_timeout)
            .keep_alive_while_idle(true);
    }
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::with(Kind::Protocol, e).context("HTTP/2 handshake"))?;
    let open = metrics::OpenConnection::new(metrics::Side::Client, Transport::H2);
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "HTTP/2 connection ended");
        }
        drop(open);
    });
    Ok(sender)
}

//! The HTTP/2 wire of the server: TCP accept loop, TLS with ALPN `h2` (RFC 9113 §3.2) or plaintext
//! prior knowledge (§3.3), hyper's HTTP/2 connection, graceful GOAWAY on shutdown (§6.8).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use crate::error::{Error, Kind};
use crate::metrics::{Side::Server as ServerSide, handshake};
use crate::server::limits::{Counted, ServerStats, Slot};
use crate::server::{RoutesService, ServerSettings};
use crate::{ConnectionInfo, Transport};

pub(crate) struct H2Listener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl H2Listener {
    pub(crate) async fn bind(
        addr: SocketAddr,
        tls: Option<rustls::ServerConfig>,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::with(Kind::Io, e).context(format!("bind TCP {addr}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::with(Kind::Io, e).context("TCP local address"))?;
        Ok(H2Listener {
            listener,
            local_addr,
            tls: tls.map(|c| TlsAcceptor::from(Arc::new(c))),
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
        alt_svc: Option<HeaderValue>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let graceful = GracefulShutdown::new();
        let mut conns = JoinSet::new();
        let shared = Arc::new(Shared {
            local_addr: self.local_addr,
            tls: self.tls.clone(),
            service,
            settings: settings.clone(),
            stats: stats.clone(),
            alt_svc,
        });
        loop {
            tokio::select! {
                () = crate::server::stopped(&mut stop) => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        // Over a limit: close at once (dropping the socket), before any TLS work.
                        let Some(conn_slot) = stats.try_connection(settings.max_connections) else {
                            tracing::debug!(%remote, "connection limit reached; closing");
                            continue;
                        };
                        let Some(handshake_slot) =
                            stats.try_handshake(settings.max_pending_handshakes)
                        else {
                            tracing::debug!(%remote, "handshake limit reached; closing");
                            continue;
                        };
                        let slots = (conn_slot, handshake_slot);
                        let watcher = graceful.watcher();
                        conns.spawn(serve_connection(tcp, remote, shared.clone(), watcher, slots));
                    }
                    Err(err) => {
                        // EMFILE and friends are transient: back off instead of spinning or dying.
                        tracing::warn!(error = %err, "accepting a TCP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        // GOAWAY to every connection; in-flight streams may finish within the drain timeout.
        if tokio::time::timeout(settings.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout expired; closing remaining HTTP/2 connections");
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// What every connection of one listener shares.
struct Shared {
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    service: RoutesService,
    settings: Arc<ServerSettings>,
    stats: ServerStats,
    /// `Alt-Svc` advertising HTTP/3 (RFC 7838), when it is served.
    alt_svc: Option<HeaderValue>,
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    watcher: Watcher,
    (_conn_slot, handshake_slot): (Slot, Slot),
) {
    let _ = tcp.set_nodelay(true);
    let _open = crate::metrics::OpenConnection::new(crate::metrics::Side::Server, Transport::H2);
    let local = shared.local_addr;
    let settings = &shared.settings;
    let service = shared.service.clone();
    let alt_svc = shared.alt_svc.clone();
    let mut info = ConnectionInfo {
        transport: Transport::H2,
        remote_addr: Some(remote),
        local_addr: Some(local),
        tls: false,
        peer_certificates: None,
        early_data: false,
        path: crate::path::PathSource::tcp(&tcp),
    };
    match &shared.tls {
        Some(acceptor) => {
            let stream = match tokio::time::timeout(
                settings.handshake_timeout,
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    handshake(ServerSide, Transport::H2, "ok");
                    stream
                }
                Ok(Err(err)) => {
                    tracing::debug!(%remote, error = %err, "TLS handshake failed");
                    handshake(ServerSide, Transport::H2, "failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    handshake(ServerSide, Transport::H2, "timeout");
                    return;
                }
            };
            info.tls = true;
            info.peer_certificates = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
            let conn = Conn {
                info,
                service,
                stats: shared.stats.clone(),
                alt_svc,
                handshake_slot,
            };
            run(stream, conn, settings, watcher).await;
        }
        None => {
            let conn = Conn {
                info,
                service,
                stats: shared.stats.clone(),
                alt_svc,
                handshake_slot,
            };
            run(tcp, conn, settings, watcher).await;
        }
    }
}

/// One connection past its TLS handshake.
struct Conn {
    info: ConnectionInfo,
    service: RoutesService,
    stats: ServerStats,
    alt_svc: Option<HeaderValue>,
    /// Held until the client preface has arrived.
    handshake_slot: Slot,
}

async fn run<IO>(io: IO, conn: Conn, settings: &ServerSettings, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Conn {
        info,
        service,
        stats,
        alt_svc,
        handshake_slot,
    } = conn;
    // The client preface must arrive promptly (RFC 9113 §3.4): hyper would wait for it forever,
    // so a peer that connects and stays silent (slowloris) could hold the connection open.
    let mut io = io;
    let mut preface = [0u8; PREFACE.len()];
    match tokio::time::timeout(settings.handshake_timeout, io.read_exact(&mut preface)).await {
        Ok(Ok(_)) if preface == *PREFACE => {}
        Ok(Ok(_)) => {
            tracing::debug!(remote = ?info.remote_addr, "not an HTTP/2 client preface");
            return;
        }
        Ok(Err(err)) => {
            tracing::debug!(remote = ?info.remote_addr, error = %err, "reading the client preface failed");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = ?info.remote_addr, "client preface timed out");
            return;
        }
    }
    drop(handshake_slot);
    let io = Rewind::new(io, &preface);
    let tcp_info = TcpConnectInfo {
        local_addr: info.local_addr,
        remote_addr: info.remote_addr,
    };
    let remote = info.remote_addr;
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let svc = service.clone();
        req.extensions_mut().insert(info.clone());
        req.extensions_mut().insert(tcp_info.clone());
        let alt_svc = alt_svc.clone();
        // Counted until hyper drops the response body: the stream is done then.
        let slot = stats.request();
        async move {
            let mut response = svc.oneshot(req.map(Body::new)).await?;
            if let Some(v) = alt_svc {
                response.headers_mut().insert(http::header::ALT_SVC, v);
            }
            Ok::<_, std::convert::Infallible>(response.map(|body| Counted::new(body, slot)))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        // Fixed, generous windows instead of hyper's adaptive (BDP) ones: h2 budgets buffered small
        // DATA frames at half the connection window, and with the adaptive 64 KiB start a burst of
        // ~130 concurrent small unary requests got the connection closed with ENHANCE_YOUR_CALM.
        .initial_stream_window_size(crate::STREAM_WINDOW)
        .initial_connection_window_size(crate::CONNECTION_WINDOW);
    if let Some(interval) = settings.keep_alive_interval {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(settings.keep_alive_timeout);
    }
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(err) = watcher.watch(conn).await {
        tracing::debug!(?remote, error = %err, "HTTP/2 connection ended with an error");
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project_lite::pin_project! {
    /// An IO whose first reads return bytes already read from it (the checked preface).
    struct Rewind<IO> {
        prefix: bytes::Bytes,
        #[pin]
        io: IO,
    }
}

impl<IO> Rewind<IO> {
    fn new(io: IO, prefix: &[u8]) -> Self {
        Rewind {
            prefix: bytes::Bytes::copy_from_slice(prefix),
            io,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

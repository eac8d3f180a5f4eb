//! [`Channel`]: the per-call path shared by both wires — origin, `user-agent`, deadline header and
//! local deadline enforcement — before the call is handed to the wire's connection.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;

use super::Endpoint;
use super::auto::AutoConnection;
use super::h2::H2Connection;
use super::h3::H3Connection;
use crate::Transport;
use crate::body::{self, Guarded};
use crate::error::Error;
use crate::timeout::{self, DeadlineBody, Side};

/// A virtual connection to one server, cheap to clone, usable by any tonic-generated client:
/// `FooClient::new(channel)` or `FooClient::with_interceptor(channel, f)`.
///
/// Its errors are already gRPC statuses (see the mapping table in the crate docs).
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    authority: Authority,
    user_agent: HeaderValue,
    default_timeout: Option<std::time::Duration>,
    wire: Wire,
}

enum Wire {
    H2(H2Connection),
    H3(H3Connection),
    Auto(Arc<AutoConnection>),
    /// An endpoint whose configuration was unusable (from `connect_lazy`): every call fails so.
    Failed(String, tonic::Code),
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("authority", &self.inner.authority)
            .field("transport", &self.transport_in_use())
            .finish()
    }
}

impl Channel {
    pub(super) fn h2(endpoint: Endpoint) -> Result<Self, Error> {
        let wire = Wire::H2(H2Connection::new(&endpoint)?);
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn h3(endpoint: Endpoint) -> Result<Self, Error> {
        let wire = Wire::H3(H3Connection::new(&endpoint)?);
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn auto(endpoint: Endpoint) -> Result<Self, Error> {
        let wire = Wire::Auto(Arc::new(AutoConnection::new(&endpoint)?));
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn failed(err: Error) -> Self {
        let code = err.code();
        Channel {
            inner: Arc::new(Inner {
                scheme: Scheme::HTTPS,
                authority: Authority::from_static("invalid"),
                user_agent: HeaderValue::from_static(""),
                default_timeout: None,
                wire: Wire::Failed(format!("{err:#}"), code),
            }),
        }
    }

    fn with_wire(endpoint: &Endpoint, wire: Wire) -> Self {
        Channel {
            inner: Arc::new(Inner {
                scheme: endpoint.scheme.clone(),
                authority: endpoint.authority.clone(),
                user_agent: endpoint.user_agent.clone(),
                default_timeout: endpoint.timeout,
                wire,
            }),
        }
    }

    pub(super) async fn connect_now(&self) -> Result<(), Error> {
        match &self.inner.wire {
            Wire::H2(conn) => conn.connect_now().await,
            Wire::H3(conn) => conn.connect_now().await,
            Wire::Auto(conn) => conn.connect_now().await,
            Wire::Failed(..) => Ok(()),
        }
    }

    /// The wire this channel's calls travel on (`H2` or `H3`; never `Auto`).
    pub fn transport_in_use(&self) -> Transport {
        match &self.inner.wire {
            Wire::H2(_) | Wire::Failed(..) => Transport::H2,
            Wire::H3(_) => Transport::H3,
            Wire::Auto(conn) => conn.transport_in_use(),
        }
    }

    /// Moves an HTTP/3 channel's UDP socket to `socket` (e.g. after a network change); open
    /// connections migrate to it (RFC 9000 §9) and in-flight calls continue.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), Error> {
        match &self.inner.wire {
            Wire::H3(conn) => conn.rebind(socket),
            _ => Err(Error::new(crate::error::Kind::Unsupported)
                .context("only HTTP/3 channels have a UDP socket to rebind")),
        }
    }

    /// Completes the request line and headers the generated client left to the transport.
    fn prepare(&self, req: &mut Request<Body>) -> Result<Option<Instant>, Status> {
        let inner = &self.inner;
        // Generated clients send only the path; the origin is ours (like tonic's AddOrigin).
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Status::internal(format!("invalid request URI: {e}")))?;
        let headers = req.headers_mut();
        // gRPC user agents are "grpc-<lang>/<version>" appended to the application's own.
        match headers.get(http::header::USER_AGENT) {
            Some(ua) => {
                let combined = [ua.as_bytes(), b" ", inner.user_agent.as_bytes()].concat();
                if let Ok(v) = HeaderValue::from_bytes(&combined) {
                    headers.insert(http::header::USER_AGENT, v);
                }
            }
            None => {
                headers.insert(http::header::USER_AGENT, inner.user_agent.clone());
            }
        }
        let requested =
            timeout::from_headers(headers).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let effective = match (requested, inner.default_timeout) {
            (Some(r), Some(d)) => Some(r.min(d)),
            (r, d) => r.or(d),
        };
        if let Some(t) = effective {
            headers.insert(timeout::GRPC_TIMEOUT, timeout::encode(t));
        }
        Ok(effective.map(|t| Instant::now() + t))
    }
}

impl tower_service::Service<Request<Body>> for Channel {
    type Response = Response<Body>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Body>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Both wires multiplex; back-pressure comes from stream limits inside the connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let deadline = this.prepare(&mut req)?;
            // Dropping this call (future or response stream) from here on resets the stream.
            let (parts, body) = req.into_parts();
            let (body, guard) = body::cancelable(body);
            let req = Request::from_parts(parts, body);
            match &this.inner.wire {
                Wire::H2(conn) => {
                    let response = with_deadline(deadline, conn.send(req)).await?;
                    finish(response, deadline, guard)
                }
                Wire::H3(conn) => {
                    let response = with_deadline(deadline, conn.send(req)).await?;
                    finish(response, deadline, guard)
                }
                Wire::Auto(conn) => {
                    let response = with_deadline(deadline, conn.send(req)).await?;
                    finish(response, deadline, guard)
                }
                Wire::Failed(msg, code) => Err(Status::new(*code, msg.clone())),
            }
        })
    }
}

/// Waits for the response head, bounded by the call's deadline.
async fn with_deadline<T>(
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, call)
            .await
            .map_err(|_| Status::deadline_exceeded("deadline exceeded"))?,
        None => call.await,
    }
}

/// The response as the generated client sees it: deadline-bounded, and cancelling the call when
/// dropped.
fn finish<B>(
    response: Response<B>,
    deadline: Option<Instant>,
    guard: body::CancelOnDrop,
) -> Result<Response<Body>, Status>
where
    B: http_body::Body<Data = bytes::Bytes, Error = Status> + Unpin + Send + 'static,
{
    if response.status() != http::StatusCode::OK && !response.headers().contains_key("grpc-status")
    {
        return Err(crate::error::status_from_http(response.status()));
    }
    Ok(response.map(|b| {
        Body::new(Guarded::new(
            DeadlineBody::new(b, deadline, Side::Client),
            guard,
        ))
    }))
}

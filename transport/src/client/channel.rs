//! [`Channel`]: the per-call path shared by both wires — origin, `user-agent`, deadline header and
//! local deadline enforcement — before the call is handed to the wire's connection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;

use super::Endpoint;
use super::auto::{AutoBody, AutoConnection};
use super::balance::{BackendStats, BalancedBody, Balancer};
use crate::Transport;
use crate::body::RequestBody;
use crate::body::{self, Guarded};
use crate::error::Error;
use crate::h2::client::{H2Body, H2Connection};
use crate::h3::client::{H3Connection, ResponseBody as H3Body};
use crate::metrics::{self as gmetrics, CallEnd, CountedBody, ObservedBody, PendingEnd};
use crate::timeout::{self, DeadlineBody, Side};
use crate::trace::{self, SharedPropagator};

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
    /// Per-method metric handles, with `grpc.target` = `scheme://authority`.
    methods: gmetrics::MethodTable,
    propagator: Option<SharedPropagator>,
}

// Arcs so a call's future owns just its wire's connection (see `Channel::call`).
enum Wire {
    H2(Arc<H2Connection>),
    H3(Arc<H3Connection>),
    Auto(Arc<AutoConnection>),
    /// Several servers, each call to one of them (`balance.rs`).
    Balanced(Arc<Balancer>),
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
        let wire = Wire::H2(Arc::new(H2Connection::new(&endpoint)?));
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn h3(endpoint: Endpoint) -> Result<Self, Error> {
        let wire = Wire::H3(Arc::new(H3Connection::new(&endpoint)?));
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn auto(endpoint: Endpoint) -> Result<Self, Error> {
        let wire = Wire::Auto(Arc::new(AutoConnection::new(&endpoint)?));
        Ok(Self::with_wire(&endpoint, wire))
    }

    pub(super) fn balanced(endpoint: &Endpoint, balancer: Arc<Balancer>) -> Self {
        Self::with_wire(endpoint, Wire::Balanced(balancer))
    }

    /// A channel balanced over `endpoints` by power of two choices (tonic's
    /// `Channel::balance_list`); [`Balance`](crate::Balance) has the other options.
    pub fn balance_list(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        crate::Balance::new().list(endpoints)
    }

    /// A channel balanced over the endpoints the application inserts and removes through the
    /// returned sender (tonic's `Channel::balance_channel`).
    pub fn balance_channel<K>(
        capacity: usize,
    ) -> (Self, tokio::sync::mpsc::Sender<crate::Change<K, Endpoint>>)
    where
        K: std::hash::Hash + Eq + Send + Clone + 'static,
    {
        crate::Balance::new().channel(capacity)
    }

    /// Each backend of a balanced channel, with its calls in flight, failures and ejections;
    /// empty for a channel to one server.
    pub fn backends(&self) -> Vec<BackendStats> {
        match &self.inner.wire {
            Wire::Balanced(b) => b.stats(),
            _ => Vec::new(),
        }
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
                methods: gmetrics::MethodTable::client(metrics::SharedString::const_str("other")),
                propagator: None,
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
                methods: gmetrics::MethodTable::client(metrics::SharedString::from_owned(format!(
                    "{}://{}",
                    endpoint.scheme, endpoint.authority
                ))),
                propagator: endpoint.propagator.clone(),
                wire,
            }),
        }
    }

    /// Waits until the channel can carry calls: connected to its server, or, balanced, until
    /// one backend is (a balanced channel with no backend left fails with the last error).
    pub async fn ready(&self) -> Result<(), Error> {
        match &self.inner.wire {
            Wire::H2(conn) => conn.connect_now().await,
            Wire::H3(conn) => conn.connect_now().await,
            Wire::Auto(conn) => conn.connect_now().await,
            Wire::Balanced(b) => b.connect_now().await,
            Wire::Failed(..) => Ok(()),
        }
    }

    /// The wire this channel's calls travel on (`H2` or `H3`; never `Auto`).
    pub fn transport_in_use(&self) -> Transport {
        match &self.inner.wire {
            Wire::H2(_) | Wire::Failed(..) => Transport::H2,
            Wire::H3(_) => Transport::H3,
            Wire::Auto(conn) => conn.transport_in_use(),
            Wire::Balanced(b) => b.transport_in_use(),
        }
    }

    /// The path of the connection this channel's calls use now — RTT, congestion window, losses
    /// — from quinn (HTTP/3) or `TCP_INFO` (HTTP/2, Linux); `None` before the first connection.
    pub fn path_stats(&self) -> Option<crate::PathStats> {
        match &self.inner.wire {
            Wire::H2(conn) => conn.path_stats(),
            Wire::H3(conn) => conn.path_stats(),
            Wire::Auto(conn) => conn.path_stats(),
            Wire::Balanced(_) | Wire::Failed(..) => None,
        }
    }

    /// Moves an HTTP/3 channel's UDP socket to `socket` (e.g. after a network change); open
    /// connections migrate to it (RFC 9000 §9) and in-flight calls continue. An Auto channel
    /// moves its HTTP/3 connection, if it has one.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), Error> {
        match &self.inner.wire {
            Wire::H3(conn) => conn.rebind(socket),
            Wire::Auto(conn) => conn.rebind(socket),
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
        let deadline = match self.prepare(&mut req) {
            Ok(deadline) => deadline,
            Err(status) => return Box::pin(std::future::ready(Err(status))),
        };
        let method = self.inner.methods.get(req.uri().path());
        let version = gmetrics::protocol_version(self.transport_in_use());
        let span = trace::client_span(method.method(), version, self.inner.authority.as_str());
        if let Some(propagator) = &self.inner.propagator {
            propagator.0.inject(&span, req.headers_mut());
        }
        method.start(version);
        // Dropping this call (future or response stream) from here on resets the stream.
        let (parts, body) = req.into_parts();
        let (body, sent) = CountedBody::new(body);
        let (body, guard) = body::cancelable(Body::new(body));
        let req = Request::from_parts(parts, body);
        let pending = PendingEnd::new(CallEnd {
            metrics: method,
            version,
            started: std::time::Instant::now(),
            request_bytes: sent,
            span: span.clone(),
        });
        // One future per wire (`call_on` is monomorphised): a single async block over all wires
        // would be as large as the largest (Auto holds both), and every call pays a memcpy of its
        // size when it is boxed.
        match &self.inner.wire {
            Wire::H2(conn) => call_on(conn, req, deadline, guard, pending, span),
            Wire::H3(conn) => call_on(conn, req, deadline, guard, pending, span),
            Wire::Auto(conn) => call_on(conn, req, deadline, guard, pending, span),
            Wire::Balanced(b) => call_on(b, req, deadline, guard, pending, span),
            Wire::Failed(msg, code) => {
                pending.fail(*code);
                Box::pin(std::future::ready(Err(Status::new(*code, msg.clone()))))
            }
        }
    }
}

/// One wire's connection as a [`Channel`] drives it: HTTP/2, HTTP/3, or Auto choosing between them.
pub(crate) trait WireConnection: Send + Sync + 'static {
    /// The response body of a call on this wire.
    type Body: http_body::Body<Data = bytes::Bytes, Error = Status> + Unpin + Send + 'static;

    /// Connects now unless connected (`Endpoint::connect`), so a bad address fails early.
    fn connect_now(self: &Arc<Self>) -> impl Future<Output = Result<(), Error>> + Send;

    /// Sends one call and waits for its response head; the request is complete but for its body.
    fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Self::Body>, SendError>> + Send;
}

/// Why a wire did not deliver a call's response head.
pub(crate) enum SendError {
    /// Certainly never reached a server: connecting failed, or the connection refused the stream
    /// before anything was sent (after the wire's own retry on a fresh connection). The request
    /// comes back, so a balancer can send it to another server (gRFC A6, transparent retry).
    Unsent(Status, Box<Request<RequestBody>>),
    /// May have reached the server: not to be retried by the channel.
    Failed(Status),
}

impl SendError {
    pub(crate) fn into_status(self) -> Status {
        match self {
            SendError::Unsent(status, _) | SendError::Failed(status) => status,
        }
    }
}

impl From<Status> for SendError {
    fn from(status: Status) -> Self {
        SendError::Failed(status)
    }
}

/// Implements [`WireConnection`] for a wire's connection by its inherent `connect_now` and `send`.
macro_rules! wire_connection {
    ($conn:ty, $body:ty) => {
        impl WireConnection for $conn {
            type Body = $body;

            fn connect_now(self: &Arc<Self>) -> impl Future<Output = Result<(), Error>> + Send {
                <$conn>::connect_now(self)
            }

            fn send(
                self: &Arc<Self>,
                req: Request<RequestBody>,
            ) -> impl Future<Output = Result<Response<$body>, SendError>> + Send {
                <$conn>::send(self, req)
            }
        }
    };
}

wire_connection!(H2Connection, H2Body);
wire_connection!(H3Connection, H3Body);
wire_connection!(AutoConnection, AutoBody);
wire_connection!(Balancer, BalancedBody);

/// The boxed future of one call on `conn`: the response head within the deadline, then the body
/// under the same deadline and tied to the call's cancel guard.
fn call_on<C: WireConnection>(
    conn: &Arc<C>,
    req: Request<RequestBody>,
    deadline: Option<Instant>,
    guard: body::CancelOnDrop,
    pending: PendingEnd,
    span: tracing::Span,
) -> BoxFuture<'static, Result<Response<Body>, Status>> {
    use tracing::Instrument as _;
    let conn = conn.clone();
    Box::pin(
        async move {
            let sent = async { conn.send(req).await.map_err(SendError::into_status) };
            let head = match with_deadline(deadline, sent).await {
                Ok(head) => head,
                Err(status) => {
                    pending.fail(status.code());
                    return Err(status);
                }
            };
            match finish(head, deadline, guard) {
                Ok(response) => Ok(observed(response, pending)),
                Err(status) => {
                    pending.fail(status.code());
                    Err(status)
                }
            }
        }
        .instrument(span),
    )
}

/// The response whose body records the call's metrics when it ends.
fn observed(response: Response<Body>, pending: PendingEnd) -> Response<Body> {
    let head = gmetrics::status_of(response.headers());
    match pending.take() {
        Some(end) => response.map(|b| Body::new(ObservedBody::new(b, head, end))),
        None => response,
    }
}

/// Waits for the response head, bounded by the call's deadline. A combinator, not an `async fn`:
/// that would hold `call` twice (as its argument and inside the timeout), doubling the future.
fn with_deadline<T, F>(
    deadline: Option<Instant>,
    call: F,
) -> impl std::future::Future<Output = Result<T, Status>>
where
    F: std::future::Future<Output = Result<T, Status>>,
{
    use futures::FutureExt as _;
    match deadline {
        Some(d) => futures::future::Either::Left(
            tokio::time::timeout_at(d, call)
                .map(|r| r.unwrap_or_else(|_| Err(Status::deadline_exceeded("deadline exceeded")))),
        ),
        None => futures::future::Either::Right(call),
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
    let mut response = response;
    // A Trailers-Only response carries its status here.
    crate::error::sanitize_status(response.headers_mut());
    Ok(response.map(|b| {
        Body::new(Guarded::new(
            DeadlineBody::new(b, deadline, Side::Client),
            guard,
        ))
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every call moves its future into a box: a future of tens of KiB (as when the connect path
    /// and all wires were inlined, 35 KiB) costs a large memcpy per call.
    #[tokio::test]
    async fn call_futures_stay_small() {
        let certs = dev_certs::DevCerts::generate().unwrap();
        let endpoint = crate::Endpoint::new("https://127.0.0.1:1")
            .unwrap()
            .ca_certificate_pem(&certs.ca_pem)
            .unwrap();
        for transport in [Transport::H2, Transport::H3, Transport::Auto] {
            let endpoint = endpoint.clone().transport(transport);
            let mut channel = endpoint.clone().connect_lazy();
            let mut balanced = crate::Balance::new().list([endpoint]);
            let call = tower_service::Service::call(&mut balanced, Request::new(Body::empty()));
            let size = std::mem::size_of_val(&*call);
            assert!(
                size < 8 * 1024,
                "balanced {transport:?} call future is {size} bytes"
            );
            let call = tower_service::Service::call(&mut channel, Request::new(Body::empty()));
            let size = std::mem::size_of_val(&*call);
            assert!(size < 8 * 1024, "{transport:?} call future is {size} bytes");
        }
    }
}

//! The service stack above the wire, identical for HTTP/2 and HTTP/3: non-gRPC refusal, the
//! request-body stall guard, deadline enforcement, the user's layers, then tonic `Routes`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::limits::StallGuard;
use super::{LayerFn, RoutesService};
use crate::ConnectionInfo;
use crate::metrics::{self, CallEnd, CountedBody, MethodTable, ObservedBody, PendingEnd};
use crate::timeout::{self, DeadlineBody, Side};
use crate::trace::{self, SharedPropagator};
use tracing::Instrument as _;

pub(super) fn build(
    routes: Option<Routes>,
    layers: &[LayerFn],
    body_timeout: Option<Duration>,
    methods: MethodTable,
    propagator: Option<SharedPropagator>,
) -> RoutesService {
    let routes = routes.unwrap_or_default().prepare();
    let mut svc: RoutesService = BoxCloneSyncService::new(routes);
    // The first layer added must end up outermost.
    for layer in layers.iter().rev() {
        svc = layer(svc);
    }
    let deadline = BoxCloneSyncService::new(Deadline {
        inner: svc,
        body_timeout,
    });
    BoxCloneSyncService::new(Observe {
        inner: deadline,
        methods: Arc::new(methods),
        propagator,
    })
}

/// Refuses requests that are not gRPC (see [`reject_non_grpc`]) and records every gRPC call's
/// A66 metrics (see `crate::metrics`), outermost so that calls the deadline ends are counted with
/// their status.
#[derive(Clone)]
struct Observe {
    inner: RoutesService,
    methods: Arc<MethodTable>,
    propagator: Option<SharedPropagator>,
}

impl Service<Request<Body>> for Observe {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if let Some(rejection) = reject_non_grpc(&req) {
            return Box::pin(std::future::ready(Ok(rejection)));
        }
        let inner = self.inner.clone();
        let info = req.extensions().get::<ConnectionInfo>();
        let version = info.map_or("2", |info| metrics::protocol_version(info.transport));
        let peer = info.and_then(|info| info.remote_addr);
        let method = self.methods.get(req.uri().path());
        let span = trace::server_span(method.method(), version, peer);
        if let Some(propagator) = &self.propagator {
            propagator.0.extract(req.headers(), &span);
        }
        method.start(version);
        let (parts, body) = req.into_parts();
        let (body, received) = CountedBody::new(body);
        let req = Request::from_parts(parts, Body::new(body));
        let pending = PendingEnd::new(CallEnd {
            metrics: method,
            version,
            started: std::time::Instant::now(),
            request_bytes: received,
            span: span.clone(),
        });
        Box::pin(async move {
            let resp = inner.oneshot(req).instrument(span).await?;
            let head = metrics::status_of(resp.headers());
            Ok(match pending.take() {
                Some(end) => resp.map(|body| Body::new(ObservedBody::new(body, head, end))),
                None => resp,
            })
        })
    }
}

/// Whether a request is gRPC (POST, `content-type: application/grpc[+…|;…]`).
fn is_grpc(req: &Request<Body>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.strip_prefix("application/grpc").is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('+') || rest.starts_with(';')
                })
            })
}

/// Answers requests that are not gRPC with a plain HTTP error, so other HTTP clients don't read
/// a gRPC error (status 200) as success (PROTOCOL-HTTP2.md, "Requests"): a method other than POST
/// gets 405, a `content-type` other than `application/grpc[+…|;…]` gets 415.
fn reject_non_grpc(req: &Request<Body>) -> Option<Response<Body>> {
    let status = if req.method() != http::Method::POST {
        http::StatusCode::METHOD_NOT_ALLOWED
    } else if is_grpc(req) {
        return None;
    } else {
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if status == http::StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
    }
    Some(response)
}

/// Enforces the request's `grpc-timeout` over the whole call (PROTOCOL-HTTP2.md, "Timeout"); only
/// gRPC requests reach it ([`Observe`] refuses the rest).
#[derive(Clone)]
struct Deadline {
    inner: RoutesService,
    /// See [`StallGuard`]: fails a request body that stalls mid-message this long.
    body_timeout: Option<Duration>,
}

impl Service<Request<Body>> for Deadline {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let req = match self.body_timeout {
            Some(timeout) => req.map(|body| Body::new(StallGuard::new(body, timeout))),
            None => req,
        };
        Box::pin(async move {
            let timeout = match timeout::from_headers(req.headers()) {
                Ok(t) => t,
                // grpc-go answers a malformed timeout with INTERNAL as well.
                Err(e) => return Ok(Status::internal(e.to_string()).into_http()),
            };
            let Some(timeout) = timeout else {
                return inner
                    .oneshot(req)
                    .await
                    .map(over_limit_is_resource_exhausted);
            };
            let deadline = Instant::now() + timeout;
            // Dropping the handler's future on expiry is how the handler observes cancellation.
            match tokio::time::timeout_at(deadline, inner.oneshot(req)).await {
                Ok(Ok(resp)) => Ok(over_limit_is_resource_exhausted(resp)
                    .map(|body| Body::new(DeadlineBody::new(body, Some(deadline), Side::Server)))),
                Ok(Err(never)) => match never {},
                Err(_) => Ok(Status::deadline_exceeded("deadline exceeded").into_http()),
            }
        })
    }
}

/// tonic answers a request message over the service's decoding limit with `OUT_OF_RANGE`; gRPC
/// implementations (grpc-go, grpc-java, grpc-dotnet) and our design use `RESOURCE_EXHAUSTED` for
/// "message larger than max". The refusal comes as a Trailers-Only response (the handler never
/// ran), so the fix is one header check per call. Not reported upstream (tonic) as of 2026-12-07;
/// drop this when a released tonic answers an over-limit message with `RESOURCE_EXHAUSTED`.
fn over_limit_is_resource_exhausted(mut resp: Response<Body>) -> Response<Body> {
    const TONIC_OVER_LIMIT: &[u8] = b"Error, decoded message length too large";
    static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
    let headers = resp.headers_mut();
    let over_limit = headers
        .get(&GRPC_STATUS)
        .is_some_and(|s| s.as_bytes() == b"11")
        && headers
            .get(&GRPC_MESSAGE)
            // tonic percent-encodes spaces too, so compare decoded (lazily, no allocation).
            .is_some_and(|m| {
                percent_encoding::percent_decode(m.as_bytes())
                    .take(TONIC_OVER_LIMIT.len())
                    .eq(TONIC_OVER_LIMIT.iter().copied())
            });
    if over_limit {
        headers.insert(GRPC_STATUS.clone(), http::HeaderValue::from_static("8"));
    }
    resp
}

//! The service stack above the wire, identical for HTTP/2 and HTTP/3: deadline enforcement, the
//! user's layers, then tonic `Routes`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::{BoxService, LayerFn};
use crate::timeout::{self, DeadlineBody, Side};

pub(super) fn build(routes: Option<Routes>, layers: &[LayerFn]) -> BoxService {
    let routes = routes.unwrap_or_default().prepare();
    let mut svc: BoxService = BoxCloneSyncService::new(routes);
    // The first layer added must end up outermost.
    for layer in layers.iter().rev() {
        svc = layer(svc);
    }
    BoxCloneSyncService::new(Deadline { inner: svc })
}

/// Enforces the request's `grpc-timeout` over the whole call (PROTOCOL-HTTP2.md, "Timeout").
#[derive(Clone)]
struct Deadline {
    inner: BoxService,
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
        Box::pin(async move {
            let timeout = match timeout::from_headers(req.headers()) {
                Ok(t) => t,
                // grpc-go answers a malformed timeout with INTERNAL as well.
                Err(e) => return Ok(Status::internal(e.to_string()).into_http()),
            };
            let Some(timeout) = timeout else {
                return inner.oneshot(req).await;
            };
            let deadline = Instant::now() + timeout;
            // Dropping the handler's future on expiry is how the handler observes cancellation.
            match tokio::time::timeout_at(deadline, inner.oneshot(req)).await {
                Ok(Ok(resp)) => Ok(resp
                    .map(|body| Body::new(DeadlineBody::new(body, Some(deadline), Side::Server)))),
                Ok(Err(never)) => match never {},
                Err(_) => Ok(Status::deadline_exceeded("deadline exceeded").into_http()),
            }
        })
    }
}

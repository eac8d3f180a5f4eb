//! Path figures on both wires: `Channel::path_stats` on the client and
//! `ConnectionInfo::path_stats` on the server — RTT, congestion window, losses — from quinn for
//! HTTP/3 and from `TCP_INFO` for HTTP/2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use grpc_h3::{ConnectionInfo, PathStats, Transport};
use test_support::fixture::{Fixture, Options};
use tonic::body::Body;
use zone_proto::grpc_testing::SimpleRequest;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;

/// Records each request's server-side path figures.
#[derive(Clone, Default)]
struct PathProbe(Arc<Mutex<Vec<Option<PathStats>>>>);

impl<S> tower::Layer<S> for PathProbe {
    type Service = PathProbeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PathProbeService(inner, self.clone())
    }
}

#[derive(Clone)]
struct PathProbeService<S>(S, PathProbe);

impl<S> tower::Service<http::Request<Body>> for PathProbeService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(ConnectionInfo::path_stats);
        self.1.0.lock().unwrap().push(path);
        self.0.call(req)
    }
}

fn plausible(stats: Option<PathStats>, side: &str) {
    let stats = stats.unwrap_or_else(|| panic!("{side}: no path figures"));
    assert!(
        stats.rtt > std::time::Duration::ZERO && stats.rtt < std::time::Duration::from_secs(1),
        "{side}: {stats:?}"
    );
    assert!(stats.congestion_window > 0, "{side}: {stats:?}");
}

async fn path_figures_are_there_on_both_ends(t: Transport) {
    let probe = PathProbe::default();
    let fx = Fixture::start_custom(t, Options::default(), |b| b.layer(probe.clone())).await;
    let channel = fx.channel.clone();
    let mut client = TestServiceClient::new(channel.clone());
    for _ in 0..3 {
        client.unary_call(SimpleRequest::default()).await.unwrap();
    }
    plausible(channel.path_stats(), "client");
    let seen = probe.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for stats in seen {
        plausible(stats, "server");
    }
    // Outside a grpc-h3 server there is nothing to read.
    let info = ConnectionInfo::new(Transport::H2, None, None, true);
    assert_eq!(info.path_stats(), None);
}

test_support::matrix!(path_figures_are_there_on_both_ends);

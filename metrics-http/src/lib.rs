//! `--metrics ADDR` of zone-server, interop-server and zone-edge: the Prometheus text format at
//! `http://ADDR/metrics`, rendered from the process's `metrics` recorder.
//!
//! The exporter is metrics-exporter-prometheus: it renders whatever the `metrics` facade records,
//! which is what grpc-h3 records its gRFC A66 metrics through, so the library and these binaries
//! share one instrumentation API. (prometheus-client would need its own registry and types in
//! every crate that records.) Its HTTP listener is not used: ours serves `/metrics` only (404
//! elsewhere) and reports the bound address, so `--metrics 127.0.0.1:0` works.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Latency buckets in seconds: gRFC A66's recommended boundaries.
const LATENCY_BUCKETS: &[f64] = &[
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// Size buckets in bytes: gRFC A66's recommended boundaries.
const SIZE_BUCKETS: &[f64] = &[
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Buckets of lags counted in zone serials.
const SERIAL_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0];

/// How often histogram buffers are folded into the rendered state (the exporter's upkeep).
const UPKEEP: Duration = Duration::from_secs(5);

/// The Prometheus recorder's configuration as `--metrics` uses it: Prometheus naming (unit
/// suffixes `_seconds`/`_bytes` and `_total` on counters, in the HELP and TYPE lines too) and
/// gRFC A66's buckets for latencies and sizes.
pub fn builder() -> anyhow::Result<PrometheusBuilder> {
    Ok(PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_latency".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("message_size".into()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_serials".into()), SERIAL_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("grpc_h3.quic.rtt".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("grpc_h3.quic.congestion_window".into()),
            SIZE_BUCKETS,
        )?)
}

/// Installs the Prometheus recorder for this process and serves `/metrics` on `addr`; returns the
/// bound address. Call once, early (metrics recorded before are lost), inside a Tokio runtime.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let local = listener.local_addr()?;
    let handle = builder()?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    grpc_h3::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept(listener, handle));
    Ok(local)
}

async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&req, &handle)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

fn respond<B>(req: &http::Request<B>, handle: &PrometheusHandle) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() != "/metrics" {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        )
    } else if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"GET only\n"),
        )
    } else {
        (
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(handle.render()),
        )
    };
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

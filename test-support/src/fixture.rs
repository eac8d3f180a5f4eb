//! Fixture of the transport test matrix: a TestService whose handlers expose what the transport did
//! (connection facts, metadata, cancellation), served by `grpc_h3::Server` over TLS on loopback.
// Test code: failures are panics by design, and the fixture types are never printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dev_certs::DevCerts;
use futures::{Stream, StreamExt};
use grpc_h3::{Channel, ConnectionInfo, Endpoint, Server, ServerTls, Transport};
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status, Streaming};
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::test_service_server::{TestService, TestServiceServer};
use zone_proto::grpc_testing::*;

pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

pub fn certs() -> &'static DevCerts {
    static CERTS: OnceLock<DevCerts> = OnceLock::new();
    CERTS.get_or_init(|| DevCerts::generate().expect("generate dev certs"))
}

/// What handlers saw, shared with the test.
#[derive(Default)]
pub struct Observed {
    /// Handlers whose work was dropped before finishing (the call was cancelled).
    pub cancelled: AtomicUsize,
    pub cancelled_notify: Notify,
    /// Handlers that ran to completion.
    pub completed: AtomicUsize,
}

/// Signals `Observed::cancelled` when dropped before `finish()`.
struct CancelProbe {
    observed: Arc<Observed>,
    finished: bool,
}

impl CancelProbe {
    fn new(observed: &Arc<Observed>) -> Self {
        CancelProbe {
            observed: observed.clone(),
            finished: false,
        }
    }
    fn finish(mut self) {
        self.finished = true;
        self.observed.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for CancelProbe {
    fn drop(&mut self) {
        if !self.finished {
            self.observed.cancelled.fetch_add(1, Ordering::SeqCst);
            self.observed.cancelled_notify.notify_waiters();
        }
    }
}

#[derive(Clone)]
pub struct Probe {
    pub observed: Arc<Observed>,
}

fn zeros(n: i32) -> Payload {
    Payload {
        r#type: 0,
        body: vec![0u8; n.max(0) as usize],
    }
}

/// Reflects connection facts and selected request metadata into response metadata.
fn reflect<T, U>(req: &Request<T>, resp: &mut Response<U>) {
    let md = resp.metadata_mut();
    if let Some(info) = ConnectionInfo::of(req) {
        md.insert("x-transport", info.transport.as_str().parse().unwrap());
        md.insert("x-tls", if info.tls { "1" } else { "0" }.parse().unwrap());
        md.insert(
            "x-early",
            if info.early_data { "1" } else { "0" }.parse().unwrap(),
        );
        let n = info.peer_certificates.as_ref().map_or(0, |c| c.len());
        md.insert("x-peer-certs", n.to_string().parse().unwrap());
    }
    if let Some(addr) = req.remote_addr() {
        md.insert("x-remote-addr", addr.to_string().parse().unwrap());
    }
    if let Some(v) = req.metadata().get("x-echo-initial") {
        md.insert("x-echo-initial", v.clone());
    }
    if let Some(v) = req.metadata().get_bin("x-echo-initial-bin") {
        md.insert_bin("x-echo-initial-bin", v.clone());
    }
    if let Some(v) = req.metadata().get("user-agent") {
        md.insert("x-user-agent", v.clone());
    }
}

fn echo_status(s: &Option<EchoStatus>) -> Result<(), Status> {
    match s {
        Some(s) if s.code != 0 => {
            let mut status = Status::with_details(
                tonic::Code::from(s.code),
                s.message.clone(),
                bytes::Bytes::from_static(b"\x00\x01details\xff"),
            );
            status
                .metadata_mut()
                .insert("x-trailer", "t-value".parse().unwrap());
            status.metadata_mut().insert_bin(
                "x-trailer-bin",
                tonic::metadata::MetadataValue::from_bytes(b"\x00\xfe\xff"),
            );
            Err(status)
        }
        _ => Ok(()),
    }
}

type RespStream = Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TestService for Probe {
    async fn empty_call(&self, req: Request<Empty>) -> Result<Response<Empty>, Status> {
        let mut resp = Response::new(Empty {});
        reflect(&req, &mut resp);
        Ok(resp)
    }

    async fn unary_call(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let probe = CancelProbe::new(&self.observed);
        let msg = req.get_ref();
        // A request payload "sleep:MS" makes the handler wait, to exercise deadlines and cancellation.
        if let Some(ms) = msg
            .payload
            .as_ref()
            .and_then(|p| std::str::from_utf8(&p.body).ok())
            .and_then(|s| s.strip_prefix("sleep:"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        echo_status(&msg.response_status)?;
        let mut body = zeros(msg.response_size);
        // Echo the request payload back when no size is asked, so byte-exactness is checkable.
        if msg.response_size == 0
            && let Some(p) = &msg.payload
        {
            body = p.clone();
        }
        let mut resp = Response::new(SimpleResponse {
            payload: Some(body),
            ..Default::default()
        });
        reflect(&req, &mut resp);
        probe.finish();
        Ok(resp)
    }

    async fn cacheable_unary_call(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(req).await
    }

    type StreamingOutputCallStream = RespStream;

    async fn streaming_output_call(
        &self,
        req: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let msg = req.get_ref().clone();
        let observed = self.observed.clone();
        let stream = async_stream(observed, msg);
        let mut resp = Response::new(stream);
        reflect(&req, &mut resp);
        Ok(resp)
    }

    async fn streaming_input_call(
        &self,
        req: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let probe = CancelProbe::new(&self.observed);
        let mut stream = req.into_inner();
        let mut total = 0usize;
        while let Some(m) = stream.next().await {
            total += m?.payload.map_or(0, |p| p.body.len());
        }
        probe.finish();
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: total as i32,
        }))
    }

    type FullDuplexCallStream = RespStream;

    async fn full_duplex_call(
        &self,
        req: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let mut resp_meta = Response::new(());
        reflect(&req, &mut resp_meta);
        let mut input = req.into_inner();
        let observed = self.observed.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let probe = CancelProbe::new(&observed);
            loop {
                tokio::select! {
                    next = input.next() => match next {
                        Some(Ok(m)) => {
                            if let Err(s) = echo_status(&m.response_status) {
                                let _ = tx.send(Err(s)).await;
                                return;
                            }
                            for p in &m.response_parameters {
                                if p.interval_us > 0 {
                                    tokio::select! {
                                        () = tokio::time::sleep(Duration::from_micros(p.interval_us as u64)) => {}
                                        () = tx.closed() => return,
                                    }
                                }
                                if tx.send(Ok(StreamingOutputCallResponse { payload: Some(zeros(p.size)) })).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Err(_)) => return,
                        None => break,
                    },
                    () = tx.closed() => return,
                }
            }
            probe.finish();
        });
        let stream: RespStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        let (md, _, ext) = resp_meta.into_parts();
        Ok(Response::from_parts(md, stream, ext))
    }

    async fn unimplemented_call(&self, _req: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "UnimplementedCall is unimplemented by design",
        ))
    }

    type HalfDuplexCallStream = RespStream;

    async fn half_duplex_call(
        &self,
        _req: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        Err(Status::unimplemented("not needed by the matrix"))
    }
}

/// Server stream of `response_parameters`, sleeping `interval_us` before each; cancellation-probed.
fn async_stream(observed: Arc<Observed>, msg: StreamingOutputCallRequest) -> RespStream {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let probe = CancelProbe::new(&observed);
        for p in &msg.response_parameters {
            if p.interval_us > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_micros(p.interval_us as u64)) => {}
                    () = tx.closed() => return,
                }
            }
            if tx
                .send(Ok(StreamingOutputCallResponse {
                    payload: Some(zeros(p.size)),
                }))
                .await
                .is_err()
            {
                return;
            }
        }
        if let Err(s) = echo_status(&msg.response_status) {
            let _ = tx.send(Err(s)).await;
        }
        probe.finish();
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A running server plus a connected channel.
pub struct Fixture {
    pub transport: Transport,
    pub channel: Channel,
    pub observed: Arc<Observed>,
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<Result<(), grpc_h3::Error>>>,
}

pub struct Options {
    pub client_ca: bool,
    pub drain: Duration,
    /// Adds [`Misbehave`] in front of the service.
    pub misbehave: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_ca: false,
            drain: Duration::from_secs(10),
            misbehave: false,
        }
    }
}

/// Request metadata that makes [`Misbehave`] answer a raw status of exactly these fields
/// (values hex-encoded, so any bytes a field value can carry survive the request).
pub const RAW_CODE: &str = "x-raw-code";
pub const RAW_MESSAGE: &str = "x-raw-message";
pub const RAW_BIN: &str = "x-raw-bin-value";
pub const RAW_TRAILERS_ONLY: &str = "x-raw-trailers-only";
pub const RAW_DETAILS: &str = "x-raw-details";
/// The `-bin` key a raw status fills from [`RAW_BIN`].
pub const FUZZ_BIN: &str = "x-fuzz-bin";

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Vec<u8> {
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The raw status a request carrying [`RAW_CODE`] asks for: a response with one empty message
/// and the status in trailers, or Trailers-Only with [`RAW_TRAILERS_ONLY`] (PROTOCOL-HTTP2.md,
/// "Responses").
fn raw_status(h: &http::HeaderMap) -> Option<HttpResponse> {
    let mut status = http::HeaderMap::new();
    status.insert("grpc-status", h.get(RAW_CODE)?.clone());
    let fields = [
        (RAW_MESSAGE, "grpc-message"),
        (RAW_BIN, FUZZ_BIN),
        (RAW_DETAILS, "grpc-status-details-bin"),
    ];
    for (from, to) in fields {
        if let Some(v) = h.get(from) {
            let raw = http::HeaderValue::from_bytes(&unhex(v.as_bytes())).unwrap();
            status.insert(to, raw);
        }
    }
    let mut resp = if h.contains_key(RAW_TRAILERS_ONLY) {
        let mut resp = http::Response::new(tonic::body::Body::empty());
        resp.headers_mut().extend(status);
        resp
    } else {
        let frames = vec![
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from_static(
                &[0; 5],
            ))),
            Ok(http_body::Frame::trailers(status)),
        ];
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        http::Response::new(tonic::body::Body::new(body))
    };
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    Some(resp)
}

/// A layer that breaks the gRPC protocol on request: metadata `x-misbehave: http-NNN` answers
/// HTTP status NNN without grpc-status; `no-status` answers 200 with no grpc-status at all;
/// `panic-now` / `panic-later` panic in the handler, at once or after one wait;
/// [`RAW_CODE`] answers a raw status (see `raw_status`).
#[derive(Clone)]
pub struct Misbehave;

impl<S> tower::Layer<S> for Misbehave {
    type Service = MisbehaveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MisbehaveService(inner)
    }
}

#[derive(Clone)]
pub struct MisbehaveService<S>(S);

type HttpResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for MisbehaveService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = HttpResponse,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<HttpResponse, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(resp) = raw_status(req.headers()) {
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let how = req
            .headers()
            .get("x-misbehave")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match how.as_deref() {
            // A handler that panics in its first poll, or after it waited once.
            Some("panic-now") => panic!("handler panics at once (x-misbehave)"),
            Some("panic-later") => {
                return Box::pin(async {
                    tokio::task::yield_now().await;
                    panic!("handler panics after a wait (x-misbehave)")
                });
            }
            _ => {}
        }
        match how {
            Some(how) => Box::pin(async move {
                let mut resp = http::Response::new(tonic::body::Body::empty());
                if let Some(code) = how.strip_prefix("http-") {
                    *resp.status_mut() = http::StatusCode::from_u16(code.parse().unwrap()).unwrap();
                } else {
                    resp.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/grpc"),
                    );
                }
                Ok(resp)
            }),
            None => Box::pin(self.0.call(req)),
        }
    }
}

/// Opens a FullDuplexCall fed from a channel and waits for the answer to a first [`ping`]; the
/// sender asks for more answers, dropping it ends the call.
pub async fn open_duplex(
    mut client: TestServiceClient<Channel>,
) -> (
    tokio::sync::mpsc::Sender<StreamingOutputCallRequest>,
    Streaming<StreamingOutputCallResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ping()).await.unwrap();
    let mut replies = client
        .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(replies.message().await.unwrap().is_some());
    (tx, replies)
}

/// A FullDuplexCall message asking for one 8-byte answer.
pub fn ping() -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: 8,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn service(observed: Arc<Observed>) -> TestServiceServer<Probe> {
    TestServiceServer::new(Probe { observed })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
}

/// The wire a fixture channel of `transport` carries its calls on: Auto's is HTTP/3, announced by
/// [`endpoint`].
pub fn carried_over(transport: Transport) -> Transport {
    match transport {
        Transport::Auto => Transport::H3,
        other => other,
    }
}

/// A client endpoint for a fixture server on `addr`. With `Auto`, HTTP/3 is announced on the same
/// port (as `Alt-Svc` would), so Auto races QUIC first and its calls take the HTTP/3 path through
/// Auto's dispatch.
pub fn endpoint(transport: Transport, addr: std::net::SocketAddr) -> Endpoint {
    let endpoint = Endpoint::new(format!("https://{addr}"))
        .unwrap()
        .transport(transport);
    let endpoint = if transport == Transport::Auto {
        endpoint.h3_port(addr.port())
    } else {
        endpoint
    };
    endpoint
        // Where no ICMP unreachable comes back, a dead HTTP/3 server costs the connect timeout.
        .connect_timeout(Duration::from_secs(2))
        .server_name("localhost")
        .ca_certificate_pem(&certs().ca_pem)
        .unwrap()
}

impl Fixture {
    pub async fn start(transport: Transport) -> Fixture {
        Self::start_with(transport, Options::default()).await
    }

    pub async fn start_with(transport: Transport, opts: Options) -> Fixture {
        Self::start_custom(transport, opts, |builder| builder).await
    }

    /// [`Fixture::start_with`], with `configure` adding to the server builder (layers, a
    /// propagator) before the service is added.
    pub async fn start_custom(
        transport: Transport,
        opts: Options,
        configure: impl FnOnce(Server) -> Server,
    ) -> Fixture {
        let certs = certs();
        let mut tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap();
        if opts.client_ca {
            tls = tls.client_ca_pem(&certs.ca_pem, false).unwrap();
        }
        let observed = Arc::new(Observed::default());
        let mut builder = configure(Server::builder());
        if opts.misbehave {
            builder = builder.layer(Misbehave);
        }
        let bound = builder
            .tls(tls)
            .wires(grpc_h3::Wires::from(transport))
            .drain_timeout(opts.drain)
            .add_service(service(observed.clone()))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = match transport {
            Transport::H3 => bound.h3_addr().unwrap(),
            _ => bound.h2_addr().unwrap(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve_with_shutdown(async {
            let _ = rx.await;
        }));
        let channel = endpoint(transport, addr).connect().await.unwrap();
        Fixture {
            transport,
            channel,
            observed,
            addr,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn client(
        &self,
    ) -> zone_proto::grpc_testing::test_service_client::TestServiceClient<Channel> {
        zone_proto::grpc_testing::test_service_client::TestServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Begins graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until `n` handlers observed cancellation (or panics after `within`).
    pub async fn wait_cancelled(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.observed.cancelled_notify.notified();
            if self.observed.cancelled.load(Ordering::SeqCst) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "handler did not observe cancellation within {within:?} over {} ({} completed)",
                    self.transport,
                    self.observed.completed.load(Ordering::SeqCst)
                );
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A request body: `first` at once, then nothing until the sender is dropped.
pub fn stalling_body(
    first: Vec<u8>,
) -> (
    tonic::body::Body,
    tokio::sync::mpsc::Sender<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>,
) {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>(4);
    tx.try_send(Ok(http_body::Frame::data(bytes::Bytes::from(first))))
        .unwrap();
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        tonic::body::Body::new(http_body_util::StreamBody::new(stream)),
        tx,
    )
}

/// A gRPC POST of `body` to `path`, as a generated client would send it.
pub fn grpc_request(path: &str, body: tonic::body::Body) -> http::Request<tonic::body::Body> {
    http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

//! grpc's interop `grpc.testing.TestService`, implementing the server features of grpc/grpc
//! `doc/interop-test-descriptions.md` ("Server" section) so any grpc interop client can test us.
//!
//! [`test_service`] is the ready-to-serve stack: [`TestServiceImpl`] inside [`EchoMetadata`], with gzip
//! accepted and offered. tonic 0.14 gives a handler no way to add trailing metadata to a successful
//! call, so the "Echo Metadata" feature lives in the [`EchoMetadata`] wrapper, which copies
//! `x-grpc-test-echo-initial` into the response headers and `x-grpc-test-echo-trailing-bin` into the
//! HTTP trailers (as tonic's own interop server does).
//!
//! Decisions beyond the spec: payload sizes above [`MAX_PAYLOAD_SIZE`] and negative sizes are
//! refused with `INVALID_ARGUMENT` (a client must not make the server allocate gigabytes);
//! `expect_compressed` is judged from the request's `grpc-encoding` header because tonic does not
//! expose the per-message compression flag; per-message `compressed` in a streaming response is not
//! honoured (tonic compresses a whole response stream or none of it).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use http_body::Frame;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};
use tower_service::Service;

use zone_proto::grpc_testing::test_service_server::{TestService, TestServiceServer};
use zone_proto::grpc_testing::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest,
    SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// Request header whose value the server echoes in its response headers (initial metadata).
pub const ECHO_INITIAL_HEADER: &str = "x-grpc-test-echo-initial";
/// Request header whose (binary) value the server echoes in its trailers (trailing metadata).
pub const ECHO_TRAILING_HEADER: &str = "x-grpc-test-echo-trailing-bin";
/// Largest payload the server builds for one response (16 MiB).
pub const MAX_PAYLOAD_SIZE: usize = 16 * 1024 * 1024;

/// Response stream of the streaming methods.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send + 'static>>;

/// The interop `TestService` handlers (without the metadata echo; see [`test_service`]).
#[derive(Debug, Clone)]
pub struct TestServiceImpl {
    server_id: String,
}

impl TestServiceImpl {
    /// A handler set with a server id unique to this instance (reported for `fill_server_id`).
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TestServiceImpl {
            server_id: format!("zone-interop-{}-{nanos}", std::process::id()),
        }
    }
}

impl Default for TestServiceImpl {
    fn default() -> Self {
        Self::new()
    }
}

/// The interop service as served by `interop-server`: [`TestServiceImpl`] with gzip accepted and
/// sent (when the client accepts it), wrapped in [`EchoMetadata`]. Ready for
/// `grpc_h3::Server::add_service`.
pub fn test_service() -> EchoMetadata<TestServiceServer<TestServiceImpl>> {
    EchoMetadata::new(
        TestServiceServer::new(TestServiceImpl::new())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip),
    )
}

#[tonic::async_trait]
impl TestService for TestServiceImpl {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let compressed = request_is_compressed(request.metadata());
        let req = request.into_inner();
        check_expect_compressed(req.expect_compressed.as_ref(), compressed)?;
        echo_status(req.response_status.as_ref())?;
        check_payload_type(req.response_type)?;
        let payload = zero_payload(req.response_size)?;
        let mut response = Response::new(SimpleResponse {
            payload: Some(payload),
            server_id: if req.fill_server_id {
                self.server_id.clone()
            } else {
                String::new()
            },
            ..SimpleResponse::default()
        });
        if req.response_compressed.is_some_and(|c| !c.value) {
            response.disable_compression();
        }
        Ok(response)
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        // The spec asks for a payload that differs per call (the current time in nanoseconds) and
        // headers that let a caching proxy keep it.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut response = Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: PayloadType::Compressable.into(),
                body: nanos.to_string().into_bytes(),
            }),
            ..SimpleResponse::default()
        });
        response.metadata_mut().insert(
            "cache-control",
            tonic::metadata::MetadataValue::from_static("max-age=60, public"),
        );
        Ok(response)
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let req = request.into_inner();
        echo_status(req.response_status.as_ref())?;
        check_payload_type(req.response_type)?;
        validate_parameters(&req.response_parameters)?;
        let params: VecDeque<ResponseParameters> = req.response_parameters.into();
        let stream = futures::stream::unfold(params, |mut params| async move {
            let param = params.pop_front()?;
            Some((respond(&param).await, params))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let compressed = request_is_compressed(request.metadata());
        let mut input = request.into_inner();
        let mut aggregated: i32 = 0;
        while let Some(msg) = input.message().await? {
            check_expect_compressed(msg.expect_compressed.as_ref(), compressed)?;
            let len = msg.payload.map_or(0, |p| p.body.len());
            aggregated = i32::try_from(len)
                .ok()
                .and_then(|len| aggregated.checked_add(len))
                .ok_or_else(|| Status::out_of_range("aggregated payload size exceeds 2^31-1"))?;
        }
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: aggregated,
        }))
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let state = Duplex {
            input: request.into_inner(),
            pending: VecDeque::new(),
            finished: false,
        };
        // Lazy state machine instead of a spawned task: the next request is read only once the
        // responses for the previous one are out, which is what "one response per request,
        // immediately" needs, and dropping the response body (client gone) drops everything.
        let stream = futures::stream::unfold(state, |mut st| async move {
            loop {
                if st.finished {
                    return None;
                }
                if let Some(param) = st.pending.pop_front() {
                    let item = respond(&param).await;
                    st.finished = item.is_err();
                    return Some((item, st));
                }
                match st.input.message().await {
                    Ok(Some(req)) => {
                        if let Err(status) = check_request(&req) {
                            st.finished = true;
                            return Some((Err(status), st));
                        }
                        st.pending.extend(req.response_parameters);
                    }
                    Ok(None) => return None,
                    Err(status) => {
                        st.finished = true;
                        return Some((Err(status), st));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let mut input = request.into_inner();
        let mut params = VecDeque::new();
        while let Some(req) = input.message().await? {
            check_request(&req)?;
            params.extend(req.response_parameters);
        }
        let stream = futures::stream::unfold(params, |mut params| async move {
            let param = params.pop_front()?;
            Some((respond(&param).await, params))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is deliberately not implemented",
        ))
    }
}

/// State of one `FullDuplexCall` response stream.
struct Duplex {
    input: Streaming<StreamingOutputCallRequest>,
    pending: VecDeque<ResponseParameters>,
    finished: bool,
}

/// Checks one streaming request: echoed status first ("the server will not process any further
/// messages"), then payload type and parameters.
fn check_request(req: &StreamingOutputCallRequest) -> Result<(), Status> {
    echo_status(req.response_status.as_ref())?;
    check_payload_type(req.response_type)?;
    validate_parameters(&req.response_parameters)
}

/// Sleeps `interval_us` (the spec's "Observe ResponseParameters.interval_us"), then builds the
/// response for one parameter set.
async fn respond(param: &ResponseParameters) -> Result<StreamingOutputCallResponse, Status> {
    if let Ok(us) = u64::try_from(param.interval_us)
        && us > 0
    {
        tokio::time::sleep(Duration::from_micros(us)).await;
    }
    Ok(StreamingOutputCallResponse {
        payload: Some(zero_payload(param.size)?),
    })
}

fn validate_parameters(params: &[ResponseParameters]) -> Result<(), Status> {
    params
        .iter()
        .try_for_each(|p| payload_len(p.size).map(drop))
}

/// "Echo Status": a request carrying a non-OK `response_status` ends the call with exactly it.
fn echo_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    match status {
        Some(s) if s.code != 0 => Err(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => Ok(()),
    }
}

/// Only `COMPRESSABLE` exists; anything else is `INVALID_ARGUMENT` per the `UnaryCall` feature.
fn check_payload_type(response_type: i32) -> Result<(), Status> {
    PayloadType::try_from(response_type)
        .map(drop)
        .map_err(|_| Status::invalid_argument(format!("unsupported response_type {response_type}")))
}

/// "CompressedRequest": a request that expects compression but arrived uncompressed fails with
/// `INVALID_ARGUMENT` (clients probe for the feature this way).
fn check_expect_compressed(expect: Option<&BoolValue>, compressed: bool) -> Result<(), Status> {
    if expect.is_some_and(|e| e.value) && !compressed {
        return Err(Status::invalid_argument(
            "expected a compressed request, got an uncompressed one",
        ));
    }
    Ok(())
}

fn request_is_compressed(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|enc| !enc.eq_ignore_ascii_case("identity"))
}

fn payload_len(size: i32) -> Result<usize, Status> {
    let len = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("negative payload size {size}")))?;
    if len > MAX_PAYLOAD_SIZE {
        return Err(Status::invalid_argument(format!(
            "payload size {len} exceeds this server's limit of {MAX_PAYLOAD_SIZE} bytes"
        )));
    }
    Ok(len)
}

fn zero_payload(size: i32) -> Result<Payload, Status> {
    Ok(Payload {
        r#type: PayloadType::Compressable.into(),
        body: vec![0; payload_len(size)?],
    })
}

/// Tower wrapper implementing the interop "Echo Metadata" feature around any gRPC service: copies
/// `x-grpc-test-echo-initial` from the request into the response headers and
/// `x-grpc-test-echo-trailing-bin` into the response trailers (into the headers of a
/// Trailers-Only response, which are its trailers).
#[derive(Debug, Clone)]
pub struct EchoMetadata<S> {
    inner: S,
}

impl<S> EchoMetadata<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        EchoMetadata { inner }
    }
}

impl<S: NamedService> NamedService for EchoMetadata<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for EchoMetadata<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let initial = req.headers().get(ECHO_INITIAL_HEADER).cloned();
        let trailing = req.headers().get(ECHO_TRAILING_HEADER).cloned();
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut response = call.await?;
            if let Some(value) = initial {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(ECHO_INITIAL_HEADER), value);
            }
            let Some(value) = trailing else {
                return Ok(response);
            };
            let name = HeaderName::from_static(ECHO_TRAILING_HEADER);
            if response.headers().contains_key("grpc-status") {
                response.headers_mut().insert(name, value);
                return Ok(response);
            }
            Ok(response.map(|body| {
                tonic::body::Body::new(WithTrailer {
                    inner: body,
                    trailer: Some((name, value)),
                })
            }))
        })
    }
}

/// Response body that adds one header to the trailers frame of the body it wraps.
struct WithTrailer {
    inner: tonic::body::Body,
    trailer: Option<(HeaderName, HeaderValue)>,
}

impl http_body::Body for WithTrailer {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        match frame.into_trailers() {
            Ok(mut trailers) => {
                if let Some((name, value)) = self.trailer.take() {
                    trailers.insert(name, value);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn simple(f: impl FnOnce(&mut SimpleRequest)) -> Request<SimpleRequest> {
        let mut req = SimpleRequest::default();
        f(&mut req);
        Request::new(req)
    }

    #[tokio::test]
    async fn unary_returns_requested_zero_payload() {
        let svc = TestServiceImpl::new();
        let res = svc
            .unary_call(simple(|r| r.response_size = 314_159))
            .await
            .unwrap()
            .into_inner();
        let body = res.payload.unwrap().body;
        assert_eq!(body.len(), 314_159);
        assert!(body.iter().all(|b| *b == 0));
    }

    #[tokio::test]
    async fn unary_echoes_status_code_and_message() {
        let svc = TestServiceImpl::new();
        let err = svc
            .unary_call(simple(|r| {
                r.response_status = Some(EchoStatus {
                    code: 2,
                    message: "test status message".into(),
                })
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unknown);
        assert_eq!(err.message(), "test status message");
    }

    #[tokio::test]
    async fn unary_with_ok_echo_status_succeeds() {
        let svc = TestServiceImpl::new();
        let res = svc
            .unary_call(simple(|r| {
                r.response_size = 3;
                r.response_status = Some(EchoStatus {
                    code: 0,
                    message: "ignored".into(),
                })
            }))
            .await
            .unwrap();
        assert_eq!(res.into_inner().payload.unwrap().body.len(), 3);
    }

    #[tokio::test]
    async fn bad_sizes_and_types_are_invalid_argument() {
        let svc = TestServiceImpl::new();
        for req in [
            simple(|r| r.response_size = -1),
            simple(|r| r.response_size = i32::MAX),
            simple(|r| r.response_type = 7),
        ] {
            let err = svc.unary_call(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
    }

    #[tokio::test]
    async fn uncompressed_request_expecting_compression_is_refused() {
        let svc = TestServiceImpl::new();
        let err = svc
            .unary_call(simple(|r| {
                r.expect_compressed = Some(BoolValue { value: true })
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        let mut req = simple(|r| r.expect_compressed = Some(BoolValue { value: true }));
        req.metadata_mut()
            .insert("grpc-encoding", "gzip".parse().unwrap());
        assert!(svc.unary_call(req).await.is_ok());
    }

    #[tokio::test]
    async fn streaming_output_sends_one_response_per_parameter_in_order() {
        use futures::StreamExt as _;
        let svc = TestServiceImpl::new();
        let sizes = [31_415, 9, 2_653, 58_979];
        let req = StreamingOutputCallRequest {
            response_parameters: sizes
                .iter()
                .map(|&size| ResponseParameters {
                    size,
                    interval_us: 10,
                    compressed: None,
                })
                .collect(),
            ..StreamingOutputCallRequest::default()
        };
        let stream = svc
            .streaming_output_call(Request::new(req))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<usize> = stream
            .map(|r| r.unwrap().payload.unwrap().body.len())
            .collect()
            .await;
        assert_eq!(got, sizes.map(|s| s as usize));
    }

    #[tokio::test]
    async fn unimplemented_call_is_unimplemented() {
        let svc = TestServiceImpl::new();
        let err = svc
            .unimplemented_call(Request::new(Empty {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    }
}

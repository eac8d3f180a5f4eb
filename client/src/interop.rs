//! grpc's standard interop client cases, each following the procedure and assertions of grpc/grpc
//! `doc/interop-test-descriptions.md` ("Client" section), run over a [`grpc_h3::Channel`].
//!
//! Decisions beyond the spec:
//! - The client accepts gzip responses, as grpc clients advertise by default.
//! - `custom_metadata` checks that the echoed `-bin` key arrives in the trailers and *not* in the
//!   response headers (for the unary step the response headers are captured by [`HeaderCapture`],
//!   because tonic merges headers and trailers of a unary call).
//! - The cancellation cases cancel through tonic's [`tonic::CancellationHandle`] (the transport
//!   resets the stream, as grpc clients do) and require the call to end with `CANCELLED`; then a
//!   follow-up `EmptyCall` must succeed on the same channel, so a cancel that breaks the
//!   connection fails the case.
//! - Every case is bounded by [`CASE_TIME_LIMIT`].

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Status, Streaming};

use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::unimplemented_service_client::UnimplementedServiceClient;
use zone_proto::grpc_testing::{
    EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// Every case `run_case` knows, in the order `all` runs them.
pub const ALL_CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
];

/// Upper bound on one case, so a hung server or transport fails the case instead of the run.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(30);
/// How long a cancelled call may take to report its outcome, and how long the timeout case waits
/// for `DEADLINE_EXCEEDED` (its deadline is 1 ms).
const OUTCOME_WAIT: Duration = Duration::from_secs(10);

const ECHO_INITIAL_KEY: &str = "x-grpc-test-echo-initial";
const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING_KEY: &str = "x-grpc-test-echo-trailing-bin";
const ECHO_TRAILING_VALUE: [u8; 3] = [0xab, 0xab, 0xab];
const SPECIAL_STATUS_MESSAGE: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

/// Why a case failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The case name is not one of [`ALL_CASES`].
    #[error("unknown test case `{0}`")]
    UnknownCase(String),
    /// A call ended with a status the case does not expect.
    #[error("{call}: unexpected status {}", describe(.status))]
    Rpc {
        /// Which call of the procedure.
        call: &'static str,
        /// The status it ended with.
        status: Status,
    },
    /// A response or status did not meet the case's assertions.
    #[error("{0}")]
    Assertion(String),
    /// The case (or one step of it) did not finish in time.
    #[error("{what}: no outcome within {limit:?}")]
    TimedOut {
        /// What was being waited for.
        what: &'static str,
        /// The limit that passed.
        limit: Duration,
    },
}

/// Runs the interop case named `case` against `channel`.
pub async fn run_case(channel: grpc_h3::Channel, case: &str) -> Result<(), CaseError> {
    let run: BoxFuture<'static, Result<(), CaseError>> = match case {
        "empty_unary" => Box::pin(empty_unary(channel)),
        "large_unary" => Box::pin(large_unary(channel)),
        "client_streaming" => Box::pin(client_streaming(channel)),
        "server_streaming" => Box::pin(server_streaming(channel)),
        "ping_pong" => Box::pin(ping_pong(channel)),
        "empty_stream" => Box::pin(empty_stream(channel)),
        "custom_metadata" => Box::pin(custom_metadata(channel)),
        "status_code_and_message" => Box::pin(status_code_and_message(channel)),
        "special_status_message" => Box::pin(special_status_message(channel)),
        "unimplemented_method" => Box::pin(unimplemented_method(channel)),
        "unimplemented_service" => Box::pin(unimplemented_service(channel)),
        "cancel_after_begin" => Box::pin(cancel_after_begin(channel)),
        "cancel_after_first_response" => Box::pin(cancel_after_first_response(channel)),
        "timeout_on_sleeping_server" => Box::pin(timeout_on_sleeping_server(channel)),
        other => return Err(CaseError::UnknownCase(other.to_owned())),
    };
    tokio::time::timeout(CASE_TIME_LIMIT, run)
        .await
        .map_err(|_| CaseError::TimedOut {
            what: "case",
            limit: CASE_TIME_LIMIT,
        })?
}

type Client<T = grpc_h3::Channel> = TestServiceClient<T>;

fn client(channel: grpc_h3::Channel) -> Client {
    TestServiceClient::new(channel).accept_compressed(CompressionEncoding::Gzip)
}

/// `code` and `message` of a status, message quoted so whitespace stays visible on one line.
fn describe(status: &Status) -> String {
    format!("{:?} {:?}", status.code(), status.message())
}

fn rpc(call: &'static str) -> impl FnOnce(Status) -> CaseError {
    move |status| CaseError::Rpc { call, status }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(CaseError::Assertion(format!($($fmt)+)));
        }
    };
}

fn zeros(len: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; len],
    })
}

fn params(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            ..ResponseParameters::default()
        })
        .collect()
}

/// Checks a response payload: present, `want` bytes, all zero.
fn check_payload(what: &str, payload: Option<&Payload>, want: usize) -> Result<(), CaseError> {
    let Some(payload) = payload else {
        return Err(CaseError::Assertion(format!(
            "{what}: response has no payload"
        )));
    };
    ensure!(
        payload.body.len() == want,
        "{what}: payload is {} bytes, expected {want}",
        payload.body.len()
    );
    ensure!(
        payload.body.iter().all(|b| *b == 0),
        "{what}: payload is not all zeros"
    );
    Ok(())
}

/// The `large_unary` request: 271828 zero bytes in, 314159 requested back.
fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        ..SimpleRequest::default()
    }
}

fn duplex_request(size: i32, payload_len: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: params(&[size]),
        payload: zeros(payload_len),
        ..StreamingOutputCallRequest::default()
    }
}

/// Reads a response stream to its end, returning the payload sizes.
async fn drain(
    what: &'static str,
    stream: &mut Streaming<StreamingOutputCallResponse>,
) -> Result<Vec<usize>, CaseError> {
    let mut sizes = Vec::new();
    // Bounded by the case time limit; a server streaming forever fails there.
    while let Some(msg) = stream.message().await.map_err(rpc(what))? {
        let Some(payload) = msg.payload else {
            return Err(CaseError::Assertion(format!(
                "{what}: response has no payload"
            )));
        };
        ensure!(
            payload.body.iter().all(|b| *b == 0),
            "{what}: payload is not all zeros"
        );
        sizes.push(payload.body.len());
    }
    Ok(sizes)
}

/// The channel must still serve calls after a cancelled one.
async fn follow_up_empty_call(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    client(channel)
        .empty_call(Empty {})
        .await
        .map_err(rpc("follow-up EmptyCall after the cancelled call"))?;
    Ok(())
}

async fn empty_unary(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let response = client(channel)
        .empty_call(Empty {})
        .await
        .map_err(rpc("EmptyCall"))?;
    ensure!(
        *response.get_ref() == Empty {},
        "EmptyCall: response is not the empty message"
    );
    Ok(())
}

async fn large_unary(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let response = client(channel)
        .unary_call(large_request())
        .await
        .map_err(rpc("UnaryCall"))?
        .into_inner();
    check_payload("UnaryCall", response.payload.as_ref(), 314_159)
}

async fn client_streaming(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let requests: Vec<StreamingInputCallRequest> = [27_182, 8, 1_828, 45_904]
        .into_iter()
        .map(|len| StreamingInputCallRequest {
            payload: zeros(len),
            expect_compressed: None,
        })
        .collect();
    let response = client(channel)
        .streaming_input_call(tokio_stream::iter(requests))
        .await
        .map_err(rpc("StreamingInputCall"))?
        .into_inner();
    ensure!(
        response.aggregated_payload_size == 74_922,
        "StreamingInputCall: aggregated_payload_size is {}, expected 74922",
        response.aggregated_payload_size
    );
    Ok(())
}

const STREAM_SIZES: [i32; 4] = [31_415, 9, 2_653, 58_979];
const PING_PAYLOADS: [usize; 4] = [27_182, 8, 1_828, 45_904];

async fn server_streaming(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let request = StreamingOutputCallRequest {
        response_parameters: params(&STREAM_SIZES),
        ..StreamingOutputCallRequest::default()
    };
    let mut stream = client(channel)
        .streaming_output_call(request)
        .await
        .map_err(rpc("StreamingOutputCall"))?
        .into_inner();
    let sizes = drain("StreamingOutputCall", &mut stream).await?;
    let want = STREAM_SIZES.map(|s| s as usize);
    ensure!(
        sizes == want,
        "StreamingOutputCall: response sizes {sizes:?}, expected {want:?}"
    );
    Ok(())
}

async fn ping_pong(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let (tx, rx) = mpsc::channel(1);
    // Send the first request before awaiting the response headers: a server may hold its
    // headers until it has a message to answer.
    tx.send(duplex_request(STREAM_SIZES[0], PING_PAYLOADS[0]))
        .await
        .map_err(|_| CaseError::Assertion("FullDuplexCall: request stream closed early".into()))?;
    let mut stream = client(channel)
        .full_duplex_call(ReceiverStream::new(rx))
        .await
        .map_err(rpc("FullDuplexCall"))?
        .into_inner();
    for (i, (&size, &payload)) in STREAM_SIZES.iter().zip(&PING_PAYLOADS).enumerate() {
        if i > 0 {
            // A send fails only when the call is already over; the read below says how it ended.
            let _ = tx.send(duplex_request(size, payload)).await;
        }
        let msg = stream
            .message()
            .await
            .map_err(rpc("FullDuplexCall"))?
            .ok_or_else(|| {
                CaseError::Assertion(format!(
                    "FullDuplexCall: stream ended after {i} responses, expected 4"
                ))
            })?;
        check_payload("FullDuplexCall", msg.payload.as_ref(), size as usize)?;
    }
    // Half-close, then the call must end OK with no further responses.
    drop(tx);
    let extra = drain("FullDuplexCall", &mut stream).await?;
    ensure!(
        extra.is_empty(),
        "FullDuplexCall: {} responses after the 4th, expected none",
        extra.len()
    );
    Ok(())
}

async fn empty_stream(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let mut stream = client(channel)
        .full_duplex_call(tokio_stream::empty())
        .await
        .map_err(rpc("FullDuplexCall"))?
        .into_inner();
    let sizes = drain("FullDuplexCall", &mut stream).await?;
    ensure!(
        sizes.is_empty(),
        "FullDuplexCall: {} responses to an empty stream, expected none",
        sizes.len()
    );
    Ok(())
}

fn add_echo_metadata(metadata: &mut MetadataMap) {
    metadata.insert(
        ECHO_INITIAL_KEY,
        MetadataValue::from_static(ECHO_INITIAL_VALUE),
    );
    metadata.insert_bin(
        ECHO_TRAILING_KEY,
        MetadataValue::from_bytes(&ECHO_TRAILING_VALUE),
    );
}

fn check_initial_echo(call: &str, initial: &MetadataMap) -> Result<(), CaseError> {
    let got = initial.get(ECHO_INITIAL_KEY).map(|v| v.as_bytes().to_vec());
    ensure!(
        got.as_deref() == Some(ECHO_INITIAL_VALUE.as_bytes()),
        "{call}: initial metadata {ECHO_INITIAL_KEY} is {}, expected {ECHO_INITIAL_VALUE:?}",
        got.map_or("missing".to_owned(), |v| format!(
            "{:?}",
            String::from_utf8_lossy(&v)
        ))
    );
    ensure!(
        !initial.contains_key(ECHO_TRAILING_KEY),
        "{call}: {ECHO_TRAILING_KEY} arrived in the initial metadata, expected it in the trailers"
    );
    Ok(())
}

fn check_trailing_echo(call: &str, trailers: &MetadataMap) -> Result<(), CaseError> {
    let got = trailers.get_bin(ECHO_TRAILING_KEY).map(|v| v.to_bytes());
    match got {
        Some(Ok(bytes)) if bytes.as_ref() == ECHO_TRAILING_VALUE => Ok(()),
        Some(Ok(bytes)) => Err(CaseError::Assertion(format!(
            "{call}: trailing metadata {ECHO_TRAILING_KEY} is {bytes:02x?}, expected [ab, ab, ab]"
        ))),
        Some(Err(_)) => Err(CaseError::Assertion(format!(
            "{call}: trailing metadata {ECHO_TRAILING_KEY} is not valid base64"
        ))),
        None => Err(CaseError::Assertion(format!(
            "{call}: trailing metadata {ECHO_TRAILING_KEY} is missing"
        ))),
    }
}

async fn custom_metadata(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    // Step 1: UnaryCall. tonic merges trailers into the response metadata of a unary call, so the
    // response headers are captured separately to tell initial from trailing metadata.
    let capture = HeaderCapture::new(channel.clone());
    let headers = capture.headers();
    let mut request = Request::new(large_request());
    add_echo_metadata(request.metadata_mut());
    let response = TestServiceClient::new(capture)
        .accept_compressed(CompressionEncoding::Gzip)
        .unary_call(request)
        .await
        .map_err(rpc("UnaryCall"))?;
    let initial = headers
        .lock()
        .ok()
        .and_then(|mut h| h.take())
        .map(MetadataMap::from_headers)
        .ok_or_else(|| CaseError::Assertion("UnaryCall: no response headers seen".into()))?;
    check_initial_echo("UnaryCall", &initial)?;
    check_trailing_echo("UnaryCall", response.metadata())?;
    check_payload("UnaryCall", response.get_ref().payload.as_ref(), 314_159)?;

    // Step 2: FullDuplexCall, one request, then half-close.
    let mut request = Request::new(tokio_stream::iter([duplex_request(314_159, 271_828)]));
    add_echo_metadata(request.metadata_mut());
    let response = client(channel)
        .full_duplex_call(request)
        .await
        .map_err(rpc("FullDuplexCall"))?;
    check_initial_echo("FullDuplexCall", response.metadata())?;
    let mut stream = response.into_inner();
    let sizes = drain("FullDuplexCall", &mut stream).await?;
    ensure!(
        sizes == [314_159],
        "FullDuplexCall: response sizes {sizes:?}, expected [314159]"
    );
    let trailers = stream
        .trailers()
        .await
        .map_err(rpc("FullDuplexCall"))?
        .unwrap_or_default();
    check_trailing_echo("FullDuplexCall", &trailers)
}

/// Runs a `FullDuplexCall` with `requests` (then half-closes) that must fail; returns its status.
async fn duplex_failure(
    channel: grpc_h3::Channel,
    requests: Vec<StreamingOutputCallRequest>,
) -> Result<Status, CaseError> {
    let mut stream = match client(channel)
        .full_duplex_call(tokio_stream::iter(requests))
        .await
    {
        Err(status) => return Ok(status),
        Ok(response) => response.into_inner(),
    };
    match stream.message().await {
        Err(status) => Ok(status),
        Ok(Some(_)) => Err(CaseError::Assertion(
            "FullDuplexCall: got a response, expected only an error status".into(),
        )),
        Ok(None) => Err(CaseError::Assertion(
            "FullDuplexCall: call succeeded, expected an error status".into(),
        )),
    }
}

fn check_status(call: &str, status: &Status, code: Code, message: &str) -> Result<(), CaseError> {
    ensure!(
        status.code() == code && status.message() == message,
        "{call}: status {}, expected {:?} {message:?}",
        describe(status),
        code
    );
    Ok(())
}

/// The UnaryCall step shared by `status_code_and_message` and `special_status_message`.
async fn unary_echo_status(channel: grpc_h3::Channel, message: &str) -> Result<(), CaseError> {
    let request = SimpleRequest {
        response_status: Some(EchoStatus {
            code: 2,
            message: message.to_owned(),
        }),
        ..SimpleRequest::default()
    };
    match client(channel).unary_call(request).await {
        Ok(_) => Err(CaseError::Assertion(
            "UnaryCall: call succeeded, expected status UNKNOWN".into(),
        )),
        Err(status) => check_status("UnaryCall", &status, Code::Unknown, message),
    }
}

async fn status_code_and_message(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    const MESSAGE: &str = "test status message";
    unary_echo_status(channel.clone(), MESSAGE).await?;
    let request = StreamingOutputCallRequest {
        response_status: Some(EchoStatus {
            code: 2,
            message: MESSAGE.to_owned(),
        }),
        ..StreamingOutputCallRequest::default()
    };
    let status = duplex_failure(channel, vec![request]).await?;
    check_status("FullDuplexCall", &status, Code::Unknown, MESSAGE)
}

async fn special_status_message(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    unary_echo_status(channel, SPECIAL_STATUS_MESSAGE).await
}

fn expect_unimplemented<T>(call: &'static str, result: Result<T, Status>) -> Result<(), CaseError> {
    match result {
        Ok(_) => Err(CaseError::Assertion(format!(
            "{call}: call succeeded, expected UNIMPLEMENTED"
        ))),
        Err(status) if status.code() == Code::Unimplemented => Ok(()),
        Err(status) => Err(CaseError::Rpc { call, status }),
    }
}

async fn unimplemented_method(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let result = client(channel).unimplemented_call(Empty {}).await;
    expect_unimplemented("TestService/UnimplementedCall", result)
}

async fn unimplemented_service(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let result = UnimplementedServiceClient::new(channel)
        .unimplemented_call(Empty {})
        .await;
    expect_unimplemented("UnimplementedService/UnimplementedCall", result)
}

/// A cancelled call must end with CANCELLED (what grpc clients report for a local cancel).
fn expect_cancelled<T>(call: &'static str, outcome: Result<T, Status>) -> Result<(), CaseError> {
    match outcome {
        Err(status) if status.code() == Code::Cancelled => Ok(()),
        Err(status) => Err(CaseError::Assertion(format!(
            "{call}: status {} after cancelling, expected Cancelled",
            describe(&status)
        ))),
        Ok(_) => Err(CaseError::Assertion(format!(
            "{call}: call succeeded after cancelling, expected Cancelled"
        ))),
    }
}

async fn cancel_after_begin(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    // A request stream that never yields, and tells when the transport first asks it for a
    // message — by then the request headers are on their way.
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let body = futures::stream::poll_fn(move |_cx: &mut Context<'_>| {
        if let Some(tx) = started_tx.take() {
            let _ = tx.send(());
        }
        // Never ready; tonic's cancellation token wakes the body when the call is cancelled.
        Poll::<Option<StreamingInputCallRequest>>::Pending
    });
    let mut request = Request::new(body);
    let cancel = request.cancellation_handle();
    let mut stub = client(channel.clone());
    let call = async move { stub.streaming_input_call(request).await };
    tokio::pin!(call);

    tokio::select! {
        outcome = &mut call => {
            return Err(CaseError::Assertion(match outcome {
                Ok(_) => "StreamingInputCall: completed before it was cancelled".to_owned(),
                Err(status) => format!(
                    "StreamingInputCall: failed before it was cancelled: {}",
                    describe(&status)
                ),
            }));
        }
        started = started_rx => {
            if started.is_err() {
                return Err(CaseError::Assertion(
                    "StreamingInputCall: request stream dropped before the call started".into(),
                ));
            }
        }
        () = tokio::time::sleep(OUTCOME_WAIT) => {
            return Err(CaseError::TimedOut {
                what: "StreamingInputCall: start of the request stream",
                limit: OUTCOME_WAIT,
            });
        }
    }
    cancel.cancel();
    let outcome = tokio::time::timeout(OUTCOME_WAIT, &mut call)
        .await
        .map_err(|_| CaseError::TimedOut {
            what: "StreamingInputCall after cancelling",
            limit: OUTCOME_WAIT,
        })?;
    expect_cancelled("StreamingInputCall", outcome)?;
    follow_up_empty_call(channel).await
}

async fn cancel_after_first_response(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(duplex_request(31_415, 27_182))
        .await
        .map_err(|_| CaseError::Assertion("FullDuplexCall: request stream closed early".into()))?;
    let mut request = Request::new(ReceiverStream::new(rx));
    let cancel = request.cancellation_handle();
    let mut stream = client(channel.clone())
        .full_duplex_call(request)
        .await
        .map_err(rpc("FullDuplexCall"))?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(rpc("FullDuplexCall"))?
        .ok_or_else(|| {
            CaseError::Assertion("FullDuplexCall: stream ended before the first response".into())
        })?;
    check_payload("FullDuplexCall", first.payload.as_ref(), 31_415)?;

    cancel.cancel();
    let outcome = tokio::time::timeout(OUTCOME_WAIT, stream.message())
        .await
        .map_err(|_| CaseError::TimedOut {
            what: "FullDuplexCall after cancelling",
            limit: OUTCOME_WAIT,
        })?;
    // The request side stays open until here, so the server never saw a half-close.
    drop(tx);
    match outcome {
        Ok(Some(_)) => {
            return Err(CaseError::Assertion(
                "FullDuplexCall: got another response after cancelling".into(),
            ));
        }
        other => expect_cancelled("FullDuplexCall", other)?,
    }
    drop(stream);
    follow_up_empty_call(channel).await
}

async fn timeout_on_sleeping_server(channel: grpc_h3::Channel) -> Result<(), CaseError> {
    let (tx, rx) = mpsc::channel(1);
    let first = StreamingOutputCallRequest {
        payload: zeros(27_182),
        ..StreamingOutputCallRequest::default()
    };
    tx.send(first)
        .await
        .map_err(|_| CaseError::Assertion("FullDuplexCall: request stream closed early".into()))?;
    let mut request = Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_millis(1));
    let mut stub = client(channel);
    let outcome = tokio::time::timeout(OUTCOME_WAIT, async {
        let mut stream = stub.full_duplex_call(request).await?.into_inner();
        stream.message().await
    })
    .await
    .map_err(|_| CaseError::TimedOut {
        what: "FullDuplexCall with a 1 ms deadline",
        limit: OUTCOME_WAIT,
    })?;
    // Holding the sender until here keeps the call from half-closing: only the deadline ends it.
    drop(tx);
    match outcome {
        Err(status) if status.code() == Code::DeadlineExceeded => Ok(()),
        Err(status) => Err(CaseError::Rpc {
            call: "FullDuplexCall with a 1 ms deadline",
            status,
        }),
        Ok(Some(_)) => Err(CaseError::Assertion(
            "FullDuplexCall: got a response, expected DEADLINE_EXCEEDED".into(),
        )),
        Ok(None) => Err(CaseError::Assertion(
            "FullDuplexCall: call succeeded, expected DEADLINE_EXCEEDED".into(),
        )),
    }
}

/// Service wrapper that keeps the headers of the last HTTP response, so a case can see the
/// initial metadata of a unary call separately from its trailers.
#[derive(Debug, Clone)]
pub struct HeaderCapture<S> {
    inner: S,
    seen: Arc<Mutex<Option<http::HeaderMap>>>,
}

impl<S> HeaderCapture<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        HeaderCapture {
            inner,
            seen: Arc::default(),
        }
    }

    /// Slot holding the headers of the most recent response.
    pub fn headers(&self) -> Arc<Mutex<Option<http::HeaderMap>>> {
        Arc::clone(&self.seen)
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for HeaderCapture<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let seen = Arc::clone(&self.seen);
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            if let Ok(mut slot) = seen.lock() {
                *slot = Some(response.headers().clone());
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_case_is_refused_by_name() {
        // Port 9 (discard) is never dialled: the name is checked first.
        let lazy = grpc_h3::Endpoint::new("http://127.0.0.1:9")
            .unwrap()
            .connect_lazy();
        let err = run_case(lazy, "no_such_case").await.unwrap_err();
        assert!(matches!(err, CaseError::UnknownCase(ref n) if n == "no_such_case"));
        assert_eq!(err.to_string(), "unknown test case `no_such_case`");
    }

    #[test]
    fn status_description_keeps_whitespace_visible() {
        let s = Status::new(Code::Unknown, SPECIAL_STATUS_MESSAGE);
        let d = describe(&s);
        assert!(!d.contains('\n'), "{d}");
        assert!(d.starts_with("Unknown "), "{d}");
    }
}

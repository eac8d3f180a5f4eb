//! grpc interop cases end to end: the in-process interop server (`zone_server::interop`) against
//! `zone_client::interop::run_case` over every transport in [`TRANSPORTS`], the real
//! `interop-client` binary, and misbehaving servers that the cases must catch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broken::Broken;
use grpc_h3::{Endpoint, Server, ServerTls, Transport};
use tokio::sync::oneshot;
use zone_client::interop::{ALL_CASES, CaseError, run_case};
use zone_proto::grpc_testing::test_service_server::TestServiceServer;
use zone_server::interop::{EchoMetadata, TestServiceImpl, test_service};

/// Every behaviour below runs over each of these.
const TRANSPORTS: &[Transport] = &[Transport::H2, Transport::H3];

/// A running in-process server; dropping it stops the server.
struct TestServer {
    addr: SocketAddr,
    cert_dir: tempfile::TempDir,
    ca_pem: Vec<u8>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    async fn start<S>(transport: Transport, service: S) -> TestServer
    where
        S: tonic::server::NamedService
            + tonic::codegen::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let cert_dir = tempfile::tempdir().unwrap();
        let certs = dev_certs::DevCerts::load_or_generate(cert_dir.path()).unwrap();
        let bound = Server::builder()
            .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
            .wires(grpc_h3::Wires::from(transport))
            .add_service(service)
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = match transport {
            Transport::H3 => bound.h3_addr(),
            _ => bound.h2_addr(),
        }
        .expect("server listens on the requested transport");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(bound.serve_with_shutdown(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            cert_dir,
            ca_pem: certs.ca_pem,
            _stop: stop,
        }
    }

    async fn channel(&self, transport: Transport) -> grpc_h3::Channel {
        Endpoint::new(format!("https://127.0.0.1:{}", self.addr.port()).as_str())
            .unwrap()
            .transport(transport)
            .ca_certificate_pem(&self.ca_pem)
            .unwrap()
            .server_name("localhost")
            .connect()
            .await
            .unwrap()
    }

    fn ca_file(&self) -> PathBuf {
        self.cert_dir.path().join(dev_certs::CA_CERT_FILE)
    }
}

/// Runs `case` against the real interop service over every transport; failures name both.
async fn run_everywhere(case: &str) {
    let mut failures = Vec::new();
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport, test_service()).await;
        let channel = server.channel(transport).await;
        if let Err(err) = run_case(channel, case).await {
            failures.push(format!("{case} over {transport}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! case_tests {
    ($($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                run_everywhere(stringify!($case)).await;
            }
        )+

        #[test]
        fn every_case_has_a_test() {
            assert_eq!(ALL_CASES, [$(stringify!($case)),+]);
        }
    };
}

case_tests!(
    empty_unary,
    large_unary,
    client_streaming,
    server_streaming,
    ping_pong,
    empty_stream,
    custom_metadata,
    status_code_and_message,
    special_status_message,
    unimplemented_method,
    unimplemented_service,
    cancel_after_begin,
    cancel_after_first_response,
    timeout_on_sleeping_server,
);

/// Runs the `interop-client` binary to completion (bounded), returning status and stdout.
fn run_client_binary(args: &[String]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_interop-client"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("interop-client did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (
        status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_client_binary_passes_all_cases() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport, test_service()).await;
        let args = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            server.addr.port().to_string(),
            "--transport".to_owned(),
            transport.to_string(),
            "--ca".to_owned(),
            server.ca_file().display().to_string(),
            "--server-name".to_owned(),
            "localhost".to_owned(),
            "--test_case".to_owned(),
            "all".to_owned(),
        ];
        let (status, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_client_binary(&args))
                .await
                .unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.last().copied(),
            Some("14 passed, 0 failed"),
            "over {transport}:\n{stdout}\n{stderr}"
        );
        for case in ALL_CASES {
            assert!(lines.contains(&format!("{case} PASS").as_str()), "{stdout}");
        }
        assert!(status.success(), "{status}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_client_binary_rejects_unknown_case_with_exit_2() {
    let args = [
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--plaintext",
        "--test_case",
        "empty_unary,no_such_case",
    ]
    .map(String::from)
    .to_vec();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || run_client_binary(&args))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("unknown test case `no_such_case`"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_client_binary_reports_a_failing_case_and_exits_1() {
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport, TestServiceServer::new(Broken::default())).await;
        let args = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            server.addr.port().to_string(),
            "--transport".to_owned(),
            transport.to_string(),
            "--ca".to_owned(),
            server.ca_file().display().to_string(),
            "--server-name".to_owned(),
            "localhost".to_owned(),
            "--test-case".to_owned(),
            "empty_unary,large_unary".to_owned(),
        ];
        let (status, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_client_binary(&args))
                .await
                .unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}\n{stderr}");
        assert_eq!(lines[0], "empty_unary PASS");
        assert!(lines[1].starts_with("large_unary FAIL "), "{stdout}");
        assert!(lines[1].contains("expected 314159"), "{stdout}");
        assert_eq!(lines[2], "1 passed, 1 failed");
        assert_eq!(status.code(), Some(1), "{stderr}");
    }
}

/// Asserts `case` fails against `service`, with an error whose text contains `needle`.
async fn assert_case_fails<S>(service: S, case: &str, needle: &str)
where
    S: tonic::server::NamedService
        + tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    for &transport in TRANSPORTS {
        let server = TestServer::start(transport, service.clone()).await;
        let channel = server.channel(transport).await;
        let err: CaseError = run_case(channel, case).await.expect_err(&format!(
            "{case} must fail against a broken server over {transport}"
        ));
        let text = err.to_string();
        assert!(text.contains(needle), "{case} over {transport}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unary_fails_on_wrong_payload_size() {
    let svc = EchoMetadata::new(TestServiceServer::new(Broken::default()));
    assert_case_fails(
        svc,
        "large_unary",
        "payload is 314158 bytes, expected 314159",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_fails_on_wrong_aggregate() {
    let svc = EchoMetadata::new(TestServiceServer::new(Broken::default()));
    assert_case_fails(svc, "client_streaming", "aggregated_payload_size is 74923").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cases_fail_on_wrong_message() {
    let svc = EchoMetadata::new(TestServiceServer::new(Broken::default()));
    assert_case_fails(
        svc.clone(),
        "status_code_and_message",
        "not what you asked for",
    )
    .await;
    assert_case_fails(svc, "special_status_message", "not what you asked for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_method_fails_when_the_method_answers() {
    let svc = TestServiceServer::new(Broken::default());
    assert_case_fails(
        svc,
        "unimplemented_method",
        "call succeeded, expected UNIMPLEMENTED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metadata_fails_without_the_echo() {
    // The bare service, without the EchoMetadata wrapper, echoes nothing.
    let svc = TestServiceServer::new(TestServiceImpl::new());
    assert_case_fails(
        svc,
        "custom_metadata",
        "x-grpc-test-echo-initial is missing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_fails_when_the_server_stops_answering() {
    let svc = EchoMetadata::new(TestServiceServer::new(Broken::default()));
    assert_case_fails(
        svc,
        "ping_pong",
        "stream ended after 1 responses, expected 4",
    )
    .await;
}

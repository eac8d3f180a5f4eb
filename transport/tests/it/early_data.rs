//! TLS session resumption and 0-RTT early data (RFC 9001 §4.6, RFC 8470).
//!
//! HTTP/3 only: TCP+TLS 0-RTT is not offered on the HTTP/2 wire, which the last test checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Observed, certs, endpoint, service};
use grpc_h3::{Server, ServerTls, Transport};
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{Empty, SimpleRequest};

async fn server(
    early: Option<&[&str]>,
    observed: Arc<Observed>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let c = certs();
    let mut builder = Server::builder()
        .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
        .add_service(service(observed));
    if let Some(methods) = early {
        builder = builder.accept_early_data(methods.iter().copied());
    }
    let bound = builder.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = bound.h3_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn early(md: &tonic::metadata::MetadataMap) -> &str {
    md.get("x-early").unwrap().to_str().unwrap()
}

/// Connects once (to get a session ticket), drops that connection, and returns a second channel
/// from the same endpoint, which resumes.
async fn resumed(ep: grpc_h3::Endpoint) -> grpc_h3::Channel {
    let first = ep.clone().connect().await.unwrap();
    TestServiceClient::new(first.clone())
        .empty_call(Empty {})
        .await
        .unwrap();
    drop(first);
    // Lazy: the first call itself connects, so it goes out before the handshake can complete
    // (on loopback the handshake takes well under a millisecond).
    ep.connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_call_runs_in_0rtt_on_a_resumed_session() {
    let observed = Arc::new(Observed::default());
    let (addr, _stop) = server(Some(&["grpc.testing.TestService/EmptyCall"]), observed).await;
    let ep = endpoint(Transport::H3, addr).early_data(true);
    // Whether the first call beats the (sub-millisecond, loopback) handshake depends on
    // scheduling, so a few resumed connections are tried; one early call proves the path.
    let mut early_calls = 0;
    for _ in 0..10 {
        let second = resumed(ep.clone()).await;
        // Early data is only possible on a resumed session: this proves resumption too.
        let resp = TestServiceClient::new(second)
            .empty_call(Empty {})
            .await
            .unwrap();
        if early(resp.metadata()) == "1" {
            early_calls += 1;
            break;
        }
    }
    assert_eq!(
        early_calls, 1,
        "no call was sent as early data in 10 resumed connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_call_in_0rtt_is_refused_then_sent_after_the_handshake() {
    let observed = Arc::new(Observed::default());
    let (addr, _stop) = server(
        Some(&["grpc.testing.TestService/EmptyCall"]),
        observed.clone(),
    )
    .await;
    let ep = endpoint(Transport::H3, addr).early_data(true);
    let second = resumed(ep).await;
    let resp = TestServiceClient::new(second)
        .unary_call(SimpleRequest {
            response_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    // It ran once, and not from early data.
    assert_eq!(early(resp.metadata()), "0");
    assert_eq!(observed.completed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_is_off_unless_the_server_opts_in() {
    let (addr, _stop) = server(None, Default::default()).await;
    let ep = endpoint(Transport::H3, addr).early_data(true);
    let second = resumed(ep).await;
    let resp = TestServiceClient::new(second)
        .empty_call(Empty {})
        .await
        .unwrap();
    assert_eq!(
        early(resp.metadata()),
        "0",
        "server accepted early data without opting in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_wait_for_the_handshake() {
    let (addr, _stop) = server(
        Some(&["grpc.testing.TestService/FullDuplexCall"]),
        Default::default(),
    )
    .await;
    let ep = endpoint(Transport::H3, addr).early_data(true);
    let second = resumed(ep).await;
    // A request stream whose first message is not ready at once is not sent early.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let call = tokio::spawn(async move {
        TestServiceClient::new(second)
            .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(tx);
    let resp = call.await.unwrap().unwrap();
    assert_eq!(early(resp.metadata()), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_never_sends_early_data() {
    let (addr, _stop) = server(
        Some(&["grpc.testing.TestService/EmptyCall"]),
        Default::default(),
    )
    .await;
    let ep = endpoint(Transport::H2, addr).early_data(true);
    let second = resumed(ep).await;
    let resp = TestServiceClient::new(second)
        .empty_call(Empty {})
        .await
        .unwrap();
    assert_eq!(early(resp.metadata()), "0");
}

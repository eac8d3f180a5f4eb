//! `Transport::Auto`: Alt-Svc discovery, the QUIC-vs-TCP race and the fall-back to HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;

use std::time::Duration;

use common::{Fixture, certs, endpoint, service};
use grpc_h3::{Server, ServerTls, Transport};
use zone_proto::grpc_testing::Empty;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;

async fn transport_of_call(channel: &grpc_h3::Channel) -> String {
    let resp = TestServiceClient::new(channel.clone())
        .empty_call(Empty {})
        .await
        .unwrap();
    resp.metadata()
        .get("x-transport")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

async fn server_on(
    transport: Transport,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let c = certs();
    let bound = Server::builder()
        .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::from(transport))
        .add_service(service(Default::default()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h2_addr().or(bound.h3_addr()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_learns_h3_from_alt_svc_and_moves_over() {
    let f = Fixture::start(Transport::Auto).await;
    // An Auto channel that knows nothing about this origin (the fixture's announces HTTP/3):
    // the first call goes over HTTP/2 ...
    let channel = endpoint(Transport::H2, f.addr)
        .transport(Transport::Auto)
        .connect()
        .await
        .unwrap();
    assert_eq!(transport_of_call(&channel).await, "h2");
    // ... whose response advertises h3; the channel connects QUIC in the background and moves.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while channel.transport_in_use() != Transport::H3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never moved to HTTP/3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(transport_of_call(&channel).await, "h3");
    // A new channel to the same origin starts on HTTP/3 from the cached Alt-Svc.
    let second = endpoint(Transport::Auto, f.addr).connect().await.unwrap();
    assert_eq!(second.transport_in_use(), Transport::H3);
    assert_eq!(transport_of_call(&second).await, "h3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_stays_on_h2_when_server_offers_no_h3() {
    let (addr, _stop) = server_on(Transport::H2).await;
    let channel = endpoint(Transport::Auto, addr).connect().await.unwrap();
    for _ in 0..3 {
        assert_eq!(transport_of_call(&channel).await, "h2");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(channel.transport_in_use(), Transport::H2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_h2_when_udp_gets_no_answer() {
    // HTTP/2 only: nothing is bound on the UDP port we claim HTTP/3 is on.
    let (addr, _stop) = server_on(Transport::H2).await;
    let started = std::time::Instant::now();
    let channel = endpoint(Transport::Auto, addr)
        .h3_port(addr.port())
        .auto_head_start(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fallback took {:?}",
        started.elapsed()
    );
    assert_eq!(channel.transport_in_use(), Transport::H2);
    assert_eq!(transport_of_call(&channel).await, "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefers_quic_when_h3_is_known() {
    let (addr, _stop) = server_on(Transport::Auto).await;
    let channel = endpoint(Transport::Auto, addr)
        .h3_port(addr.port())
        .connect()
        .await
        .unwrap();
    assert_eq!(channel.transport_in_use(), Transport::H3);
    assert_eq!(transport_of_call(&channel).await, "h3");
}

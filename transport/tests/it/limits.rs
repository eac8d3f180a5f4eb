//! Limits against abuse (issue #7 item 3): connection and handshake limits, the per-connection
//! stream limit, the request-body stall timeout against slowloris dribblers, and live counters that
//! return to baseline after a flood of bad input. Every test checks a healthy client keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Observed, certs, endpoint, grpc_request, open_duplex, ping, service, stalling_body};
use futures::StreamExt;
use grpc_h3::{Channel, Server, ServerStats, ServerTls, Transport};
use tonic::Code;
use tower::ServiceExt;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::*;

matrix!(
    connection_limit_refuses_the_next_and_frees_the_slot,
    handshake_limit_turns_away_new_handshakes,
    stream_limit_queues_the_next_call,
    slowloris_dribbler_is_cut_off_while_a_healthy_client_continues,
    idle_between_messages_is_not_a_stall,
    counters_return_to_baseline_after_a_flood_of_bad_input,
);

/// A running server with `configure` applied to its builder.
struct Running {
    addr: SocketAddr,
    stats: ServerStats,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(t: Transport, configure: impl FnOnce(Server) -> Server) -> Running {
    let c = certs();
    let builder = Server::builder()
        .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::from(t))
        .add_service(service(Arc::new(Observed::default())));
    let bound = configure(builder)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h3_addr().or(bound.h2_addr()).unwrap();
    let stats = bound.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stats,
        _stop: tx,
    }
}

fn client(channel: &Channel) -> TestServiceClient<Channel> {
    TestServiceClient::new(channel.clone())
}

async fn healthy(channel: &Channel) {
    client(channel).empty_call(Empty {}).await.unwrap();
}

/// A connection (and its first call) that the server must turn away.
async fn refused(t: Transport, addr: SocketAddr) {
    match endpoint(t, addr).connect().await {
        Err(err) => {
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
        Ok(channel) => {
            let status = client(&channel).empty_call(Empty {}).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
    }
}

/// Polls `f` until it holds (or panics after `within`).
async fn eventually(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection_limit_refuses_the_next_and_frees_the_slot(t: Transport) {
    let server = start(t, |b| b.max_connections(2)).await;
    let first = endpoint(t, server.addr).connect().await.unwrap();
    let second = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&first).await;
    healthy(&second).await;
    assert_eq!(server.stats.connections(), 2);
    refused(t, server.addr).await;
    // The refused attempt left no trace, and the admitted connections are unaffected.
    assert_eq!(server.stats.connections(), 2);
    healthy(&first).await;
    // A closed connection gives its slot back.
    drop(second);
    let stats = server.stats.clone();
    eventually("slot freed", Duration::from_secs(5), || {
        stats.connections() == 1
    })
    .await;
    let third = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&third).await;
    healthy(&first).await;
}

async fn handshake_limit_turns_away_new_handshakes(t: Transport) {
    let server = start(t, |b| {
        b.max_pending_handshakes(1)
            .handshake_timeout(Duration::from_millis(800))
    })
    .await;
    // A connection admitted before the flood stays usable throughout.
    let established = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&established).await;
    // One handshake that never completes occupies the only slot.
    let stalled = StalledHandshake::start(t, server.addr).await;
    let stats = server.stats.clone();
    eventually("handshake pending", Duration::from_secs(2), || {
        stats.pending_handshakes() == 1
    })
    .await;
    match t {
        Transport::H3 => {
            // Not validated yet: Retry; validated (the retried Initial): refused.
            let err = raw_quic_connect(server.addr).await.unwrap_err();
            let quinn::ConnectionError::ConnectionClosed(close) = &err else {
                panic!("expected CONNECTION_CLOSE, got {err:?}");
            };
            assert_eq!(
                close.error_code,
                quinn::TransportErrorCode::CONNECTION_REFUSED,
                "{err:?}"
            );
        }
        _ => refused(t, server.addr).await,
    }
    healthy(&established).await;
    // The stalled handshake times out and frees the slot.
    eventually("handshake slot freed", Duration::from_secs(3), || {
        stats.pending_handshakes() == 0
    })
    .await;
    drop(stalled);
    let later = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&later).await;
}

/// A handshake the server has begun and that never completes: over TCP a connection that sends no
/// ClientHello; over QUIC a client behind a relay that drops every server packet.
enum StalledHandshake {
    // Held open, never read.
    Tcp(#[allow(dead_code)] tokio::net::TcpStream),
    Quic(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>),
}

impl StalledHandshake {
    async fn start(t: Transport, server: SocketAddr) -> Self {
        match t {
            Transport::H3 => {
                let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let relay_addr = relay.local_addr().unwrap();
                let forward = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    // Client → server only; the server's answers (from `server`) are dropped.
                    while let Ok((n, from)) = relay.recv_from(&mut buf).await {
                        if from != server {
                            let _ = relay.send_to(&buf[..n], server).await;
                        }
                    }
                });
                let client = tokio::spawn(async move {
                    let _ = raw_quic_connect(relay_addr).await;
                });
                StalledHandshake::Quic(forward, client)
            }
            _ => StalledHandshake::Tcp(tokio::net::TcpStream::connect(server).await.unwrap()),
        }
    }
}

impl Drop for StalledHandshake {
    fn drop(&mut self) {
        if let StalledHandshake::Quic(a, b) = self {
            a.abort();
            b.abort();
        }
    }
}

fn client_tls(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&certs().ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A bare quinn connection (ALPN h3) to `addr`.
async fn raw_quic_connect(addr: SocketAddr) -> Result<quinn::Connection, quinn::ConnectionError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(b"h3")).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep.connect(addr, "localhost").unwrap().await
}

fn sleep_request(ms: u64) -> SimpleRequest {
    SimpleRequest {
        payload: Some(Payload {
            r#type: 0,
            body: format!("sleep:{ms}").into_bytes(),
        }),
        ..Default::default()
    }
}

async fn stream_limit_queues_the_next_call(t: Transport) {
    let server = start(t, |b| b.max_concurrent_streams(2)).await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&channel).await;
    let started = Instant::now();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut c = client(&channel);
            tokio::spawn(async move { c.unary_call(sleep_request(700)).await })
        })
        .collect();
    let stats = server.stats.clone();
    eventually("two calls running", Duration::from_secs(2), || {
        stats.active_requests() == 2
    })
    .await;
    // The third call is not an error: it waits for a stream and runs once one is free.
    let third = client(&channel).unary_call(sleep_request(0)).await;
    let waited = started.elapsed();
    third.unwrap();
    assert!(
        waited >= Duration::from_millis(600),
        "the third call did not wait for a free stream: {waited:?}"
    );
    for call in slow {
        call.await.unwrap().unwrap();
    }
    // Another connection is not limited by this one's streams.
    let other = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&other).await;
}

async fn grpc_status_of(resp: http::Response<tonic::body::Body>) -> tonic::Status {
    use http_body_util::BodyExt;
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&headers))
        .expect("no grpc-status")
}

async fn slowloris_dribbler_is_cut_off_while_a_healthy_client_continues(t: Transport) {
    let server = start(t, |b| {
        b.request_body_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    let healthy_channel = endpoint(t, server.addr).connect().await.unwrap();
    // A message promising 100 bytes, of which 3 arrive, then silence.
    let mut first = vec![0u8, 0, 0, 0, 100];
    first.extend_from_slice(&[1, 2, 3]);
    let (body, _keep_open) = stalling_body(first);
    let started = Instant::now();
    let call = tokio::spawn(
        channel
            .clone()
            .oneshot(grpc_request("/grpc.testing.TestService/UnaryCall", body)),
    );
    // Meanwhile, a healthy client on another connection is served normally.
    while !call.is_finished() && started.elapsed() < Duration::from_secs(5) {
        healthy(&healthy_channel).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        match call.await.unwrap() {
            Ok(resp) => grpc_status_of(resp).await,
            Err(status) => status,
        }
    })
    .await
    .expect("the dribbler was never cut off");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(250),
        "cut off early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut off late: {took:?}");
    // The stream is gone on the server, and the dribbler's own connection still works.
    let stats = server.stats.clone();
    eventually("stream released", Duration::from_secs(2), || {
        stats.active_requests() == 0
    })
    .await;
    healthy(&channel).await;
    healthy(&healthy_channel).await;
}

async fn idle_between_messages_is_not_a_stall(t: Transport) {
    // A subscription-like bidi call that idles between messages for longer than the stall timeout.
    let server = start(t, |b| {
        b.request_body_timeout(Some(Duration::from_millis(200)))
    })
    .await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    let (tx, mut replies) = open_duplex(client(&channel)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    tx.send(ping()).await.unwrap();
    replies.next().await.unwrap().unwrap();
    drop(tx);
    assert!(replies.next().await.is_none());
}

/// One bad call of kind `i % 6` through `channel`; returns whether it was refused as expected.
async fn bad_call(channel: &Channel, i: usize) {
    let path = "/grpc.testing.TestService/UnaryCall";
    let frame = |len: u32, payload: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(payload);
        tonic::body::Body::new(http_body_util::Full::new(Bytes::from(v)))
    };
    let (req, want) = match i % 6 {
        // Malformed protobuf.
        0 => (grpc_request(path, frame(3, &[0xff; 3])), Code::Internal),
        // Truncated message.
        1 => (grpc_request(path, frame(100, &[0; 10])), Code::Internal),
        // Huge declared length: refused by the limit, never allocated.
        2 => (
            grpc_request(path, frame(u32::MAX, &[0; 16])),
            Code::ResourceExhausted,
        ),
        // Unknown method.
        3 => (
            grpc_request("/grpc.testing.TestService/Nope", frame(0, &[])),
            Code::Unimplemented,
        ),
        // Wrong content-type (HTTP 415 → INTERNAL at the client).
        4 => {
            let mut req = grpc_request(path, frame(0, &[]));
            req.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            (req, Code::Internal)
        }
        // A call the client drops mid-body (the stream is reset).
        _ => {
            let (body, keep) = stalling_body(vec![0, 0, 0, 0, 50, 1]);
            let call = channel.clone().oneshot(grpc_request(path, body));
            let _ = tokio::time::timeout(Duration::from_millis(2), call).await;
            drop(keep);
            return;
        }
    };
    let status = match channel.clone().oneshot(req).await {
        Ok(resp) => grpc_status_of(resp).await,
        Err(status) => status,
    };
    assert_eq!(status.code(), want, "bad call kind {}: {status:?}", i % 6);
}

async fn counters_return_to_baseline_after_a_flood_of_bad_input(t: Transport) {
    let server = start(t, |b| b).await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    healthy(&channel).await;
    let stats = server.stats.clone();
    assert_eq!((stats.connections(), stats.active_requests()), (1, 0));
    // 2 000 bad calls, 8 at a time, on the one connection.
    let started = Instant::now();
    futures::stream::iter(0..2_000)
        .for_each_concurrent(8, |i| {
            let channel = channel.clone();
            async move { bad_call(&channel, i).await }
        })
        .await;
    // Plus 50 connections that send garbage and go away.
    for i in 0..50u8 {
        match t {
            Transport::H3 => {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut junk = vec![0xc0 | (i & 0x3f); 1200];
                junk[1..5].copy_from_slice(&1u32.to_be_bytes()); // QUIC v1 long header
                let _ = udp.send_to(&junk, server.addr);
            }
            _ => {
                use tokio::io::AsyncWriteExt;
                let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                let _ = tcp.write_all(&[i; 64]).await;
            }
        }
    }
    eprintln!("{t}: 2 000 bad calls in {:?}", started.elapsed());
    // Every stream and every bad connection is gone again; the good connection is still there.
    eventually("counters back to baseline", Duration::from_secs(5), || {
        (
            stats.connections(),
            stats.active_requests(),
            stats.pending_handshakes(),
        ) == (1, 0, 0)
    })
    .await;
    healthy(&channel).await;
}

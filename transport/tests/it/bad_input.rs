//! Bad input from misbehaving peers (issue #7 item 1), the cases `errors.rs` does not cover: huge
//! declared lengths, client resets at every stage of a call, interrupted header blocks, frames after
//! the trailers, request streams that never send HEADERS, and QUIC packets for unknown connection
//! ids. Raw peers (hand-written HTTP/2 frames, h3 + h3-quinn, bare quinn) do what our client never
//! would. Each test checks that a neighbouring healthy connection keeps working and that the
//! server's request counter returns to zero. The expected results are tabled in `README.md` here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Observed, certs, endpoint, grpc_request, service, stalling_body};
use futures::StreamExt;
use grpc_h3::{Channel, Server, ServerStats, ServerTls, Transport};
use tonic::Code;
use tower::ServiceExt;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::*;

matrix!(
    huge_declared_length_is_refused_before_the_payload_arrives,
    client_reset_at_every_stage_leaves_the_server_healthy,
    interrupted_header_block_leaves_the_server_healthy,
    frames_after_the_trailers_are_rejected,
);

const UNARY: &str = "/grpc.testing.TestService/UnaryCall";

struct Running {
    addr: SocketAddr,
    stats: ServerStats,
    observed: Arc<Observed>,
    /// A connection that only ever makes good calls.
    neighbour: Channel,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn start(t: Transport, configure: impl FnOnce(Server) -> Server) -> Running {
        let c = certs();
        let observed = Arc::new(Observed::default());
        let builder = Server::builder()
            .tls(ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
            .wires(grpc_h3::Wires::from(t))
            .add_service(service(observed.clone()));
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
        let neighbour = endpoint(t, addr).connect().await.unwrap();
        Running {
            addr,
            stats,
            observed,
            neighbour,
            _stop: tx,
        }
    }

    /// The neighbour is served, and no request stream is left over on the server.
    async fn assert_healthy(&self, after: &str) {
        TestServiceClient::new(self.neighbour.clone())
            .empty_call(Empty {})
            .await
            .unwrap_or_else(|e| panic!("neighbour failed after {after}: {e:?}"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.stats.active_requests() != 0 {
            assert!(
                Instant::now() < deadline,
                "{} request streams left over after {after}",
                self.stats.active_requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` probed handlers ended, cancelled or (input ended by a reset) completed.
    async fn wait_ended(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let ended = || {
            self.observed.cancelled.load(Ordering::SeqCst)
                + self.observed.completed.load(Ordering::SeqCst)
        };
        while ended() < n {
            assert!(
                Instant::now() < deadline,
                "handler still running after {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_cancelled(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.observed.cancelled.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "handler not cancelled after {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn huge_declared_length_is_refused_before_the_payload_arrives(t: Transport) {
    let server = Running::start(t, |b| b).await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    // A prefix declaring 4 GiB - 1, and the body left open: the answer must not wait for (or
    // make room for) the payload.
    let (body, _open) = stalling_body(vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(3),
        channel.clone().oneshot(grpc_request(UNARY, body)),
    )
    .await
    .expect("the server waited for the declared payload");
    let status = match resp {
        Ok(resp) => tonic::Status::from_header_map(resp.headers()).expect("Trailers-Only"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The connection carries on.
    TestServiceClient::new(channel)
        .empty_call(Empty {})
        .await
        .unwrap();
    server.assert_healthy("a huge declared length").await;
}

fn pings(n: usize, interval: Duration) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: (0..n)
            .map(|_| ResponseParameters {
                size: 16,
                interval_us: interval.as_micros() as i32,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn client_reset_at_every_stage_leaves_the_server_healthy(t: Transport) {
    let server = Running::start(t, |b| b).await;
    let channel = endpoint(t, server.addr).connect().await.unwrap();
    let client = || TestServiceClient::new(channel.clone());

    // 1. After the request HEADERS, before any message: the handler is waiting for one. tonic
    //    presents a reset request stream to a server handler as the end of its input (codec/
    //    decode.rs: a CANCELLED request body reads as EOF), so the handler ends rather than
    //    failing; what matters is that it ends and its answer goes nowhere.
    let (tx, rx) = tokio::sync::mpsc::channel::<StreamingInputCallRequest>(1);
    let mut c = client();
    let call = tokio::spawn(async move {
        c.streaming_input_call(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    wait_for_requests(&server.stats, 1).await;
    // Let the handler start (a reset before that drops the call before it runs: nothing to see).
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.abort();
    server.wait_ended(1, "a reset after the headers").await;
    drop(tx);
    server.assert_healthy("a reset after the headers").await;

    // 2. Mid-body, between messages: one message delivered, the stream still open.
    let (tx, rx) = tokio::sync::mpsc::channel::<StreamingInputCallRequest>(1);
    tx.send(StreamingInputCallRequest {
        payload: Some(Payload {
            r#type: 0,
            body: vec![7; 1000],
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut c = client();
    let call = tokio::spawn(async move {
        c.streaming_input_call(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    wait_for_requests(&server.stats, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.abort();
    server.wait_ended(2, "a reset between messages").await;
    drop(tx);
    server.assert_healthy("a reset between messages").await;

    // 3. Mid-message: 3 of a message's 100 bytes sent, then the call is dropped (before the
    //    handler runs: tonic needs the whole message first).
    let mut prefix = vec![0u8, 0, 0, 0, 100];
    prefix.extend_from_slice(&[1, 2, 3]);
    let (body, open) = stalling_body(prefix);
    let call = tokio::spawn(channel.clone().oneshot(grpc_request(UNARY, body)));
    wait_for_requests(&server.stats, 1).await;
    call.abort();
    drop(open);
    server.assert_healthy("a reset mid-message").await;

    // 4. After the request ended, while the response streams.
    let mut replies = client()
        .streaming_output_call(pings(1000, Duration::from_millis(5)))
        .await
        .unwrap()
        .into_inner();
    replies.next().await.unwrap().unwrap();
    drop(replies);
    server
        .wait_cancelled(1, "a reset during the response")
        .await;
    server.assert_healthy("a reset during the response").await;

    // 5. While a unary handler computes its answer.
    let mut c = client();
    let call = tokio::spawn(async move {
        c.unary_call(SimpleRequest {
            payload: Some(Payload {
                r#type: 0,
                body: b"sleep:5000".to_vec(),
            }),
            ..Default::default()
        })
        .await
    });
    wait_for_requests(&server.stats, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.abort();
    server.wait_cancelled(2, "a reset during the handler").await;
    server.assert_healthy("a reset during the handler").await;

    // The connection that sent every reset is still good.
    client().empty_call(Empty {}).await.unwrap();
}

async fn wait_for_requests(stats: &ServerStats, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while stats.active_requests() < n {
        assert!(
            Instant::now() < deadline,
            "the call never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn interrupted_header_block_leaves_the_server_healthy(t: Transport) {
    let server = Running::start(t, |b| b).await;
    match t {
        Transport::H3 => {
            // Part of a HEADERS frame (type 0x01, length 0x20, 3 of 32 bytes), then a reset.
            let conn = raw_quic_connect(server.addr).await.unwrap();
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(&[0x01, 0x20, 0x00, 0x00, 0xd1])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            send.reset(quinn::VarInt::from_u32(0x10c)).unwrap();
            server.assert_healthy("an interrupted header block").await;
            // Only the stream was affected: the connection lives on.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
        }
        _ => {
            // HEADERS without END_HEADERS, then RST_STREAM instead of the CONTINUATION the
            // protocol requires: a connection error (RFC 9113 §6.10), for this connection alone.
            let mut h2 = RawH2::connect(server.addr).await;
            let block = hpack_request(UNARY);
            h2.write(frame(0x1, 0, 1, &block[..block.len() / 2])).await;
            h2.write(frame(0x3, 0, 1, &8u32.to_be_bytes())).await;
            let outcome = h2.outcome().await;
            assert!(
                matches!(outcome, Outcome::GoAway(0x1) | Outcome::Eof),
                "{outcome:?}"
            );
            server.assert_healthy("an interrupted header block").await;
        }
    }
}

async fn frames_after_the_trailers_are_rejected(t: Transport) {
    let server = Running::start(t, |b| b).await;
    const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];
    let empty_message = EMPTY_MESSAGE;
    match t {
        Transport::H3 => {
            // RFC 9114 §4.1: "a HEADERS or DATA frame after the trailing HEADERS frame" is an
            // invalid frame sequence, a *connection* error H3_FRAME_UNEXPECTED. h3 0.0.8 checks
            // it while reading the trailers (it reads on to the FIN), which our body does.
            for after in ["data", "headers"] {
                let (conn, mut stream) = h3_request(server.addr).await;
                stream
                    .send_data(Bytes::from_static(EMPTY_MESSAGE))
                    .await
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-trailer", "1".parse().unwrap());
                stream.send_trailers(trailers.clone()).await.unwrap();
                match after {
                    "data" => stream.send_data(Bytes::from_static(EMPTY_MESSAGE)).await,
                    _ => stream.send_trailers(trailers).await,
                }
                .unwrap();
                let _ = stream.finish().await;
                let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed())
                    .await
                    .unwrap_or_else(|_| panic!("{after} after trailers went unnoticed"));
                let quinn::ConnectionError::ApplicationClosed(close) = &closed else {
                    panic!("{after} after trailers: {closed:?}");
                };
                assert_eq!(
                    close.error_code,
                    quinn::VarInt::from_u32(0x105),
                    "{after}: {closed:?}"
                );
                server.assert_healthy("frames after the trailers").await;
            }
        }
        _ => {
            // The trailers carry END_STREAM; any DATA/HEADERS after it is on a half-closed
            // (remote) or closed stream: STREAM_CLOSED (RFC 9113 §5.1).
            for after in [0x0u8, 0x1] {
                let mut h2 = RawH2::connect(server.addr).await;
                h2.write(frame(0x1, 0x4, 1, &hpack_request(UNARY))).await;
                h2.write(frame(0x0, 0, 1, empty_message)).await;
                let trailers = literal(b"x-trailer", b"1");
                h2.write(frame(0x1, 0x5, 1, &trailers)).await;
                let late = if after == 0 {
                    empty_message.to_vec()
                } else {
                    trailers
                };
                h2.write(frame(
                    after,
                    0x1 | if after == 1 { 0x4 } else { 0 },
                    1,
                    &late,
                ))
                .await;
                let outcome = h2.outcome().await;
                // h2 answers with GOAWAY(PROTOCOL_ERROR): a stream error treated as a connection
                // error, which RFC 9113 §5.4 allows.
                assert!(
                    matches!(
                        outcome,
                        Outcome::Reset(0x1 | 0x5) | Outcome::GoAway(0x1 | 0x5)
                    ),
                    "frame type {after} after trailers: {outcome:?}"
                );
                server.assert_healthy("frames after the trailers").await;
            }
        }
    }
}

/// A request stream (h3 + h3-quinn) to `addr` whose HEADERS are sent.
async fn h3_request(
    addr: SocketAddr,
) -> (
    quinn::Connection,
    ::h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
) {
    let conn = raw_quic_connect(addr).await.unwrap();
    let (mut driver, mut send) = ::h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://localhost{UNARY}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let stream = send.send_request(req).await.unwrap();
    // Keep the request sender alive with the connection (dropping it would start a close).
    std::mem::forget(send);
    (conn, stream)
}

/// Request streams that never complete their HEADERS are reset after the header timeout; the
/// connection and its neighbours carry on. (HTTP/2 has no such state: a stream exists only once
/// its HEADERS arrived, and an incomplete header block is the interrupted case above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_streams_that_never_send_headers_are_reset_after_the_header_timeout() {
    let server = Running::start(Transport::H3, |b| {
        b.handshake_timeout(Duration::from_millis(300))
    })
    .await;
    let conn = raw_quic_connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        // One byte of a frame type makes the stream exist without completing anything.
        send.write_all(&[0x01]).await.unwrap();
        streams.push((send, recv));
    }
    // Meanwhile the neighbour is served without delay.
    server.assert_healthy("20 silent streams opened").await;
    for (_send, mut recv) in streams {
        let read = tokio::time::timeout(Duration::from_secs(3), recv.read_to_end(1024)).await;
        assert!(
            matches!(read, Ok(Err(_))),
            "a silent stream was kept: {read:?}"
        );
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "reset early: {took:?}");
    assert_eq!(server.stats.connections(), 2);
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    server.assert_healthy("20 silent streams reset").await;
}

/// Short-header packets for connection ids the server never issued, and long headers with
/// malformed connection ids or unknown versions, are dropped or answered with a stateless reset /
/// version negotiation no larger than allowed; the live connection is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_packets_with_unknown_connection_ids_are_ignored() {
    let server = Running::start(Transport::H3, |b| b).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent = 0usize;
    let mut buf = vec![0u8; 1500];
    for i in 0..600u32 {
        fill(&mut buf, i + 1);
        let len = match i % 3 {
            // Short header: fixed bit set, random (unknown) DCID and payload.
            0 => {
                buf[0] = 0x40 | (buf[0] & 0x3f);
                21 + (i as usize * 53) % 1200
            }
            // Long header v1 with a DCID length over the 20-byte maximum (RFC 9000 §17.2).
            1 => {
                buf[0] = 0xc0;
                buf[1..5].copy_from_slice(&1u32.to_be_bytes());
                buf[5] = 21 + (i % 200) as u8;
                1200
            }
            // Long header of an unknown version (a version negotiation trigger).
            _ => {
                buf[0] = 0xc0;
                buf[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
                buf[5] = 8;
                buf[14] = 8;
                1200
            }
        };
        udp.send_to(&buf[..len], server.addr).await.unwrap();
        sent += len;
        if i % 100 == 0 {
            server
                .assert_healthy("packets with unknown connection ids")
                .await;
        }
    }
    // What came back: never more than the packets that triggered it (no amplification).
    let mut received = 0usize;
    let mut answers = 0usize;
    let mut rbuf = vec![0u8; 65_536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), udp.recv_from(&mut rbuf)).await
    {
        received += n;
        answers += 1;
    }
    assert!(
        received <= sent,
        "{answers} answers, {received} bytes for {sent} bytes"
    );
    assert_eq!(server.stats.connections(), 1, "no connection was created");
    server
        .assert_healthy("packets with unknown connection ids")
        .await;
}

fn fill(buf: &mut [u8], seed: u32) {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for b in buf {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
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

async fn raw_quic_connect(addr: SocketAddr) -> Result<quinn::Connection, quinn::ConnectionError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(b"h3")).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep.connect(addr, "localhost").unwrap().await
}

/// An HTTP/2 frame (RFC 9113 §4.1).
fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2), no Huffman.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut v = vec![0u8, name.len() as u8];
    v.extend_from_slice(name);
    v.push(value.len() as u8);
    v.extend_from_slice(value);
    v
}

fn hpack_request(path: &str) -> Vec<u8> {
    [
        literal(b":method", b"POST"),
        literal(b":scheme", b"https"),
        literal(b":path", path.as_bytes()),
        literal(b":authority", b"localhost"),
        literal(b"content-type", b"application/grpc"),
        literal(b"te", b"trailers"),
    ]
    .concat()
}

#[derive(Debug)]
enum Outcome {
    Reset(u32),
    GoAway(u32),
    Eof,
}

/// A hand-driven HTTP/2 client connection over TLS.
struct RawH2(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl RawH2 {
    async fn connect(addr: SocketAddr) -> RawH2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_tls(b"h2"))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let mut raw = RawH2(tls);
        raw.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec())
            .await;
        raw.write(frame(0x4, 0, 0, &[])).await;
        raw
    }

    async fn write(&mut self, bytes: Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        self.0.write_all(&bytes).await.unwrap();
        self.0.flush().await.unwrap();
    }

    /// Reads frames until a RST_STREAM, GOAWAY or the end of the connection (3 s at most).
    async fn outcome(&mut self) -> Outcome {
        use tokio::io::AsyncReadExt;
        let read = async {
            loop {
                let mut head = [0u8; 9];
                if self.0.read_exact(&mut head).await.is_err() {
                    return Outcome::Eof;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if self.0.read_exact(&mut payload).await.is_err() {
                    return Outcome::Eof;
                }
                match head[3] {
                    0x3 => {
                        return Outcome::Reset(u32::from_be_bytes(
                            payload[..4].try_into().unwrap(),
                        ));
                    }
                    0x7 => {
                        return Outcome::GoAway(u32::from_be_bytes(
                            payload[4..8].try_into().unwrap(),
                        ));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3), read)
            .await
            .expect("the server neither reset the stream nor closed the connection")
    }
}

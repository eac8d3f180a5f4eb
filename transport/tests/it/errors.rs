//! Error mapping and bad input, each provoked for real, over every transport (the
//! mapping table lives in `transport/src/error.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::time::Duration;

use bytes::Bytes;
use common::{Fixture, Options};
use grpc_h3::Transport;
use tonic::Code;
use tower::ServiceExt;
use zone_proto::grpc_testing::*;

matrix!(
    http_status_without_grpc_status_maps_per_spec,
    missing_grpc_status_is_unknown,
    wrong_content_type_is_refused_with_415,
    non_post_is_refused_with_405,
    oversized_header_section_is_resource_exhausted_and_connection_survives,
    message_over_the_size_limit_is_resource_exhausted,
    truncated_message_is_internal,
    malformed_protobuf_is_internal,
    malformed_grpc_timeout_is_refused,
    server_gone_mid_stream_is_unavailable,
    garbage_datagrams_and_bytes_do_not_disturb_the_server,
    silent_clients_are_dropped_after_the_handshake_timeout,
    malformed_status_details_are_internal_not_a_client_panic,
    undecodable_grpc_message_keeps_its_code_and_raw_text,
    a_panicking_handler_fails_only_its_call,
);

async fn misbehaving(t: Transport) -> Fixture {
    Fixture::start_with(
        t,
        Options {
            misbehave: true,
            ..Default::default()
        },
    )
    .await
}

async fn call_with(f: &Fixture, key: &'static str, value: &str) -> tonic::Status {
    let mut req = tonic::Request::new(Empty {});
    req.metadata_mut().insert(key, value.parse().unwrap());
    f.client().empty_call(req).await.unwrap_err()
}

/// A handler that panics — while the server polls it for the first time (H3 does that on the
/// connection's task) or later — fails its own call and nothing else: the connection serves
/// the next call, and calls in flight beside it complete.
async fn a_panicking_handler_fails_only_its_call(t: Transport) {
    let f = misbehaving(t).await;
    let (tx, mut beside) = common::open_duplex(f.client()).await;
    for how in ["panic-now", "panic-later"] {
        let status = call_with(&f, "x-misbehave", how).await;
        // Both transports reset the stream (hyper's RST_STREAM(CANCEL), our H3_REQUEST_CANCELLED).
        assert_eq!(status.code(), Code::Cancelled, "{t} {how}: {status:?}");
        f.client().empty_call(Empty {}).await.unwrap();
    }
    tx.send(common::ping()).await.unwrap();
    assert!(beside.message().await.unwrap().is_some(), "{t}");
    drop(tx);
    assert!(beside.message().await.unwrap().is_none(), "{t}");
}

async fn http_status_without_grpc_status_maps_per_spec(t: Transport) {
    let f = misbehaving(t).await;
    let table = [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (415, Code::Internal),
        (429, Code::Unavailable),
        (431, Code::ResourceExhausted),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (418, Code::Unknown),
        (500, Code::Unknown),
    ];
    for (http, want) in table {
        let status = call_with(&f, "x-misbehave", &format!("http-{http}")).await;
        assert_eq!(status.code(), want, "HTTP {http}: {status:?}");
    }
    // The connection is still usable after every refusal.
    f.client().empty_call(Empty {}).await.unwrap();
}

/// A call answered with the raw status `(code, message, details)`, in trailers or Trailers-Only.
async fn call_answered(
    f: &Fixture,
    place: &str,
    code: &str,
    message: Option<&str>,
    details: Option<&str>,
) -> tonic::Status {
    let mut req = tonic::Request::new(Empty {});
    let md = req.metadata_mut();
    md.insert(common::RAW_CODE, code.parse().unwrap());
    if place == "headers" {
        md.insert(common::RAW_TRAILERS_ONLY, "1".parse().unwrap());
    }
    if let Some(m) = message {
        md.insert(
            common::RAW_MESSAGE,
            common::hex(m.as_bytes()).parse().unwrap(),
        );
    }
    if let Some(d) = details {
        md.insert(
            common::RAW_DETAILS,
            common::hex(d.as_bytes()).parse().unwrap(),
        );
    }
    f.client().empty_call(req).await.unwrap_err()
}

/// tonic's `Status::from_header_map` panics on details that are not base64: a hostile server
/// must not be able to crash the client. grpc-go answers INTERNAL; so do we.
async fn malformed_status_details_are_internal_not_a_client_panic(t: Transport) {
    let f = misbehaving(t).await;
    for place in ["trailers", "headers"] {
        let status = call_answered(&f, place, "5", Some("gone"), Some("not base64!")).await;
        assert_eq!(status.code(), Code::Internal, "{place}: {status:?}");
        assert!(
            status.message().contains("grpc-status-details-bin"),
            "{place}: {status:?}"
        );
        // -bin values may come padded or not (PROTOCOL-HTTP2.md): both decode.
        for (details, bytes) in [
            ("AQID", &[1u8, 2, 3][..]),
            ("AQI=", &[1, 2]),
            ("AQI", &[1, 2]),
        ] {
            let status = call_answered(&f, place, "5", Some("gone"), Some(details)).await;
            assert_eq!(
                status.code(),
                Code::NotFound,
                "{place} {details}: {status:?}"
            );
            assert_eq!(status.details(), bytes, "{place} {details}");
        }
    }
    // The client survived all of that on the same channel.
    f.client().empty_call(Empty {}).await.unwrap();
}

/// PROTOCOL-HTTP2.md: an invalid `grpc-message` must not fail the call or lose the message; at
/// worst the caller gets the raw percent-encoded text. tonic alone turns it into UNKNOWN.
async fn undecodable_grpc_message_keeps_its_code_and_raw_text(t: Transport) {
    let f = misbehaving(t).await;
    for place in ["trailers", "headers"] {
        let status = call_answered(&f, place, "5", Some("bad %FF%FE utf-8"), None).await;
        assert_eq!(status.code(), Code::NotFound, "{place}: {status:?}");
        assert_eq!(status.message(), "bad %FF%FE utf-8", "{place}");
        let status = call_answered(&f, place, "5", Some("caf%C3%A9 100%25"), None).await;
        assert_eq!(
            status.message(),
            "café 100%",
            "{place}: valid encoding decodes"
        );
    }
}

async fn missing_grpc_status_is_unknown(t: Transport) {
    let f = misbehaving(t).await;
    let status = call_with(&f, "x-misbehave", "no-status").await;
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
}

/// A raw request through the channel (a tower Service), as a non-gRPC HTTP client would send it.
async fn raw(
    f: &Fixture,
    method: http::Method,
    content_type: &str,
    body: Vec<u8>,
) -> Result<http::Response<tonic::body::Body>, tonic::Status> {
    let req = http::Request::builder()
        .method(method)
        .uri("/grpc.testing.TestService/EmptyCall")
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(body),
        )))
        .unwrap();
    f.channel.clone().oneshot(req).await
}

async fn wrong_content_type_is_refused_with_415(t: Transport) {
    let f = Fixture::start(t).await;
    let err = raw(&f, http::Method::POST, "application/json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("415"), "{err:?}");
    // Look-alikes are refused too; the genuine forms are accepted.
    let err = raw(
        &f,
        http::Method::POST,
        "application/grpcx",
        vec![0, 0, 0, 0, 0],
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("415"), "{err:?}");
    for ok in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc;charset=utf-8",
    ] {
        let resp = raw(&f, http::Method::POST, ok, vec![0, 0, 0, 0, 0])
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{ok}");
    }
}

async fn non_post_is_refused_with_405(t: Transport) {
    let f = Fixture::start(t).await;
    let err = raw(
        &f,
        http::Method::PUT,
        "application/grpc",
        vec![0, 0, 0, 0, 0],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(err.message().contains("405"), "{err:?}");
}

async fn oversized_header_section_is_resource_exhausted_and_connection_survives(t: Transport) {
    let f = Fixture::start(t).await;
    let status = call_with(&f, "x-big", &"a".repeat(20 * 1024)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    f.client().empty_call(Empty {}).await.unwrap();
}

async fn message_over_the_size_limit_is_resource_exhausted(t: Transport) {
    let f = Fixture::start(t).await;
    let big = vec![1u8; common::MAX_MESSAGE + 1024];
    let err = f
        .client()
        .max_encoding_message_size(usize::MAX)
        .unary_call(SimpleRequest {
            payload: Some(Payload {
                r#type: 0,
                body: big,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    f.client().empty_call(Empty {}).await.unwrap();
}

fn frame(declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&declared_len.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

async fn grpc_status_of(resp: http::Response<tonic::body::Body>) -> (Code, String) {
    use http_body_util::BodyExt;
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&headers))
        .expect("no grpc-status in trailers or headers");
    (status.code(), status.message().to_string())
}

async fn truncated_message_is_internal(t: Transport) {
    let f = Fixture::start(t).await;
    // The length prefix promises 100 bytes; the stream ends after 10.
    let resp = raw(
        &f,
        http::Method::POST,
        "application/grpc",
        frame(100, &[0u8; 10]),
    )
    .await
    .unwrap();
    let (code, msg) = grpc_status_of(resp).await;
    assert_eq!(code, Code::Internal, "{msg}");
    // More bytes than the prefix declares: the rest is a truncated second frame.
    let resp = raw(
        &f,
        http::Method::POST,
        "application/grpc",
        frame(0, &[0xde, 0xad, 0xbe]),
    )
    .await
    .unwrap();
    let (code, msg) = grpc_status_of(resp).await;
    assert_eq!(code, Code::Internal, "{msg}");
    // A prefix cut short (3 of 5 bytes).
    let resp = raw(&f, http::Method::POST, "application/grpc", vec![0, 0, 0])
        .await
        .unwrap();
    let (code, msg) = grpc_status_of(resp).await;
    assert_eq!(code, Code::Internal, "{msg}");
}

async fn malformed_protobuf_is_internal(t: Transport) {
    let f = Fixture::start(t).await;
    let resp = raw(
        &f,
        http::Method::POST,
        "application/grpc",
        frame(3, &[0xff, 0xff, 0xff]),
    )
    .await
    .unwrap();
    let (code, msg) = grpc_status_of(resp).await;
    assert_eq!(code, Code::Internal, "{msg}");
}

async fn malformed_grpc_timeout_is_refused(t: Transport) {
    let f = Fixture::start(t).await;
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/grpc.testing.TestService/EmptyCall")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "soon")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame(0, &[])),
        )))
        .unwrap();
    // Our own client refuses to send it ...
    let err = f.channel.clone().oneshot(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

async fn server_gone_mid_stream_is_unavailable(t: Transport) {
    // The server runs on its own runtime, which is then dropped without any goodbye: no GOAWAY,
    // no CONNECTION_CLOSE — as if the process had been killed.
    let certs = common::certs();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let bound = grpc_h3::Server::builder()
                .tls(
                    grpc_h3::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
                        .unwrap(),
                )
                .wires(grpc_h3::Wires::from(t))
                .add_service(common::service(Default::default()))
                .bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = bound.h3_addr().or(bound.h2_addr()).unwrap();
            tokio::spawn(bound.serve_with_shutdown(std::future::pending()));
            addr_tx.send(addr).unwrap();
        });
        kill_rx.recv().unwrap();
        rt.shutdown_background();
    });
    let addr = addr_rx.recv().unwrap();
    let quic = grpc_h3::QuicSettings::default().idle_timeout(Duration::from_secs(1));
    let channel = common::endpoint(t, addr)
        .quic_settings(quic)
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let params = (0..1000)
        .map(|_| ResponseParameters {
            size: 10,
            interval_us: 10_000,
            ..Default::default()
        })
        .collect();
    let mut stream = test_service_client::TestServiceClient::new(channel.clone())
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    use futures::StreamExt;
    stream.next().await.unwrap().unwrap();
    kill_tx.send(()).unwrap();
    server_thread.join().unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream hung after server died")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("stream ended cleanly although the server died"),
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        started.elapsed()
    );
    // New calls fail fast with UNAVAILABLE too (nothing listens any more).
    let err = test_service_client::TestServiceClient::new(channel)
        .empty_call(Empty {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn garbage_datagrams_and_bytes_do_not_disturb_the_server(t: Transport) {
    use rand_like::fill;
    let f = Fixture::start(t).await;
    let mut buf = [0u8; 1400];
    // UDP: random datagrams of every size class, including ones that look like QUIC long headers.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u32 {
        fill(&mut buf, i);
        if i % 3 == 0 {
            buf[0] = 0xc0; // long header bit + fixed bit
        }
        let len = 1 + (i as usize * 37) % buf.len();
        let _ = udp.send_to(&buf[..len], f.addr);
    }
    // TCP: a connection that sends garbage instead of a TLS ClientHello.
    if let Ok(mut tcp) = std::net::TcpStream::connect(f.addr) {
        use std::io::Write;
        fill(&mut buf, 7);
        let _ = tcp.write_all(&buf);
    }
    for _ in 0..3 {
        f.client().empty_call(Empty {}).await.unwrap();
    }
}

/// A tiny deterministic byte generator (xorshift), enough for garbage input.
mod rand_like {
    pub fn fill(buf: &mut [u8], seed: u32) {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        for b in buf {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
}

async fn silent_clients_are_dropped_after_the_handshake_timeout(t: Transport) {
    // A server with a short handshake timeout; a client that connects and then says nothing.
    let c = common::certs();
    let bound = grpc_h3::Server::builder()
        .tls(grpc_h3::ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::from(t))
        .handshake_timeout(Duration::from_millis(300))
        .add_service(common::service(Default::default()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.h3_addr().or(bound.h2_addr()).unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&c.ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    };
    let tls = |alpn: &[u8]| {
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        std::sync::Arc::new(config)
    };
    let started = std::time::Instant::now();
    match t {
        Transport::H2 => {
            // TLS completes, then no HTTP/2 preface: the server closes the connection.
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(tls(b"h2"));
            let mut stream = connector
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "server kept a silent connection: {read:?}"
            );
        }
        _ => {
            // QUIC completes, a request stream opens, no HEADERS follow: the server resets it.
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls(b"h3")).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint
                .set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
            let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            // One byte of a frame type starts the stream without completing any frame.
            send.write_all(&[0x01]).await.unwrap();
            let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
            assert!(
                matches!(read, Ok(Err(_))),
                "server kept a silent request stream: {read:?}"
            );
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "dropped before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "dropped late: {took:?}");
}

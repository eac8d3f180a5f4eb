//! The transport test matrix: every behaviour below runs over every transport in `matrix!`'s list,
//! from this one definition. Adding a transport adds one line to the macro, never a copy of a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Fixture, Options, certs, endpoint};
use futures::StreamExt;
use grpc_h3::Transport;
use tonic::Code;
use tonic::metadata::MetadataValue;
use zone_proto::grpc_testing::*;

matrix!(
    unary_round_trip_is_byte_exact,
    empty_messages,
    large_messages_both_ways,
    server_streaming_many_messages,
    client_streaming_many_messages,
    bidi_ping_pong,
    many_concurrent_calls_on_one_connection,
    metadata_both_ways,
    error_status_with_details_and_trailers,
    trailers_only_status_on_streams,
    unknown_method_and_service_are_unimplemented,
    client_deadline_exceeded_and_handler_cancelled,
    deadline_on_server_stream,
    dropped_unary_call_cancels_handler,
    dropped_server_stream_cancels_handler,
    dropped_bidi_call_cancels_handler,
    dropped_client_stream_mid_write_ends_handler,
    handler_sees_connection_info,
    interceptor_metadata_reaches_server,
    gzip_compression_both_ways,
    mtls_client_certificate_reaches_handler,
    graceful_shutdown_finishes_in_flight_stream,
    connect_to_closed_port_is_unavailable,
    wrong_ca_is_unavailable,
    client_reconnects_after_server_restart,
    connection_migration_keeps_streams,
);

fn payload(bytes: &[u8]) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: bytes.to_vec(),
    })
}

fn sleep_request(ms: u64) -> SimpleRequest {
    SimpleRequest {
        payload: payload(format!("sleep:{ms}").as_bytes()),
        ..Default::default()
    }
}

async fn unary_round_trip_is_byte_exact(t: Transport) {
    let f = Fixture::start(t).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let resp = f
        .client()
        .unary_call(SimpleRequest {
            payload: payload(&body),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.get_ref().payload.as_ref().unwrap().body, body);
    let resp = f
        .client()
        .unary_call(SimpleRequest {
            response_size: 314_159,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.get_ref().payload.as_ref().unwrap().body.len(), 314_159);
}

async fn empty_messages(t: Transport) {
    let f = Fixture::start(t).await;
    f.client().empty_call(Empty {}).await.unwrap();
    let out = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert!(
        out.is_empty(),
        "empty server stream produced {} items",
        out.len()
    );
    let resp = f
        .client()
        .streaming_input_call(futures::stream::empty())
        .await
        .unwrap();
    assert_eq!(resp.get_ref().aggregated_payload_size, 0);
}

async fn large_messages_both_ways(t: Transport) {
    let f = Fixture::start(t).await;
    let size = 4 * 1024 * 1024 + 17;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let resp = f
        .client()
        .unary_call(SimpleRequest {
            payload: payload(&body),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        resp.get_ref().payload.as_ref().unwrap().body == body,
        "4 MiB payload altered"
    );
    let resp = f
        .client()
        .unary_call(SimpleRequest {
            response_size: size as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.get_ref().payload.as_ref().unwrap().body.len(), size);
}

async fn server_streaming_many_messages(t: Transport) {
    let f = Fixture::start(t).await;
    let params = (0..2_000)
        .map(|i| ResponseParameters {
            size: i % 300,
            ..Default::default()
        })
        .collect();
    let stream = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sizes: Vec<usize> = stream
        .map(|m| m.unwrap().payload.unwrap().body.len())
        .collect()
        .await;
    assert_eq!(sizes.len(), 2_000);
    assert!(
        sizes.iter().enumerate().all(|(i, &s)| s == i % 300),
        "messages out of order or resized"
    );
}

async fn client_streaming_many_messages(t: Transport) {
    let f = Fixture::start(t).await;
    let reqs = (0..1_000).map(|i| StreamingInputCallRequest {
        payload: payload(&vec![1u8; i % 100]),
        ..Default::default()
    });
    let expected: usize = (0..1_000).map(|i| i % 100).sum();
    let resp = f
        .client()
        .streaming_input_call(futures::stream::iter(reqs))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().aggregated_payload_size as usize, expected);
}

async fn bidi_ping_pong(t: Transport) {
    let f = Fixture::start(t).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = f
        .client()
        .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for size in [31_415, 9, 2_653, 58_979, 0, 1] {
        tx.send(StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters {
                size,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        let m = responses.next().await.unwrap().unwrap();
        assert_eq!(m.payload.unwrap().body.len(), size as usize);
    }
    drop(tx);
    assert!(
        responses.next().await.is_none(),
        "stream did not end after the client half-closed"
    );
}

async fn many_concurrent_calls_on_one_connection(t: Transport) {
    common::init_tracing();
    let f = Fixture::start(t).await;
    // 1000 calls held open at once (each handler sleeps) on one connection.
    let calls = (0..1_000).map(|_| {
        let mut c = f.client();
        async move { c.unary_call(sleep_request(300)).await }
    });
    let started = std::time::Instant::now();
    let results = futures::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    // If the calls were serialized by a low stream limit this would take 300 ms × batches.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "1000 concurrent calls took {:?}",
        started.elapsed()
    );
}

async fn metadata_both_ways(t: Transport) {
    let f = Fixture::start(t).await;
    let mut req = tonic::Request::new(Empty {});
    req.metadata_mut()
        .insert("x-echo-initial", "ascii value".parse().unwrap());
    let bin = MetadataValue::from_bytes(&[0u8, 1, 2, 0xfe, 0xff]);
    req.metadata_mut()
        .insert_bin("x-echo-initial-bin", bin.clone());
    let resp = f.client().empty_call(req).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-echo-initial").unwrap(),
        "ascii value"
    );
    assert_eq!(
        resp.metadata()
            .get_bin("x-echo-initial-bin")
            .unwrap()
            .to_bytes()
            .unwrap(),
        bin.to_bytes().unwrap()
    );
}

async fn error_status_with_details_and_trailers(t: Transport) {
    let f = Fixture::start(t).await;
    let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n % percent";
    let err = f
        .client()
        .unary_call(SimpleRequest {
            response_status: Some(EchoStatus {
                code: Code::FailedPrecondition as i32,
                message: message.into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), message);
    assert_eq!(err.details(), b"\x00\x01details\xff");
    assert_eq!(err.metadata().get("x-trailer").unwrap(), "t-value");
    assert_eq!(
        err.metadata()
            .get_bin("x-trailer-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        b"\x00\xfe\xff"
    );
}

async fn trailers_only_status_on_streams(t: Transport) {
    let f = Fixture::start(t).await;
    // Status after some messages: carried in trailers.
    let mut stream = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters {
                size: 5,
                ..Default::default()
            }],
            response_status: Some(EchoStatus {
                code: Code::Aborted as i32,
                message: "after one".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream
            .next()
            .await
            .unwrap()
            .unwrap()
            .payload
            .unwrap()
            .body
            .len(),
        5
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Aborted, "after one"));
    // Status before any message on a bidi stream.
    let first = StreamingOutputCallRequest {
        response_status: Some(EchoStatus {
            code: Code::ResourceExhausted as i32,
            message: "none".into(),
        }),
        ..Default::default()
    };
    let result = f
        .client()
        .full_duplex_call(futures::stream::iter(vec![first]))
        .await;
    let err = match result {
        Err(e) => e,
        Ok(resp) => resp.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(
        (err.code(), err.message()),
        (Code::ResourceExhausted, "none")
    );
}

async fn unknown_method_and_service_are_unimplemented(t: Transport) {
    let f = Fixture::start(t).await;
    let mut c = unimplemented_service_client::UnimplementedServiceClient::new(f.channel.clone());
    assert_eq!(
        c.unimplemented_call(Empty {}).await.unwrap_err().code(),
        Code::Unimplemented
    );
    let mut c = f.client();
    assert_eq!(
        c.half_duplex_call(futures::stream::empty())
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );
}

async fn client_deadline_exceeded_and_handler_cancelled(t: Transport) {
    let f = Fixture::start(t).await;
    let mut req = tonic::Request::new(sleep_request(5_000));
    req.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = f.client().unary_call(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "deadline fired after {:?}",
        started.elapsed()
    );
    f.wait_cancelled(1, Duration::from_secs(3)).await;
    assert_eq!(f.observed.completed.load(Ordering::SeqCst), 0);
}

async fn deadline_on_server_stream(t: Transport) {
    let f = Fixture::start(t).await;
    // 100 messages 50 ms apart would take 5 s; the deadline is 300 ms.
    let params = (0..100)
        .map(|_| ResponseParameters {
            size: 1,
            interval_us: 50_000,
            ..Default::default()
        })
        .collect();
    let mut req = tonic::Request::new(StreamingOutputCallRequest {
        response_parameters: params,
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(300));
    let mut stream = f
        .client()
        .streaming_output_call(req)
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without DEADLINE_EXCEEDED after {received} messages"),
        }
    };
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(received < 100 && received > 0, "received {received}");
    f.wait_cancelled(1, Duration::from_secs(3)).await;
}

async fn dropped_unary_call_cancels_handler(t: Transport) {
    let f = Fixture::start(t).await;
    let mut c = f.client();
    let call = tokio::spawn(async move { c.unary_call(sleep_request(10_000)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.abort();
    f.wait_cancelled(1, Duration::from_secs(3)).await;
    // The connection still serves new calls.
    f.client().empty_call(Empty {}).await.unwrap();
}

async fn dropped_server_stream_cancels_handler(t: Transport) {
    let f = Fixture::start(t).await;
    let params = (0..1_000)
        .map(|_| ResponseParameters {
            size: 10,
            interval_us: 10_000,
            ..Default::default()
        })
        .collect();
    let mut stream = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream); // mid-read
    f.wait_cancelled(1, Duration::from_secs(3)).await;
    f.client().empty_call(Empty {}).await.unwrap();
}

async fn dropped_bidi_call_cancels_handler(t: Transport) {
    let f = Fixture::start(t).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = f
        .client()
        .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The server is mid-way through 100 paced responses, the client's request stream still open.
    // (HTTP/2 via hyper presents a client's RST_STREAM(CANCEL) to the handler's *request* stream as
    // end-of-input; the handler observes the cancel through its response stream closing.)
    let paced = (0..100).map(|_| ResponseParameters {
        size: 3,
        interval_us: 20_000,
        ..Default::default()
    });
    tx.send(StreamingOutputCallRequest {
        response_parameters: paced.collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    responses.next().await.unwrap().unwrap();
    drop(responses);
    f.wait_cancelled(1, Duration::from_secs(3)).await;
    drop(tx);
}

async fn dropped_client_stream_mid_write_ends_handler(t: Transport) {
    let f = Fixture::start(t).await;
    let mut client = f.client();
    // An upload far longer than the test, so the call is dropped mid-write.
    let chunk = StreamingInputCallRequest {
        payload: payload(&[7; 64 * 1024]),
        ..Default::default()
    };
    let call = tokio::spawn(async move {
        let upload = futures::stream::repeat(chunk).take(1_000_000);
        client.streaming_input_call(upload).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let ended = || {
        f.observed.cancelled.load(Ordering::SeqCst) + f.observed.completed.load(Ordering::SeqCst)
    };
    while ended() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler still reads a dropped upload after 3 s over {t}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match common::carried_over(t) {
        // The reset (H3_REQUEST_CANCELLED) ends the request task: the handler is dropped, as a
        // cancelled context is in grpc-go and grpc-java.
        Transport::H3 => assert_eq!(f.observed.cancelled.load(Ordering::SeqCst), 1),
        // tonic reads a CANCELLED request body on the server as the end of input (its decoder
        // maps `Code::Cancelled` on a request to `None`), so over hyper the handler runs on to
        // completion with what arrived; grpc-h3's HTTP/2 server keeps tonic's behaviour.
        _ => assert_eq!(f.observed.completed.load(Ordering::SeqCst), 1),
    }
    f.client().empty_call(Empty {}).await.unwrap();
}

async fn handler_sees_connection_info(t: Transport) {
    let f = Fixture::start(t).await;
    let resp = f.client().empty_call(Empty {}).await.unwrap();
    let md = resp.metadata();
    assert_eq!(
        md.get("x-transport").unwrap(),
        common::carried_over(t).as_str()
    );
    assert_eq!(md.get("x-tls").unwrap(), "1");
    assert_eq!(md.get("x-peer-certs").unwrap(), "0");
    let remote: std::net::SocketAddr = md
        .get("x-remote-addr")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remote.ip().is_loopback());
    assert!(
        md.get("x-user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("grpc-rust-h3/")
    );
    // Auto, with HTTP/3 announced, carries its calls over HTTP/3.
    let expected = if t == Transport::Auto {
        Transport::H3
    } else {
        t
    };
    assert_eq!(f.channel.transport_in_use(), expected);
}

async fn interceptor_metadata_reaches_server(t: Transport) {
    let f = Fixture::start(t).await;
    let mut c = test_service_client::TestServiceClient::with_interceptor(
        f.channel.clone(),
        |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("x-echo-initial", "from-interceptor".parse().unwrap());
            Ok(req)
        },
    );
    let resp = c.empty_call(Empty {}).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-echo-initial").unwrap(),
        "from-interceptor"
    );
}

async fn gzip_compression_both_ways(t: Transport) {
    let f = Fixture::start(t).await;
    let mut c = f
        .client()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let body = vec![7u8; 200_000];
    let resp = c
        .unary_call(SimpleRequest {
            payload: payload(&body),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(resp.get_ref().payload.as_ref().unwrap().body, body);
}

async fn mtls_client_certificate_reaches_handler(t: Transport) {
    let f = Fixture::start_with(
        t,
        Options {
            client_ca: true,
            ..Default::default()
        },
    )
    .await;
    let with_cert = endpoint(t, f.addr)
        .identity_pem(&certs().client_cert_pem, &certs().client_key_pem)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let resp = test_service_client::TestServiceClient::new(with_cert)
        .empty_call(Empty {})
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-peer-certs").unwrap(), "1");
    // Without a client certificate the (optional) mTLS server still serves, with no peer cert.
    let resp = f.client().empty_call(Empty {}).await.unwrap();
    assert_eq!(resp.metadata().get("x-peer-certs").unwrap(), "0");
}

async fn graceful_shutdown_finishes_in_flight_stream(t: Transport) {
    let mut f = Fixture::start(t).await;
    let params = (0..10)
        .map(|_| ResponseParameters {
            size: 100,
            interval_us: 50_000,
            ..Default::default()
        })
        .collect();
    let mut stream = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    f.shutdown();
    let mut rest = 0;
    while let Some(m) = stream.next().await {
        m.unwrap();
        rest += 1;
    }
    assert_eq!(rest, 9, "in-flight stream was cut during drain");
    let server = f.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // New calls after shutdown fail with UNAVAILABLE.
    let err = f.client().empty_call(Empty {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn connect_to_closed_port_is_unavailable(t: Transport) {
    // Bind and drop to find a port with (almost certainly) nothing listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = endpoint(t, addr)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(tonic::Status::from(err).code(), Code::Unavailable);
    let lazy = endpoint(t, addr)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let err = test_service_client::TestServiceClient::new(lazy)
        .empty_call(Empty {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn wrong_ca_is_unavailable(t: Transport) {
    let f = Fixture::start(t).await;
    let other = dev_certs::DevCerts::generate().unwrap();
    let err = grpc_h3::Endpoint::new(format!("https://{}", f.addr))
        .unwrap()
        .transport(t)
        .server_name("localhost")
        .ca_certificate_pem(&other.ca_pem)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert_eq!(tonic::Status::from(err).code(), Code::Unavailable);
}

async fn client_reconnects_after_server_restart(t: Transport) {
    let mut f = Fixture::start(t).await;
    f.client().empty_call(Empty {}).await.unwrap();
    f.shutdown();
    tokio::time::timeout(Duration::from_secs(5), f.server.take().unwrap())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Nothing listens: UNAVAILABLE. (Over HTTP/3 the ICMP port unreachable ends the handshake;
    // where none comes back, only the connect timeout would: keep it short here.)
    let probe = endpoint(t, f.addr)
        .connect_timeout(Duration::from_millis(500))
        .connect_lazy();
    let err = test_service_client::TestServiceClient::new(probe)
        .empty_call(Empty {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // A new server on the same port: the same channel reconnects for later calls.
    let c = certs();
    let bound = grpc_h3::Server::builder()
        .tls(grpc_h3::ServerTls::from_pem(&c.server_cert_pem, &c.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::from(t))
        .add_service(common::service(Default::default()))
        .bind(f.addr)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve_with_shutdown(async {
        let _ = rx.await;
    }));
    f.client().empty_call(Empty {}).await.unwrap();
    drop(tx);
}

async fn connection_migration_keeps_streams(t: Transport) {
    let f = Fixture::start(t).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    if t == Transport::H2 {
        // TCP connections cannot migrate; the channel says so instead of pretending.
        let err = f.channel.rebind(socket).unwrap_err();
        assert!(err.is_unsupported(), "{err:?}");
        return;
    }
    let params = (0..40)
        .map(|_| ResponseParameters {
            size: 1000,
            interval_us: 10_000,
            ..Default::default()
        })
        .collect();
    let mut stream = f
        .client()
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..5 {
        stream.next().await.unwrap().unwrap();
    }
    // Move to a new local UDP port mid-stream (RFC 9000 §9): the stream goes on.
    let new_port = socket.local_addr().unwrap().port();
    f.channel.rebind(socket).unwrap();
    let mut rest = 0;
    while let Some(m) = stream.next().await {
        m.unwrap();
        rest += 1;
    }
    assert_eq!(rest, 35, "stream lost messages across the migration");
    // New calls use the new path; the server sees the new client port.
    let resp = f.client().empty_call(Empty {}).await.unwrap();
    let remote: std::net::SocketAddr = resp
        .metadata()
        .get("x-remote-addr")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        remote.port(),
        new_port,
        "handler saw the pre-migration address"
    );
}

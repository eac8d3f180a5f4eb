//! Stream resets and connection closes sent by a raw peer (h2 / h3-quinn, not our server) become
//! the statuses of PROTOCOL-HTTP2.md's RST_STREAM table and its HTTP/3 translation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;
use test_support::matrix;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use grpc_h3::Transport;
use tonic::Code;
use zone_proto::grpc_testing::Empty;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;

matrix!(
    stream_resets_map_to_statuses,
    connection_close_mid_call_is_unavailable
);

/// What the raw peer does with each request, chosen by the `x-do` request header.
enum Reset {
    H2(::h2::Reason),
    H3(u64),
}

fn table(t: Transport) -> Vec<(Reset, Code)> {
    match t {
        Transport::H2 => vec![
            (Reset::H2(::h2::Reason::CANCEL), Code::Cancelled),
            (Reset::H2(::h2::Reason::REFUSED_STREAM), Code::Unavailable),
            (
                Reset::H2(::h2::Reason::ENHANCE_YOUR_CALM),
                Code::ResourceExhausted,
            ),
            (
                Reset::H2(::h2::Reason::INADEQUATE_SECURITY),
                Code::PermissionDenied,
            ),
            (Reset::H2(::h2::Reason::INTERNAL_ERROR), Code::Internal),
            (Reset::H2(::h2::Reason::PROTOCOL_ERROR), Code::Internal),
            (Reset::H2(::h2::Reason::FLOW_CONTROL_ERROR), Code::Internal),
            (Reset::H2(::h2::Reason::from(0x77)), Code::Unknown),
        ],
        _ => vec![
            (Reset::H3(0x10c), Code::Cancelled),   // H3_REQUEST_CANCELLED
            (Reset::H3(0x10b), Code::Unavailable), // H3_REQUEST_REJECTED
            (Reset::H3(0x107), Code::ResourceExhausted), // H3_EXCESSIVE_LOAD
            (Reset::H3(0x102), Code::Internal),    // H3_INTERNAL_ERROR
            (Reset::H3(0x100), Code::Internal),    // H3_NO_ERROR before trailers
            (Reset::H3(0x105), Code::Internal),    // H3_FRAME_UNEXPECTED
            (Reset::H3(0x10e), Code::Internal),    // H3_MESSAGE_ERROR
            (Reset::H3(0x1234), Code::Unknown),    // unknown code
        ],
    }
}

fn reset_code(r: &Reset) -> u64 {
    match r {
        Reset::H2(reason) => u64::from(u32::from(*reason)),
        Reset::H3(code) => *code,
    }
}

async fn call(channel: &grpc_h3::Channel, action: &str) -> tonic::Status {
    let mut req = tonic::Request::new(Empty {});
    req.metadata_mut().insert("x-do", action.parse().unwrap());
    TestServiceClient::new(channel.clone())
        .empty_call(req)
        .await
        .unwrap_err()
}

async fn stream_resets_map_to_statuses(t: Transport) {
    let addr = raw_peer(t).await;
    let channel = common::endpoint(t, addr).connect().await.unwrap();
    for (reset, want) in table(t) {
        let code = reset_code(&reset);
        let status = call(&channel, &format!("reset-{code}")).await;
        assert_eq!(status.code(), want, "reset code {code:#x}: {status:?}");
    }
}

async fn connection_close_mid_call_is_unavailable(t: Transport) {
    let addr = raw_peer(t).await;
    let channel = common::endpoint(t, addr).connect().await.unwrap();
    let status = call(&channel, "close").await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The channel reconnects for the next call.
    let status = call(
        &channel,
        &format!("reset-{}", if t == Transport::H2 { 8 } else { 0x10c }),
    )
    .await;
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
}

fn server_tls(alpn: &[u8]) -> rustls::ServerConfig {
    let c = common::certs();
    let certs = rustls_pemfile_certs(&c.server_cert_pem);
    let key = rustls::pki_types::PrivateKeyDer::try_from(pem_key(&c.server_key_pem)).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

fn pem_key(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem)
        .unwrap()
        .secret_der()
        .to_vec()
}

fn action(headers: &http::HeaderMap) -> String {
    headers
        .get("x-do")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Starts a raw peer for transport `t` on loopback.
async fn raw_peer(t: Transport) -> SocketAddr {
    match t {
        Transport::H2 => raw_h2_peer().await,
        _ => raw_h3_peer().await,
    }
}

async fn raw_h2_peer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(b"h2")));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = ::h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let what = action(req.headers());
                    if let Some(code) = what.strip_prefix("reset-") {
                        respond.send_reset(::h2::Reason::from(code.parse::<u32>().unwrap()));
                    } else if what == "close" {
                        // Close the whole connection abruptly (no GOAWAY).
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn raw_h3_peer() -> SocketAddr {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls(b"h3")).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let quic = conn.clone();
                let Ok(mut h3) =
                    ::h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn))
                        .await
                else {
                    return;
                };
                while let Ok(Some(resolver)) = h3.accept().await {
                    let Ok((req, mut stream)) = resolver.resolve_request().await else {
                        continue;
                    };
                    let what = action(req.headers());
                    if let Some(code) = what.strip_prefix("reset-") {
                        let code = ::h3::error::Code::from(code.parse::<u64>().unwrap());
                        stream.stop_stream(code);
                        stream.stop_sending(code);
                    } else if what == "close" {
                        quic.close(quinn::VarInt::from_u32(0x100), b"bye");
                        return;
                    }
                }
            });
        }
    });
    addr
}

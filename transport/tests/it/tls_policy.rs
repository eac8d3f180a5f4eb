//! TLS policy facing the internet: QUIC is TLS 1.3 only (RFC 9001 §4.2), and the HTTP/2 listener
//! negotiates only TLS 1.3 suites or ECDHE key exchange with AEAD ciphers (RFC 9113 §9.2.2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;

use std::sync::Arc;
use std::time::Duration;

use common::Fixture;
use grpc_h3::Transport;
use rustls::pki_types::pem::PemObject;

fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&common::certs().ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn client_config(
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots())
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Connects a raw quinn client with `config`; `Err` says where it failed.
async fn quic_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| format!("config refused: {e}"))?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint
        .connect(addr, "localhost")
        .map_err(|e| format!("connect refused: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(conn)) => {
            conn.close(0u32.into(), b"done");
            Ok(())
        }
        Ok(Err(e)) => Err(format!("handshake failed: {e}")),
        Err(_) => Err("handshake timed out".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_is_tls13_only() {
    let f = Fixture::start(Transport::H3).await;
    let ring = rustls::crypto::ring::default_provider;

    // Control: the same raw client with TLS 1.3 gets in, so the refusals below are about TLS.
    quic_connect(
        f.addr,
        client_config(ring(), &[&rustls::version::TLS13], b"h3"),
    )
    .await
    .expect("TLS 1.3 QUIC client must connect");

    // A client limited to TLS 1.2 cannot run QUIC at all: rustls refuses to start the session.
    // (Not through quinn: quinn-proto 0.11 accepts such a config and then panics on its `unwrap`
    // of this error when connecting; grpc_h3's own client always builds TLS 1.3 for HTTP/3.)
    let tls12 = rustls::quic::ClientConnection::new(
        client_config(ring(), &[&rustls::version::TLS12], b"h3"),
        rustls::quic::Version::V1,
        "localhost".try_into().unwrap(),
        vec![],
    );
    let Err(err) = tls12 else {
        panic!("a TLS 1.2-only QUIC session started");
    };
    eprintln!("TLS 1.2-only QUIC client: {err}");
    assert!(err.to_string().contains("TLS 1.3"), "{err}");

    // Nor can one whose provider has only TLS 1.2 suites (no QUIC Initial suite).
    let mut tls12_suites = ring();
    tls12_suites
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS12);
    let suites_only = quic_connect(
        f.addr,
        client_config(tls12_suites, &[&rustls::version::TLS12], b"h3"),
    )
    .await;
    eprintln!("TLS 1.2-suites QUIC client: {suites_only:?}");
    assert!(suites_only.is_err_and(|e| e.starts_with("config refused")));
}

/// Handshakes with the HTTP/2 listener; the negotiated version and suite, or the error.
async fn h2_handshake(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(rustls::ProtocolVersion, rustls::CipherSuite), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let (_, conn) = stream.get_ref();
    Ok((
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap().suite(),
    ))
}

/// TLS 1.3 suites, or TLS 1.2 with ECDHE key exchange and an AEAD cipher.
fn is_sane(suite: rustls::CipherSuite) -> bool {
    let name = format!("{suite:?}");
    name.starts_with("TLS13_")
        || (name.starts_with("TLS_ECDHE_")
            && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_negotiates_only_modern_aead_suites() {
    let f = Fixture::start(Transport::H2).await;
    let ring = rustls::crypto::ring::default_provider;

    let (version, suite) = h2_handshake(f.addr, client_config(ring(), rustls::ALL_VERSIONS, b"h2"))
        .await
        .unwrap();
    eprintln!("default client: {version:?} {suite:?}");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert!(is_sane(suite), "{suite:?}");

    // Every suite a client could insist on, one at a time: each is refused or is sane.
    let mut accepted = Vec::new();
    for only in ring().cipher_suites {
        let mut provider = ring();
        provider.cipher_suites = vec![only];
        let versions: &[&'static rustls::SupportedProtocolVersion] = match only.version().version {
            rustls::ProtocolVersion::TLSv1_3 => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS12],
        };
        let result = h2_handshake(f.addr, client_config(provider, versions, b"h2")).await;
        if let Ok((_, suite)) = result {
            assert!(is_sane(suite), "server accepted {suite:?}");
            accepted.push(suite);
        }
    }
    eprintln!("suites the HTTP/2 listener accepts: {accepted:?}");
    assert!(!accepted.is_empty());
}

#[test]
fn is_sane_rejects_weak_suites() {
    use rustls::CipherSuite as S;
    assert!(is_sane(S::TLS13_AES_128_GCM_SHA256));
    assert!(is_sane(S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
    assert!(is_sane(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256));
    assert!(!is_sane(S::TLS_RSA_WITH_AES_128_CBC_SHA));
    assert!(!is_sane(S::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256));
    assert!(!is_sane(S::TLS_RSA_WITH_AES_128_GCM_SHA256));
}

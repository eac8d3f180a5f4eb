//! QUIC's anti-amplification limit (RFC 9000 §8.1): before a client's address is validated, the
//! HTTP/3 server sends at most three times the bytes it received from that address.
//!
//! A UDP relay on loopback sits between a quinn client and the grpc_h3 server. It forwards the
//! client's Initial datagrams until the server first answers and never anything after, so the
//! server never sees a Handshake packet and never validates the address; it records everything
//! the server sends for two seconds (covering several retransmission timeouts). The server's
//! certificate carries hundreds of SANs, so its first flight is far larger than 3× the Initial:
//! only the limit keeps it under.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use grpc_h3::{Server, ServerTls};
use rustls::pki_types::pem::PemObject;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use test_support::fixture as common;

/// A self-signed certificate of ~`sans` × 60 bytes, and its key.
fn huge_certificate(sans: usize) -> (String, String) {
    let names: Vec<String> = (0..sans)
        .map(|i| format!("host-{i:05}.a-deliberately-long-subdomain-label.example.test"))
        .collect();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[derive(Debug, Default)]
struct Tally {
    /// Client datagrams forwarded to the server, and their bytes.
    forwarded: usize,
    received_by_server: usize,
    /// Client datagrams dropped (everything after the server's first answer).
    dropped: usize,
    /// Server datagrams and bytes.
    server_datagrams: usize,
    sent_by_server: usize,
}

/// Relays between the client (whoever writes to `relay` first) and `server` for `window`.
async fn relay(relay: UdpSocket, server: SocketAddr, window: Duration) -> Tally {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tally = Tally::default();
    let mut client: Option<SocketAddr> = None;
    let (mut from_client, mut from_server) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    let end = Instant::now() + window;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            got = relay.recv_from(&mut from_client) => {
                let (n, from) = got.unwrap();
                client.get_or_insert(from);
                // Long header, type Initial (RFC 9000 §17.2.2), and the server has not spoken yet.
                let initial = from_client[0] & 0xf0 == 0xc0;
                if initial && tally.server_datagrams == 0 {
                    upstream.send_to(&from_client[..n], server).await.unwrap();
                    tally.forwarded += 1;
                    tally.received_by_server += n;
                } else {
                    tally.dropped += 1;
                }
            }
            got = upstream.recv_from(&mut from_server) => {
                let (n, _) = got.unwrap();
                tally.server_datagrams += 1;
                tally.sent_by_server += n;
                if let Some(client) = client {
                    let _ = relay.send_to(&from_server[..n], client).await;
                }
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvalidated_address_gets_at_most_three_times_its_bytes() {
    let (cert_pem, key_pem) = huge_certificate(300);
    let chain_len: usize = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap().len())
        .sum();
    let bound = Server::builder()
        .tls(ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap())
        .wires(grpc_h3::Wires::H3)
        // The half-open connection would otherwise hold shutdown for the default drain.
        .drain_timeout(Duration::from_millis(200))
        .add_service(common::service(Default::default()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server_addr = bound.h3_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    let relay_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_socket.local_addr().unwrap();
    let relaying = tokio::spawn(relay(relay_socket, server_addr, Duration::from_secs(2)));

    // A real client Initial; the client never gets far enough to check the certificate.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint
        .connect(
            relay_addr,
            "host-00000.a-deliberately-long-subdomain-label.example.test",
        )
        .unwrap();
    let handshake = tokio::time::timeout(Duration::from_millis(2500), connecting).await;

    let tally = relaying.await.unwrap();
    let _ = stop.send(());
    let _ = server.await;
    eprintln!(
        "client → server: {} datagram(s), {} bytes ({} later client datagrams dropped); \
         server → client: {} datagrams, {} bytes = {:.2}× (limit 3×); certificate {} bytes",
        tally.forwarded,
        tally.received_by_server,
        tally.dropped,
        tally.server_datagrams,
        tally.sent_by_server,
        tally.sent_by_server as f64 / tally.received_by_server.max(1) as f64,
        chain_len,
    );
    assert!(
        !matches!(handshake, Ok(Ok(_))),
        "the handshake completed: the relay let the address be validated"
    );
    assert!(tally.received_by_server >= 1200, "{tally:?}");
    assert!(
        tally.sent_by_server > 0,
        "the server never answered: {tally:?}"
    );
    assert!(
        tally.dropped > 0,
        "the client never tried to continue: {tally:?}"
    );
    // Without the limit the certificate alone would exceed the allowance.
    assert!(
        chain_len > 3 * tally.received_by_server,
        "{chain_len} {tally:?}"
    );
    assert!(
        tally.sent_by_server <= 3 * tally.received_by_server,
        "amplification: {tally:?}"
    );
}

//! quinn endpoint construction and QUIC transport configuration (RFC 9000) for both sides of the
//! HTTP/3 wire.
//!
//! - `settings`: `QuicSettings`, the transport parameters and local knobs of an endpoint, and the
//!   quinn `TransportConfig` built from them.
//! - `mtu`: path MTU (RFC 9000 §14): a loopback peer's MTU, known without a search, and the
//!   initial congestion window for it (RFC 9002 §7.2).
//! - `socket`: `QuicSocket`, quinn's UDP socket on tokio with GSO batches over the kernel's
//!   per-call limit split, and a short receive batch taken as an empty queue.
//!
//! Defaults and why:
//! - `max_concurrent_bidi_streams` 1024: each gRPC call is one bidi stream and the transport must
//!   carry ≥ 1000 calls in flight; quinn's 100 throttles 256-way concurrency.
//! - Stream window 2 MiB, connection window 16 MiB: the HTTP/2 wire's values, so the two wires
//!   are compared on equal flow-control footing.
//! - Cubic congestion control (quinn's default). BBR is selectable and holds up far better under
//!   random loss (≥ 1 %), where Cubic keeps halving its window (docs/netlab/report.md).
//! - Idle timeout 30 s; keep-alive off unless configured, as for HTTP/2.
//! - Loopback peers use the loopback route's MTU (~64 KiB, read from the kernel) without a search
//!   (`QuicSettings::loopback_mtu`), as TCP takes its segment size from the interface. The
//!   client starts at it; the server, bound by the anti-amplification limit until the address is
//!   validated (RFC 9000 §8.1), searches up to `mtu::MAX_PROBE` after the handshake. Endpoints
//!   announce quinn's largest `max_udp_payload_size` (RFC 9000 §18.2) so that their peers may do
//!   the same.
//! - `mtu_upper_bound` 1452 (quinn's) on every other path. A larger bound helps jumbo-frame paths,
//!   but every new connection pays for the longer search (~1.5 ms of set-up on loopback at 65527).
//!   And quinn-proto 0.11 gates CONNECTION_CLOSE behind congestion control, so a connection closed
//!   while a large MTU probe is in flight never tells its peer, which holds the connection until
//!   its idle timeout: quinn-rs/quinn#2785, fixed upstream by quinn-rs/quinn#2787 (unreleased).
//!   Keep 1452 as the default; revisit when a quinn-proto release includes #2787.
//! - UDP socket buffers of 1 MiB (Linux's default is 208 KiB): with less, the kernel drops
//!   datagrams under bulk load (`RcvbufErrors` in /proc/net/snmp) and QUIC takes the drops for
//!   congestion; with more, small calls queue behind bulk data in the socket (unary p99 ~1.4×
//!   with 4 MiB). The kernel caps the request at `net.core.rmem_max`/`wmem_max`.
//!
//! Measurements behind these defaults: docs/performance-notes.md.

mod mtu;
mod settings;
pub(crate) mod socket;
pub(crate) mod unreachable;

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) use mtu::wildcard_for;
pub use settings::{CongestionControl, QuicSettings};

use crate::error::{Error, Kind};
use mtu::{KnownMtu, MAX_PROBE};

/// The quinn client config for one endpoint (TLS 1.3 with ALPN `h3`).
pub(crate) fn client_config(
    tls: Arc<rustls::ClientConfig>,
    settings: &QuicSettings,
) -> Result<quinn::ClientConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::with(Kind::Config, e).context("QUIC client TLS"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(settings.transport_config()?);
    Ok(config)
}

/// The quinn server config (TLS 1.3 with ALPN `h3`). Early data (0-RTT) stays off: rustls'
/// `max_early_data_size` defaults to 0, which quinn maps to "no 0-RTT" (RFC 9001 §4.6.1).
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    settings: &QuicSettings,
) -> Result<quinn::ServerConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::with(Kind::Config, e).context("QUIC server TLS"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(settings.transport_config()?);
    Ok(config)
}

/// The server config for a connection from `peer`, when it differs from the endpoint's `base`:
/// a loopback peer's path MTU is known ([`QuicSettings::loopback_mtu`]) and searched for after
/// the handshake, up to [`MAX_PROBE`]. `None` = use `base`.
pub(crate) fn server_config_for(
    base: &quinn::ServerConfig,
    settings: &QuicSettings,
    peer: SocketAddr,
) -> Option<Arc<quinn::ServerConfig>> {
    let mtu = settings.known_path_mtu(peer)?;
    match settings.build_transport_config(Some(KnownMtu::SearchTo(mtu.min(MAX_PROBE)))) {
        Ok(transport) => {
            let mut config = base.clone();
            config.transport_config(transport);
            Some(Arc::new(config))
        }
        Err(err) => {
            // Not reached: the same settings built `base`'s transport config.
            tracing::debug!(%peer, error = %err, "per-peer QUIC transport config");
            None
        }
    }
}

/// A UDP socket bound to `addr` with `settings`' buffer sizes, for a quinn endpoint.
fn udp_socket(
    addr: std::net::SocketAddr,
    settings: &QuicSettings,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer than asked for still works, only with more drops under load.
    if let Err(err) = socket.set_recv_buffer_size(settings.udp_buffer_size) {
        tracing::debug!(error = %err, "could not set the UDP receive buffer size");
    }
    if let Err(err) = socket.set_send_buffer_size(settings.udp_buffer_size) {
        tracing::debug!(error = %err, "could not set the UDP send buffer size");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A quinn endpoint on `addr`: a server when `server` is given, else a client.
/// `reset_secret` keys the stateless-reset tokens (a stable one lets a restarted server reset its
/// predecessor's connections, RFC 9000 §10.3); `None` = a random key, as quinn does by default.
pub(crate) fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
    reset_secret: Option<[u8; 32]>,
    settings: &QuicSettings,
) -> std::io::Result<quinn::Endpoint> {
    let socket = udp_socket(addr, settings)?;
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(reset_secret, settings)?,
        server,
        socket::QuicSocket::wrap(socket)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// A client endpoint on `addr` whose socket reports ICMP "unreachable" destinations to
/// `unreachable` (see the `unreachable` module).
pub(crate) fn client_endpoint(
    addr: std::net::SocketAddr,
    settings: &QuicSettings,
    unreachable: tokio::sync::watch::Sender<Option<std::net::SocketAddr>>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = udp_socket(addr, settings)?;
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(None, settings)?,
        None,
        socket::QuicSocket::wrap_watched(socket, unreachable)?,
        Arc::new(quinn::TokioRuntime),
    )
}

fn endpoint_config(
    reset_secret: Option<[u8; 32]>,
    settings: &QuicSettings,
) -> std::io::Result<quinn::EndpointConfig> {
    let mut config = match reset_secret {
        Some(secret) => {
            let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &secret,
            )));
            // quinn's connection IDs carry a keyed check that drops packets with forged IDs
            // before any work; with its per-process random key a restarted server would also
            // drop (not reset) its predecessor's connections. Keyed from the same secret.
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"grpc-h3 connection id key\0");
            ctx.update(&secret);
            let mut cid_key = [0; 8];
            cid_key.copy_from_slice(&ctx.finish().as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            config.cid_generator(move || {
                Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            });
            config
        }
        None => quinn::EndpointConfig::default(),
    };
    // The largest datagram we accept, sent to the peer as `max_udp_payload_size` (RFC 9000
    // §18.2): it caps the peer's datagrams. quinn's 1472 would hold loopback and jumbo paths to
    // Ethernet size whatever `mtu_upper_bound` and `loopback_mtu` say.
    config
        .max_udp_payload_size(settings.max_udp_payload_size())
        .map_err(std::io::Error::other)?;
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::mtu::{MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD, initial_window};
    use super::*;

    /// Sends `total` bytes from a loopback server to a client, both built as the crate builds them
    /// (per-peer transport configs included); returns the server's and the client's statistics.
    async fn transfer(
        settings: &QuicSettings,
        total: usize,
    ) -> (quinn::ConnectionStats, quinn::ConnectionStats) {
        transfer_between(settings, settings, total).await
    }

    /// [`transfer`] with different settings for the server and the client.
    async fn transfer_between(
        settings: &QuicSettings,
        client_settings: &QuicSettings,
        total: usize,
    ) -> (quinn::ConnectionStats, quinn::ConnectionStats) {
        let certs = dev_certs::DevCerts::generate().unwrap();
        let tls = crate::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
            .unwrap()
            .server_config(crate::tls::ALPN_H3)
            .unwrap();
        let base = server_config(tls, settings).unwrap();
        let server = endpoint(
            "127.0.0.1:0".parse().unwrap(),
            Some(base.clone()),
            None,
            settings,
        )
        .unwrap();
        let server_addr = server.local_addr().unwrap();
        let mut client_tls = crate::tls::ClientTls::default();
        client_tls.roots = Some(crate::tls::roots_from_pem(&certs.ca_pem, "CA").unwrap());
        let client_tls = client_tls.client_config(crate::tls::ALPN_H3).unwrap();
        let client = endpoint("127.0.0.1:0".parse().unwrap(), None, None, client_settings).unwrap();
        let mut config = client_config(client_tls, client_settings).unwrap();
        config.transport_config(client_settings.transport_config_to(server_addr).unwrap());

        let server_settings = settings.clone();
        let sender = tokio::spawn(async move {
            let incoming = server.accept().await.unwrap();
            let peer = incoming.remote_address();
            let conn = match server_config_for(&base, &server_settings, peer) {
                Some(config) => incoming.accept_with(config),
                None => incoming.accept(),
            }
            .unwrap()
            .await
            .unwrap();
            let mut send = conn.open_uni().await.unwrap();
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            for _ in 0..total / chunk.len() {
                send.write_chunk(chunk.clone()).await.unwrap();
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
            let stats = conn.stats();
            conn.close(0u32.into(), b"");
            stats
        });
        // Bounded: a connection stuck (say, behind a congestion window smaller than one
        // datagram) fails the test instead of hanging it.
        let conn = tokio::time::timeout(Duration::from_secs(60), async {
            let conn = client
                .connect_with(config, server_addr, "localhost")
                .unwrap()
                .await
                .unwrap();
            let mut recv = conn.accept_uni().await.unwrap();
            let mut received = 0;
            while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
                received += chunk.bytes.len();
            }
            assert_eq!(received, total);
            conn
        })
        .await
        .expect("transfer stalled");
        let server_stats = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .unwrap()
            .unwrap();
        (server_stats, conn.stats())
    }

    /// By default a loopback client starts at the loopback route's MTU and never probes (the path
    /// is this host); the server searches up to `MAX_PROBE`. A bulk transfer keeps that size (no
    /// black hole: GSO batches of such datagrams must stay within one `sendmsg`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_connections_use_the_route_mtu() {
        let settings = QuicSettings::default();
        let Some(mtu) = settings.known_path_mtu("127.0.0.1:443".parse().unwrap()) else {
            eprintln!("skipped: the loopback route's MTU is not readable here (non-Linux?)");
            return;
        };
        assert!(mtu > 1472, "loopback payload {mtu}");
        let (server, client) = transfer(&settings, 64 * 1024 * 1024).await;
        let client = &client.path;
        assert_eq!(client.current_mtu, mtu, "{client:?}");
        assert_eq!(client.sent_plpmtud_probes, 0, "{client:?}");
        assert_eq!(client.black_holes_detected, 0, "{client:?}");
        // The server may not start there (tests/amplification.rs): it searches up to MAX_PROBE,
        // to within quinn's default minimum change of 20 bytes.
        let server = &server.path;
        let target = mtu.min(MAX_PROBE);
        assert!(
            (target - 20..=target).contains(&server.current_mtu),
            "{server:?}"
        );
        assert_eq!(server.lost_plpmtud_probes, 0, "{server:?}");
        assert_eq!(server.black_holes_detected, 0, "{server:?}");
    }

    /// By default each end asks the other for a 2 ms `max_ack_delay` (`peer_ack_delay`), which
    /// shortens the probe timeout; `None` asks nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_ends_ask_the_peer_for_a_short_ack_delay_unless_told_not_to() {
        // Default: each end sends an ACK_FREQUENCY frame (draft-ietf-quic-ack-frequency).
        let (server, client) = transfer(&QuicSettings::default(), 64 * 1024).await;
        assert!(server.frame_rx.ack_frequency >= 1, "{:?}", server.frame_rx);
        assert!(client.frame_rx.ack_frequency >= 1, "{:?}", client.frame_rx);
        let off = QuicSettings::default().peer_ack_delay(None);
        let (server, client) = transfer(&off, 64 * 1024).await;
        assert_eq!(server.frame_rx.ack_frequency, 0, "{:?}", server.frame_rx);
        assert_eq!(client.frame_rx.ack_frequency, 0, "{:?}", client.frame_rx);
    }

    /// A loopback client announcing a small `max_udp_payload_size` (as quinn's defaults do) still
    /// gets the server's datagrams up to that size: the server searches rather than jumping to
    /// a size the client may refuse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_announcing_less_caps_the_servers_search() {
        let client_settings = QuicSettings {
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        let (server, _) =
            transfer_between(&QuicSettings::default(), &client_settings, 4 * 1024 * 1024).await;
        let path = &server.path;
        assert!((1452 - 20..=1452).contains(&path.current_mtu), "{path:?}");
    }

    /// Switched off, loopback connections start at QUIC's minimum and search no higher than
    /// `mtu_upper_bound`, as on any other path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_loopback_mtu_connections_search_up_to_the_bound() {
        let settings = QuicSettings {
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        assert_eq!(
            settings.known_path_mtu("127.0.0.1:443".parse().unwrap()),
            None
        );
        let (server, _) = transfer(&settings, 4 * 1024 * 1024).await;
        assert!(server.path.current_mtu <= 1452, "{:?}", server.path);
    }

    /// At an Ethernet-size MTU a bulk sender fills one `sendmsg` per GSO batch: up to 45
    /// datagrams of 1452 bytes, where quinn 0.11 stops at 10 (patches/quinn). More than 10
    /// datagrams per transmit on average is impossible without the patch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_gso_batches_fill_one_sendmsg() {
        let settings = QuicSettings {
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let probe = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
        if probe.max_gso_segments() < 16 {
            eprintln!("skipped: no UDP GSO on this host's loopback");
            return;
        }
        let (server, _) = transfer(&settings, 8 * 1024 * 1024).await;
        let per_transmit = server.udp_tx.datagrams as f64 / server.udp_tx.ios as f64;
        assert!(
            per_transmit > 10.0,
            "{per_transmit:.1}: {:?}",
            server.udp_tx
        );
        assert!(server.path.current_mtu <= 1452, "{:?}", server.path);
    }

    /// Only loopback peers have a known path MTU; a v4-mapped loopback peer (on a dual-stack
    /// socket) is one, and travels as IPv4.
    #[test]
    fn only_loopback_paths_are_known() {
        let settings = QuicSettings::default();
        for peer in ["192.0.2.1:443", "[2001:db8::1]:443", "0.0.0.0:443"] {
            assert_eq!(
                settings.known_path_mtu(peer.parse().unwrap()),
                None,
                "{peer}"
            );
        }
        let v4 = settings.known_path_mtu("127.0.0.1:443".parse().unwrap());
        if let Some(v4) = v4 {
            assert!((1473..=65_507).contains(&v4), "{v4}");
        }
        let mapped = settings.known_path_mtu("[::ffff:127.0.0.1]:443".parse().unwrap());
        assert_eq!(mapped, v4);
        if let Some(v6) = settings.known_path_mtu("[::1]:443".parse().unwrap()) {
            assert!((1473..=65_488).contains(&v6), "{v6}");
        }
    }

    /// The initial congestion window follows RFC 9002 §7.2 for the known MTU, so the first flight
    /// may hold two full datagrams (quinn's default of 14 720 bytes would hold none of 64 KiB).
    #[test]
    fn initial_window_scales_with_the_datagram_size() {
        assert_eq!(initial_window(1200), 12_000);
        assert_eq!(initial_window(1452), 14_520);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(65_507), 131_014);
    }

    /// A loopback-MTU endpoint announces that it takes quinn's largest datagrams; otherwise the
    /// announcement is the search bound, within QUIC's limits.
    #[test]
    fn announced_payload_size_follows_the_setting() {
        let on = QuicSettings::default();
        assert_eq!(on.max_udp_payload_size(), MAX_UDP_PAYLOAD);
        let off = QuicSettings {
            loopback_mtu: false,
            mtu_upper_bound: 9000,
            ..QuicSettings::default()
        };
        assert_eq!(off.max_udp_payload_size(), 9000);
        let tiny = QuicSettings {
            loopback_mtu: false,
            mtu_upper_bound: 100,
            ..QuicSettings::default()
        };
        assert_eq!(tiny.max_udp_payload_size(), MIN_UDP_PAYLOAD);
    }

    /// With a raised `mtu_upper_bound` (and the known loopback MTU off), a bulk transfer on
    /// loopback searches up to loopback's large MTU and keeps it. Two defects held it to 1472 or
    /// 1200 bytes: quinn's default `max_udp_payload_size` (1472) capped the peer's MTU search, and
    /// with it lifted, GSO batches over 64 KiB were lost without an error, which quinn's
    /// black-hole detector took for an MTU black hole (see `socket`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_transfer_on_loopback_keeps_a_large_mtu() {
        let settings = QuicSettings {
            mtu_upper_bound: 65_527,
            loopback_mtu: false,
            ..QuicSettings::default()
        };
        let (stats, _) = transfer(&settings, 256 * 1024 * 1024).await;
        assert!(
            stats.path.current_mtu > 1472,
            "sender's MTU {} (black holes {}, lost packets {})",
            stats.path.current_mtu,
            stats.path.black_holes_detected,
            stats.path.lost_packets
        );
        assert_eq!(stats.path.black_holes_detected, 0, "{:?}", stats.path);
    }
}

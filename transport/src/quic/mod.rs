//! quinn endpoint and transport configuration (RFC 9000) for both sides of the HTTP/3 wire.
//!
//! Defaults and why:
//! - `max_concurrent_bidi_streams` 1024: quinn's 100 throttles 256-way concurrent benchmarks and
//!   the ≥ 1000 in-flight streams the transport must carry (each gRPC call is one bidi stream).
//! - stream window 2 MiB / connection window 16 MiB (quinn: 1.25 MB / unlimited-ish): the same as the
//!   HTTP/2 wire, so the two are compared on equal flow-control footing.
//! - Cubic congestion control (quinn's default); BBR is selectable and holds up far better under
//!   random loss (≥ 1 %), where Cubic keeps halving its window.
//! - idle timeout 30 s; keep-alive off unless configured (as for HTTP/2).
//! - `mtu_upper_bound` 1452 (quinn's), announced as `max_udp_payload_size` too: a larger bound
//!   doubles bulk throughput on loopback and jumbo-frame paths but costs every new connection a
//!   longer MTU search (numbers in the session-4 notes below and on the field).
//! - UDP socket buffers of 1 MiB (Linux defaults to 208 KiB): with a few MiB in flight the
//!   default receive buffer overflowed and the kernel dropped datagrams (`RcvbufErrors` in
//!   /proc/net/snmp), which QUIC took for congestion — 64 KiB unary calls at c=32 ran at a
//!   quarter of HTTP/2's rate, server streams at ~0.6× of what they reach now. Bigger is not
//!   better: a 4 MiB buffer queues small calls behind bulk data (bufferbloat in the socket) —
//!   in `zone-bench --soak --soak-secs 20 --wire h3` (unary mixed with bulk streams on one
//!   connection) unary p99 was 30–33 ms with 4 MiB against 21–23 ms with 1 MiB (208 KiB: 13–17
//!   ms, but stream-64k fell from ~5 to 3.2 Gbit/s), at the same rates and bulk throughput. The
//!   kernel caps the request at `net.core.rmem_max`/`wmem_max`.
//!
//! ## Where HTTP/3 time goes (profiled 2026-11-24, `perf record --call-graph dwarf` on
//! `zone-bench --quick --scenario stream-64k`, loopback, 2 cores)
//!
//! - Bulk transfer (64 KiB messages): H3 reaches ~0.56× HTTP/2's Gbit/s at ~1.7× the CPU per GiB.
//!   Of the samples, ~13 % are `memmove` and ~15 % AES-GCM, nearly all inside quinn's connection
//!   driver (packet assembly in `poll_transmit`/`write_stream_frames`, decode in `handle_decode`,
//!   `recvmmsg`). QUIC encrypts and frames every ~1.4 KB datagram in user space, where HTTP/2 over
//!   TCP hands the kernel 16 KiB TLS records and 64 KiB segments; this crate's own code
//!   (`serve_request`, the body adapters) is under 2 %. GSO/GRO are on.
//! - 64 KiB unary at c=32 ran at 0.25× HTTP/2 until the UDP buffers were raised (kernel drops seen
//!   as `RcvbufErrors`); now ~0.45–0.5×, the same per-packet costs bounding it.
//! - Small unary calls: ours ran at ~0.67× tonic-h3's rate at c=32 although both sit on h3 and
//!   quinn. Ruled out by experiment: the per-request JoinSet, the STOP_SENDING watch, the UDP
//!   buffer size. Part of it was the empty-DATA filter queueing every chunk: clean chunks now pass
//!   whole (0.73–0.79×). Session 2 (`zone-bench --wire h3` vs `--wire tonic-h3`, `perf record
//!   -F 4999`, samples per 1000 calls): ours 607, tonic-h3 498; the excess is spread thin — libc
//!   `memmove` 33 vs 23, malloc/free, `quinn_proto` 57 vs 43, `http` header parsing, our own
//!   code 23 vs 15 for h3-quinn + h3-util + axum-h3. The one big item was future size: a call's
//!   future was 35 KiB (the ~10 KiB connect future and the 0-RTT/retry paths inlined, and one
//!   async block over all wires), memcpy'd as it was boxed; now ~4 KiB (connect, 0-RTT and the
//!   GOAWAY retry are boxed slow paths; `client::channel` tests bound it). Packets per call are
//!   not the problem: quinn's `ConnectionStats` show ~1.0 datagram per call from the client and
//!   ~0.7 from the server. CPU µs per call at c=32: h2 ~50, ours ~85–90, tonic-h3 ~65.
//! - Session 3 (2026-12-04): DATA payloads now reach quinn as their own `Bytes`
//!   (`backend::send_payload`, quinn's `write_chunks`) instead of being copied by `poll_write`.
//!   The copy was small: `memmove` stayed at ~11 % of the samples either way (`perf record -F
//!   999` on `zone-bench --scenario stream-64k --wire h3`); nearly all of it is quinn's packet
//!   assembly and receive path. Throughput did not move beyond run-to-run spread, which is large
//!   on this path (2.2–3.8 Gbit/s for the same build, `--reps 5 --duration 3`). A lead for that
//!   spread: `Udp: RcvbufErrors` in /proc/net/snmp rises by 50–160 per 9 s of stream-64k with
//!   the 1 MiB buffers — the receiving runtime falls behind, the kernel drops datagrams, and the
//!   congestion controller takes each drop for congestion (on loopback, Cubic's time-based
//!   regrowth is slow next to the µs RTT). TCP never loses there: its window follows the socket
//!   buffer. Flow-control windows (2 MiB stream / 16 MiB connection) far exceed what the socket
//!   buffer holds, so they do not prevent it. Tried the same day (env-overridden defaults in a
//!   scratch build, `zone-bench --scenario stream-64k --wire h3 --reps 3 --duration 3`, two
//!   rounds, drops = RcvbufErrors delta): 1 MiB buffers 1.78 / 3.31 Gbit/s (260 / 22 drops);
//!   4 MiB 2.99 / 3.52 (0 / 0); 1 MiB connection + 512 KiB stream window 2.83 / 2.59 (0 / 0);
//!   BBR 2.99 / 2.41 (67 / 238); MTU capped at 1452 2.96 / 2.89 (33 / 45). So the drops explain
//!   the bad rounds, not the level: without any drop the stream stays CPU-bound at 4.3–5.0 CPU
//!   s/GiB (h2 ~2.3), and a 1452-byte MTU costs no throughput, so per-datagram work is not what
//!   bounds it either; the profile is flat inside quinn (AES-GCM ~13 %, memmove ~11 %,
//!   `poll_transmit`, `write_stream_frames`, ACK bookkeeping ~1–3 % each). 4 MiB buffers stay off
//!   for the small-call p99 reason above.
//! - Small unary calls, session 3: a dwarf profile (`perf record --call-graph dwarf` on
//!   `zone-bench --scenario unary-64b-c32 --wire h3`) put ~40 % of the `memmove` samples in
//!   spawning and polling the server's per-request task, whose future was 4.9 KiB (h3's resolve
//!   future alone 2.5 KiB); that phase is boxed now (3.0 KiB, bounded by a test in `server::h3`).
//!   The rate change stayed inside the run-to-run spread. Ours and tonic-h3 burn the same CPU in
//!   the same places (kernel wake-ups ~15 %, malloc/free ~9 %, qpack, quinn), ours ~25 % more
//!   per call, still spread thin.
//! - Session 4 (2026-12-04): the bulk gap was not quinn's per-packet cost but two defects that
//!   kept every connection at Ethernet-size or minimum packets. (1) `mtu_upper_bound` was
//!   65527, but quinn's `EndpointConfig::max_udp_payload_size` stayed at its default 1472, which
//!   both peers announce and which caps the other's search: every loopback connection ran at
//!   1472 (so "a 1452-byte cap costs nothing" above measured two equal settings). (2) With that
//!   lifted, quinn batches up to 10 datagrams of the 65 495-byte MTU into one GSO send, the
//!   kernel refuses anything over 64 KiB with EMSGSIZE, and quinn-udp reports it as sent: the
//!   packets vanish, and after three such loss bursts quinn's black-hole detector drops the MTU
//!   to 1200 for a minute — every server connection of `stream-64k` ended at 1200 (QUIC
//!   statistics, now logged at debug level when a connection ends). `socket::SplitGsoSocket`
//!   splits such batches. `zone-bench --scenario stream-64k --wire h2 h3 --reps 3 --duration 3`
//!   with a 65527 bound: before 4.6–5.7 Gbit/s, 2.7–3.2 CPU s/GiB (H3/H2 0.57–0.62); after
//!   10.5 Gbit/s at 1.24 CPU s/GiB against HTTP/2's 9.8 at 1.47 (H3/H2 1.07 and 0.85), MTU
//!   65 495, no black hole. The MTU search is per connection, and on loopback every probe is
//!   delivered: it added ~1.5 ms to `--scenario connect` (set-up + one call; 2.1 → 3.6 ms; with
//!   discovery off at the same announced size 2.0 ms, so it is the probing, not quinn's larger
//!   receive buffers), and that scenario's fresh endpoint per connection left server
//!   connections behind until the 1024-connection limit refused new ones (not root-caused;
//!   the clients' CONNECTION_CLOSE likely queued behind probes on an endpoint being dropped).
//!   A 9000 bound: 11.6 Gbit/s (H3/H2 0.90), set-up 4.1 ms. So the default stays at quinn's
//!   1452 and a large bound is opt-in (`QuicSettings::mtu_upper_bound`, `zone-bench
//!   --quic-mtu`) for long-lived connections on loopback or jumbo-frame paths.
//! - Small calls, session 4 (noisy VM: the same build's h2 c=32 rate moved 21k–43k calls/s within
//!   the hour, so only same-run ratios count). ~20 % of the samples are the kernel's scheduler
//!   (`finish_task_switch`, `_raw_spin_unlock_irqrestore`: thread wake-ups) and ~14 % glibc
//!   malloc/free (`perf record -g`, `--scenario unary-64b-c32 --wire h3`); `perf stat -e
//!   context-switches` per wire: about twice HTTP/2's switches per call for both HTTP/3 stacks.
//!   With mimalloc as the bench's allocator (a scratch build, not kept) every wire gained and
//!   tonic-h3 reached ~0.97× HTTP/2 at c=32 while ours stayed at 0.68–0.75×, so part of the gap
//!   is ours, not quinn's. A cross pairing (scratch build: our client against tonic-h3's server
//!   and the reverse) ran at 30–36k calls/s against 25–30k for ours on both ends; QUIC statistics
//!   of those runs show our server sending ~0.6 datagrams per call at c=32 where tonic-h3's
//!   sends ~0.28 (our client ~0.95 either way) — our responses leave in more, smaller packets.
//!   Not explained yet: both servers spawn a task per request and write HEADERS, DATA,
//!   trailers the same way, and quinn's settings (tried: quinn's defaults throughout) and the
//!   MTU bound do not change it. The lead for the next step is what wakes our server's quinn
//!   connection driver between a response's writes.

pub(crate) mod backend;
mod empty_data;
pub(crate) mod socket;

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::error::{Error, Kind};

/// The congestion controller of QUIC connections.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), quinn's default.
    #[default]
    Cubic,
    /// BBR (quinn's experimental implementation): tolerates random loss.
    Bbr,
    /// NewReno (RFC 9002 §7).
    NewReno,
}

/// QUIC transport settings of an [`Endpoint`](crate::Endpoint) or [`Server`](crate::Server).
///
/// Start from `QuicSettings::default()` and change fields.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// Streams (= concurrent calls) the peer may open at once; default 1024.
    pub max_concurrent_bidi_streams: u32,
    /// Receive window of one stream in bytes; default 2 MiB.
    pub stream_receive_window: u32,
    /// Receive window of the whole connection in bytes; default 16 MiB.
    pub receive_window: u32,
    /// Most unacknowledged bytes in flight; default 16 MiB.
    pub send_window: u64,
    /// Closes a connection after this long without any packet; default 30 s.
    pub idle_timeout: Duration,
    /// Sends PING frames at this interval to keep an idle connection (and NAT bindings) alive.
    pub keep_alive_interval: Option<Duration>,
    /// The congestion controller; default Cubic.
    pub congestion: CongestionControl,
    /// Generic segmentation offload (GSO) for sending; on by default (quinn's default).
    pub segmentation_offload: bool,
    /// SO_RCVBUF / SO_SNDBUF of the UDP socket in bytes; default 1 MiB (capped by the kernel).
    pub udp_buffer_size: usize,
    /// Largest UDP payload path-MTU discovery (RFC 9000 §14.3) probes for, and the
    /// `max_udp_payload_size` announced to the peer (§18.2) so its search may go as high;
    /// default 1452 (quinn's: Ethernet less IPv6 and UDP headers). Values outside 1200..=65527
    /// are clamped.
    ///
    /// Paths with a larger MTU — loopback, jumbo frames — carry bulk data with far less work
    /// per byte at a higher bound: on loopback `zone-bench --scenario stream-64k --quic-mtu
    /// 65527` runs at about twice the default's Gbit/s, above HTTP/2. The price is paid by
    /// every connection, since quinn searches per connection: on loopback, where each probe is
    /// delivered, the search added ~1.5 ms to connection set-up and one call (`--scenario
    /// connect`), and a client making a fresh endpoint per call left enough server connections
    /// behind to reach the server's connection limit. Raise it where connections are long-lived.
    pub mtu_upper_bound: u16,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            max_concurrent_bidi_streams: 1024,
            stream_receive_window: crate::STREAM_WINDOW,
            receive_window: crate::CONNECTION_WINDOW,
            send_window: u64::from(crate::CONNECTION_WINDOW),
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: None,
            congestion: CongestionControl::Cubic,
            segmentation_offload: true,
            udp_buffer_size: 1024 * 1024,
            mtu_upper_bound: 1452,
        }
    }
}

impl QuicSettings {
    pub(crate) fn transport_config(&self) -> Result<Arc<TransportConfig>, Error> {
        let mut t = TransportConfig::default();
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|e| Error::with(Kind::Config, e).context("QUIC idle timeout"))?;
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.receive_window))
            .send_window(self.send_window)
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive_interval)
            .enable_segmentation_offload(self.segmentation_offload);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound);
        t.mtu_discovery_config(Some(mtu));
        match self.congestion {
            CongestionControl::Cubic => {
                t.congestion_controller_factory(Arc::new(CubicConfig::default()))
            }
            CongestionControl::Bbr => {
                t.congestion_controller_factory(Arc::new(BbrConfig::default()))
            }
            CongestionControl::NewReno => {
                t.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
            }
        };
        Ok(Arc::new(t))
    }
}

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
    // §18.2): it caps the peer's path-MTU search. quinn's 1472 would hold loopback and jumbo
    // paths to Ethernet size whatever `mtu_upper_bound` says.
    config
        .max_udp_payload_size(settings.mtu_upper_bound.clamp(1200, 65_527))
        .map_err(std::io::Error::other)?;
    quinn::Endpoint::new_with_abstract_socket(
        config,
        server,
        socket::SplitGsoSocket::wrap(socket)?,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// With a raised `mtu_upper_bound`, a bulk transfer on loopback runs at loopback's large MTU
    /// and keeps it. Two defects held it to 1472 or 1200 bytes: quinn's default
    /// `max_udp_payload_size` (1472) capped the peer's MTU search, and with it lifted, GSO batches
    /// over 64 KiB were lost without an error, which quinn's black-hole detector took for an MTU
    /// black hole (see `socket`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_transfer_on_loopback_keeps_a_large_mtu() {
        let certs = dev_certs::DevCerts::generate().unwrap();
        let settings = QuicSettings {
            mtu_upper_bound: 65_527,
            ..QuicSettings::default()
        };
        let tls = crate::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
            .unwrap()
            .server_config(crate::tls::ALPN_H3)
            .unwrap();
        let server = endpoint(
            "127.0.0.1:0".parse().unwrap(),
            Some(server_config(tls, &settings).unwrap()),
            None,
            &settings,
        )
        .unwrap();
        let server_addr = server.local_addr().unwrap();
        let mut client_tls = crate::tls::ClientTls::default();
        client_tls.roots = Some(crate::tls::roots_from_pem(&certs.ca_pem, "CA").unwrap());
        let client_tls = client_tls.client_config(crate::tls::ALPN_H3).unwrap();
        let client = endpoint("127.0.0.1:0".parse().unwrap(), None, None, &settings).unwrap();
        let config = client_config(client_tls, &settings).unwrap();

        const TOTAL: usize = 256 * 1024 * 1024;
        let sender = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let mut send = conn.open_uni().await.unwrap();
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            for _ in 0..TOTAL / chunk.len() {
                send.write_chunk(chunk.clone()).await.unwrap();
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
            let stats = conn.stats();
            conn.close(0u32.into(), b"");
            stats
        });
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
        assert_eq!(received, TOTAL);
        let stats = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .unwrap()
            .unwrap();
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

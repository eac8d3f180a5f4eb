//! [`QuicSettings`]: the QUIC transport parameters and local knobs (RFC 9000 §18.2, RFC 9002)
//! of an endpoint, and the quinn `TransportConfig` built from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::mtu::{
    KnownMtu, MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD, initial_window, loopback_payload_size,
};
use crate::error::{Error, Kind};

/// The `max_ack_delay` asked of peers by default (see [`QuicSettings::peer_ack_delay`]).
const DEFAULT_PEER_ACK_DELAY: Duration = Duration::from_millis(2);

/// The congestion controller of QUIC connections.
///
/// The default is Cubic: it is what TCP uses on Linux by default, so HTTP/3 and HTTP/2 share a
/// bottleneck fairly and compare like with like; it is standardized (RFC 9438) and quinn's
/// default. quinn's BBR is an experimental BBRv1: it keeps its throughput under random loss (in
/// the netlab's quick grid of 2026-12-07, 68× Cubic's at 50 ms RTT and 5 % loss) but, like
/// BBRv1 in TCP, it can take more than its share from loss-based flows on a shared bottleneck
/// and retransmits more where buffers are shallow — choose it per deployment (lossy last
/// miles, private WANs), not by default. docs/netlab.md has the measurements.
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
/// Start from `QuicSettings::default()` and change what differs with the setters, e.g.
/// `QuicSettings::default().congestion(CongestionControl::Bbr)`. A server's stream limit is
/// [`Server::max_concurrent_streams`](crate::Server::max_concurrent_streams), not a QUIC setting:
/// it applies to both wires.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    /// Bidirectional streams the peer may open at once (MAX_STREAMS); a server sets it from its
    /// stream limit. HTTP/3 servers open no bidirectional streams (RFC 9114 §6.1), so a client's
    /// value does not matter.
    pub(crate) max_concurrent_bidi_streams: u32,
    pub(crate) stream_receive_window: u32,
    pub(crate) receive_window: u32,
    pub(crate) send_window: u64,
    pub(crate) idle_timeout: Duration,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) congestion: CongestionControl,
    pub(crate) segmentation_offload: bool,
    pub(crate) udp_buffer_size: usize,
    pub(crate) mtu_upper_bound: u16,
    pub(crate) loopback_mtu: bool,
    pub(crate) peer_ack_delay: Option<Duration>,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            max_concurrent_bidi_streams: crate::Server::DEFAULT_MAX_CONCURRENT_STREAMS,
            stream_receive_window: crate::STREAM_WINDOW,
            receive_window: crate::CONNECTION_WINDOW,
            send_window: u64::from(crate::CONNECTION_WINDOW),
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: None,
            congestion: CongestionControl::Cubic,
            segmentation_offload: true,
            udp_buffer_size: 1024 * 1024,
            mtu_upper_bound: 1452,
            loopback_mtu: true,
            peer_ack_delay: Some(DEFAULT_PEER_ACK_DELAY),
        }
    }
}

impl QuicSettings {
    /// Receive window of one stream in bytes; default 2 MiB.
    pub fn stream_receive_window(mut self, value: u32) -> Self {
        self.stream_receive_window = value;
        self
    }

    /// Receive window of the whole connection in bytes; default 16 MiB.
    pub fn receive_window(mut self, value: u32) -> Self {
        self.receive_window = value;
        self
    }

    /// Most unacknowledged bytes in flight; default 16 MiB.
    pub fn send_window(mut self, value: u64) -> Self {
        self.send_window = value;
        self
    }

    /// Closes a connection after this long without any packet; default 30 s.
    pub fn idle_timeout(mut self, value: Duration) -> Self {
        self.idle_timeout = value;
        self
    }

    /// Sends PING frames at this interval to keep an idle connection (and NAT bindings) alive.
    pub fn keep_alive_interval(mut self, value: Option<Duration>) -> Self {
        self.keep_alive_interval = value;
        self
    }

    /// The congestion controller; default Cubic.
    pub fn congestion(mut self, value: CongestionControl) -> Self {
        self.congestion = value;
        self
    }

    /// Generic segmentation offload (GSO) for sending; on by default (quinn's default).
    pub fn segmentation_offload(mut self, value: bool) -> Self {
        self.segmentation_offload = value;
        self
    }

    /// SO_RCVBUF / SO_SNDBUF of the UDP socket in bytes; default 1 MiB (capped by the kernel).
    pub fn udp_buffer_size(mut self, value: usize) -> Self {
        self.udp_buffer_size = value;
        self
    }

    /// Largest UDP payload path-MTU discovery (RFC 9000 §14.3) probes for, and the
    /// `max_udp_payload_size` announced to the peer (§18.2) so its search may go as high;
    /// default 1452 (quinn's: Ethernet less IPv6 and UDP headers). Values outside 1200..=65527
    /// are clamped.
    ///
    /// Loopback peers need no search (see [`QuicSettings::loopback_mtu`]). On jumbo-frame paths a
    /// higher bound carries bulk data with less work per byte, but every connection pays for the
    /// longer search (~1.5 ms of set-up at 65527 on loopback), so raise it where connections are
    /// long-lived. Measurements: docs/performance-notes.md.
    pub fn mtu_upper_bound(mut self, value: u16) -> Self {
        self.mtu_upper_bound = value;
        self
    }

    /// Connections with a loopback peer use the loopback interface's MTU (read from the kernel's
    /// route, ~64 KiB) instead of searching up to `mtu_upper_bound`; default on.
    ///
    /// The path to a loopback peer is this host, so its MTU is known without a search, as TCP
    /// takes its segment size from the interface (RFC 9000 §14.1 lets a sender use a size it
    /// believes the path supports). A client starts at it; a server, whose first flight the
    /// anti-amplification limit bounds (RFC 9000 §8.1), searches up to 16 KiB after the
    /// handshake (a larger probe costs its receiver more than it saves). Bulk data on loopback
    /// then moves in datagrams of 16–64 KiB instead of ~1.4 KiB (about twice the throughput),
    /// without the set-up cost of a searched large `mtu_upper_bound`. Linux only (elsewhere the
    /// route MTU is not read and this does nothing).
    ///
    /// The endpoint announces quinn's largest `max_udp_payload_size` so that its loopback peers
    /// may do the same. quinn sizes an endpoint's receive buffer from that value (payload × 64
    /// GRO segments × 32 messages): 128 MiB of address space, of which only the pages datagrams
    /// land in become resident. Measurements: docs/performance-notes.md.
    pub fn loopback_mtu(mut self, value: bool) -> Self {
        self.loopback_mtu = value;
        self
    }

    /// The `max_ack_delay` asked of the peer with the ACK frequency extension
    /// (draft-ietf-quic-ack-frequency, as quinn implements it); default 2 ms, `None` leaves the
    /// peer at its own (25 ms for quinn, RFC 9000 §18.2's default).
    ///
    /// A sender's probe timeout is `smoothed_rtt + 4·rttvar + max_ack_delay` (RFC 9002 §6.2.1),
    /// so on a connection that carries one small call at a time, a lost request or response is
    /// resent after about one RTT plus the peer's ACK delay: 2 ms instead of 25 ms took 23 ms off
    /// the p99 of such calls at 50 ms RTT and 1 % loss (patches/README.md). The cost is an ACK
    /// at most every 2 ms for a lone packet; bulk transfers are acknowledged every other packet
    /// anyway (the extension's ack-eliciting threshold is left at 1). Only peers that announce
    /// the extension's `min_ack_delay` transport parameter are asked (quinn does; others keep
    /// their own delay), and quinn requests no less than that and no more than
    /// max(RTT, 25 ms). With the request, a peer's reordering threshold is set to 1: a packet
    /// out of order is acknowledged at once, as without the extension (RFC 9000 §13.2.1).
    pub fn peer_ack_delay(mut self, value: Option<Duration>) -> Self {
        self.peer_ack_delay = value;
        self
    }

    /// The value set by [`peer_ack_delay`](Self::peer_ack_delay).
    pub fn get_peer_ack_delay(&self) -> Option<Duration> {
        self.peer_ack_delay
    }

    /// The value set by [`stream_receive_window`](Self::stream_receive_window).
    pub fn get_stream_receive_window(&self) -> u32 {
        self.stream_receive_window
    }

    /// The value set by [`receive_window`](Self::receive_window).
    pub fn get_receive_window(&self) -> u32 {
        self.receive_window
    }

    /// The value set by [`send_window`](Self::send_window).
    pub fn get_send_window(&self) -> u64 {
        self.send_window
    }

    /// The value set by [`idle_timeout`](Self::idle_timeout).
    pub fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The value set by [`keep_alive_interval`](Self::keep_alive_interval).
    pub fn get_keep_alive_interval(&self) -> Option<Duration> {
        self.keep_alive_interval
    }

    /// The value set by [`congestion`](Self::congestion).
    pub fn get_congestion(&self) -> CongestionControl {
        self.congestion
    }

    /// The value set by [`segmentation_offload`](Self::segmentation_offload).
    pub fn get_segmentation_offload(&self) -> bool {
        self.segmentation_offload
    }

    /// The value set by [`udp_buffer_size`](Self::udp_buffer_size).
    pub fn get_udp_buffer_size(&self) -> usize {
        self.udp_buffer_size
    }

    /// The value set by [`mtu_upper_bound`](Self::mtu_upper_bound).
    pub fn get_mtu_upper_bound(&self) -> u16 {
        self.mtu_upper_bound
    }

    /// The value set by [`loopback_mtu`](Self::loopback_mtu).
    pub fn get_loopback_mtu(&self) -> bool {
        self.loopback_mtu
    }
}

impl QuicSettings {
    /// The transport config for connections whose path MTU is not known in advance.
    pub(crate) fn transport_config(&self) -> Result<Arc<TransportConfig>, Error> {
        self.build_transport_config(None)
    }

    /// A client's transport config for a connection to `peer`: loopback peers start at the
    /// loopback MTU (see [`QuicSettings::loopback_mtu`]).
    pub(crate) fn transport_config_to(
        &self,
        peer: SocketAddr,
    ) -> Result<Arc<TransportConfig>, Error> {
        self.build_transport_config(self.known_path_mtu(peer).map(KnownMtu::StartAt))
    }

    /// The UDP payload size of the path to `peer` when it is known without probing: only for
    /// loopback peers, with [`QuicSettings::loopback_mtu`] on.
    pub(crate) fn known_path_mtu(&self, peer: SocketAddr) -> Option<u16> {
        if self.loopback_mtu {
            loopback_payload_size(peer)
        } else {
            None
        }
    }

    /// The largest datagram the endpoint accepts, announced to every peer as
    /// `max_udp_payload_size` (RFC 9000 §18.2), which caps the peer's datagrams.
    pub(crate) fn max_udp_payload_size(&self) -> u16 {
        let bound = if self.loopback_mtu {
            MAX_UDP_PAYLOAD
        } else {
            self.mtu_upper_bound
        };
        bound.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    }

    pub(crate) fn build_transport_config(
        &self,
        known: Option<KnownMtu>,
    ) -> Result<Arc<TransportConfig>, Error> {
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
        if let Some(delay) = self.peer_ack_delay {
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.max_ack_delay(Some(delay))
                .reordering_threshold(VarInt::from_u32(1));
            t.ack_frequency_config(Some(ack));
        }
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound.max(known.map_or(0, KnownMtu::mtu)));
        // A client starts at the known MTU. Its search has nothing left to find but stays on, so
        // that after a black hole (a loss of large datagrams) it climbs back. A server runs
        // quinn's binary search from 1200 bytes after the handshake: up to the known MTU, or less
        // if the peer announced a smaller `max_udp_payload_size` (quinn's default 1472, say).
        // The probes go one per round trip; on loopback they cost a new connection nothing
        // measurable (docs/performance-notes.md, 2026-12-04).
        if let Some(KnownMtu::StartAt(known)) = known {
            t.initial_mtu(known);
        }
        t.mtu_discovery_config(Some(mtu));
        // Sized for the known MTU (RFC 9002 §7.2's formula with it): quinn's default assumes
        // 1200-byte datagrams and is not scaled for a larger MTU — with 64 KiB datagrams its
        // 14 720 bytes would hold none, and an unacknowledged 64 KiB probe (sent outside
        // congestion control but counted in flight) would block every other packet until its
        // ACK, which the peer may delay by up to its max_ack_delay.
        let initial_window = known.map(|k| initial_window(k.mtu()));
        match self.congestion {
            CongestionControl::Cubic => {
                let mut cc = CubicConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
            CongestionControl::Bbr => {
                let mut cc = BbrConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
            CongestionControl::NewReno => {
                let mut cc = NewRenoConfig::default();
                if let Some(window) = initial_window {
                    cc.initial_window(window);
                }
                t.congestion_controller_factory(Arc::new(cc))
            }
        };
        Ok(Arc::new(t))
    }
}

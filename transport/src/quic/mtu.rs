//! Path MTU (RFC 9000 §14): what is known of a path before any probe, and the sizes derived
//! from it (RFC 9002 §7.2's initial window).

use std::net::SocketAddr;

/// How a connection uses a path MTU known in advance (a loopback peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KnownMtu {
    /// The client starts at it.
    StartAt(u16),
    /// The server starts at QUIC's minimum and searches up to it once the handshake is done.
    /// Before the client's address is validated a server may send only three times the bytes it
    /// received (RFC 9000 §8.1), and quinn lets any datagram fill the current MTU once some
    /// budget is left, so a large initial MTU would overshoot that limit (caught by
    /// tests/amplification.rs).
    SearchTo(u16),
}

impl KnownMtu {
    pub(crate) fn mtu(self) -> u16 {
        match self {
            KnownMtu::StartAt(mtu) | KnownMtu::SearchTo(mtu) => mtu,
        }
    }
}

/// quinn's smallest and largest UDP payload (RFC 9000 §14: 1200; the UDP length field).
pub(crate) const MIN_UDP_PAYLOAD: u16 = 1200;
pub(crate) const MAX_UDP_PAYLOAD: u16 = 65_527;

/// The largest MTU probe a server sends to reach a known path MTU. A probe is a PING padded to
/// its size (RFC 9000 §14.4), and quinn 0.11 decodes PADDING one byte (one frame) at a time: the
/// receiver of a 64 KiB probe spends ~0.6 ms on it, which a short connection's first call waits
/// out. 16 KiB datagrams already spread the per-datagram work thin, with no measurable set-up
/// cost. Not reported upstream as of 2026-12-07; revisit if quinn skips a run of PADDING in one
/// step. Measurements: docs/performance-notes.md (2026-12-04).
pub(crate) const MAX_PROBE: u16 = 16 * 1024;

/// RFC 9002 §7.2: the initial congestion window for `max_datagram_size`,
/// min(10 * max_datagram_size, max(14720, 2 * max_datagram_size)).
pub(crate) fn initial_window(max_datagram_size: u16) -> u64 {
    let size = u64::from(max_datagram_size);
    (10 * size).min(14_720.max(2 * size))
}

/// The UDP payload a datagram to a loopback `peer` can carry: the loopback route's MTU (the
/// kernel's `IP_MTU`/`IPV6_MTU` of a socket connected to `peer`; connecting a UDP socket sends
/// nothing) less the IP and UDP headers. `None` for other peers, whose path may hold smaller links.
pub(crate) fn loopback_payload_size(peer: SocketAddr) -> Option<u16> {
    // A v4-mapped peer on a dual-stack socket travels as IPv4.
    let ip = peer.ip().to_canonical();
    if !ip.is_loopback() {
        return None;
    }
    let route_mtu = match route_mtu(SocketAddr::new(ip, peer.port())) {
        Ok(mtu) => mtu,
        Err(err) => {
            tracing::debug!(%peer, error = %err, "could not read the loopback route's MTU");
            return None;
        }
    };
    // IPv4: 20-byte header, and the total length field caps a packet at 65 535 bytes.
    // IPv6: 40-byte header outside the payload length. UDP: 8 bytes.
    let payload = if ip.is_ipv4() {
        route_mtu.min(65_535).saturating_sub(28)
    } else {
        route_mtu.saturating_sub(48)
    };
    let payload = u16::try_from(payload).unwrap_or(MAX_UDP_PAYLOAD);
    (payload > MIN_UDP_PAYLOAD).then(|| payload.min(MAX_UDP_PAYLOAD))
}

/// The wildcard address of `peer`'s family, any port: where a local socket that talks to
/// `peer` binds.
pub(crate) fn wildcard_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

#[cfg(target_os = "linux")]
fn route_mtu(peer: SocketAddr) -> std::io::Result<u32> {
    let socket = std::net::UdpSocket::bind(wildcard_for(peer))?;
    socket.connect(peer)?;
    let mtu = if peer.is_ipv4() {
        rustix::net::sockopt::ip_mtu(&socket)
    } else {
        rustix::net::sockopt::ipv6_mtu(&socket)
    };
    mtu.map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn route_mtu(_peer: SocketAddr) -> std::io::Result<u32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "route MTU is read on Linux only",
    ))
}

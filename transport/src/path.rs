//! [`PathStats`]: what a connection's transport knows of its path right now — smoothed RTT,
//! congestion window and losses — read from quinn for HTTP/3 and from the kernel's `TCP_INFO`
//! for HTTP/2, so code on either wire can see the same figures.

use std::sync::Arc;
use std::time::Duration;

/// A connection's path as its transport sees it now.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStats {
    /// Smoothed round-trip time (RFC 9002 §5.3; for TCP the kernel's `srtt`).
    pub rtt: Duration,
    /// Congestion window in bytes (for TCP: segments × MSS).
    pub congestion_window: u64,
    /// Packets declared lost so far (for TCP: segments retransmitted, `tcpi_total_retrans`).
    pub lost_packets: u64,
}

/// Where a connection's path figures come from.
#[derive(Debug, Clone)]
pub(crate) enum PathSource {
    Quic(quinn::Connection),
    /// A duplicate of the connection's TCP socket (the stream itself belongs to hyper).
    Tcp(Arc<std::os::fd::OwnedFd>),
}

impl PathSource {
    /// A source for a TCP connection, from a duplicate of its socket; `None` if it cannot be
    /// duplicated (out of descriptors): the figures are then unavailable, nothing else changes.
    pub(crate) fn tcp(socket: &impl std::os::fd::AsFd) -> Option<Self> {
        socket
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(|fd| PathSource::Tcp(Arc::new(fd)))
    }

    pub(crate) fn stats(&self) -> Option<PathStats> {
        match self {
            PathSource::Quic(conn) => {
                let path = conn.stats().path;
                Some(PathStats {
                    rtt: path.rtt,
                    congestion_window: path.cwnd,
                    lost_packets: path.lost_packets,
                })
            }
            PathSource::Tcp(fd) => tcp_stats(fd),
        }
    }
}

#[cfg(target_os = "linux")]
fn tcp_stats(fd: &std::os::fd::OwnedFd) -> Option<PathStats> {
    let info = tcp_info(fd).ok()?;
    Some(PathStats {
        rtt: Duration::from_micros(u64::from(info.tcpi_rtt)),
        congestion_window: u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss),
        lost_packets: u64::from(info.tcpi_total_retrans),
    })
}

#[cfg(not(target_os = "linux"))]
fn tcp_stats(_fd: &std::os::fd::OwnedFd) -> Option<PathStats> {
    None
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)` (tcp(7)); neither rustix nor socket2 wraps it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn tcp_info(fd: &std::os::fd::OwnedFd) -> std::io::Result<libc::tcp_info> {
    use std::os::fd::AsRawFd as _;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>())
        .map_err(std::io::Error::other)?;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call and `fd` is an
    // open socket we own; the kernel writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `tcp_info` is plain integers, so the zeroed buffer was already a valid value; the
    // kernel overwrote a prefix of it with another valid value.
    Ok(unsafe { info.assume_init() })
}

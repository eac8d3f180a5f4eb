//! ICMP "unreachable" for a client's QUIC socket. A QUIC peer that dies says nothing; its host's
//! kernel answers the next datagram with ICMP port unreachable (or a router with host/network
//! unreachable), and quinn ignores it, so the loss is found only by the idle timeout (30 s by
//! default) and a connect to a dead port only by the connect timeout. With `IP_RECVERR` the kernel
//! queues those errors on the socket (ip(7)); this module reads the destinations they name, and
//! the HTTP/3 client closes a connection to one once the peer has also stayed silent (so a forged
//! ICMP message cannot close a live connection; RFC 5927 §4.1 on acting on ICMP hard errors).
//! Linux only; elsewhere nothing is reported.

use std::io;
use std::net::SocketAddr;

/// Asks the kernel to queue ICMP errors for `socket` (IPv4 and, for IPv6 sockets, IPv6 too).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn enable(socket: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `fd` is an open socket owned by `socket` for this call, and the option value
        // is a c_int that lives across the call, its size passed with it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    if socket.local_addr()?.is_ipv6() {
        set(libc::SOL_IPV6, libc::IPV6_RECVERR)?;
        // IPv4-mapped traffic on a dual-stack socket reports through the IPv4 option.
        let _ = set(libc::SOL_IP, libc::IP_RECVERR);
        Ok(())
    } else {
        set(libc::SOL_IP, libc::IP_RECVERR)
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable(_socket: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Whether a queued error means "nobody there": port, host or network unreachable (ICMP type 3
/// codes 0, 1, 3; ICMPv6 type 1), as the kernel translates them into errno values.
#[cfg(target_os = "linux")]
fn is_unreachable(errno: u32) -> bool {
    [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::ENETUNREACH]
        .iter()
        .any(|&e| e as u32 == errno)
}

/// Reads every error queued on `fd` (`MSG_ERRQUEUE`, without blocking) and returns the
/// destinations of the datagrams that met an "unreachable" answer, in order. Clears the socket's
/// pending error as it goes (the kernel moves `sk_err` to the next queued one).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn drain(fd: std::os::fd::RawFd) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    // Bounded: the queue holds what arrived since the last drain; stop at EAGAIN or at 64.
    for _ in 0..64 {
        let mut name = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
        // Room for one sock_extended_err plus its offender address, aligned as cmsgs need.
        let mut control = [0u64; 64];
        let mut payload = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty one; every pointer set below points into a
        // local that outlives the recvmsg call, with its true length.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `fd` is an open socket (the caller's, borrowed for this call) and `msg`
        // describes buffers valid for writes of the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            break;
        }
        let mut unreachable = false;
        // SAFETY: the CMSG_* walk stays within `msg.msg_control`/`msg_controllen` as the kernel
        // filled them; the data of an IP(V6)_RECVERR message is a sock_extended_err (ip(7),
        // ipv6(7)), read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let level = (*cmsg).cmsg_level;
                let kind = (*cmsg).cmsg_type;
                if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                    || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
                {
                    let err: libc::sock_extended_err =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    let from_icmp = err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                        || err.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                    unreachable |= from_icmp && is_unreachable(err.ee_errno);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if !unreachable {
            continue;
        }
        // SAFETY: zero-initialised, and the kernel wrote the datagram's original destination
        // (a sockaddr_in or sockaddr_in6, as `ss_family` says) into it.
        let name = unsafe { name.assume_init() };
        if let Some(addr) = socket_addr(&name) {
            found.push(addr);
        }
    }
    found
}

/// The IPv4 or IPv6 address in `name`, by its family.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let storage: *const libc::sockaddr_storage = name;
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: sockaddr_storage is large and aligned enough for every sockaddr, and the
            // family says this one is a sockaddr_in.
            let v4 = unsafe { &*storage.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let v6 = unsafe { &*storage.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn drain(_fd: i32) -> Vec<SocketAddr> {
    Vec::new()
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd as _;

    /// A datagram to a loopback port nobody listens on comes back as a queued "unreachable"
    /// naming that port.
    #[test]
    fn a_closed_port_is_reported_with_its_address() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&socket).unwrap();
        socket.send_to(b"x", dead).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut found = Vec::new();
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = drain(socket.as_raw_fd());
        }
        assert_eq!(found, [dead]);
        // Drained: nothing left, and a normal receive does not report the error any more.
        assert!(drain(socket.as_raw_fd()).is_empty());
        socket.set_nonblocking(true).unwrap();
        let err = socket.recv_from(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// Without the option nothing is queued (the reason quinn never sees these).
    #[test]
    fn without_the_option_nothing_is_queued() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"x", dead).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(drain(socket.as_raw_fd()).is_empty());
    }
}

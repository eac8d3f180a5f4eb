//! Authoritative DNS from the edge's zone copies over UDP and TCP on one address (RFC 1035 §4.2,
//! RFC 7766): queries, AXFR (RFC 5936) and IXFR (RFC 1995), as `zone-edge run --dns ADDR`.
//!
//! The answers come from [`answer`] (sans-IO); this module only moves bytes. Limits: a TCP
//! message is at most 65535 bytes (its 2-byte length prefix, RFC 1035 §4.2.2), a TCP connection
//! is closed after [`DnsConfig::tcp_idle`] without a complete request (RFC 7766 §6.2.3), and at
//! most [`DnsConfig::max_tcp_connections`] are open at once; the next ones are closed on accept
//! (RFC 7766 §6.2.2). A message that does not parse gets FORMERR when its header did, and the
//! connection goes on reading.
//!
//! hickory-server's authority is not used: it applies record changes one by one under its own
//! lock, so a change batch would be visible half applied, and it does not serve IXFR from a
//! history; the copies here already hold every record, so answering from them needs no second
//! copy of the zone.

pub(crate) mod answer;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use answer::{MAX_UDP_PAYLOAD, Transport};

use super::Edge;

/// How often a UDP thread blocked in `recv_from` looks whether the server stopped.
const UDP_POLL: Duration = Duration::from_millis(200);

/// Settings of a [`DnsServer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsConfig {
    /// TCP connections served at once. Default 256.
    pub max_tcp_connections: usize,
    /// How long a TCP connection may wait for (the rest of) a request. Default 10 s.
    pub tcp_idle: Duration,
    /// Threads receiving on the UDP socket. Default 2.
    pub udp_workers: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            max_tcp_connections: 256,
            tcp_idle: Duration::from_secs(10),
            udp_workers: 2,
        }
    }
}

/// The DNS server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A bound DNS server: a TCP listener and a UDP socket on the same address.
#[derive(Debug)]
pub struct DnsServer {
    udp: Arc<std::net::UdpSocket>,
    tcp: TcpListener,
    config: DnsConfig,
}

impl DnsServer {
    /// Binds TCP and UDP on `addr`; with port 0, both on the same free port.
    pub async fn bind(addr: SocketAddr, config: DnsConfig) -> Result<Self, DnsError> {
        let bind_error = |source| DnsError::Bind { addr, source };
        // With port 0 the port TCP got may be taken for UDP: try a few.
        let tries = if addr.port() == 0 { 8 } else { 1 };
        let mut last = io::Error::other("no attempt");
        for _ in 0..tries {
            let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
            let bound = tcp.local_addr().map_err(bind_error)?;
            let udp = std::net::UdpSocket::bind(bound)
                .and_then(|udp| udp.set_read_timeout(Some(UDP_POLL)).map(|()| udp));
            match udp {
                Ok(udp) => {
                    return Ok(Self {
                        udp: Arc::new(udp),
                        tcp,
                        config,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(bind_error(last))
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Answers from `edge`'s copies until `shutdown` resolves.
    pub async fn serve(self, edge: Edge, shutdown: impl Future<Output = ()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..self.config.udp_workers.max(1) {
            let (socket, edge, stop) = (Arc::clone(&self.udp), edge.clone(), Arc::clone(&stop));
            let spawned = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve_udp(&socket, &edge, &stop));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => tracing::warn!(error = %e, "cannot start a DNS UDP thread"),
            }
        }
        let tcp = tokio::spawn(serve_tcp(self.tcp, edge, self.config));
        shutdown.await;
        tcp.abort();
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// One UDP receive loop on a thread of its own: a blocking `recv_from` costs fewer wake-ups per
/// query than the async runtime's readiness loop (measured with `zone-bench dns`,
/// docs/edge-dns.md). It checks `stop` at least every [`UDP_POLL`].
fn serve_udp(socket: &std::net::UdpSocket, edge: &Edge, stop: &AtomicBool) {
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    while !stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            // Timeouts let the loop see `stop`; ICMP errors from earlier sends surface here on
            // some systems: neither is fatal.
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                }
                continue;
            }
        };
        let request = buffer.get(..len).unwrap_or_default();
        for response in answer::respond(edge, request, Transport::Udp) {
            if let Err(e) = socket.send_to(&response, peer) {
                tracing::debug!(%peer, error = %e, "DNS UDP send failed");
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, edge: Edge, config: DnsConfig) {
    let slots = Arc::new(Semaphore::new(config.max_tcp_connections));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "DNS TCP connection limit reached; closing");
            drop(stream);
            continue;
        };
        let edge = edge.clone();
        let idle = config.tcp_idle;
        connections.spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(stream, &edge, idle).await {
                tracing::debug!(%peer, error = %e, "DNS TCP connection ended");
            }
        });
    }
}

/// Length-prefixed requests, answered in order, until the client closes or idles
/// (RFC 7766 §6.2.1: several requests per connection).
async fn serve_connection(mut stream: TcpStream, edge: &Edge, idle: Duration) -> io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        buffer.resize(usize::from(u16::from_be_bytes(prefix)), 0);
        tokio::time::timeout(idle, stream.read_exact(&mut buffer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request not completed"))??;
        for response in answer::respond(edge, &buffer, Transport::Tcp) {
            // The encoder keeps TCP messages within u16::MAX bytes; never send a wrong prefix.
            let Ok(len) = u16::try_from(response.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&response);
            tokio::time::timeout(idle, stream.write_all(&framed))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken"))??;
        }
    }
}

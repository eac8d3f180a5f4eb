//! quinn's UDP socket on tokio, with two changes: it never hands the kernel a GSO batch larger
//! than one `sendmsg` may carry, and it takes a short batch read as "queue empty".
//!
//! **Oversized GSO batches.** quinn 0.11 assembles up to 10 datagrams of the current path MTU
//! into one GSO transmit without bounding the batch's total size, and quinn-udp 0.5 treats the
//! kernel's EMSGSIZE as "sent" (it expects it only for MTU probes). Once path-MTU discovery
//! (RFC 9000 §14.3) finds a large MTU — loopback's 64 KiB, jumbo frames — every batch of two or
//! more datagrams is over the kernel's 64 KiB per-call limit and silently lost. Bulk transfers
//! then lose packets that no network dropped, the congestion controller backs off, and quinn's
//! black-hole detector takes the losses of large packets for an MTU black hole and drops the MTU
//! to 1200 for the rest of the connection (bulk throughput on loopback less than half of what it
//! is with the split; docs/performance-notes.md, 2026-12-04). Such a transmit is split into
//! batches of whole segments that fit, each still sent with GSO when it holds more than one
//! datagram. Transmits within the limit — every transmit on an Ethernet-MTU path — pass straight
//! through.
//!
//! Upstream: quinn-rs/quinn#2201 (quinn-udp should chunk oversized transmits), open; a fix,
//! quinn-rs/quinn#2653, was closed unmerged. Remove the split when a released quinn-udp chunks
//! oversized transmits itself: the test `quinn_udp_alone_loses_an_oversized_batch` then fails.
//! The vendored quinn (patches/quinn) now bounds its batches by bytes; the split stays for a
//! batch assembled while the path MTU grew, and for when that patch goes.
//!
//! **Short reads.** quinn's endpoint driver receives until the socket says WouldBlock, so every
//! wake-up cost two `recvmmsg` calls: one with the datagram, one that finds the queue empty. On
//! Linux `recvmmsg` on a non-blocking socket stops early only when the queue is empty (or on an
//! error it queues for the next call), so a batch shorter than asked for tells what the empty
//! call would: the socket's readiness is cleared right then, as tokio does on WouldBlock. tokio
//! clears only the readiness event that the read was made under, and every datagram that arrives
//! later raises a new one (epoll is edge-triggered per arrival), so none waits unseen. A
//! ping-pong round trip takes 1.7 receive calls instead of 3.5 (docs/performance-notes.md,
//! 2026-12-06).

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use quinn::udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;

/// The most UDP payload one `sendmsg` may carry, GSO batch or not: an IPv4 datagram's 65 535
/// bytes less its 20-byte header and the 8-byte UDP header (IPv6 allows 20 more; one limit for
/// both keeps it simple).
const MAX_SEND_PAYLOAD: usize = 65_507;

/// Whether quinn-udp receives with `recvmmsg`, whose short batch means an empty queue (module
/// docs). Elsewhere it reads one datagram per call, and WouldBlock is the only sign.
const SHORT_READ_IS_EMPTY: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// quinn's tokio socket with oversized GSO batches split and short reads taken as an empty
/// queue (module docs).
pub(crate) struct QuicSocket {
    /// Shared with the ICMP watcher, if any (`wrap_watched`), which stops when this is dropped.
    io: Arc<tokio::net::UdpSocket>,
    state: UdpSocketState,
    _watcher: Option<tokio::sync::oneshot::Sender<()>>,
    /// Where ICMP "unreachable" destinations go (`wrap_watched`).
    unreachable: Option<tokio::sync::watch::Sender<Option<SocketAddr>>>,
    /// Receive calls made, for the tests.
    #[cfg(test)]
    recv_calls: std::sync::atomic::AtomicUsize,
}

impl QuicSocket {
    /// Wraps a bound socket for quinn's tokio runtime.
    pub(crate) fn wrap(socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(QuicSocket::new(socket)?))
    }

    /// [`QuicSocket::wrap`] for a client: ICMP "unreachable" errors for its datagrams are read
    /// from the socket's error queue and their destinations sent to `unreachable` (see
    /// `quic::unreachable`). Needs a Tokio runtime for the watcher; without one, nothing is sent.
    pub(crate) fn wrap_watched(
        socket: std::net::UdpSocket,
        unreachable: tokio::sync::watch::Sender<Option<SocketAddr>>,
    ) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        if let Err(err) = super::unreachable::enable(&socket) {
            tracing::debug!(error = %err, "IP_RECVERR unavailable; dead QUIC peers found by timeout only");
            return Self::wrap(socket);
        }
        let mut quic = QuicSocket::new(socket)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            tokio::spawn(watch_unreachable(
                quic.io.clone(),
                stopped,
                unreachable.clone(),
            ));
            quic._watcher = Some(stop);
            quic.unreachable = Some(unreachable);
        }
        Ok(Arc::new(quic))
    }

    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(QuicSocket {
            io: Arc::new(tokio::net::UdpSocket::from_std(socket)?),
            state,
            _watcher: None,
            unreachable: None,
            #[cfg(test)]
            recv_calls: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // An ICMP error pending on the socket fails the next sendmsg (the datagram is lost and
        // quinn-udp logs a warning); read it first when the reactor has seen it (one atomic load
        // otherwise).
        if let Some(unreachable) = &self.unreachable {
            drain_unreachable(&self.io, unreachable);
        }
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&*self.io).into(), transmit)
        })
    }
}

/// Reads the socket's queued ICMP errors whenever it reports one (epoll's EPOLLERR, which wakes
/// no reader), until `stop` fires or is dropped with the socket.
async fn watch_unreachable(
    io: Arc<tokio::net::UdpSocket>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    unreachable: tokio::sync::watch::Sender<Option<SocketAddr>>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            ready = io.ready(Interest::ERROR) => {
                if ready.is_err() {
                    return;
                }
                drain_unreachable(&io, &unreachable);
            }
        }
    }
}

/// Reads the socket's queued ICMP errors if the reactor saw one, and reports their destinations.
fn drain_unreachable(
    io: &tokio::net::UdpSocket,
    unreachable: &tokio::sync::watch::Sender<Option<SocketAddr>>,
) {
    use std::os::fd::AsRawFd as _;
    // Reported as WouldBlock so that tokio clears the error readiness; not called at all when
    // the socket has none.
    let _ = io.try_io(Interest::ERROR, || {
        for addr in super::unreachable::drain(io.as_raw_fd()) {
            tracing::debug!(%addr, "ICMP unreachable for a QUIC peer");
            unreachable.send_replace(Some(addr));
        }
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

impl fmt::Debug for QuicSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicSocket")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// Tells quinn when the socket is writable again; one per connection, each with its own
/// `writable()` future, since tokio's `poll_send_ready` keeps only the last task's waker.
struct Writable {
    socket: Arc<QuicSocket>,
    fut: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable").finish_non_exhaustive()
    }
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fut = this.fut.get_or_insert_with(|| {
            let socket = this.socket.clone();
            Box::pin(async move { socket.io.writable().await })
        });
        let polled = fut.as_mut().poll(cx);
        if polled.is_ready() {
            this.fut = None;
        }
        polled
    }
}

/// How many bytes of `segment_size`-byte datagrams one send may carry: as many whole segments
/// as fit in [`MAX_SEND_PAYLOAD`], and at least one (a single datagram too large for the path
/// is quinn's own business: an MTU probe).
fn batch_bytes(segment_size: usize) -> usize {
    let segment_size = segment_size.max(1);
    (MAX_SEND_PAYLOAD / segment_size).max(1) * segment_size
}

impl AsyncUdpSocket for QuicSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            fut: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let segment_size = match transmit.segment_size {
            Some(size) if transmit.contents.len() > MAX_SEND_PAYLOAD => size,
            _ => return self.send(transmit),
        };
        let step = batch_bytes(segment_size);
        for (i, batch) in transmit.contents.chunks(step).enumerate() {
            let part = Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: batch,
                // A lone datagram goes without the GSO control message: some kernels reject a
                // segment size larger than the payload.
                segment_size: (batch.len() > segment_size).then_some(segment_size),
                src_ip: transmit.src_ip,
            };
            match self.send(&part) {
                Ok(()) => {}
                // Nothing sent yet: quinn keeps the transmit and retries it when writable.
                Err(err) if i == 0 => return Err(err),
                Err(err) => {
                    // Part of the batch is out; reporting the error would make quinn send that
                    // part again. The rest is lost as a full socket buffer would lose it, and
                    // QUIC's loss recovery (RFC 9002 §6) sends its frames again.
                    tracing::debug!(error = %err, "UDP send buffer full in a split GSO batch");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // quinn-udp asks the kernel for this many datagrams at most.
        let batch = bufs.len().min(BATCH_SIZE);
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            let mut received = None;
            let res = self.io.try_io(Interest::READABLE, || {
                #[cfg(test)]
                self.recv_calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let n = self.state.recv((&*self.io).into(), bufs, meta)?;
                if SHORT_READ_IS_EMPTY && n < batch {
                    // Reported as WouldBlock so that tokio clears this readiness event; the
                    // datagrams are returned below.
                    received = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match (res, received) {
                (Ok(n), _) | (Err(_), Some(n)) => return Poll::Ready(Ok(n)),
                // As quinn's tokio socket: WouldBlock waits for readiness again, other errors
                // (an ICMP error queued on the socket) are dropped and the receive retried.
                (Err(_), None) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    use super::*;

    #[test]
    fn batches_hold_whole_segments_within_the_limit() {
        assert_eq!(batch_bytes(1200), 54 * 1200);
        assert_eq!(batch_bytes(9000), 7 * 9000);
        assert_eq!(batch_bytes(65_495), 65_495);
        assert_eq!(batch_bytes(65_527), 65_527);
    }

    /// Sends `segments` datagrams of `size` bytes as one GSO transmit through `socket` and returns
    /// the sizes and first bytes of the datagrams that arrive.
    async fn send_batch(
        socket: Arc<dyn AsyncUdpSocket>,
        size: usize,
        segments: u8,
    ) -> Vec<(usize, u8)> {
        let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind receiver");
        receiver
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("read timeout");
        let contents: Vec<u8> = (0..segments)
            .flat_map(|i| std::iter::repeat_n(i, size))
            .collect();
        let transmit = Transmit {
            destination: receiver.local_addr().expect("receiver address"),
            ecn: None,
            contents: &contents,
            segment_size: Some(size),
            src_ip: None,
        };
        let mut poller = socket.clone().create_io_poller();
        std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
            .await
            .expect("writable");
        socket.try_send(&transmit).expect("send");
        let mut received = Vec::new();
        let mut buf = vec![0; 70_000];
        while let Ok(n) = receiver.recv(&mut buf) {
            received.push((n, buf[0]));
        }
        received
    }

    fn bound() -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind sender")
    }

    #[tokio::test]
    async fn an_oversized_gso_batch_arrives_whole_and_in_order() {
        let socket = QuicSocket::wrap(bound()).expect("wrap");
        if socket.max_transmit_segments() < 4 {
            eprintln!("skipped: no UDP GSO on this host");
            return;
        }
        // 4 × 30 000 bytes: two sends of two segments each.
        let received = send_batch(socket, 30_000, 4).await;
        assert_eq!(
            received,
            vec![(30_000, 0), (30_000, 1), (30_000, 2), (30_000, 3)]
        );
    }

    #[tokio::test]
    async fn small_batches_pass_through() {
        let socket = QuicSocket::wrap(bound()).expect("wrap");
        let segments = socket.max_transmit_segments().min(10) as u8;
        let received = send_batch(socket, 1200, segments).await;
        assert_eq!(received.len(), usize::from(segments));
        assert!(received.iter().all(|&(n, _)| n == 1200));
    }

    /// Polls `socket` once for a batch of up to [`BATCH_SIZE`] datagrams (no waker to speak of:
    /// the caller polls again itself).
    fn poll_batch(socket: &QuicSocket) -> Poll<usize> {
        let mut storage = vec![[0u8; 2048]; BATCH_SIZE];
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut meta = [RecvMeta::default(); BATCH_SIZE];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        socket
            .poll_recv(&mut cx, &mut bufs, &mut meta)
            .map(|r| r.expect("receive"))
    }

    /// Waits until `socket` returns a batch, letting tokio's I/O driver run in between.
    async fn next_batch(socket: &QuicSocket) -> usize {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Poll::Ready(n) = poll_batch(socket) {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("a datagram within 5 s")
    }

    fn calls(socket: &QuicSocket) -> usize {
        socket.recv_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn a_short_read_ends_the_receive_without_another_call() {
        let socket = QuicSocket::new(bound()).expect("wrap");
        let to = socket.local_addr().expect("address");
        let sender = bound();
        sender.send_to(&[1; 100], to).expect("send");
        assert_eq!(next_batch(&socket).await, 1);
        let before = calls(&socket);
        // The queue is empty and the short batch said so: no call to find that out.
        assert_eq!(poll_batch(&socket), Poll::Pending);
        assert_eq!(calls(&socket), before);
        // A datagram arriving later raises readiness again and is received.
        sender.send_to(&[2; 100], to).expect("send");
        assert_eq!(next_batch(&socket).await, 1);
    }

    #[tokio::test]
    async fn a_full_batch_leaves_the_socket_readable() {
        let socket = QuicSocket::new(bound()).expect("wrap");
        let to = socket.local_addr().expect("address");
        let sender = bound();
        // Distinct sizes so that no receive offload merges them.
        for i in 0..BATCH_SIZE + 8 {
            sender.send_to(&vec![0; 100 + i], to).expect("send");
        }
        let first = next_batch(&socket).await;
        let calls_after_first = calls(&socket);
        assert_eq!(first, BATCH_SIZE);
        if BATCH_SIZE > 1 {
            // A full batch may have left datagrams behind: the socket stays readable and the
            // rest comes at once, without waiting for another readiness event.
            assert_eq!(poll_batch(&socket), Poll::Ready(8));
            assert_eq!(poll_batch(&socket), Poll::Pending);
            assert_eq!(calls(&socket), calls_after_first + 1);
        }
    }

    /// Pins down the quinn-udp behaviour this module works around: the unsplit batch is
    /// "sent" without error and never arrives. When this fails, upstream chunks by itself and
    /// the wrapper can go.
    #[tokio::test]
    async fn quinn_udp_alone_loses_an_oversized_batch() {
        use quinn::Runtime;
        let socket = quinn::TokioRuntime.wrap_udp_socket(bound()).expect("wrap");
        if socket.max_transmit_segments() < 4 {
            eprintln!("skipped: no UDP GSO on this host");
            return;
        }
        assert_eq!(send_batch(socket, 30_000, 4).await, Vec::new());
    }
}

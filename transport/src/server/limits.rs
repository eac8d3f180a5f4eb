//! Admission limits shared by both wires (connections, pending handshakes) with the live counters
//! behind them, and the request-body stall guard against slowloris-style senders.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Status;

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    requests: AtomicUsize,
}

/// Live counters of a server (both wires together), for monitoring and tests. Cheap to clone;
/// obtained from [`BoundServer::stats`](crate::BoundServer::stats).
#[derive(Debug, Clone, Default)]
pub struct ServerStats(Arc<Counters>);

impl ServerStats {
    /// Open connections, including those still in their handshake.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Acquire)
    }

    /// Connections whose TLS/QUIC handshake (or HTTP/2 preface) is still in progress.
    pub fn pending_handshakes(&self) -> usize {
        self.0.handshakes.load(Ordering::Acquire)
    }

    /// Request streams being served (from their HEADERS until the response is done or reset).
    pub fn active_requests(&self) -> usize {
        self.0.requests.load(Ordering::Acquire)
    }

    /// Takes a connection slot unless `max` are taken.
    pub(crate) fn try_connection(&self, max: usize) -> Option<Slot> {
        self.try_take(Which::Connection, max)
    }

    /// Takes a handshake slot unless `max` are taken.
    pub(crate) fn try_handshake(&self, max: usize) -> Option<Slot> {
        self.try_take(Which::Handshake, max)
    }

    /// Counts one request stream until the returned slot is dropped.
    pub(crate) fn request(&self) -> Slot {
        self.0.requests.fetch_add(1, Ordering::AcqRel);
        Slot {
            stats: self.clone(),
            which: Which::Request,
        }
    }

    fn counter(&self, which: Which) -> &AtomicUsize {
        match which {
            Which::Connection => &self.0.connections,
            Which::Handshake => &self.0.handshakes,
            Which::Request => &self.0.requests,
        }
    }

    fn try_take(&self, which: Which, max: usize) -> Option<Slot> {
        self.counter(which)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                stats: self.clone(),
                which,
            })
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Connection,
    Handshake,
    Request,
}

/// One counted connection, handshake or request; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    stats: ServerStats,
    which: Which,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats
            .counter(self.which)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A body that holds a [`Slot`] for as long as it lives (an HTTP/2 response: the stream is
    /// done when hyper drops it).
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        _slot: Slot,
    }
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, slot: Slot) -> Self {
        Counted { inner, _slot: slot }
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a request body is in gRPC's length-prefixed framing (PROTOCOL-HTTP2.md,
/// "Length-Prefixed-Message"): 1 flag byte, 4 length bytes, then the message.
#[derive(Debug, Default)]
struct Framing {
    /// Prefix bytes seen of the current message (0 = at a message boundary or in a payload).
    prefix_seen: u8,
    prefix_len: [u8; 4],
    /// Payload bytes still to come of the current message.
    payload_left: u64,
}

impl Framing {
    /// Feeds the next chunk of the body.
    fn advance(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                self.payload_left -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            // In (or at the start of) a 5-byte prefix.
            if self.prefix_seen > 0 {
                self.prefix_len[usize::from(self.prefix_seen) - 1] = chunk[0];
            }
            self.prefix_seen += 1;
            chunk = &chunk[1..];
            if self.prefix_seen == 5 {
                self.prefix_seen = 0;
                self.payload_left = u64::from(u32::from_be_bytes(self.prefix_len));
            }
        }
    }

    /// Part of a message has arrived and the rest has not.
    fn mid_message(&self) -> bool {
        self.prefix_seen > 0 || self.payload_left > 0
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with DEADLINE_EXCEEDED when the client stalls for `timeout`
    /// in the middle of a message (a slowloris "dribbler"). Silence between messages is allowed:
    /// long-lived streams (zone `Sync`) legitimately idle there.
    pub(crate) struct StallGuard<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        framing: Framing,
        last_progress: Instant,
        // Armed lazily and re-armed only when it fires, so a busy stream does not touch the timer
        // on every chunk.
        timer: Option<Pin<Box<Sleep>>>,
        failed: bool,
    }
}

impl<B> StallGuard<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            framing: Framing::default(),
            last_progress: Instant::now(),
            timer: None,
            failed: false,
        }
    }
}

impl<B> Body for StallGuard<B>
where
    B: Body<Data = Bytes, Error = Status>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.framing.advance(data.chunk());
                    *this.last_progress = Instant::now();
                }
                return Poll::Ready(frame);
            }
            Poll::Pending if !this.framing.mid_message() => return Poll::Pending,
            Poll::Pending => {}
        }
        loop {
            let due = *this.last_progress + *this.timeout;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() < due {
                // Progress since it was armed: wait for the rest of the new period.
                timer.as_mut().reset(due);
            }
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= due {
                *this.failed = true;
                return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "request body stalled mid-message for {:?}",
                    this.timeout
                )))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn framing_tracks_message_boundaries_across_chunks() {
        let mut f = Framing::default();
        assert!(!f.mid_message());
        // One 3-byte message split everywhere.
        let msg = [0u8, 0, 0, 0, 3, 7, 8, 9];
        for split in 0..msg.len() {
            let mut f = Framing::default();
            f.advance(&msg[..split]);
            assert_eq!(f.mid_message(), split > 0, "split {split}");
            f.advance(&msg[split..]);
            assert!(!f.mid_message(), "split {split}");
        }
        // Two messages (one empty) in one chunk, then the prefix of a third.
        f.advance(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 42, 0, 0]);
        assert!(f.mid_message());
        f.advance(&[0, 0, 0]);
        assert!(
            !f.mid_message(),
            "empty third message completes at its prefix"
        );
        // A huge declared length is only a counter, never an allocation.
        f.advance(&[0, 0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(f.payload_left, 0xffff_fffe);
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let stats = ServerStats::default();
        let a = stats.try_connection(2).unwrap();
        let b = stats.try_connection(2).unwrap();
        assert!(stats.try_connection(2).is_none());
        assert_eq!(stats.connections(), 2);
        drop(a);
        let _c = stats.try_connection(2).unwrap();
        drop(b);
        assert_eq!(stats.connections(), 1);
        let r = stats.request();
        assert_eq!(stats.active_requests(), 1);
        drop(r);
        assert_eq!(stats.active_requests(), 0);
    }

    #[tokio::test]
    async fn stalled_mid_message_fails_but_idle_between_messages_does_not() {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(4);
        let body = http_body_util::StreamBody::new(tokio_stream_like(rx));
        let mut guard = StallGuard::new(body, Duration::from_millis(200));
        // A whole message, then a long silence at the boundary: still waiting, no error.
        tx.send(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 1, 5]))))
            .await
            .unwrap();
        assert!(guard.frame().await.unwrap().is_ok());
        let idle = tokio::time::timeout(Duration::from_millis(500), guard.frame()).await;
        assert!(idle.is_err(), "silence between messages must be allowed");
        // Half a prefix, then silence: fails after the timeout.
        tx.send(Ok(Frame::data(Bytes::from_static(&[0, 0]))))
            .await
            .unwrap();
        assert!(guard.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = guard.frame().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(guard.frame().await.is_none());
    }

    fn tokio_stream_like<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}

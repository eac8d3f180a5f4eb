//! The `h3::quic` traits implemented over quinn — our own backend instead of `h3-quinn`, for two
//! reasons found while testing cancellation (RFC 9114 §4.1.1):
//!
//! 1. `h3-quinn` 0.0.10 moves the `quinn::RecvStream` into its pending read future, so a
//!    `stop_sending` while a read is pending unwraps `None` and panics — exactly when a caller
//!    drops a call whose response has not arrived (tonic-h3 0.0.6 panics there too). Here reads poll
//!    quinn's cancel-safe `read_chunk` in place, so the stream is always at hand. Upstream:
//!    hyperium/h3#330; its fix hyperium/h3#331 (merged, not in h3-quinn 0.0.10) defers the stop
//!    until the pending read ends, so the peer gets STOP_SENDING with code 0 instead of ours
//!    (hyperium/h3#361, open).
//! 2. A server must notice a client's STOP_SENDING while the handler is still computing a unary
//!    response, to cancel it; h3 exposes no such signal (hyperium/h3#350, open). quinn's
//!    `SendStream::stopped()` future is `'static`, so each accepted request stream registers it in
//!    a per-connection [`StreamSignals`], where the request's task picks it up by stream id —
//!    together with whether the stream arrived as 0-RTT early data, for the server's replay policy
//!    (h3 0.0.8 does not expose it; hyperium/h3#323 adds it, merged, unreleased).
//!
//! Remove this backend for h3-quinn when a released h3-quinn applies `stop_sending` at once with
//! the caller's code while a read is pending, and a released h3 exposes the peer's STOP_SENDING
//! and 0-RTT per request stream.
//!
//! It also does two things for small calls (docs/performance-notes.md, 2026-12-05): a frame whose
//! successor is ready already is held and written together with it ([`write`]), and quinn futures
//! that h3 polls on every wake of its connection task are polled only once quinn has woken them
//! ([`WakeGate`]).
//!
//! Structure follows h3-quinn (MIT) closely; error conversion follows RFC 9000 §20.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use futures::task::{ArcWake, AtomicWaker, waker_ref};
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::{ReadError, VarInt, WriteError};

use super::empty_data::EmptyDataFilter;

/// Resolves when the peer sends STOP_SENDING for a stream (or the connection ends).
pub(crate) type Stopped = BoxFuture<'static, ()>;

/// What the server needs to know about an accepted request stream that h3 does not tell.
pub(crate) struct StreamFacts {
    /// Resolves when the client sends STOP_SENDING (it dropped the call).
    pub(crate) stopped: Stopped,
    /// The stream was opened in 0-RTT early data (replayable, RFC 9001 §9.2).
    pub(crate) early: bool,
}

/// Per-connection registry of [`StreamFacts`] of accepted request streams, by stream id.
#[derive(Clone, Default)]
pub(crate) struct StreamSignals(Arc<Mutex<HashMap<u64, StreamFacts>>>);

impl StreamSignals {
    fn insert(&self, id: u64, facts: StreamFacts) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, facts);
    }

    /// Takes the facts of request stream `id`; `None` if they were taken or the stream is gone.
    pub(crate) fn take(&self, id: u64) -> Option<StreamFacts> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }
}

type Accepted<T> = BoxStream<'static, Result<T, quinn::ConnectionError>>;

/// Lets a pending quinn future be polled again only once quinn has woken it.
///
/// h3's connection task polls the accept of request streams, the accept of unidirectional
/// streams and a read of the peer's control stream every time it runs — also when it was woken
/// for something else, such as the end of a request. Each such poll of a pending quinn future
/// takes the connection's state lock, which quinn's driver holds while it processes and sends
/// packets, often on the other worker at that very moment. With one call in flight, those lock
/// waits and the wakes that release them were about a quarter of the server's futex calls (see
/// docs/performance-notes.md, 2026-12-05).
struct WakeGate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for WakeGate {
    fn wake_by_ref(gate: &Arc<Self>) {
        gate.woken.store(true, Ordering::Release);
        gate.task.wake();
    }
}

impl WakeGate {
    fn new() -> Arc<Self> {
        Arc::new(WakeGate {
            // The first poll always goes through (nothing has registered a waker yet).
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    /// Runs `poll` under the gate's own waker if quinn woke the gate since `poll` last returned
    /// `Pending` (or it returned `Ready`: there may be more); otherwise `Pending` without polling.
    /// Either way `cx`'s task is the one the gate wakes.
    fn poll<R>(
        self: &Arc<Self>,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        self.task.register(cx.waker());
        if !self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = waker_ref(self);
        let polled = poll(&mut Context::from_waker(&waker));
        if polled.is_ready() {
            self.woken.store(true, Ordering::Release);
        }
        polled
    }
}

/// A QUIC connection for h3.
pub(crate) struct Connection {
    conn: quinn::Connection,
    incoming_bi: Accepted<(quinn::SendStream, quinn::RecvStream)>,
    incoming_uni: Accepted<quinn::RecvStream>,
    bi_gate: Arc<WakeGate>,
    uni_gate: Arc<WakeGate>,
    opener: OpenStreams,
    stops: Option<StreamSignals>,
}

impl Connection {
    /// Wraps `conn`. With `stops`, accepted bidirectional streams register their STOP_SENDING
    /// signal there (servers).
    pub(crate) fn new(conn: quinn::Connection, stops: Option<StreamSignals>) -> Self {
        Connection {
            incoming_bi: stream::unfold(conn.clone(), |c| async {
                let r = c.accept_bi().await;
                Some((r, c))
            })
            .boxed(),
            incoming_uni: stream::unfold(conn.clone(), |c| async {
                let r = c.accept_uni().await;
                Some((r, c))
            })
            .boxed(),
            bi_gate: WakeGate::new(),
            uni_gate: WakeGate::new(),
            opener: OpenStreams::new(conn.clone()),
            conn,
            stops,
        }
    }
}

fn next_accepted<T>(
    stream: &mut Accepted<T>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, ConnectionErrorIncoming>> {
    match ready!(stream.poll_next_unpin(cx)) {
        Some(r) => Poll::Ready(r.map_err(convert_connection_error)),
        // unfold never ends; treat an end like a closed connection all the same.
        None => Poll::Ready(Err(ConnectionErrorIncoming::InternalError(
            "QUIC accept stream ended".into(),
        ))),
    }
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        let recv = ready!(
            self.uni_gate
                .poll(cx, |cx| next_accepted(&mut self.incoming_uni, cx))
        )?;
        Poll::Ready(Ok(RecvStream::unidirectional(recv)))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, ConnectionErrorIncoming>> {
        let (send, recv) = ready!(
            self.bi_gate
                .poll(cx, |cx| next_accepted(&mut self.incoming_bi, cx))
        )?;
        let cleanup = self.stops.as_ref().map(|stops| {
            let id = u64::from(send.id());
            let stopped = send.stopped();
            stops.insert(
                id,
                StreamFacts {
                    stopped: Box::pin(async move {
                        let _ = stopped.await;
                    }),
                    early: recv.is_0rtt(),
                },
            );
            (stops.clone(), id)
        });
        Poll::Ready(Ok(BidiStream {
            send: SendStream::new(send),
            recv: RecvStream::request(recv, cleanup),
        }))
    }

    fn opener(&self) -> OpenStreams {
        OpenStreams::new(self.conn.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type SendStream = SendStream<B>;
    type BidiStream = BidiStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        <OpenStreams as quic::OpenStreams<B>>::poll_open_bidi(&mut self.opener, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        <OpenStreams as quic::OpenStreams<B>>::poll_open_send(&mut self.opener, cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        close(&self.conn, code, reason);
    }
}

fn close(conn: &quinn::Connection, code: Code, reason: &[u8]) {
    conn.close(
        VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX),
        reason,
    );
}

/// Opens request (bidi) and control (uni) streams.
pub(crate) struct OpenStreams {
    conn: quinn::Connection,
    opening_bi: Option<
        BoxFuture<'static, Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>>,
    >,
    opening_uni: Option<BoxFuture<'static, Result<quinn::SendStream, quinn::ConnectionError>>>,
}

impl OpenStreams {
    fn new(conn: quinn::Connection) -> Self {
        OpenStreams {
            conn,
            opening_bi: None,
            opening_uni: None,
        }
    }
}

impl Clone for OpenStreams {
    fn clone(&self) -> Self {
        OpenStreams::new(self.conn.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for OpenStreams {
    type SendStream = SendStream<B>;
    type BidiStream = BidiStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opening = self.opening_bi.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.open_bi().await })
        });
        // Waits here while the peer's stream limit (MAX_STREAMS) is reached.
        let result = ready!(opening.as_mut().poll(cx));
        self.opening_bi = None;
        let (send, recv) = result.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: convert_connection_error(e),
        })?;
        Poll::Ready(Ok(BidiStream {
            send: SendStream::new(send),
            recv: RecvStream::request(recv, None),
        }))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opening = self.opening_uni.get_or_insert_with(|| {
            let conn = conn.clone();
            Box::pin(async move { conn.open_uni().await })
        });
        let result = ready!(opening.as_mut().poll(cx));
        self.opening_uni = None;
        let send = result.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: convert_connection_error(e),
        })?;
        Poll::Ready(Ok(SendStream::new(send)))
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        close(&self.conn, code, reason);
    }
}

/// A request stream before h3 splits it.
pub(crate) struct BidiStream<B: Buf> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B: Buf> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code)
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// The receiving half of a stream.
pub(crate) struct RecvStream {
    stream: quinn::RecvStream,
    /// Removes the stream's STOP_SENDING signal from the registry once the stream is gone.
    registered: Option<(StreamSignals, u64)>,
    /// On request streams (bidi): drops empty DATA frames h3 would choke on (see empty_data.rs).
    filter: Option<EmptyDataFilter>,
    /// On the peer's unidirectional streams (control, QPACK), which h3 reads whenever its
    /// connection task runs: read only once quinn signalled data (see [`WakeGate`]).
    gate: Option<Arc<WakeGate>>,
}

impl RecvStream {
    /// A unidirectional stream the peer opened (control, QPACK or unknown type).
    fn unidirectional(stream: quinn::RecvStream) -> Self {
        RecvStream {
            stream,
            registered: None,
            filter: None,
            gate: Some(WakeGate::new()),
        }
    }

    fn request(stream: quinn::RecvStream, registered: Option<(StreamSignals, u64)>) -> Self {
        RecvStream {
            stream,
            registered,
            filter: Some(EmptyDataFilter::default()),
            gate: None,
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if let Some((stops, id)) = self.registered.take() {
            stops.take(id);
        }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        loop {
            if let Some(piece) = self.filter.as_mut().and_then(EmptyDataFilter::pop) {
                return Poll::Ready(Ok(Some(piece)));
            }
            // `read_chunk` is cancel-safe (quinn docs): a fresh future per poll loses nothing.
            let stream = &mut self.stream;
            let mut read =
                |cx: &mut Context<'_>| pin!(stream.read_chunk(usize::MAX, true)).poll(cx);
            let chunk = match &self.gate {
                Some(gate) => ready!(gate.poll(cx, read)),
                None => ready!(read(cx)),
            }
            .map_err(convert_read_error)?;
            let Some(filter) = self.filter.as_mut() else {
                return Poll::Ready(Ok(chunk.map(|c| c.bytes)));
            };
            match chunk {
                Some(chunk) => {
                    if let Some(whole) = filter.pass(chunk.bytes) {
                        return Poll::Ready(Ok(Some(whole)));
                    }
                }
                None => {
                    filter.finish();
                    if let Some(piece) = filter.pop() {
                        return Poll::Ready(Ok(Some(piece)));
                    }
                    return Poll::Ready(Ok(None));
                }
            }
        }
    }

    fn stop_sending(&mut self, error_code: u64) {
        // Err only when the stream is already finished or stopped: nothing left to stop.
        let _ = self
            .stream
            .stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

thread_local! {
    /// What the write being polled on this thread offers the backend (see [`write`]).
    static OFFER: std::cell::RefCell<Offer> = const {
        std::cell::RefCell::new(Offer { payload: None, hold: false })
    };
}

struct Offer {
    /// The payload of the DATA frame being handed to h3, to take without a copy.
    payload: Option<Bytes>,
    /// More frames of this stream are ready: keep the write for them.
    hold: bool,
}

/// Most bytes a stream holds back for the frames that follow (see [`write`]). Past it the held
/// frames go to quinn at once: a bulk response gains nothing from waiting, and memory stays
/// bounded. 64 KiB is one datagram on loopback and a full GSO batch elsewhere.
const HOLD_LIMIT: usize = 64 * 1024;

/// Runs `send`, one of h3's frame writes (`send_data(payload.clone())`, `send_response`, ...),
/// with two offers to the backend:
///
/// - **`payload`**: the payload of a DATA frame reaches quinn without a copy. h3 0.0.8 hands a
///   backend DATA frames only as an opaque [`WriteBuf`] (frame header, then payload) whose payload
///   `Bytes` cannot be taken out, and quinn's `poll_write(&[u8])` copies every byte into a fresh
///   buffer (h3-quinn does the same). While `send` is polled the payload is offered here; the
///   backend takes it only if the frame's payload is that very memory, and then queues header and
///   payload as `Bytes` chunks (quinn's `write_chunks`, no copy). Anything else is copied once.
/// - **`hold`**: the caller has the stream's next frame in hand already, so this frame is kept
///   and goes to quinn together with the next write, or with FIN. Each write to quinn wakes its
///   connection driver, which may run at once on another worker and send what it finds: written
///   one by one, a unary response left as HEADERS in one datagram and DATA plus trailers in a
///   second about one time in eight, and the peer woke twice (docs/performance-notes.md).
///   A held frame is never left behind: the stream's next write without `hold`, its FIN, or
///   [`HOLD_LIMIT`] sends it.
pub(crate) async fn write<F: Future>(payload: Option<&Bytes>, hold: bool, send: F) -> F::Output {
    let mut send = pin!(send);
    std::future::poll_fn(|cx| {
        OFFER.with(|o| {
            let mut o = o.borrow_mut();
            o.payload = payload.cloned();
            o.hold = hold;
        });
        let polled = send.as_mut().poll(cx);
        OFFER.with(|o| {
            let mut o = o.borrow_mut();
            o.payload = None;
            o.hold = false;
        });
        polled
    })
    .await
}

pub(super) fn hold_offered() -> bool {
    OFFER.with(|o| o.borrow().hold)
}

/// The sending half of a stream.
pub(crate) struct SendStream<B: Buf> {
    stream: quinn::SendStream,
    /// The frame h3 passed to `send_data`, queued by the next `poll_ready`.
    writing: Option<WriteBuf<B>>,
    /// Chunks not yet handed to quinn, in order (what a hold has kept back, or what flow
    /// control has not taken yet).
    queued: Vec<Bytes>,
    /// Finished or reset on purpose, or something was written (see Drop).
    used: bool,
}

impl<B: Buf> SendStream<B> {
    fn new(stream: quinn::SendStream) -> Self {
        SendStream {
            stream,
            writing: None,
            queued: Vec::new(),
            used: false,
        }
    }

    /// Bytes queued and not yet handed to quinn.
    fn queued_len(&self) -> usize {
        self.queued.iter().map(Bytes::len).sum()
    }

    /// Hands every queued chunk to quinn (one `write_chunks` call when flow control allows).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        while !self.queued.is_empty() {
            // `write_chunks` is cancel-safe (quinn docs): a fresh future per poll is fine. It
            // advances a partly written chunk in place and counts only whole ones.
            let done = ready!(pin!(self.stream.write_chunks(&mut self.queued)).poll(cx))?;
            self.queued.drain(..done.chunks);
        }
        Poll::Ready(Ok(()))
    }
}

impl<B: Buf> Drop for SendStream<B> {
    fn drop(&mut self) {
        // quinn *finishes* a dropped stream. For a stream abandoned before anything was written
        // (a request whose HEADERS never completed) that would send a bare FIN, which the peer
        // reads as a malformed message; reset it instead (RFC 9114 §4.1.1). Once something was
        // written, keep quinn's FIN: h3 relies on it after its own final frames (e.g. the 431
        // response to an oversized header section).
        if !self.used {
            let _ = self.stream.reset(
                VarInt::from_u64(crate::error::sent::CANCELLED.value()).unwrap_or(VarInt::MAX),
            );
            return;
        }
        // A held frame must not be lost behind that FIN. Our writers always follow a held write
        // with another write or FIN, so this is a safety net: what flow control takes now.
        if !self.queued.is_empty() {
            let waker = futures::task::noop_waker();
            let _ = self.poll_flush(&mut Context::from_waker(&waker));
        }
    }
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        if let Some(mut data) = self.writing.take() {
            match zero_copy(&mut data) {
                Some(chunks) => self.queued.extend(chunks),
                None if data.has_remaining() => {
                    // One copy, as quinn's `poll_write` would have made.
                    self.queued.push(data.copy_to_bytes(data.remaining()));
                }
                None => {}
            }
        }
        if hold_offered() && self.queued_len() <= HOLD_LIMIT {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_flush(cx)).map_err(convert_write_error)?;
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.used = true;
        if self.writing.is_some() {
            // h3 always waits for poll_ready first; reaching this is a bug in the stack.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "send_data while a write is pending".into(),
                ),
            });
        }
        self.writing = Some(data.into());
        Ok(())
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.used = true;
        // Held frames go with the FIN: one `write_chunks` and `finish` back to back.
        ready!(self.poll_flush(cx)).map_err(convert_write_error)?;
        Poll::Ready(
            self.stream
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        self.used = true;
        // Held frames die with the stream (RESET_STREAM discards unsent data anyway).
        self.queued.clear();
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

#[allow(clippy::expect_used)]
fn stream_id(id: quinn::StreamId) -> StreamId {
    // Not peer input: quinn's stream ids are QUIC varints (< 2^62), exactly StreamId's domain.
    StreamId::try_from(u64::from(id)).expect("quinn stream id is a varint")
}

fn convert_connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose {
                error_code: close.error_code.into_inner(),
            }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn convert_read_error(e: ReadError) -> StreamErrorIncoming {
    match e {
        ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        ReadError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: convert_connection_error(e),
        },
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

/// Header and payload of `frame` as `Bytes` if its payload is the one [`write`] offers
/// (same memory, same length); `None`, with `frame` untouched, for any other frame.
fn zero_copy<B: Buf>(frame: &mut WriteBuf<B>) -> Option<[Bytes; 2]> {
    OFFER.with(|offered| {
        let mut offered = offered.borrow_mut();
        let payload = offered.payload.as_ref().filter(|p| !p.is_empty())?;
        let header_len = frame.remaining().checked_sub(payload.len())?;
        // A DATA frame's WriteBuf yields its encoded header as the first chunk, then the payload.
        if header_len == 0 || frame.chunk().len() != header_len {
            return None;
        }
        let header = Bytes::copy_from_slice(frame.chunk());
        frame.advance(header_len);
        let body = frame.chunk();
        if body.as_ptr() != payload.as_ptr() || body.len() != payload.len() {
            // Same length, other memory: not our payload after all. The header is taken out
            // already, so the rest goes as a copy, as it would have on the copying path.
            return Some([header, frame.copy_to_bytes(frame.remaining())]);
        }
        let payload = offered.payload.take()?;
        frame.advance(payload.len());
        Some([header, payload])
    })
}

fn convert_write_error(e: WriteError) -> StreamErrorIncoming {
    match e {
        WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: convert_connection_error(e),
        },
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use h3::proto::frame::Frame;
    use std::time::Duration;

    /// Counts the wake-ups of a task.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(wakes: &Arc<Self>) {
            wakes.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The gate polls its future the first time, then only after that future's waker fired,
    /// and passes the wake-up on to the task that polled last.
    #[test]
    fn a_gated_future_is_polled_only_after_it_woke() {
        let task = Arc::new(Wakes::default());
        let task_waker = futures::task::waker(task.clone());
        let cx = Context::from_waker(&task_waker);
        let gate = WakeGate::new();
        let (tx, mut rx) = futures::channel::oneshot::channel::<u32>();
        let polls = std::cell::Cell::new(0);
        let mut poll = |gate: &Arc<WakeGate>| {
            gate.poll(&cx, |cx| {
                polls.set(polls.get() + 1);
                futures::FutureExt::poll_unpin(&mut rx, cx)
            })
        };
        assert!(poll(&gate).is_pending());
        assert!(poll(&gate).is_pending());
        assert!(poll(&gate).is_pending());
        assert_eq!(polls.get(), 1, "not polled again before it woke");
        assert_eq!(task.0.load(Ordering::Relaxed), 0);
        tx.send(7).unwrap();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task is woken");
        assert!(matches!(poll(&gate), Poll::Ready(Ok(7))));
        assert_eq!(polls.get(), 2);
        // After a result the next call polls again: an accept may have more queued.
        let _ = poll(&gate);
        assert_eq!(polls.get(), 3);
    }

    /// A client connection to a loopback server and the server's end of it.
    async fn connected() -> (quinn::Connection, quinn::Connection, [quinn::Endpoint; 2]) {
        use crate::quic::{QuicSettings, client_config, endpoint, server_config};
        let settings = QuicSettings::default();
        let certs = dev_certs::DevCerts::generate().unwrap();
        let tls = crate::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
            .unwrap()
            .server_config(crate::tls::ALPN_H3)
            .unwrap();
        let server_config = server_config(tls, &settings).unwrap();
        let localhost = "127.0.0.1:0".parse().unwrap();
        let server = endpoint(localhost, Some(server_config), None, &settings).unwrap();
        let mut client_tls = crate::tls::ClientTls::default();
        client_tls.roots = Some(crate::tls::roots_from_pem(&certs.ca_pem, "CA").unwrap());
        let client_tls = client_tls.client_config(crate::tls::ALPN_H3).unwrap();
        let client = endpoint(localhost, None, None, &settings).unwrap();
        let config = client_config(client_tls, &settings).unwrap();
        let connecting = client
            .connect_with(config, server.local_addr().unwrap(), "localhost")
            .unwrap();
        let (ours, theirs) =
            tokio::join!(connecting, async { server.accept().await.unwrap().await });
        (ours.unwrap(), theirs.unwrap(), [client, server])
    }

    /// Queues `frame` on `send` and waits until the backend takes it (held or handed to quinn).
    async fn put(send: &mut SendStream<Bytes>, frame: WriteBuf<Bytes>, hold: bool) {
        use quic::SendStream as _;
        send.send_data(frame).unwrap();
        write(None, hold, std::future::poll_fn(|cx| send.poll_ready(cx)))
            .await
            .unwrap();
    }

    /// Reads the whole of the next unidirectional stream from `conn`, up to its FIN.
    async fn read_all(conn: &quinn::Connection) -> Vec<u8> {
        let mut recv = conn.accept_uni().await.unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    }

    fn frame_bytes(frame: WriteBuf<Bytes>) -> Vec<u8> {
        let mut frame = frame;
        frame.copy_to_bytes(frame.remaining()).to_vec()
    }

    /// A held frame stays with the stream until a write without hold (or FIN) takes it; then
    /// everything goes out in order.
    #[tokio::test]
    async fn held_frames_go_with_the_next_write() {
        use quic::SendStream as _;
        let (client, server, _endpoints) = connected().await;
        let mut send = SendStream::new(client.open_uni().await.unwrap());
        let head = Bytes::from_static(b"first");
        put(&mut send, data_frame(&head), true).await;
        assert_eq!(
            send.queued_len(),
            2 + head.len(),
            "held, not given to quinn"
        );
        let arrived = tokio::time::timeout(Duration::from_millis(200), server.accept_uni()).await;
        assert!(arrived.is_err(), "nothing of a held frame reaches the peer");

        let tail = Bytes::from(vec![3u8; 1000]);
        put(&mut send, data_frame(&tail), true).await;
        let last = Bytes::from_static(b"last");
        put(&mut send, data_frame(&last), false).await;
        assert_eq!(
            send.queued_len(),
            0,
            "a write without hold takes what was held"
        );
        std::future::poll_fn(|cx| send.poll_finish(cx))
            .await
            .unwrap();

        let mut expected = frame_bytes(data_frame(&head));
        expected.extend(frame_bytes(data_frame(&tail)));
        expected.extend(frame_bytes(data_frame(&last)));
        assert_eq!(read_all(&server).await, expected);
    }

    /// FIN takes held frames with it; past `HOLD_LIMIT` nothing is held.
    #[tokio::test]
    async fn fin_and_the_hold_limit_send_held_frames() {
        use quic::SendStream as _;
        let (client, server, _endpoints) = connected().await;
        let mut send = SendStream::new(client.open_uni().await.unwrap());
        let small = Bytes::from_static(b"small");
        put(&mut send, data_frame(&small), true).await;
        let big = Bytes::from(vec![9u8; HOLD_LIMIT]);
        put(&mut send, data_frame(&big), true).await;
        assert_eq!(
            send.queued_len(),
            0,
            "over the limit: written although held"
        );
        let after = Bytes::from_static(b"after");
        put(&mut send, data_frame(&after), true).await;
        assert_ne!(send.queued_len(), 0);
        std::future::poll_fn(|cx| send.poll_finish(cx))
            .await
            .unwrap();

        let mut expected = frame_bytes(data_frame(&small));
        expected.extend(frame_bytes(data_frame(&big)));
        expected.extend(frame_bytes(data_frame(&after)));
        assert_eq!(read_all(&server).await, expected);
    }

    /// A stream dropped with a frame held still delivers it before quinn's FIN.
    #[tokio::test]
    async fn a_dropped_stream_delivers_what_it_held() {
        let (client, server, _endpoints) = connected().await;
        let mut send = SendStream::new(client.open_uni().await.unwrap());
        let payload = Bytes::from_static(b"kept");
        put(&mut send, data_frame(&payload), true).await;
        drop(send);
        assert_eq!(read_all(&server).await, frame_bytes(data_frame(&payload)));
    }

    fn offer(payload: &Bytes) {
        OFFER.with(|o| o.borrow_mut().payload = Some(payload.clone()));
    }

    fn data_frame(payload: &Bytes) -> WriteBuf<Bytes> {
        Frame::Data(payload.clone()).into()
    }

    #[test]
    fn the_offered_payload_goes_to_quinn_without_a_copy() {
        let payload = Bytes::from(vec![7u8; 70_000]);
        offer(&payload);
        let mut frame = data_frame(&payload);
        let [header, body] = zero_copy(&mut frame).expect("our payload is recognised");
        // RFC 9114 §7.2.1: type 0x00, then the length as a 4-byte varint (RFC 9000 §16).
        assert_eq!(&header[..], &[0x00, 0x80, 0x01, 0x11, 0x70]);
        assert_eq!(
            body.as_ptr(),
            payload.as_ptr(),
            "the same memory, not a copy"
        );
        assert_eq!(body.len(), payload.len());
        assert!(!frame.has_remaining());
        assert!(
            OFFER.with(|o| o.borrow().payload.is_none()),
            "the offer is used up"
        );
    }

    #[test]
    fn other_frames_take_the_copying_path_intact() {
        let payload = Bytes::from(vec![7u8; 1000]);
        // Nothing offered.
        let mut frame = data_frame(&payload);
        assert!(zero_copy(&mut frame).is_none());
        assert_eq!(frame.remaining(), 1000 + 3);
        // Another frame while ours is offered (h3 may write a frame of its own first).
        offer(&payload);
        let other = Bytes::from(vec![1u8; 10]);
        let mut frame = data_frame(&other);
        assert!(zero_copy(&mut frame).is_none());
        assert_eq!(frame.remaining(), 10 + 2);
        assert!(
            OFFER.with(|o| o.borrow().payload.is_some()),
            "the offer is still there"
        );
        // Same length, other memory: written whole, as a copy.
        let twin = Bytes::from(vec![9u8; 1000]);
        let mut frame = data_frame(&twin);
        let [header, body] = zero_copy(&mut frame).unwrap();
        assert_eq!(&header[..], &[0x00, 0x43, 0xe8]);
        assert_eq!(body, twin);
        assert_ne!(body.as_ptr(), payload.as_ptr());
        // Empty DATA frames are left to the copying path.
        let empty = Bytes::new();
        offer(&empty);
        let mut frame = data_frame(&empty);
        assert!(zero_copy(&mut frame).is_none());
        assert_eq!(frame.remaining(), 2);
    }
}

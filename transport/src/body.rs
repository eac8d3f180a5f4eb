//! Body adapters shared by both wires.
//!
//! [`CancelOnDrop`] ties a call's request body to the caller's interest in it: when the caller drops
//! the call (response future or response stream), the request body fails with a cancellation, which
//! makes the wire reset the stream — RST_STREAM(CANCEL) on HTTP/2 (PROTOCOL-HTTP2.md, "Errors") and
//! H3_REQUEST_CANCELLED on HTTP/3 (RFC 9114 §4.1.1) — even while the caller's request stream is
//! still open (a dropped bidi call "mid-write").

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};

use tonic::Status;

use crate::error::{BoxError, status_from_h3};

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

/// Cancels the paired [`CancelableBody`] when dropped.
pub(crate) struct CancelOnDrop(Arc<Shared>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The error a request body yields once its call was dropped. Its source is the HTTP/2 reason
/// `CANCEL`, which hyper copies into the RST_STREAM it sends.
#[derive(Debug, thiserror::Error)]
#[error("call dropped by the client")]
pub(crate) struct CallDropped {
    #[source]
    reason: h2::Error,
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`CallDropped`] once its [`CancelOnDrop`] is gone.
    pub(crate) struct CancelableBody<B> {
        #[pin]
        inner: B,
        shared: Arc<Shared>,
    }
}

/// Wraps `body`; dropping the returned guard cancels it.
pub(crate) fn cancelable<B>(body: B) -> (CancelableBody<B>, CancelOnDrop) {
    let shared = Arc::new(Shared::default());
    (
        CancelableBody {
            inner: body,
            shared: shared.clone(),
        },
        CancelOnDrop(shared),
    )
}

impl<B> Body for CancelableBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        // Register before checking, so a drop between the two still wakes us.
        this.shared.waker.register(cx.waker());
        if this.shared.cancelled.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(CallDropped {
                reason: h2::Reason::CANCEL.into(),
            }))));
        }
        this.inner.poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call's [`CancelOnDrop`] alive for as long as it is read.
    pub(crate) struct Guarded<B> {
        #[pin]
        inner: B,
        _guard: CancelOnDrop,
    }
}

impl<B> Guarded<B> {
    pub(crate) fn new(inner: B, guard: CancelOnDrop) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body> Body for Guarded<B> {
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

/// The receive half of an HTTP/3 request stream, client's or server's (h3 has one type for each).
pub(crate) trait RecvHalf: Send + Unpin {
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, h3::error::StreamError>>;
    fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<http::HeaderMap>, h3::error::StreamError>>;
    fn stop_sending(&mut self, code: h3::error::Code);
}

macro_rules! impl_recv_half {
    ($ty:ty) => {
        impl<S> RecvHalf for $ty
        where
            S: h3::quic::RecvStream + Send + Unpin,
        {
            fn poll_data(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Option<Bytes>, h3::error::StreamError>> {
                // quinn hands out `Bytes`; copy_to_bytes on it is a reference-count bump, not a copy.
                self.poll_recv_data(cx)
                    .map_ok(|buf| buf.map(|mut b| b.copy_to_bytes(b.remaining())))
            }
            fn poll_trailers(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Option<http::HeaderMap>, h3::error::StreamError>> {
                self.poll_recv_trailers(cx)
            }
            fn stop_sending(&mut self, code: h3::error::Code) {
                <$ty>::stop_sending(self, code)
            }
        }
    };
}

impl_recv_half!(h3::client::RequestStream<S, Bytes>);
impl_recv_half!(h3::server::RequestStream<S, Bytes>);

/// An HTTP/3 message body (RFC 9114 §4.1): DATA frames, then optional trailing HEADERS. Dropped
/// before the end, it asks the peer to stop sending with `stop_code` (§4.1.1/§4.1.2).
pub(crate) struct H3Body<R: RecvHalf> {
    recv: R,
    stop_code: h3::error::Code,
    data_done: bool,
    done: bool,
    /// A declared `content-length` the DATA must add up to (RFC 9114 §4.1.2), and the count so far.
    length: Option<ContentLength>,
}

/// The `content-length` check of one message; `malformed` is raised for the stream's owner, who
/// must then reset the stream with H3_MESSAGE_ERROR instead of answering.
pub(crate) struct ContentLength {
    pub(crate) declared: u64,
    pub(crate) received: u64,
    pub(crate) malformed: Arc<AtomicBool>,
}

impl<R: RecvHalf> H3Body<R> {
    pub(crate) fn new(recv: R, stop_code: h3::error::Code) -> Self {
        H3Body {
            recv,
            stop_code,
            data_done: false,
            done: false,
            length: None,
        }
    }

    /// Checks the DATA against a declared `content-length`.
    pub(crate) fn with_content_length(mut self, length: ContentLength) -> Self {
        self.length = Some(length);
        self
    }

    /// Accounts `n` more bytes (or the end, `None`); false once they disagree with the declared length.
    fn length_ok(&mut self, n: Option<usize>) -> bool {
        let Some(length) = self.length.as_mut() else {
            return true;
        };
        let ok = match n {
            Some(n) => {
                length.received += n as u64;
                length.received <= length.declared
            }
            None => length.received == length.declared,
        };
        if !ok {
            length.malformed.store(true, Ordering::Release);
        }
        ok
    }
}

impl<R: RecvHalf> H3Body<R> {
    /// Stops reading: asks the peer to stop sending and ends the body.
    pub(crate) fn abandon(&mut self) {
        self.abandon_with(self.stop_code);
    }

    fn abandon_with(&mut self, code: h3::error::Code) {
        if !self.done {
            self.done = true;
            self.recv.stop_sending(code);
        }
    }
}

impl<R: RecvHalf> Drop for H3Body<R> {
    fn drop(&mut self) {
        if !self.done {
            self.recv.stop_sending(self.stop_code);
        }
    }
}

impl<R: RecvHalf> Body for H3Body<R> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Ok(Some(bytes)) if this.length_ok(Some(bytes.len())) => {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(None) if this.length_ok(None) => this.data_done = true,
                Ok(_) => {
                    this.abandon_with(h3::error::Code::H3_MESSAGE_ERROR);
                    return Poll::Ready(Some(Err(Status::internal(
                        "message length differs from its content-length (RFC 9114 §4.1.2)",
                    ))));
                }
                Err(err) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status_from_h3(&err))));
                }
            }
        }
        let result = ready!(this.recv.poll_trailers(cx));
        this.done = true;
        Poll::Ready(match result {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(err) => Some(Err(status_from_h3(&err))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

//! A client's cancel read from the request body reaches the handler as a cancellation, never as a
//! clean end of input.
//!
//! A client that drops a call resets its request stream (RESET_STREAM with
//! H3_REQUEST_CANCELLED, RFC 9114 §4.1.1) and stops the response (STOP_SENDING); `serve_request`
//! drops the handler when the STOP_SENDING arrives. The request body reports the reset as a
//! CANCELLED error, and tonic's decoder turns exactly that error into the end of the input on a
//! server (tonic 0.14 `codec/decode.rs`: `Code::Cancelled` on a request → `None`). Whenever the
//! reset was read first — the two frames come from different tasks of the client, and other
//! clients may send only the reset — a client-streaming handler finished with what had arrived
//! as if the upload were complete (5 of 40 runs of
//! `dropped_client_stream_mid_write_ends_handler`). [`CancelOnReset`] signals [`PeerCancel`]
//! and holds the error back for one poll, and `serve_request` checks the signal before it polls
//! the handler again, so the handler is dropped first. A reader on another task gets the error
//! on its next poll and is not left waiting.
//!
//! Upstream: tonic reads a cancelled request body as its end on purpose (grpc/grpc-rust#1315,
//! tonic's repository, formerly hyperium/tonic). Keep this while a released tonic does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

/// Set once the request body has read the client's reset.
#[derive(Debug, Default)]
pub(crate) struct PeerCancel {
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

impl PeerCancel {
    /// Resolves once the request body has read the client's reset.
    pub(crate) fn wait(self: &Arc<Self>) -> impl Future<Output = ()> + Unpin + use<> {
        let this = self.clone();
        std::future::poll_fn(move |cx| {
            this.waker.register(cx.waker());
            if this.cancelled.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn signal(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.waker.wake();
    }
}

pin_project_lite::pin_project! {
    /// A request body whose CANCELLED error signals its [`PeerCancel`] one poll before it is
    /// returned (module docs).
    pub(crate) struct CancelOnReset<B> {
        #[pin]
        inner: B,
        cancel: Arc<PeerCancel>,
        held: Option<Status>,
    }
}

impl<B> CancelOnReset<B> {
    pub(crate) fn new(inner: B, cancel: Arc<PeerCancel>) -> Self {
        CancelOnReset {
            inner,
            cancel,
            held: None,
        }
    }
}

impl<B> Body for CancelOnReset<B>
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
        if let Some(status) = this.held.take() {
            return Poll::Ready(Some(Err(status)));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(status))) if status.code() == Code::Cancelled => {
                this.cancel.signal();
                *this.held = Some(status);
                // Polled again after the signal was seen: by then `serve_request` has dropped a
                // handler on its own task; a reader on another task gets the error.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use http_body_util::BodyExt;

    /// One DATA frame, then the error the H3 body maps a client's H3_REQUEST_CANCELLED to.
    fn reset_after_one_frame(code: Code) -> impl Body<Data = Bytes, Error = Status> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, Status>> = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(Status::new(code, "stream reset by the client")),
        ];
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_reset_is_signalled_before_the_reader_sees_it() {
        let cancel = Arc::new(PeerCancel::default());
        let mut wait = cancel.wait();
        let mut body = CancelOnReset::new(reset_after_one_frame(Code::Cancelled), cancel.clone());
        assert!(body.frame().await.unwrap().unwrap().is_data());
        assert!((&mut wait).now_or_never().is_none());
        // The reset: first only the signal, then (next poll) the error itself.
        assert!(body.frame().now_or_never().is_none());
        assert!((&mut wait).now_or_never().is_some());
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Cancelled);
    }

    #[tokio::test]
    async fn other_errors_pass_at_once() {
        let cancel = Arc::new(PeerCancel::default());
        let mut body = CancelOnReset::new(reset_after_one_frame(Code::Internal), cancel.clone());
        body.frame().await.unwrap().unwrap();
        let err = body.frame().now_or_never().unwrap().unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(cancel.wait().now_or_never().is_none());
    }
}

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
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt as _;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tonic::Status;

use crate::error::BoxError;

/// Largest request body kept in memory so the request can be sent again (0-RTT early data, a
/// stream the server refused unprocessed).
pub(crate) const REPLAY_LIMIT: usize = 64 * 1024;

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

/// A call's request body as both wires send it: the generated client's body, cancelled when the
/// call is dropped.
pub(crate) type RequestBody = CancelableBody<tonic::body::Body>;

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

/// The cancellation shared by a [`CancelableBody`] and its [`CancelOnDrop`]: a request rebuilt
/// for sending again (a transparent retry) stays tied to the caller's guard.
#[derive(Clone)]
pub(crate) struct CancelToken(Arc<Shared>);

impl<B> CancelableBody<B> {
    pub(crate) fn token(&self) -> CancelToken {
        CancelToken(self.shared.clone())
    }
}

impl CancelToken {
    /// `inner`, cancelled with the call this token came from.
    pub(crate) fn wrap<B>(self, inner: B) -> CancelableBody<B> {
        CancelableBody {
            inner,
            shared: self.0,
        }
    }
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
                reason: crate::error::sent::H2_CANCELLED.into(),
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

/// A frame taken from a request body before sending, kept so the request can be sent again.
#[derive(Clone)]
pub(crate) enum ReadyFrame {
    Data(Bytes),
    Trailers(http::HeaderMap),
}

/// A copy of a request body to send again, if it is complete (`rest` is `None`) and small enough
/// to keep ([`REPLAY_LIMIT`]).
pub(crate) fn replay_copy(
    ready: &[ReadyFrame],
    rest: Option<&RequestBody>,
) -> Option<Vec<ReadyFrame>> {
    (rest.is_none() && ready_len(ready) <= REPLAY_LIMIT).then(|| ready.to_vec())
}

fn ready_len(frames: &[ReadyFrame]) -> usize {
    frames
        .iter()
        .map(|f| match f {
            ReadyFrame::Data(d) => d.len(),
            ReadyFrame::Trailers(_) => 0,
        })
        .sum()
}

/// Takes every frame the body has ready without waiting (a unary request is complete at once;
/// a streaming one is not), stopping past the early-data limit. Returns the frames and, unless
/// the body ended, the rest of it.
pub(crate) fn take_ready(
    mut body: RequestBody,
) -> Result<(Vec<ReadyFrame>, Option<RequestBody>), Status> {
    let mut ready = Vec::new();
    loop {
        if ready_len(&ready) > REPLAY_LIMIT {
            return Ok((ready, Some(body)));
        }
        match body.frame().now_or_never() {
            None => return Ok((ready, Some(body))),
            Some(None) => return Ok((ready, None)),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => ready.push(ReadyFrame::Data(data)),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        ready.push(ReadyFrame::Trailers(trailers));
                    }
                }
            },
            Some(Some(Err(err))) => {
                return Err(Status::try_from_error(err).unwrap_or_else(|err| {
                    Status::cancelled(format!("request body failed: {err}"))
                }));
            }
        }
    }
}

/// A request body as sent: frames taken ahead (possibly a kept copy), then the rest, if any.
pub(crate) struct Replay {
    pub(crate) ready: std::collections::VecDeque<ReadyFrame>,
    rest: Option<RequestBody>,
}

impl Replay {
    pub(crate) fn complete(ready: Vec<ReadyFrame>) -> Self {
        Replay {
            ready: ready.into(),
            rest: None,
        }
    }
    pub(crate) fn from_parts(ready: Vec<ReadyFrame>, rest: Option<RequestBody>) -> Self {
        Replay {
            ready: ready.into(),
            rest,
        }
    }

    /// All of the body is in `ready` (nothing left to wait for).
    pub(crate) fn is_complete(&self) -> bool {
        self.rest.is_none()
    }
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = crate::error::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(f) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(match f {
                ReadyFrame::Data(d) => Frame::data(d),
                ReadyFrame::Trailers(t) => Frame::trailers(t),
            })));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

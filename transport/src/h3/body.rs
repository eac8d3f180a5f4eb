//! The HTTP/3 message body (RFC 9114 §4.1) as an [`http_body::Body`]: DATA frames, then optional
//! trailing HEADERS, for the client's responses and the server's requests alike.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use tonic::Status;

use crate::error::{sent, status_from_h3};

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
                    this.abandon_with(sent::MALFORMED);
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

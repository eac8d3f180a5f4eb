//! Writing a message body onto an HTTP/3 request stream: the server's responses and the client's
//! requests share it. Each chunk goes as one DATA frame, trailers as the trailing HEADERS frame,
//! then FIN (RFC 9114 §4.1).
//!
//! The writer looks one frame ahead: a frame whose successor is ready already is *held* by the
//! backend ([`backend::write`]) and goes to quinn together with the frames after it, so a unary
//! response (HEADERS, DATA, trailers, FIN) reaches quinn in one write instead of four.

use bytes::Bytes;
use futures::FutureExt;
use h3::error::StreamError;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::backend;

/// The sending side of a request stream, server or client (h3 has one type for each).
pub(crate) trait FrameSink {
    async fn send_data(&mut self, data: Bytes) -> Result<(), StreamError>;
    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError>;
    async fn finish(&mut self) -> Result<(), StreamError>;
}

impl<S: h3::quic::SendStream<Bytes>> FrameSink for h3::server::RequestStream<S, Bytes> {
    async fn send_data(&mut self, data: Bytes) -> Result<(), StreamError> {
        h3::server::RequestStream::send_data(self, data).await
    }
    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        h3::server::RequestStream::send_trailers(self, trailers).await
    }
    async fn finish(&mut self) -> Result<(), StreamError> {
        h3::server::RequestStream::finish(self).await
    }
}

impl<S: h3::quic::SendStream<Bytes>> FrameSink for h3::client::RequestStream<S, Bytes> {
    async fn send_data(&mut self, data: Bytes) -> Result<(), StreamError> {
        h3::client::RequestStream::send_data(self, data).await
    }
    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        h3::client::RequestStream::send_trailers(self, trailers).await
    }
    async fn finish(&mut self) -> Result<(), StreamError> {
        h3::client::RequestStream::finish(self).await
    }
}

/// What a body's `frame()` yields: a frame, its error, or `None` at the end.
type Next<B> = Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>;

/// A body that can tell whether its next frame is ready without waiting for it.
pub(crate) struct Ahead<B: Body> {
    body: B,
    /// The next frame, polled already.
    peeked: Option<Next<B>>,
}

impl<B: Body + Unpin> Ahead<B> {
    pub(crate) fn new(body: B) -> Self {
        Ahead { body, peeked: None }
    }

    /// Whether the next frame (or the body's end) is here now; it is kept for [`Ahead::next`].
    pub(crate) fn is_ready(&mut self) -> bool {
        if self.peeked.is_none() {
            // A pending poll leaves a no-op waker behind; `next` polls again with the real one.
            self.peeked = self.body.frame().now_or_never();
        }
        self.peeked.is_some()
    }

    /// The body and the frame polled ahead of it, if any.
    pub(crate) fn into_parts(self) -> (B, Option<Next<B>>) {
        (self.body, self.peeked)
    }

    pub(crate) async fn next(&mut self) -> Next<B> {
        match self.peeked.take() {
            Some(frame) => frame,
            None => self.body.frame().await,
        }
    }
}

/// How writing a body ended.
pub(crate) enum Written<E> {
    /// Every frame and FIN went to quinn.
    Finished,
    /// The stream refused a write: the peer stopped or reset it, or the connection is gone.
    Closed(StreamError),
    /// The body failed; nothing after its last good frame was written, FIN neither.
    Failed(E),
}

/// Bytes written from frames that were all ready at once, after which the writer yields.
///
/// quinn's writes do not count against tokio's cooperative budget, and the connection driver
/// they wake usually waits in this worker's LIFO slot, where no other worker can take it. A body
/// that is always ready (a zone transfer from memory) would then fill quinn's whole send buffer
/// before the driver sent a byte of it: served on the connection's task (`crate::h3::server`),
/// short server streams ran at 0.61–0.69 of HTTP/2 instead of ~1.0 (docs/performance-notes.md,
/// 2026-12-05).
const BURST: usize = 128 * 1024;

/// Writes `body` onto `send`, then FIN.
pub(crate) async fn write_body<S, B>(send: &mut S, body: &mut Ahead<B>) -> Written<B::Error>
where
    S: FrameSink,
    B: Body<Data = Bytes> + Unpin,
{
    let mut burst = 0;
    loop {
        let frame = match body.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => return Written::Failed(err),
            None => break,
        };
        let hold = body.is_ready();
        let result = match frame.into_data() {
            Ok(data) => {
                burst += data.len();
                backend::write(Some(&data), hold, send.send_data(data.clone())).await
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => backend::write(None, hold, send.send_trailers(trailers)).await,
                Err(_) => Ok(()),
            },
        };
        if let Err(err) = result {
            return Written::Closed(err);
        }
        if !hold {
            // The next frame is not there yet: waiting for it lets the driver run.
            burst = 0;
        } else if burst >= BURST {
            burst = 0;
            tokio::task::yield_now().await;
        }
    }
    match send.finish().await {
        Ok(()) => Written::Finished,
        Err(err) => Written::Closed(err),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::stream::{self, StreamExt};
    use http_body_util::StreamBody;
    use std::cell::RefCell;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    /// Records each write and whether the backend was told to hold it.
    #[derive(Default, Clone)]
    struct Recorder(Rc<RefCell<Vec<String>>>);

    impl Recorder {
        fn note(&mut self, what: &str) {
            let hold = if backend::hold_offered() { " held" } else { "" };
            self.0.borrow_mut().push(format!("{what}{hold}"));
        }
        fn writes(&self) -> Vec<String> {
            self.0.borrow().clone()
        }
    }

    impl FrameSink for Recorder {
        async fn send_data(&mut self, data: Bytes) -> Result<(), StreamError> {
            self.note(&format!("data {}", data.len()));
            Ok(())
        }
        async fn send_trailers(&mut self, _: HeaderMap) -> Result<(), StreamError> {
            self.note("trailers");
            Ok(())
        }
        async fn finish(&mut self) -> Result<(), StreamError> {
            self.note("fin");
            Ok(())
        }
    }

    type Frames = Vec<Result<Frame<Bytes>, std::io::Error>>;

    fn frames() -> Frames {
        vec![
            Ok(Frame::data(Bytes::from_static(b"one"))),
            Ok(Frame::data(Bytes::from_static(b"second"))),
            Ok(Frame::trailers(HeaderMap::new())),
        ]
    }

    async fn written<B>(body: B) -> Vec<String>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Debug,
    {
        let mut sink = Recorder::default();
        let outcome = write_body(&mut sink, &mut Ahead::new(body)).await;
        assert!(matches!(outcome, Written::Finished));
        sink.writes()
    }

    /// A body that is all there (a unary message) is held frame by frame until FIN.
    #[tokio::test]
    async fn a_complete_body_is_held_up_to_fin() {
        let body = StreamBody::new(stream::iter(frames()));
        assert_eq!(
            written(body).await,
            ["data 3 held", "data 6 held", "trailers held", "fin"]
        );
    }

    /// A frame whose successor is not ready yet goes at once (a stream's message must not wait
    /// for the next one).
    #[tokio::test]
    async fn a_frame_with_nothing_ready_behind_it_goes_at_once() {
        let mut first = true;
        let slow_second = stream::iter(frames()).then(move |frame| {
            let wait = !std::mem::take(&mut first);
            async move {
                if wait {
                    tokio::task::yield_now().await;
                }
                frame
            }
        });
        let body = StreamBody::new(Box::pin(slow_second));
        // The end is ready at once behind the trailers: they go with FIN.
        assert_eq!(
            written(body).await,
            ["data 3", "data 6", "trailers held", "fin"]
        );
        let mut ahead = Ahead::new(StreamBody::new(stream::iter(Frames::new())));
        assert!(ahead.is_ready(), "the end of a body is ready too");
        assert!(ahead.next().await.is_none());
    }

    /// A failing body stops the writer before FIN; what came before was written.
    #[tokio::test]
    async fn a_failed_body_is_reported_without_fin() {
        let mut frames = frames();
        frames[1] = Err(std::io::Error::other("broken"));
        let mut sink = Recorder::default();
        let body = StreamBody::new(stream::iter(frames));
        let outcome = write_body(&mut sink, &mut Ahead::new(body)).await;
        assert!(matches!(outcome, Written::Failed(e) if e.to_string() == "broken"));
        assert_eq!(sink.writes(), ["data 3 held"]);
    }

    /// A body that is always ready still lets the runtime in (so quinn's driver can send) every
    /// `BURST` bytes.
    #[tokio::test]
    async fn an_always_ready_body_yields_every_burst() {
        let chunk = BURST / 4;
        let frames =
            (0..10).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0; chunk]))));
        let sink = Recorder::default();
        let mut writer_sink = sink.clone();
        let mut body = Ahead::new(StreamBody::new(stream::iter(frames)));
        let mut writing = pin!(write_body(&mut writer_sink, &mut body));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(writing.as_mut().poll(&mut cx).is_pending(), "yielded");
        assert_eq!(sink.writes().len(), 4, "after BURST bytes");
        assert!(writing.as_mut().poll(&mut cx).is_pending());
        assert_eq!(sink.writes().len(), 8);
        assert!(matches!(
            writing.as_mut().poll(&mut cx),
            Poll::Ready(Written::Finished)
        ));
        assert_eq!(sink.writes().len(), 11, "10 frames and FIN");
    }
}

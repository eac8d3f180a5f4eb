//! Deadlines: the `grpc-timeout` header (gRPC PROTOCOL-HTTP2.md, "Requests": `Timeout → "grpc-timeout"
//! TimeoutValue TimeoutUnit`) and its enforcement on both sides of a call.
//!
//! The client enforces its own deadline locally and sends the remaining time; the server enforces the
//! received one. Both watch the whole call, not just the response headers: a server stream that
//! outlives its deadline ends with `DEADLINE_EXCEEDED`, and the handler's stream is dropped so the
//! handler observes the cancellation. The same code runs for HTTP/2 and HTTP/3 (tonic's own
//! `GrpcTimeout` layer is crate-private and only covers the response headers).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Status;

pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// `TimeoutValue` is at most 8 ASCII digits.
const MAX_DIGITS: u64 = 99_999_999;

/// A `grpc-timeout` value that is not `1*8DIGIT` followed by one of `H M S m u n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed grpc-timeout header `{0}`")]
pub struct InvalidTimeout(pub(crate) String);

/// Parses a `grpc-timeout` value.
pub(crate) fn parse(value: &[u8]) -> Result<Duration, InvalidTimeout> {
    let invalid = || InvalidTimeout(String::from_utf8_lossy(value).into_owned());
    let (&unit, digits) = value.split_last().ok_or_else(invalid)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid()),
    })
}

/// Encodes a duration as a `grpc-timeout` value with the finest unit that fits in 8 digits,
/// rounding up so the server never sees less time than the client allows.
pub(crate) fn encode(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (scale, unit) in units {
        let value = nanos.div_ceil(scale);
        if value <= u128::from(MAX_DIGITS) {
            return HeaderValue::from_str(&format!("{value}{unit}"))
                .unwrap_or_else(|_| HeaderValue::from_static("99999999H"));
        }
    }
    HeaderValue::from_static("99999999H")
}

/// Reads the deadline a request carries; `Ok(None)` when it has none.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Duration>, InvalidTimeout> {
    headers
        .get(GRPC_TIMEOUT)
        .map(|v| parse(v.as_bytes()))
        .transpose()
}

/// Which side of the call a [`DeadlineBody`] guards; decides how expiry is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The server's response body: expiry ends the stream with `grpc-status: 4` trailers.
    Server,
    /// The client's response body: expiry is an error `DEADLINE_EXCEEDED` for the caller.
    Client,
}

pin_project_lite::pin_project! {
    /// A body that ends at a deadline. On expiry the inner body is dropped at once, which resets the
    /// stream (client) or cancels the handler's stream (server).
    pub(crate) struct DeadlineBody<B> {
        inner: Option<B>,
        sleep: Option<Pin<Box<Sleep>>>,
        side: Side,
        finished: bool,
    }
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Option<Instant>, side: Side) -> Self {
        DeadlineBody {
            inner: Some(inner),
            sleep: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            side,
            finished: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Status>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if let Some(inner) = this.inner.as_mut()
            && let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx)
        {
            let mut frame = frame.map(|r| r.map_err(Into::into));
            // The client's trailers carry the call's status: make it one tonic can read.
            if *this.side == Side::Client
                && let Some(Ok(f)) = frame.as_mut()
                && let Some(trailers) = f.trailers_mut()
            {
                crate::error::sanitize_status(trailers);
            }
            return Poll::Ready(frame);
        }
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            *this.inner = None;
            *this.finished = true;
            return Poll::Ready(Some(match this.side {
                Side::Client => Err(Status::deadline_exceeded("deadline exceeded")),
                Side::Server => {
                    let mut trailers = HeaderMap::new();
                    // Status::add_header only fails on non-ASCII metadata, which this one has not.
                    let _ =
                        Status::deadline_exceeded("deadline exceeded").add_header(&mut trailers);
                    Ok(Frame::trailers(trailers))
                }
            }));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse(b"1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse(b"2M").unwrap(), Duration::from_secs(120));
        assert_eq!(parse(b"3S").unwrap(), Duration::from_secs(3));
        assert_eq!(parse(b"4m").unwrap(), Duration::from_millis(4));
        assert_eq!(parse(b"5u").unwrap(), Duration::from_micros(5));
        assert_eq!(
            parse(b"99999999n").unwrap(),
            Duration::from_nanos(99_999_999)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"123456789S",
            b"1x",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes_finest_unit_rounding_up() {
        assert_eq!(encode(Duration::from_nanos(1500)), "1500n");
        assert_eq!(encode(Duration::from_millis(250)), "250000u");
        assert_eq!(encode(Duration::from_secs(30)), "30000000u");
        assert_eq!(encode(Duration::from_secs(1000)), "1000000m");
        assert_eq!(encode(Duration::from_secs(200_000)), "200000S");
        assert_eq!(encode(Duration::from_secs(u64::MAX)), "99999999H");
        for d in [1u64, 999, 123_456_789, 98_765_432_100] {
            let d = Duration::from_nanos(d);
            assert!(parse(encode(d).as_bytes()).unwrap() >= d);
        }
    }
}

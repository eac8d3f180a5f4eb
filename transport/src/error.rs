//! The crate's one error type and every mapping from transport failures to `tonic::Status`.
//!
//! Implements the error rows of gRPC's PROTOCOL-HTTP2.md ("Errors": RST_STREAM codes → status codes)
//! and their HTTP/3 equivalents (RFC 9114 §8.1 error codes), as grpc-dotnet maps them. A reader looking
//! for "how does a reset become CANCELLED" finds it here and nowhere else.
//!
//! | failure                                              | gRPC status         |
//! |------------------------------------------------------|---------------------|
//! | invalid URI / TLS material / settings                | `INVALID_ARGUMENT`  |
//! | connect refused, DNS, TLS handshake, connection lost | `UNAVAILABLE`       |
//! | connect timeout, keep-alive timeout, idle timeout    | `UNAVAILABLE`       |
//! | transport not available (e.g. H3 not offered)        | `UNAVAILABLE`       |
//! | RST_STREAM / H3 reset `CANCEL` / `H3_REQUEST_CANCELLED` | `CANCELLED`      |
//! | `REFUSED_STREAM` / `H3_REQUEST_REJECTED`, GOAWAY'd   | `UNAVAILABLE`       |
//! | `ENHANCE_YOUR_CALM` / `H3_EXCESSIVE_LOAD`            | `RESOURCE_EXHAUSTED`|
//! | `INADEQUATE_SECURITY`                                | `PERMISSION_DENIED` |
//! | `NO_ERROR` before trailers, protocol / internal errors | `INTERNAL`        |
//! | received `grpc-status-details-bin` that is not base64 | `INTERNAL`         |
//! | anything else                                        | `UNKNOWN`           |
//!
//! A received `grpc-message` that does not decode keeps its status code and arrives as raw text
//! (see [`sanitize_status`]).
//!
//! The codes this crate *sends* are the other half of the same table; [`sent`] names each one, and
//! the wires use those names:
//!
//! | when                                                        | HTTP/3 (RFC 9114 §8.1)                          | HTTP/2 (RFC 9113 §7) |
//! |-------------------------------------------------------------|-------------------------------------------------|----------------------|
//! | client: the caller dropped the call                         | reset + STOP_SENDING `H3_REQUEST_CANCELLED`      | RST_STREAM `CANCEL`  |
//! | server: the client cancelled; the response is cut short     | reset `H3_REQUEST_CANCELLED`                     | RST_STREAM `CANCEL` (hyper) |
//! | server: a replay-unsafe call arrived in 0-RTT early data    | reset + STOP_SENDING `H3_REQUEST_REJECTED`       | —                    |
//! | server: a request stream opened after its GOAWAY (draining) | reset + STOP_SENDING `H3_REQUEST_REJECTED` (§5.2) | GOAWAY + REFUSED_STREAM (h2) |
//! | server: malformed request (connection-specific field, content-length mismatch) | reset + STOP_SENDING `H3_MESSAGE_ERROR` | RST_STREAM `PROTOCOL_ERROR` (hyper) |
//! | server: the handler stopped reading the request early      | STOP_SENDING `H3_NO_ERROR` (§4.1.2)              | RST_STREAM `NO_ERROR` (hyper) |
//! | server: shutdown, after GOAWAY and the drain                | CONNECTION_CLOSE `H3_NO_ERROR`                   | GOAWAY `NO_ERROR` (hyper) |

use std::error::Error as StdError;
use std::fmt;

use tonic::{Code, Status};

pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The stream and connection error codes the wires send (the module docs' second table).
pub(crate) mod sent {
    use h3::error::Code;

    /// A dropped call (client) or a cancelled one (server), RFC 9114 §4.1.1.
    pub(crate) const CANCELLED: Code = Code::H3_REQUEST_CANCELLED;
    /// A replay-unsafe request in 0-RTT, refused unprocessed so the client retries it (RFC 9114
    /// §4.1.1; RFC 8470 §5.2's spirit).
    pub(crate) const EARLY_DATA_REFUSED: Code = Code::H3_REQUEST_REJECTED;
    /// A request stream opened beyond our GOAWAY, refused unprocessed so the client sends it
    /// again elsewhere (RFC 9114 §5.2, §4.1.1).
    pub(crate) const BEYOND_GOAWAY: quinn::VarInt = quinn::VarInt::from_u32(0x10b);
    /// A malformed message, RFC 9114 §4.1.2.
    pub(crate) const MALFORMED: Code = Code::H3_MESSAGE_ERROR;
    /// STOP_SENDING for a request body the handler no longer reads, RFC 9114 §4.1.2.
    pub(crate) const NO_MORE_REQUEST_DATA: Code = Code::H3_NO_ERROR;
    /// CONNECTION_CLOSE a client sends (to nobody, as a rule) when ICMP says its peer is gone
    /// and the peer is silent (H3_NO_ERROR: nothing wrong with the peer's HTTP/3).
    pub(crate) const PEER_UNREACHABLE: quinn::VarInt = quinn::VarInt::from_u32(0x100);
    /// CONNECTION_CLOSE when the server shuts down (H3_NO_ERROR, RFC 9114 §5.2).
    pub(crate) const SHUTDOWN: quinn::VarInt = quinn::VarInt::from_u32(0x100);
    /// RST_STREAM for a dropped HTTP/2 call (PROTOCOL-HTTP2.md, "Errors").
    pub(crate) const H2_CANCELLED: h2::Reason = h2::Reason::CANCEL;
}

/// An error of the grpc-h3 transport: building an endpoint or server, connecting, serving.
///
/// Opaque on purpose (like `hyper::Error`): ask it with the `is_*` queries, or turn it into the
/// `tonic::Status` a gRPC caller would see with `Status::from(err)`.
pub struct Error {
    kind: Kind,
    context: Option<String>,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The URI could not be parsed or has no host / an unsupported scheme.
    InvalidUri,
    /// Certificates, keys or settings are unusable.
    Config,
    /// Resolving or connecting the socket failed.
    Connect,
    /// The TLS (or QUIC crypto) handshake failed.
    Tls,
    /// Connecting took longer than the configured connect timeout.
    ConnectTimeout,
    /// The connection was lost (reset, idle or keep-alive timeout, GOAWAY).
    Closed,
    /// The peer violated HTTP/2, HTTP/3 or gRPC framing.
    Protocol,
    /// The requested transport is not available.
    Unsupported,
    /// Binding or accepting sockets on the server failed.
    Io,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            kind,
            context: None,
            source: None,
        }
    }

    pub(crate) fn with<E: Into<BoxError>>(kind: Kind, source: E) -> Self {
        Error {
            kind,
            context: None,
            source: Some(source.into()),
        }
    }

    /// The same error for another caller: its kind and full message (the source as text).
    pub(crate) fn shared(&self) -> Self {
        let full = format!("{self:#}");
        let rest = full
            .strip_prefix(self.description())
            .map_or(full.as_str(), |r| r.trim_start_matches(": "));
        Error {
            kind: self.kind,
            context: (!rest.is_empty()).then(|| rest.to_string()),
            source: None,
        }
    }

    pub(crate) fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The URI was invalid.
    pub fn is_invalid_uri(&self) -> bool {
        self.kind == Kind::InvalidUri
    }
    /// Certificates, keys or other settings were unusable.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
    /// Resolving or connecting failed.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout)
    }
    /// The TLS handshake failed (bad certificate, unknown CA, ALPN mismatch, ...).
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }
    /// A timeout expired (connect timeout).
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::ConnectTimeout
    }
    /// The connection was closed or lost.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }
    /// The peer broke the protocol.
    pub fn is_protocol(&self) -> bool {
        self.kind == Kind::Protocol
    }
    /// The requested transport is not available.
    pub fn is_unsupported(&self) -> bool {
        self.kind == Kind::Unsupported
    }
    /// A socket could not be bound or accepted.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }

    /// An I/O error whose cause is `EADDRINUSE` (the port is taken).
    pub(crate) fn is_addr_in_use(&self) -> bool {
        self.kind == Kind::Io
            && self
                .source
                .as_deref()
                .and_then(|e| e.downcast_ref::<std::io::Error>())
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    }

    fn description(&self) -> &'static str {
        match self.kind {
            Kind::InvalidUri => "invalid URI",
            Kind::Config => "invalid configuration",
            Kind::Connect => "connection failed",
            Kind::Tls => "TLS handshake failed",
            Kind::ConnectTimeout => "connect timed out",
            Kind::Closed => "connection closed",
            Kind::Protocol => "protocol error",
            Kind::Unsupported => "transport not available",
            Kind::Io => "I/O error",
        }
    }

    /// The gRPC code a caller sees for this error (table in the module docs).
    pub fn code(&self) -> Code {
        match self.kind {
            Kind::InvalidUri | Kind::Config => Code::InvalidArgument,
            Kind::Connect
            | Kind::Tls
            | Kind::ConnectTimeout
            | Kind::Closed
            | Kind::Unsupported
            | Kind::Io => Code::Unavailable,
            Kind::Protocol => Code::Internal,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("grpc_h3::Error");
        d.field("kind", &self.kind);
        if let Some(c) = &self.context {
            d.field("context", c);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())?;
        if let Some(c) = &self.context {
            write!(f, ": {c}")?;
        }
        // The alternate form prints the whole cause chain on one line, for CLIs.
        if f.alternate() {
            let mut source = self
                .source
                .as_deref()
                .map(|e| e as &(dyn StdError + 'static));
            while let Some(e) = source {
                write!(f, ": {e}")?;
                source = e.source();
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        Status::new(err.code(), format!("{err:#}"))
    }
}

/// Makes a received status (trailers, or the headers of a Trailers-Only response) safe for tonic's
/// `Status::from_header_map`, which panics on a `grpc-status-details-bin` that is not base64 and
/// turns a `grpc-message` that is not percent-encoded UTF-8 into UNKNOWN, losing the real code.
///
/// - PROTOCOL-HTTP2.md: a receiver decoding an invalid `grpc-message` "MUST NOT error or throw away
///   the message. At worst, [it] can abort decoding the status message altogether such that the
///   user would receive the raw percent-encoded form": such a value is re-encoded so that it
///   decodes to exactly its raw text.
/// - Malformed details (not base64, padded or not, as `-bin` values may be either) cannot be
///   passed on: the call fails with INTERNAL, as grpc-go does ("malformed
///   grpc-status-details-bin").
///
/// Upstream (tonic 0.14): the panic has an open fix, grpc/grpc-rust#2618 (tonic's repository,
/// formerly hyperium/tonic); the UNKNOWN for an undecodable `grpc-message` is not reported as of
/// 2026-12-07. Drop the details check when a released tonic no longer panics on such details, and
/// the message re-encoding when it keeps the received code and the raw text.
pub(crate) fn sanitize_status(headers: &mut http::HeaderMap) {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const BIN: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if let Some(details) = headers.get(Status::GRPC_STATUS_DETAILS)
        && BIN.decode(details.as_bytes()).is_err()
    {
        headers.remove(Status::GRPC_STATUS_DETAILS);
        headers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("13"));
        headers.insert(
            Status::GRPC_MESSAGE,
            http::HeaderValue::from_static("malformed grpc-status-details-bin"),
        );
        return;
    }
    if let Some(message) = headers.get(Status::GRPC_MESSAGE) {
        let raw = message.as_bytes();
        if percent_encoding::percent_decode(raw).decode_utf8().is_err() {
            let text = String::from_utf8_lossy(raw);
            let encoded = percent_encoding::utf8_percent_encode(&text, GRPC_MESSAGE_ESCAPED);
            if let Ok(value) = http::HeaderValue::from_str(&encoded.to_string()) {
                headers.insert(Status::GRPC_MESSAGE, value);
            } else {
                headers.remove(Status::GRPC_MESSAGE);
            }
        }
    }
}

/// Bytes `grpc-message` percent-encodes: all but printable ASCII, and `%` itself (PROTOCOL-HTTP2.md).
const GRPC_MESSAGE_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// The status of a response whose HTTP status is not 200 and which carries no `grpc-status`
/// (grpc's http-grpc-status-mapping.md, plus 415 → INTERNAL for a content-type the server refused,
/// PROTOCOL-HTTP2.md, and 431 → RESOURCE_EXHAUSTED for a header section over the server's limit).
pub(crate) fn status_from_http(status: http::StatusCode) -> Status {
    use http::StatusCode as S;
    let code = match status {
        S::BAD_REQUEST | S::UNSUPPORTED_MEDIA_TYPE => Code::Internal,
        S::UNAUTHORIZED => Code::Unauthenticated,
        S::FORBIDDEN => Code::PermissionDenied,
        S::NOT_FOUND => Code::Unimplemented,
        S::REQUEST_HEADER_FIELDS_TOO_LARGE => Code::ResourceExhausted,
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT => {
            Code::Unavailable
        }
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP status {status} without grpc-status"))
}

/// Maps an HTTP/2 error seen while sending a request or reading a response to the status the caller
/// sees (PROTOCOL-HTTP2.md "Errors", RST_STREAM table).
pub(crate) fn status_from_hyper(err: &hyper::Error) -> Status {
    if err.is_canceled() {
        return Status::cancelled(format!("request cancelled: {err}"));
    }
    if err.is_timeout() {
        return Status::unavailable(format!("keep-alive timed out: {err}"));
    }
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return status_from_h2(h2, err);
        }
        source = e.source();
    }
    if err.is_user() {
        return Status::internal(format!("HTTP/2 request failed: {err}"));
    }
    // What remains are connection-level failures (closed, incomplete, dispatch gone).
    Status::unavailable(format!("connection lost: {err}"))
}

fn status_from_h2(h2: &h2::Error, outer: &hyper::Error) -> Status {
    if h2.is_io() || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR)) {
        return Status::unavailable(format!("connection lost: {outer}"));
    }
    if h2.is_go_away() && h2.is_remote() {
        return Status::unavailable(format!("server closed the connection: {outer}"));
    }
    let code = match h2.reason() {
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(
            h2::Reason::NO_ERROR
            | h2::Reason::PROTOCOL_ERROR
            | h2::Reason::INTERNAL_ERROR
            | h2::Reason::FLOW_CONTROL_ERROR
            | h2::Reason::SETTINGS_TIMEOUT
            | h2::Reason::FRAME_SIZE_ERROR
            | h2::Reason::COMPRESSION_ERROR
            | h2::Reason::CONNECT_ERROR,
        ) => Code::Internal,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP/2 stream error: {outer}"))
}

/// The code a stream-level HTTP/3 error code maps to (RFC 9114 §8.1; PROTOCOL-HTTP2.md's table
/// translated code for code, as grpc-dotnet does).
fn code_for_h3(code: h3::error::Code) -> Code {
    use h3::error::Code as H3;
    match code {
        H3::H3_REQUEST_CANCELLED => Code::Cancelled,
        H3::H3_REQUEST_REJECTED => Code::Unavailable,
        H3::H3_EXCESSIVE_LOAD => Code::ResourceExhausted,
        // NO_ERROR before trailers is still an incomplete call.
        H3::H3_NO_ERROR
        | H3::H3_GENERAL_PROTOCOL_ERROR
        | H3::H3_INTERNAL_ERROR
        | H3::H3_STREAM_CREATION_ERROR
        | H3::H3_CLOSED_CRITICAL_STREAM
        | H3::H3_FRAME_UNEXPECTED
        | H3::H3_FRAME_ERROR
        | H3::H3_ID_ERROR
        | H3::H3_SETTINGS_ERROR
        | H3::H3_MISSING_SETTINGS
        | H3::H3_REQUEST_INCOMPLETE
        | H3::H3_MESSAGE_ERROR
        | H3::H3_CONNECT_ERROR
        | H3::QPACK_DECOMPRESSION_FAILED
        | H3::QPACK_ENCODER_STREAM_ERROR
        | H3::QPACK_DECODER_STREAM_ERROR => Code::Internal,
        _ => Code::Unknown,
    }
}

/// Maps an HTTP/3 stream error seen by a caller to its status.
pub(crate) fn status_from_h3(err: &h3::error::StreamError) -> Status {
    use h3::error::StreamError;
    match err {
        StreamError::RemoteTerminate { code } => {
            Status::new(code_for_h3(*code), format!("stream reset by peer: {code}"))
        }
        StreamError::StreamError { code, reason } => Status::new(
            code_for_h3(*code),
            format!("HTTP/3 stream error {code}: {reason}"),
        ),
        StreamError::ConnectionError(conn) => status_from_h3_connection(conn),
        StreamError::HeaderTooBig {
            actual_size,
            max_size,
        } => Status::resource_exhausted(format!(
            "header section of {actual_size} bytes exceeds the peer's limit of {max_size}"
        )),
        StreamError::RemoteClosing => {
            Status::unavailable("server is shutting down (GOAWAY); retry on a new connection")
        }
        other => Status::internal(format!("HTTP/3 stream error: {other}")),
    }
}

/// Maps the loss of an HTTP/3 connection to a status: UNAVAILABLE (safe to retry), except when the
/// peer closed it for a protocol violation (INTERNAL).
pub(crate) fn status_from_h3_connection(err: &h3::error::ConnectionError) -> Status {
    use h3::error::{ConnectionError, LocalError};
    use h3::quic::ConnectionErrorIncoming;
    match err {
        ConnectionError::Timeout | ConnectionError::Remote(ConnectionErrorIncoming::Timeout) => {
            Status::unavailable("connection lost: QUIC idle timeout")
        }
        ConnectionError::Remote(ConnectionErrorIncoming::ApplicationClose { error_code }) => {
            let code = h3::error::Code::from(*error_code);
            match code_for_h3(code) {
                Code::Internal if code != h3::error::Code::H3_NO_ERROR => {
                    Status::internal(format!("connection closed by peer: {code}"))
                }
                _ => Status::unavailable(format!("connection closed by peer: {code}")),
            }
        }
        ConnectionError::Remote(ConnectionErrorIncoming::Undefined(e)) => {
            Status::unavailable(format!("connection lost: {e}"))
        }
        ConnectionError::Remote(other) => {
            Status::unavailable(format!("connection lost: {other:?}"))
        }
        ConnectionError::Local {
            error: LocalError::Application { code, reason, .. },
        } => Status::new(
            code_for_h3(*code),
            format!("connection closed: {code}: {reason}"),
        ),
        other => Status::unavailable(format!("connection closed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_documented_codes() {
        assert_eq!(
            Status::from(Error::new(Kind::Connect)).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(Error::new(Kind::Tls)).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(Error::new(Kind::InvalidUri)).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Status::from(Error::new(Kind::Protocol)).code(),
            Code::Internal
        );
        assert_eq!(
            Status::from(Error::new(Kind::Unsupported)).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn alternate_display_prints_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::with(Kind::Connect, io).context("127.0.0.1:1");
        assert_eq!(format!("{err}"), "connection failed: 127.0.0.1:1");
        assert_eq!(
            format!("{err:#}"),
            "connection failed: 127.0.0.1:1: refused"
        );
        assert!(err.is_connect());
    }
}

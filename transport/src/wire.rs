//! Which wire carries calls: [`Transport`] for a client, [`Wires`] for what a server listens on.

use std::fmt;
use std::str::FromStr;

/// Which wire protocol carries a client's gRPC calls.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Transport {
    /// HTTP/3 over QUIC (RFC 9114), UDP.
    #[cfg_attr(feature = "clap", value(alias = "http3"))]
    H3,
    /// HTTP/2 over TCP (RFC 9113), TLS with ALPN `h2` or plaintext prior knowledge (`http://`).
    #[cfg_attr(feature = "clap", value(alias = "http2"))]
    H2,
    /// Prefer HTTP/3 when the server is known to offer it, fall back to HTTP/2.
    #[default]
    Auto,
}

impl Transport {
    /// Lower-case name as used on command lines: `h3`, `h2`, `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::H3 => "h3",
            Transport::H2 => "h2",
            Transport::Auto => "auto",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = ParseTransportError;

    /// `h3`/`http3`, `h2`/`http2` or `auto`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h3" | "http3" => Ok(Transport::H3),
            "h2" | "http2" => Ok(Transport::H2),
            "auto" => Ok(Transport::Auto),
            _ => Err(ParseTransportError {
                input: s.to_owned(),
            }),
        }
    }
}

/// A string that names no [`Transport`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport `{input}` (expected h3, h2 or auto)")]
pub struct ParseTransportError {
    input: String,
}

/// Which wires a [`Server`](crate::Server) listens on, all on the same port number.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Wires {
    /// HTTP/3 on UDP only (needs TLS).
    #[cfg_attr(feature = "clap", value(alias = "http3"))]
    H3,
    /// HTTP/2 on TCP only.
    #[cfg_attr(feature = "clap", value(alias = "http2"))]
    H2,
    /// HTTP/3 on UDP and HTTP/2 on TCP, HTTP/2 responses advertising HTTP/3 with `Alt-Svc`
    /// (RFC 7838). Without TLS only HTTP/2 (plaintext) is served.
    #[default]
    Both,
}

impl Wires {
    /// Lower-case name as used on command lines: `h3`, `h2`, `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wires::H3 => "h3",
            Wires::H2 => "h2",
            Wires::Both => "both",
        }
    }

    /// Whether HTTP/3 is among them.
    pub fn h3(self) -> bool {
        matches!(self, Wires::H3 | Wires::Both)
    }

    /// Whether HTTP/2 is among them.
    pub fn h2(self) -> bool {
        matches!(self, Wires::H2 | Wires::Both)
    }
}

impl fmt::Display for Wires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Wires {
    type Err = ParseWiresError;

    /// `h3`/`http3`, `h2`/`http2` or `both`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h3" | "http3" => Ok(Wires::H3),
            "h2" | "http2" => Ok(Wires::H2),
            "both" => Ok(Wires::Both),
            _ => Err(ParseWiresError {
                input: s.to_owned(),
            }),
        }
    }
}

impl From<Transport> for Wires {
    /// The wires a server serves for clients of `transport`: `Auto` needs both.
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::H3 => Wires::H3,
            Transport::H2 => Wires::H2,
            Transport::Auto => Wires::Both,
        }
    }
}

/// A string that names no [`Wires`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wires `{input}` (expected h3, h2 or both)")]
pub struct ParseWiresError {
    input: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_typed_errors() {
        for t in [Transport::H3, Transport::H2, Transport::Auto] {
            assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
            assert_eq!(t.to_string().to_uppercase().parse::<Transport>(), Ok(t));
        }
        for w in [Wires::H3, Wires::H2, Wires::Both] {
            assert_eq!(w.as_str().parse::<Wires>(), Ok(w));
        }
        let err = "h4".parse::<Transport>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown transport `h4` (expected h3, h2 or auto)"
        );
        assert!("auto".parse::<Wires>().is_err());
        assert!("both".parse::<Transport>().is_err());
    }

    #[test]
    fn both_wires_serve_h2_and_h3() {
        assert!(Wires::Both.h2() && Wires::Both.h3());
        assert!(Wires::H2.h2() && !Wires::H2.h3());
        assert!(!Wires::H3.h2() && Wires::H3.h3());
    }
}

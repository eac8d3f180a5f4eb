//! Where scenarios send their calls: the [`Wire`]s under comparison, the [`Target`] servers (in this
//! process, or started elsewhere such as in the netlab namespaces) and [`AnyChannel`], one client
//! channel type over all wires so every scenario is written once.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, MapErr, MapOk};
use futures::{FutureExt as _, TryFutureExt as _};
use grpc_h3::{Endpoint, Transport};
use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use crate::peer::{PeerChannel, PeerConnector};

/// Boxed error of [`AnyChannel`] (what tonic's generated clients accept).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One side of the comparison.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, clap::ValueEnum,
)]
pub enum Wire {
    /// grpc-h3 with `Transport::H2`: HTTP/2 over TLS on hyper, as tonic's transport does.
    #[serde(rename = "h2")]
    #[value(name = "h2")]
    H2,
    /// grpc-h3 with `Transport::H3`: our HTTP/3 over quinn.
    #[serde(rename = "h3")]
    #[value(name = "h3")]
    H3,
    /// tonic-h3 0.0.6 (h3-quinn), its own server and client: the comparison peer.
    #[serde(rename = "tonic-h3")]
    #[value(name = "tonic-h3")]
    Peer,
    /// tonic-h3 0.0.6's client against grpc-h3's HTTP/3 server: a client that is not ours, so a
    /// server-side figure is seen without our client (compare with `tonic-h3`: the same client
    /// against its own server).
    #[serde(rename = "tonic-h3>h3")]
    #[value(name = "tonic-h3-client")]
    PeerClient,
}

impl Wire {
    /// Run order inside one round (the rounds interleave h2, h3, peer, h2, h3, peer, ...).
    pub const ALL: [Wire; 4] = [Wire::H2, Wire::H3, Wire::Peer, Wire::PeerClient];

    /// Short label used in tables, JSON and plots.
    pub fn label(self) -> &'static str {
        match self {
            Wire::H2 => "h2",
            Wire::H3 => "h3",
            Wire::Peer => "tonic-h3",
            Wire::PeerClient => "tonic-h3>h3",
        }
    }

    /// One-line description for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Wire::H2 => "HTTP/2 + TLS (grpc-h3 Transport::H2, hyper)",
            Wire::H3 => "HTTP/3 (grpc-h3 Transport::H3, quinn + h3)",
            Wire::Peer => "HTTP/3 (tonic-h3 0.0.6 server and client, h3-quinn)",
            Wire::PeerClient => {
                "HTTP/3, tonic-h3 0.0.6's client against grpc-h3's server (a third-party client)"
            }
        }
    }

    /// Whether tonic-h3 takes part (its client or its server): a failure on this wire is a
    /// recorded result rather than a failed run, and scenarios of grpc-h3 alone skip it.
    pub fn is_peer(self) -> bool {
        matches!(self, Wire::Peer | Wire::PeerClient)
    }

    /// Whether the calls go to tonic-h3's server (whose exit fails the wire).
    pub fn uses_peer_server(self) -> bool {
        self == Wire::Peer
    }
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Server addresses of one service set.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// grpc-h3 server, TCP (HTTP/2).
    pub h2: SocketAddr,
    /// grpc-h3 server, UDP (HTTP/3).
    pub h3: SocketAddr,
    /// tonic-h3 server, UDP; absent when the peer is not run.
    pub peer: Option<SocketAddr>,
}

impl Addrs {
    pub fn of(&self, wire: Wire) -> Option<SocketAddr> {
        match wire {
            Wire::H2 => Some(self.h2),
            Wire::H3 => Some(self.h3),
            Wire::Peer => self.peer,
            Wire::PeerClient => Some(self.h3),
        }
    }
}

/// The servers behind the per-RPC auth layer and the credentials to present.
#[derive(Clone)]
pub struct AuthTarget {
    pub addrs: Addrs,
    /// Value of the `authorization` header (`Basic base64(user:password)`).
    pub authorization: String,
    /// Reads how many argon2 verifications the servers' auth layers have run (in-process servers
    /// only), to show that the auth scenario measures the cached path, not argon2.
    pub argon2_runs: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl fmt::Debug for AuthTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthTarget")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Which server set a channel goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSet {
    Plain,
    Auth,
}

/// Everything a scenario needs to reach the servers, wherever they run. The in-process runner
/// builds one from [`crate::servers::LocalServers`]; the netlab builds one from servers it starts
/// inside its namespaces, and the same scenarios then run over the impaired link.
#[derive(Debug, Clone)]
pub struct Target {
    pub plain: Addrs,
    pub auth: Option<AuthTarget>,
    /// CA certificate (PEM) that signed the servers' certificates.
    pub ca_pem: Vec<u8>,
    /// Name verified against the server certificate.
    pub server_name: String,
    /// QUIC settings of grpc-h3's HTTP/3 client.
    pub quic: grpc_h3::QuicSettings,
    /// `--cross-pair`: the HTTP/3 wires' clients talk to each other's servers.
    pub cross_pair: bool,
}

impl Target {
    /// Whether `wire` can be run against this target.
    pub fn has(&self, wire: Wire) -> bool {
        self.plain.of(self.server_of(wire)).is_some()
    }

    /// Whose server a `wire` client talks to.
    fn server_of(&self, wire: Wire) -> Wire {
        match wire {
            Wire::H3 if self.cross_pair => Wire::Peer,
            Wire::Peer if self.cross_pair => Wire::H3,
            Wire::PeerClient => Wire::H3,
            other => other,
        }
    }

    /// A connector to `service` over `wire` with a TLS session cache of its own.
    pub fn connector(&self, wire: Wire, service: ServerSet) -> anyhow::Result<Connector> {
        let addrs = match service {
            ServerSet::Plain => &self.plain,
            ServerSet::Auth => {
                &self
                    .auth
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("this target has no auth servers"))?
                    .addrs
            }
        };
        let server = self.server_of(wire);
        let addr = addrs
            .of(server)
            .ok_or_else(|| anyhow::anyhow!("this target has no {server} server"))?;
        Ok(match wire {
            Wire::H2 | Wire::H3 => {
                let transport = if wire == Wire::H2 {
                    Transport::H2
                } else {
                    Transport::H3
                };
                let endpoint = Endpoint::new(format!("https://{addr}"))?
                    .transport(transport)
                    .quic_settings(self.quic.clone())
                    .server_name(self.server_name.clone())
                    .ca_certificate_pem(&self.ca_pem)?;
                Connector::Ours(Box::new(endpoint))
            }
            Wire::Peer | Wire::PeerClient => {
                Connector::Peer(PeerConnector::new(addr, &self.ca_pem, &self.server_name)?)
            }
        })
    }

    /// A channel to `service` over `wire` from a fresh connector: a full handshake. The tonic-h3
    /// channel connects lazily, on its first call; scenarios make one untimed call before
    /// measuring.
    pub async fn connect(&self, wire: Wire, service: ServerSet) -> anyhow::Result<AnyChannel> {
        self.connector(wire, service)?.connect().await
    }

    /// The `authorization` value for calls to the auth servers.
    pub fn authorization(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authorization.as_str())
    }
}

/// Makes channels to one server over one wire; channels of one connector share a TLS session
/// cache, so all but the first may resume their handshake.
#[derive(Debug, Clone)]
pub enum Connector {
    Ours(Box<Endpoint>),
    Peer(PeerConnector),
}

impl Connector {
    /// A new channel (new socket, new connection; tonic-h3's connects on its first call).
    pub async fn connect(&self) -> anyhow::Result<AnyChannel> {
        Ok(match self {
            Connector::Ours(endpoint) => AnyChannel::Ours((**endpoint).clone().connect().await?),
            Connector::Peer(peer) => AnyChannel::Peer(peer.channel()?),
        })
    }
}

/// A client channel over any [`Wire`]: tonic-generated clients take it like a tonic `Channel`.
///
/// Ours passes through untouched (its responses already carry `tonic::body::Body`); the peer's
/// response body is wrapped into `tonic::body::Body`, which is exactly what tonic does with any
/// foreign body (one allocation per response).
#[derive(Clone)]
pub enum AnyChannel {
    Ours(grpc_h3::Channel),
    Peer(PeerChannel),
}

impl fmt::Debug for AnyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyChannel::Ours(c) => f.debug_tuple("Ours").field(c).finish(),
            AnyChannel::Peer(_) => f.write_str("Peer(tonic-h3)"),
        }
    }
}

type OursFuture = <grpc_h3::Channel as Service<Request<Body>>>::Future;
type PeerFuture = <PeerChannel as Service<Request<Body>>>::Future;
type PeerResponse = <PeerChannel as Service<Request<Body>>>::Response;

fn boxed_status(status: Status) -> BoxError {
    Box::new(status)
}

fn peer_response(response: PeerResponse) -> Response<Body> {
    response.map(Body::new)
}

impl Service<Request<Body>> for AnyChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Either<
        MapErr<OursFuture, fn(Status) -> BoxError>,
        MapOk<PeerFuture, fn(PeerResponse) -> Response<Body>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            AnyChannel::Ours(c) => c.poll_ready(cx).map_err(boxed_status),
            AnyChannel::Peer(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            AnyChannel::Ours(c) => c
                .call(request)
                .map_err(boxed_status as fn(Status) -> BoxError)
                .left_future(),
            AnyChannel::Peer(c) => c
                .call(request)
                .map_ok(peer_response as fn(PeerResponse) -> Response<Body>)
                .right_future(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(peer: Option<SocketAddr>, cross_pair: bool) -> Target {
        Target {
            plain: Addrs {
                h2: "127.0.0.1:1".parse().unwrap(),
                h3: "127.0.0.1:2".parse().unwrap(),
                peer,
            },
            auth: None,
            ca_pem: Vec::new(),
            server_name: "localhost".to_string(),
            quic: grpc_h3::QuicSettings::default(),
            cross_pair,
        }
    }

    #[test]
    fn cross_pair_swaps_only_the_http3_servers() {
        let crossed = target(Some("127.0.0.1:3".parse().unwrap()), true);
        assert_eq!(crossed.server_of(Wire::H2), Wire::H2);
        assert_eq!(crossed.server_of(Wire::H3), Wire::Peer);
        assert_eq!(crossed.server_of(Wire::Peer), Wire::H3);
        let straight = target(Some("127.0.0.1:3".parse().unwrap()), false);
        for wire in [Wire::H2, Wire::H3, Wire::Peer] {
            assert_eq!(straight.server_of(wire), wire);
        }
        // tonic-h3's client against our server, crossed or not.
        assert_eq!(straight.server_of(Wire::PeerClient), Wire::H3);
        assert_eq!(crossed.server_of(Wire::PeerClient), Wire::H3);
        assert!(target(None, false).has(Wire::PeerClient));
    }

    #[test]
    fn a_crossed_wire_needs_the_other_stacks_server() {
        let no_peer = target(None, true);
        assert!(!no_peer.has(Wire::H3), "our client needs tonic-h3's server");
        assert!(no_peer.has(Wire::Peer), "tonic-h3's client uses ours");
        assert!(no_peer.has(Wire::H2));
        let straight = target(None, false);
        assert!(straight.has(Wire::H3));
        assert!(!straight.has(Wire::Peer));
    }
}

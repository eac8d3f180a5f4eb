//! Per-RPC credentials and method rights: a users file of argon2id hashes and allowed
//! methods, and a tower layer that checks `authorization: Basic …` (RFC 7617) on every call.
//!
//! The layer sits in front of every route of a `grpc_h3::Server`, so the one rule set protects
//! HTTP/2 and HTTP/3 alike:
//!
//! ```no_run
//! # async fn run(users: zone_server::auth::Users) -> Result<(), Box<dyn std::error::Error>> {
//! use zone_server::auth::AuthLayer;
//! let server = grpc_h3::Server::builder().layer(AuthLayer::new(users));
//! # let _ = server; Ok(()) }
//! ```
//!
//! Decisions, in the order the layer applies them:
//! 1. Methods under a public prefix (default: `grpc.health.v1.Health/`) pass without credentials.
//! 2. No `authorization` header → `UNAUTHENTICATED`.
//! 3. Credentials on a connection without TLS → `UNAUTHENTICATED` ("credentials refused on a
//!    connection without TLS"). A request without `grpc_h3::ConnectionInfo` (not served by
//!    grpc-h3) counts as not TLS: the layer cannot prove the password travelled encrypted, so it
//!    fails closed.
//! 4. Malformed or repeated header, unknown user or wrong password → `UNAUTHENTICATED`, with one
//!    message for the last two so that user names cannot be probed (an unknown user also costs
//!    one argon2 run).
//! 5. Valid user without a matching right → `PERMISSION_DENIED`.
//! 6. Otherwise the request goes on with [`crate::identity::AuthenticatedUser`] in its extensions.
//!
//! The `authorization` header is removed from every request before the inner service sees it, so
//! handlers and their logs never hold the password.

mod layer;
mod users;

pub use layer::{AuthLayer, AuthLayerBuilder, AuthService};
pub use users::{MethodPattern, User, Users, UsersError};

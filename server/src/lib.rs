//! zone-server: the `zone.v1.Zones` service, grpc's interop `TestService`, per-RPC credentials, and
//! the durable zone-change journal.

pub mod auth;
pub mod identity;
pub mod interop;
pub mod journal;
pub mod observe;
pub mod process;
pub mod zones;

//! zone-server: the `zone.v1.Zones` service, grpc's interop `TestService`, and per-RPC credentials.

pub mod auth;
pub mod identity;
pub mod interop;
pub mod zones;

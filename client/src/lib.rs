//! zone-client: the zone CLI and grpc's standard interop client cases.

pub mod cli;
pub mod interop;

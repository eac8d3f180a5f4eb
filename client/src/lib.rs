//! zone-client: the zone CLI and grpc's standard interop client cases.

pub mod interop;

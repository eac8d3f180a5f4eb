//! zone-client: the zone CLI, the `zone-edge` sync library, and grpc's standard interop client
//! cases.

pub mod cli;
pub mod edge;
pub mod interop;
pub mod logging;
pub mod servers;

//! Generated protobuf and tonic code for the zone-streaming services (`zone.v1`) and grpc's interop
//! `grpc.testing.TestService` (wire-compatible with grpc's `src/proto/grpc/testing/test.proto`).

/// `zone.v1`: zone records, transfers, pushes and edge sync.
pub mod zone {
    pub mod v1 {
        tonic::include_proto!("zone.v1");
    }
}

/// `grpc.testing`: the subset of grpc's interop messages the standard interop cases need.
pub mod grpc_testing {
    tonic::include_proto!("grpc.testing");
}

/// Encoded `FileDescriptorSet` of every proto in this crate, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Largest `zone.v1` message the zone services send (a Sync snapshot carries a whole zone):
/// servers encode and clients decode up to this size.
pub const MAX_ZONE_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

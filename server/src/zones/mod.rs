//! DNS zones served over gRPC (`zone.v1.Zones`): the record model in RFC 1035 presentation form,
//! the in-memory [`ZoneStore`] with serials, change history and followers, master-file loading,
//! a synthetic zone generator for benchmarks, and the [`ZonesService`] on top.
//!
//! Modules, one concern each: `record` (validating and printing one record), `master` (zone-file
//! syntax), `store` (zones, batches, snapshots, history), `durable` (the journaled write path and
//! replay, see [`crate::journal`]), `follow` (gap-free following of published batches, from memory
//! or the journal), `service` (the RPCs), `synth` (benchmark zones), `error` (store errors and
//! their gRPC codes).

pub(crate) mod durable;
mod error;
mod follow;
mod master;
mod record;
mod service;
mod store;
mod synth;

pub use error::StoreError;
pub use follow::{ZoneEvent, ZoneFollower};
pub use record::{
    MAX_TTL, RecordError, ZoneRecord, name_text, parse_class, parse_owner, parse_type,
};
pub use service::{
    DEFAULT_TRANSFER_BATCH, MAX_DECODING_MESSAGE_SIZE, MAX_ENCODING_MESSAGE_SIZE,
    MAX_TRANSFER_BATCH, SYNC_BUFFER, SyncStream, ZonesService, zones_server,
};
pub use store::{
    Applied, AppliedBatch, FanoutStats, SnapshotBatches, StoreConfig, ZoneChanges, ZoneSnapshot,
    ZoneStore, ZoneSummary,
};
pub use synth::synthetic_zone;

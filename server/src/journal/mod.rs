//! The durable zone-change journal: every pushed batch is recorded here, durably, before it is
//! acknowledged, and slow edge subscribers read the batches they missed from it.
//!
//! # Contract ([`Journal`])
//!
//! Per zone the journal holds a *base* (serial and SHA-256 digest of the zone as loaded from its
//! files), an ordered log of batches with consecutive serials after it, and optionally a
//! *snapshot* (the whole zone at one serial) written by compaction.
//!
//! - [`append`](Journal::append)`(batch, expected_last)` is atomic and durable once it returns
//!   `Ok`. It is refused with [`JournalError::Conflict`] (gRPC `ABORTED`) unless the zone's last
//!   serial is `expected_last` and the batch carries `expected_last + 1`: of two writers racing
//!   for one serial exactly one wins. The loser catches up by reading the winner's batch.
//! - [`read_after`](Journal::read_after)`(zone, after, limit)` returns the batches after `after`,
//!   oldest first, without gaps; [`ReadAfter::Compacted`] when they were compacted away (the
//!   reader needs a snapshot), [`ReadAfter::Ahead`] when `after` is beyond the last batch.
//! - [`compact`](Journal::compact)`(snapshot, keep_after)` stores the snapshot and drops the
//!   batches up to `keep_after` (≤ the snapshot serial); later batches stay for readers.
//! - Replay after a restart = base (zone files) or snapshot, then every batch after it.
//!
//! The zone store drives the journal: [`crate::zones::ZoneStore::attach_journal`] replays it and
//! [`crate::zones::ZoneStore::push`] validates, appends, then applies.
//!
//! A journaled server in three lines (what `zone-server --journal FILE` does):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = zone_server::zones::ZoneStore::new();
//! store.insert_zone_text("example.com.", "@ 300 SOA ns1 h 1 7200 900 1209600 300\n")?;
//! let (_journal, _replayed) = zone_server::journal::attach_redb(&store, "zones.journal").await?;
//! let service = zone_server::zones::zones_server(store); // add to a grpc_h3::Server
//! # Ok(()) }
//! ```
//!
//! # Implementations
//!
//! [`RedbJournal`] (one machine: an embedded redb file, fsync'd on every commit),
//! [`NatsJournal`] (NATS JetStream: several zone-servers share one log, `zone-server --journal
//! nats://HOST:PORT`) and [`MemoryJournal`] (tests and benchmarks: same semantics, nothing
//! survives the process).
//!
//! # When one machine is outgrown: NATS JetStream or Kafka
//!
//! The trait is the seam; the ordering and resume semantics stay the same because edges only
//! ever see zone serials, and per zone the log stays totally ordered with serial = position.
//!
//! *NATS JetStream* (implemented: [`NatsJournal`], layout in its module docs). One stream per
//! zone and epoch (`ZONE_<zone>_<epoch>`, subject `zones.<zone>.<epoch>`) holding only that
//! zone's batches (`ZoneUpdate` protobuf, header `Zone-Serial`); created empty, so the stream
//! sequence of serial `s` is `s - base_serial` and no serial → sequence index is needed.
//! `append` publishes with `Nats-Expected-Last-Subject-Sequence = expected_last - base_serial`:
//! JetStream rejects the loser of a race ("wrong last sequence") → `Conflict` → `ABORTED`, and
//! that server reads the winner's batch with `read_after` and applies it before the client
//! retries. The PubAck arrives once the stream's replicas (R=3 in a cluster) stored the message,
//! the counterpart of redb's fsync; no answer → `Unavailable` → `UNAVAILABLE`. Per-zone meta
//! (base, epoch, oldest kept serial, snapshot serial) lives in stream `ZONE_META`, one message
//! per zone written conditionally on its sequence, so two servers starting on different zone
//! files cannot both register a base. `compact` puts the snapshot into the Object Store bucket
//! `zone-snapshots`, raises the meta's oldest serial, then purges the stream below it (keeping
//! the last batch, which the next conditional append names). A rebase starts a new epoch (a new
//! empty stream). A server sharing the journal learns other servers' batches through
//! [`NatsTail`] (a subscription on `zones.>` that makes the store read the journal from its
//! serial, [`crate::zones::ZoneStore::sync_from_journal`]), so its followers see every batch in
//! journal order whichever server accepted it.
//!
//! *Kafka.* A topic partitioned by zone (record key = zone, so a zone's batches share a partition
//! and keep their order), serial in a record header. Kafka has no conditional append, so
//! `expected_last` becomes single-writer fencing: each zone's writer is a transactional producer
//! (`transactional.id = zone-writer-<zone>`); a new writer fences the old one, whose appends then
//! fail (`ProducerFenced` → `ABORTED`). `acks=all` with `min.insync.replicas=2` is the durable
//! commit. `read_after` seeks a consumer to the offset of `after + 1` (a serial → offset index as
//! above); compaction writes the snapshot to a log-compacted topic keyed by zone and deletes the
//! records up to `keep_after` (`DeleteRecords`).

mod error;
mod memory;
mod nats;
mod redb;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use zone_proto::zone::v1 as pb;

use crate::zones::{AppliedBatch, StoreError, ZoneSnapshot, ZoneStore};

pub use self::redb::RedbJournal;
pub use error::JournalError;
pub use memory::MemoryJournal;
pub use nats::{NatsJournal, NatsOptions, NatsTail, attach_nats, is_nats_url, parse_nats_url};

/// The future every journal method returns (boxed, so `dyn Journal` works).
pub type JournalFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, JournalError>> + Send + 'a>>;

/// A zone as the journal first saw it (loaded from its files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneBase {
    /// Canonical zone name (lower case, trailing dot).
    pub zone: String,
    pub serial: u32,
    /// SHA-256 over the zone's records (see `ZoneStore`), so changed files are noticed even when
    /// their SOA serial was not bumped.
    pub digest: [u8; 32],
}

/// What the journal holds for one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZoneJournalState {
    pub base_serial: u32,
    pub base_digest: [u8; 32],
    /// Serial of the last batch (the base or snapshot serial when there is none).
    pub last_serial: u32,
    /// Batches after this serial are kept; readers at an older serial need a snapshot.
    pub oldest_after: u32,
    /// Serial of the compaction snapshot, if any; replay starts there instead of at the base.
    pub snapshot_serial: Option<u32>,
    /// Batches kept.
    pub entries: u64,
}

impl ZoneJournalState {
    /// The state of a zone just registered with `base`.
    pub fn new(base: &ZoneBase) -> Self {
        Self {
            base_serial: base.serial,
            base_digest: base.digest,
            last_serial: base.serial,
            oldest_after: base.serial,
            snapshot_serial: None,
            entries: 0,
        }
    }

    /// The serial replay starts from: the snapshot's, else the base's.
    pub fn replay_from(&self) -> u32 {
        self.snapshot_serial.unwrap_or(self.base_serial)
    }
}

/// The outcome of [`Journal::open_zone`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZoneOpen {
    /// The journal did not know the zone; it is now registered with the given base.
    New(ZoneJournalState),
    /// The journal knows the zone and its base matches.
    Known(ZoneJournalState),
    /// The journal knows the zone but was started on other zone files (different digest).
    BaseChanged(ZoneJournalState),
}

/// The outcome of [`Journal::read_after`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReadAfter {
    /// The batches after the serial, oldest first (empty when there are none yet).
    Entries(Vec<Arc<AppliedBatch>>),
    /// The batches after the serial were compacted away; the journal keeps those after
    /// `oldest_after`.
    Compacted { oldest_after: u32 },
    /// The serial is beyond the zone's last batch.
    Ahead { last_serial: u32 },
}

/// An ordered, durable log of zone change batches; see the module docs for the contract.
///
/// Methods are async (boxed futures) so a networked log (NATS JetStream, Kafka) fits; an
/// embedded one runs its blocking I/O off the async threads.
pub trait Journal: Send + Sync + fmt::Debug {
    /// Registers `base.zone` if unknown; otherwise reports its state and whether `base` matches.
    fn open_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneOpen>;

    /// Forgets everything about the zone and registers it again with `base`.
    fn reset_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneJournalState>;

    /// Appends `batch` durably if the zone's last serial is `expected_last` and the batch is at
    /// `expected_last + 1`; else [`JournalError::Conflict`] and nothing is written.
    fn append(&self, batch: Arc<AppliedBatch>, expected_last: u32) -> JournalFuture<'_, ()>;

    /// At most `limit` (≥ 1) batches after `after`, oldest first.
    fn read_after<'a>(
        &'a self,
        zone: &'a str,
        after: u32,
        limit: usize,
    ) -> JournalFuture<'a, ReadAfter>;

    /// The zone's compaction snapshot, if it has one.
    fn load_snapshot<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<pb::ZoneSnapshot>>;

    /// Stores `snapshot` as the zone's replay start and drops its batches up to `keep_after`
    /// (clamped to the snapshot serial).
    fn compact(&self, snapshot: Arc<ZoneSnapshot>, keep_after: u32) -> JournalFuture<'_, ()>;

    /// The zone's state, `None` when unknown.
    fn zone_state<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<ZoneJournalState>>;
}

/// Opens (or creates) a [`RedbJournal`] at `path` and attaches it to `store` with default
/// options (replaying it); load the zones first. Keep the journal to [`RedbJournal::close`] it.
pub async fn attach_redb(
    store: &ZoneStore,
    path: impl AsRef<Path>,
) -> Result<(Arc<RedbJournal>, Vec<ZoneReplay>), StoreError> {
    let journal = RedbJournal::open(path)?;
    let replayed = store
        .attach_journal(journal.clone(), JournalOptions::default())
        .await?;
    Ok((journal, replayed))
}

/// What to do when a zone's files changed since the journal was started on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BasePolicy {
    /// Refuse to start ([`JournalError::BaseChanged`]): replaying old batches on new files could
    /// produce a zone nobody published.
    #[default]
    Refuse,
    /// Drop the zone's journal and start over from the files, with the zone serial raised above
    /// every serial published before, so edges notice and take a snapshot.
    Rebase,
}

/// Options of a journaled store ([`crate::zones::ZoneStore::attach_journal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalOptions {
    /// Compact a zone once this many batches were appended since its last snapshot (0 = never).
    /// Default 10 000.
    pub compact_every: u32,
    /// Batches kept after a compaction, so moderately late subscribers still get increments.
    /// Default 1 000.
    pub retain: u32,
    pub base_policy: BasePolicy,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            compact_every: 10_000,
            retain: 1_000,
            base_policy: BasePolicy::Refuse,
        }
    }
}

impl JournalOptions {
    pub fn compact_every(mut self, batches: u32) -> Self {
        self.compact_every = batches;
        self
    }

    pub fn retain(mut self, batches: u32) -> Self {
        self.retain = batches;
        self
    }

    pub fn base_policy(mut self, policy: BasePolicy) -> Self {
        self.base_policy = policy;
        self
    }
}

/// What [`crate::zones::ZoneStore::attach_journal`] did for one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZoneReplay {
    pub zone: String,
    /// Serial of the zone as loaded from its files.
    pub file_serial: u32,
    /// Serial the replay started from (a snapshot's, or `file_serial`).
    pub from_serial: u32,
    /// Batches replayed.
    pub batches: u64,
    /// Serial after the replay.
    pub serial: u32,
    pub outcome: ReplayOutcome,
}

/// How a zone's journal related to its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// First start on this journal: the zone was registered.
    Registered,
    /// The journal was replayed on top of the unchanged files.
    Replayed,
    /// The files had changed; the journal of the zone was dropped ([`BasePolicy::Rebase`]).
    Rebased,
}

impl fmt::Display for ZoneReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            ReplayOutcome::Registered => write!(
                f,
                "{}: new in the journal, at serial {}",
                self.zone, self.serial
            ),
            ReplayOutcome::Replayed => write!(
                f,
                "{}: replayed {} batches from serial {} to {}",
                self.zone, self.batches, self.from_serial, self.serial
            ),
            ReplayOutcome::Rebased => write!(
                f,
                "{}: zone file changed, journal rebased; now at serial {}",
                self.zone, self.serial
            ),
        }
    }
}

//! The in-memory zone store: records per zone in DNS canonical order (RFC 4034 §6.1), atomic
//! change batches with serials, a bounded history of applied batches (the IXFR source, RFC 1995)
//! and a change signal followers wait on (they pull batches from the history, see `follow`).
//!
//! Concurrency: one `RwLock` per zone, never held across an `.await`. Readers that stream a whole
//! zone take an [`ZoneSnapshot`]: owner-name nodes are `Arc`-shared with the live tree and written
//! copy-on-write, so a snapshot costs one pointer per owner name, is built at most once per serial
//! and never blocks writers while a slow client reads it.
//!
//! Decisions: a record's identity is (owner, type, rdata); the TTL is not part of it, so DELETE and
//! the `previous` of an EDIT match whatever TTL is stored, and a CREATE that differs only in TTL is
//! a duplicate (change a TTL with EDIT). A missing DELETE/EDIT target is `FAILED_PRECONDITION`
//! (the zone is not in the state the batch assumed); `NOT_FOUND` is kept for unknown zones. Every
//! zone has exactly one SOA, at the apex: it can be edited but not created twice or deleted. Each
//! applied batch sets the SOA serial to the new zone serial and records that as a final EDIT in
//! the published changes, so followers that apply the changes keep an identical SOA.
//!
//! With a journal attached (`durable`), batches go through [`ZoneStore::push`] instead: validated
//! by a dry run (`prepare`: apply, then roll back), made durable, then applied (`commit`); the
//! synchronous [`ZoneStore::apply`] is refused so nothing bypasses the journal.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hickory_proto::rr::{Name, RecordType};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;

use super::error::StoreError;
use super::master::{OriginRule, ZoneReader};
use super::record::{self, ZoneRecord, name_text, parse_owner, proto_record};

/// Limits of a [`ZoneStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Applied batches kept per zone for incremental transfers and follower catch-up.
    /// Default 1000.
    pub history_batches: usize,
    /// Changes kept per zone across those batches, so a few huge batches cannot pin unbounded
    /// memory. Default 1 000 000.
    pub history_changes: usize,
    /// Read-ahead of one follower: the most history batches it takes (and holds) at a time, so
    /// a follower's memory is bounded whatever its lag. (The name is historical: followers used
    /// to share a broadcast ring of this size.) Default 1024.
    pub broadcast_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            history_batches: 1000,
            history_changes: 1_000_000,
            broadcast_capacity: 1024,
        }
    }
}

/// Name, serial and size of a loaded zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    pub name: String,
    pub serial: u32,
    pub records: usize,
}

/// The outcome of [`ZoneStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub zone: String,
    /// The zone serial after the batch.
    pub serial: u32,
    /// Changes of the batch as sent (without the SOA serial update).
    pub changes: usize,
}

/// One applied batch, as kept in the history and published to followers.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedBatch {
    pub(crate) zone: Arc<str>,
    serial: u32,
    changes: Vec<pb::Change>,
}

impl AppliedBatch {
    /// A batch as a journal hands it back: `changes` in canonical form, as
    /// [`changes`](Self::changes) returned them when it was applied.
    pub fn new(zone: impl Into<Arc<str>>, serial: u32, changes: Vec<pb::Change>) -> Self {
        Self {
            zone: zone.into(),
            serial,
            changes,
        }
    }

    /// The batch of a `ZoneUpdate` (the journal's encoding of a batch).
    pub fn from_update(update: pb::ZoneUpdate) -> Self {
        Self::new(update.zone, update.serial, update.changes)
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The serial this batch produced; the zone was at `serial - 1` before it.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The changes in canonical form, ending with the SOA serial EDIT.
    pub fn changes(&self) -> &[pb::Change] {
        &self.changes
    }

    /// As one incremental `RecordBatch` of a transfer.
    pub fn to_record_batch(&self) -> pb::RecordBatch {
        pb::RecordBatch {
            zone: self.zone.to_string(),
            serial: self.serial,
            records: Vec::new(),
            changes: self.changes.clone(),
            last: true,
        }
    }

    /// As a `ZoneUpdate` for a follower.
    pub fn to_update(&self) -> pb::ZoneUpdate {
        pb::ZoneUpdate {
            zone: self.zone.to_string(),
            serial: self.serial,
            changes: self.changes.clone(),
        }
    }
}

/// What brings a reader from some serial to the current one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ZoneChanges {
    /// The batches after the requested serial, oldest first (empty when already current).
    Incremental(Vec<Arc<AppliedBatch>>),
    /// The history does not reach back far enough: the whole zone.
    Full(Arc<ZoneSnapshot>),
}

/// A consistent, immutable view of a whole zone at one serial.
#[derive(Debug)]
pub struct ZoneSnapshot {
    zone: Arc<str>,
    serial: u32,
    nodes: Vec<Arc<Node>>,
    records: usize,
}

impl ZoneSnapshot {
    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The records in transfer order: canonical name order, SOA first at the apex, then by type
    /// code and rdata.
    pub fn records(&self) -> impl Iterator<Item = pb::Record> + '_ {
        self.nodes
            .iter()
            .flat_map(|node| node.rrs.iter().map(|rr| rr.to_proto(&node.name)))
    }

    /// The whole zone as one sync message.
    pub fn to_proto(&self) -> pb::ZoneSnapshot {
        pb::ZoneSnapshot {
            zone: self.zone.to_string(),
            serial: self.serial,
            records: self.records().collect(),
        }
    }

    /// The zone as full-transfer `RecordBatch`es of at most `batch_size` records (at least 1),
    /// built lazily; the last one has `last` set. An empty zone yields one empty last batch.
    pub fn batches(self: &Arc<Self>, batch_size: usize) -> SnapshotBatches {
        SnapshotBatches {
            snapshot: Arc::clone(self),
            batch_size: batch_size.max(1),
            node: 0,
            rr: 0,
            sent: 0,
            done: false,
        }
    }
}

/// Iterator of full-transfer batches over a [`ZoneSnapshot`].
#[derive(Debug)]
pub struct SnapshotBatches {
    snapshot: Arc<ZoneSnapshot>,
    batch_size: usize,
    node: usize,
    rr: usize,
    sent: usize,
    done: bool,
}

impl Iterator for SnapshotBatches {
    type Item = pb::RecordBatch;

    fn next(&mut self) -> Option<pb::RecordBatch> {
        if self.done {
            return None;
        }
        let snapshot = &self.snapshot;
        let take = self
            .batch_size
            .min(snapshot.records.saturating_sub(self.sent));
        let mut records = Vec::with_capacity(take);
        while records.len() < take {
            let Some(node) = snapshot.nodes.get(self.node) else {
                break;
            };
            match node.rrs.get(self.rr) {
                Some(rr) => {
                    records.push(rr.to_proto(&node.name));
                    self.rr += 1;
                }
                None => {
                    self.node += 1;
                    self.rr = 0;
                }
            }
        }
        self.sent += records.len();
        self.done = self.sent >= snapshot.records || records.is_empty();
        Some(pb::RecordBatch {
            zone: snapshot.zone.to_string(),
            serial: snapshot.serial,
            records,
            changes: Vec::new(),
            last: self.done,
        })
    }
}

/// The zones of a server. Cheap to clone: clones share the same zones.
#[derive(Debug, Clone, Default)]
pub struct ZoneStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    zones: RwLock<HashMap<Arc<str>, Arc<ZoneCell>>>,
    /// The durable journal, once attached (`durable`).
    journal: OnceLock<super::durable::Attached>,
    fanout: FanoutCounters,
}

/// Gauges of what followers and Sync streams hold in memory (see [`ZoneStore::fanout_stats`]).
#[derive(Debug, Default)]
pub(crate) struct FanoutCounters {
    pub(crate) followers: AtomicUsize,
    pub(crate) pending_events: AtomicUsize,
    pub(crate) queued_messages: AtomicUsize,
}

/// What followers and Sync streams hold in memory right now, summed over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FanoutStats {
    /// Live followers (one per Sync stream).
    pub followers: usize,
    /// Events followers have read from the history or the journal but not handed out yet.
    pub pending_events: usize,
    /// Sync messages encoded and queued for the transport but not taken by it yet.
    pub queued_messages: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

impl Inner {
    fn new(config: StoreConfig) -> Self {
        Self {
            config,
            zones: RwLock::default(),
            journal: OnceLock::new(),
            fanout: FanoutCounters::default(),
        }
    }
}

impl ZoneStore {
    /// An empty store with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with the given limits.
    pub fn with_config(config: StoreConfig) -> Self {
        Self {
            inner: Arc::new(Inner::new(config)),
        }
    }

    /// Loads every `*.zone` file of `dir` (origin from a leading `$ORIGIN`, else the file stem).
    /// All files are parsed before any is added, so on error the store is unchanged.
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> Result<Vec<ZoneSummary>, StoreError> {
        let dir = dir.as_ref();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_some_and(|ext| ext == "zone") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut cells = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let fallback =
                record::parse_domain(&format!("{stem}."), &Name::root()).map_err(|e| {
                    StoreError::ZoneFile {
                        path: path.clone(),
                        line: 0,
                        message: format!("file stem is not a zone name: {e}"),
                    }
                })?;
            cells.push(build_zone(&text, OriginRule::FromFile { fallback }, &path)?);
        }
        self.insert_cells(cells)
    }

    /// Adds a zone from master-file text; `origin` names the zone.
    pub fn insert_zone_text(&self, origin: &str, text: &str) -> Result<ZoneSummary, StoreError> {
        let origin_name = record::parse_domain(origin.trim(), &Name::root())
            .map_err(|e| StoreError::invalid("zone", format!("`{origin}`: {e}")))?;
        let path = PathBuf::from(format!("<zone {}>", name_text(&origin_name)));
        let cell = build_zone(text, OriginRule::Explicit(origin_name), &path)?;
        let mut summaries = self.insert_cells(vec![cell])?;
        summaries
            .pop()
            .ok_or_else(|| StoreError::ZoneNotFound(origin.to_owned()))
    }

    fn insert_cells(&self, cells: Vec<ZoneCell>) -> Result<Vec<ZoneSummary>, StoreError> {
        let mut zones = write(&self.inner.zones);
        let mut seen = std::collections::HashSet::new();
        for cell in &cells {
            if zones.contains_key(&cell.name) || !seen.insert(cell.name.clone()) {
                return Err(StoreError::ZoneExists(cell.name.to_string()));
            }
        }
        let mut summaries = Vec::with_capacity(cells.len());
        for cell in cells {
            summaries.push(cell.summary());
            zones.insert(cell.name.clone(), Arc::new(cell));
        }
        Ok(summaries)
    }

    /// All zones, sorted by name.
    pub fn zones(&self) -> Vec<ZoneSummary> {
        let mut out: Vec<_> = read(&self.inner.zones)
            .values()
            .map(|c| c.summary())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One zone's name, serial and size.
    pub fn zone(&self, zone: &str) -> Result<ZoneSummary, StoreError> {
        Ok(self.cell(zone)?.summary())
    }

    /// The records at `query.name` (all types, or `query.type`). A name that does not exist is
    /// NXDOMAIN: [`StoreError::NameNotFound`]. A name that exists (or is an empty non-terminal)
    /// without records of the type is NODATA: an empty set. Wildcards are not expanded and CNAMEs
    /// not followed: this reads the zone, it does not resolve.
    pub fn lookup(&self, query: &pb::RecordQuery) -> Result<pb::RecordSet, StoreError> {
        let cell = self.cell(&query.zone)?;
        let name =
            parse_owner(&query.name, &cell.origin).map_err(|e| StoreError::invalid("name", e))?;
        let rtype = match query.r#type.trim() {
            "" => None,
            t => Some(record::parse_known_type(t).map_err(|e| StoreError::invalid("type", e))?)
                .filter(|t| *t != RecordType::ANY),
        };
        let key = NameKey::of(&name);
        let state = read(&cell.state);
        let records = match state.nodes.get(&key) {
            Some(node) => node
                .rrs
                .iter()
                .filter(|rr| rtype.is_none_or(|t| rr.rtype == t))
                .map(|rr| rr.to_proto(&node.name))
                .collect(),
            None if state.has_descendant(&key) => Vec::new(),
            None => {
                return Err(StoreError::NameNotFound {
                    zone: cell.name.to_string(),
                    name: name_text(&name),
                });
            }
        };
        Ok(pb::RecordSet {
            zone: cell.name.to_string(),
            serial: state.serial,
            records,
        })
    }

    /// A consistent view of the whole zone at its current serial.
    pub fn snapshot(&self, zone: &str) -> Result<Arc<ZoneSnapshot>, StoreError> {
        let cell = self.cell(zone)?;
        let state = read(&cell.state);
        Ok(state.snapshot(&cell.name))
    }

    /// The batches after `serial`, or the whole zone when the history no longer reaches back.
    /// A serial beyond the zone's is [`StoreError::SerialAhead`].
    pub fn changes_since(&self, zone: &str, serial: u32) -> Result<ZoneChanges, StoreError> {
        let cell = self.cell(zone)?;
        let state = read(&cell.state);
        if serial > state.serial {
            return Err(StoreError::SerialAhead {
                zone: cell.name.to_string(),
                requested: serial,
                current: state.serial,
            });
        }
        Ok(state.changes_since(&cell.name, serial))
    }

    /// Applies one batch atomically: every change is validated and applied in order, and on any
    /// error the zone is left exactly as it was. On success the serial grows by one, the batch
    /// joins the history and followers are woken.
    ///
    /// Refused ([`StoreError::JournalAttached`]) once a journal is attached: use
    /// [`ZoneStore::push`], which makes the batch durable first.
    pub fn apply(&self, batch: &pb::ChangeBatch) -> Result<Applied, StoreError> {
        if self.inner.journal.get().is_some() {
            return Err(StoreError::JournalAttached);
        }
        let cell = self.cell(&batch.zone)?;
        let ops = parse_batch(batch, &cell)?;
        let mut state = write(&cell.state);
        check_expected_serial(&cell, &state, batch)?;
        state.snapshot.take();
        let mut changes = state.apply_ops(ops)?;
        let serial = state.serial.wrapping_add(1);
        if let Some(soa_edit) = state.set_soa_serial(serial) {
            changes.push(soa_edit);
        }
        state.serial = serial;
        let applied = Arc::new(AppliedBatch {
            zone: cell.name.clone(),
            serial,
            changes,
        });
        self.publish(&cell, &mut state, applied);
        Ok(Applied {
            zone: cell.name.to_string(),
            serial,
            changes: batch.changes.len(),
        })
    }

    /// Validates `batch` against the zone as it is now by applying it and rolling it back; the
    /// result holds the canonical batch the journal records. The caller holds the zone's writer
    /// lock, so the zone cannot change before [`commit`](Self::commit).
    pub(crate) fn prepare(
        &self,
        cell: &Arc<ZoneCell>,
        batch: &pb::ChangeBatch,
    ) -> Result<Prepared, StoreError> {
        let ops = parse_batch(batch, cell)?;
        let mut state = write(&cell.state);
        check_expected_serial(cell, &state, batch)?;
        // The journal keys batches by serial, so serials must not wrap (RFC 1982 arithmetic is
        // not supported on the durable path).
        let Some(serial) = state.serial.checked_add(1) else {
            return Err(StoreError::SerialExhausted(cell.name.to_string()));
        };
        let (mut changes, undo) = state.apply_logged(ops.clone())?;
        let soa_edit = state.soa_serial_change(serial);
        state.rollback(undo);
        changes.extend(soa_edit.map(|(change, _)| change));
        Ok(Prepared {
            cell: Arc::clone(cell),
            ops,
            base_serial: state.serial,
            batch: Arc::new(AppliedBatch {
                zone: cell.name.clone(),
                serial,
                changes,
            }),
            sent_changes: batch.changes.len(),
        })
    }

    /// Applies a batch [`prepare`](Self::prepare)d while the writer lock was held throughout.
    pub(crate) fn commit(&self, prepared: Prepared) -> Result<Applied, StoreError> {
        let Prepared {
            cell,
            ops,
            base_serial,
            batch,
            sent_changes,
        } = prepared;
        let mut state = write(&cell.state);
        if state.serial != base_serial {
            return Err(StoreError::Internal(format!(
                "zone `{}` moved from serial {base_serial} to {} while a batch was being journaled",
                cell.name, state.serial
            )));
        }
        state.snapshot.take();
        state
            .apply_ops(ops)
            .map_err(|e| StoreError::Internal(format!("a validated batch failed to apply: {e}")))?;
        state.set_soa_serial(batch.serial);
        state.serial = batch.serial;
        let serial = batch.serial;
        self.publish(&cell, &mut state, batch);
        Ok(Applied {
            zone: cell.name.to_string(),
            serial,
            changes: sent_changes,
        })
    }

    /// Applies a batch exactly as the journal recorded it (canonical changes, SOA serial EDIT
    /// included); the zone must be at `batch.serial - 1`.
    pub(crate) fn replay(
        &self,
        cell: &ZoneCell,
        batch: Arc<AppliedBatch>,
    ) -> Result<(), StoreError> {
        let ops = batch
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| parse_change(index, change, &cell.origin))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = write(&cell.state);
        if u64::from(state.serial) + 1 != u64::from(batch.serial) {
            return Err(StoreError::Internal(format!(
                "journal batch {} of zone `{}` does not follow serial {}",
                batch.serial, cell.name, state.serial
            )));
        }
        state.snapshot.take();
        state.apply_ops(ops)?;
        state.serial = batch.serial;
        self.publish(cell, &mut state, batch);
        Ok(())
    }

    /// Replaces a zone's records by `records` at `serial` (a journal snapshot); the history is
    /// cleared, since it described the replaced records.
    pub(crate) fn replace_records(
        &self,
        cell: &ZoneCell,
        serial: u32,
        records: &[pb::Record],
    ) -> Result<(), StoreError> {
        let mut fresh = ZoneState::new(NameKey::of(&cell.origin));
        for (index, record) in records.iter().enumerate() {
            let record = ZoneRecord::parse(record, &cell.origin).map_err(|e| {
                StoreError::invalid(format!("snapshot.records[{index}].{}", e.field), e.reason)
            })?;
            fresh.insert(Entry::new(record));
        }
        if fresh.soa().is_none() {
            return Err(StoreError::invalid(
                "snapshot.records",
                "no SOA record at the apex",
            ));
        }
        fresh.serial = serial;
        *write(&cell.state) = fresh;
        cell.notify();
        Ok(())
    }

    /// Sets a zone's serial (and SOA serial) without recording a batch: used when a journal is
    /// rebased so the zone's serials stay above every serial published before.
    pub(crate) fn force_serial(&self, cell: &ZoneCell, serial: u32) {
        let mut state = write(&cell.state);
        state.snapshot.take();
        state.set_soa_serial(serial);
        state.serial = serial;
        state.history.clear();
        state.history_changes = 0;
        cell.notify();
    }

    /// SHA-256 over the zone's records in transfer order, one `name ttl type rdata` line each: the
    /// identity of the zone files a journal was started on.
    pub(crate) fn digest(&self, cell: &ZoneCell) -> ([u8; 32], u32) {
        let state = read(&cell.state);
        let mut hasher = Sha256::new();
        for node in state.nodes.values() {
            for rr in &node.rrs {
                hasher.update(format!(
                    "{} {} {} {}\n",
                    node.name, rr.ttl, rr.rtype, rr.rdata
                ));
            }
        }
        (hasher.finalize().into(), state.serial)
    }

    /// Records the batch in the history and wakes the zone's followers; called under the zone
    /// lock.
    fn publish(&self, cell: &ZoneCell, state: &mut ZoneState, batch: Arc<AppliedBatch>) {
        metrics::gauge!(crate::observe::ZONE_SERIAL, "zone" => cell.name.to_string())
            .set(f64::from(batch.serial));
        state.remember(batch, &self.inner.config);
        cell.notify();
    }

    /// What a follower at `position` reads next from memory: at most `limit` batches from the
    /// history, a snapshot (position 0 or ahead of the zone), or nothing when current.
    pub(crate) fn follow_step(&self, cell: &ZoneCell, position: u32, limit: usize) -> FollowStep {
        let state = read(&cell.state);
        if position == state.serial {
            return FollowStep::Current;
        }
        if position == 0 || position > state.serial {
            return FollowStep::Snapshot(state.snapshot(&cell.name));
        }
        match state.history.front() {
            Some(first) if u64::from(first.serial) <= u64::from(position) + 1 => {
                let skip = usize::try_from(u64::from(position) + 1 - u64::from(first.serial))
                    .unwrap_or(usize::MAX);
                let batches = state
                    .history
                    .iter()
                    .skip(skip)
                    .take(limit.max(1))
                    .cloned()
                    .collect();
                FollowStep::Batches(batches)
            }
            _ => FollowStep::BeyondHistory {
                current: state.serial,
            },
        }
    }

    /// The current snapshot of a zone cell.
    pub(crate) fn cell_snapshot(&self, cell: &ZoneCell) -> Arc<ZoneSnapshot> {
        read(&cell.state).snapshot(&cell.name)
    }

    /// The current serial of a zone cell.
    pub(crate) fn cell_serial(&self, cell: &ZoneCell) -> u32 {
        read(&cell.state).serial
    }

    /// Every zone, sorted by name.
    pub(crate) fn cells(&self) -> Vec<Arc<ZoneCell>> {
        let mut cells: Vec<_> = read(&self.inner.zones).values().cloned().collect();
        cells.sort_by(|a, b| a.name.cmp(&b.name));
        cells
    }

    /// The configured follower read-ahead.
    pub(crate) fn read_ahead(&self) -> usize {
        self.inner.config.broadcast_capacity.max(1)
    }

    /// What followers and Sync streams buffer right now.
    pub fn fanout_stats(&self) -> FanoutStats {
        let fanout = &self.inner.fanout;
        FanoutStats {
            followers: fanout.followers.load(Ordering::Relaxed),
            pending_events: fanout.pending_events.load(Ordering::Relaxed),
            queued_messages: fanout.queued_messages.load(Ordering::Relaxed),
        }
    }

    /// The attached journal and its options.
    pub(crate) fn attached(&self) -> Option<&super::durable::Attached> {
        self.inner.journal.get()
    }

    /// Attaches a journal; fails when one is attached already.
    pub(crate) fn set_attached(&self, attached: super::durable::Attached) -> bool {
        self.inner.journal.set(attached).is_ok()
    }

    pub(crate) fn fanout(&self) -> &FanoutCounters {
        &self.inner.fanout
    }

    pub(crate) fn cell(&self, zone: &str) -> Result<Arc<ZoneCell>, StoreError> {
        let key = zone_key(zone)?;
        read(&self.inner.zones)
            .get(key.as_str())
            .cloned()
            .ok_or(StoreError::ZoneNotFound(key))
    }
}

/// Normalizes a zone name from a request: lower case, trailing dot.
fn zone_key(zone: &str) -> Result<String, StoreError> {
    let zone = zone.trim();
    if zone.is_empty() {
        return Err(StoreError::invalid("zone", "empty zone name"));
    }
    let mut key = zone.to_ascii_lowercase();
    if !key.ends_with('.') {
        key.push('.');
    }
    Ok(key)
}

fn parse_batch(batch: &pb::ChangeBatch, cell: &ZoneCell) -> Result<Vec<ChangeOp>, StoreError> {
    if batch.changes.is_empty() {
        return Err(StoreError::invalid("changes", "empty change batch"));
    }
    // Parsing is the expensive part and needs only the immutable origin: no lock.
    batch
        .changes
        .iter()
        .enumerate()
        .map(|(index, change)| parse_change(index, change, &cell.origin))
        .collect()
}

fn check_expected_serial(
    cell: &ZoneCell,
    state: &ZoneState,
    batch: &pb::ChangeBatch,
) -> Result<(), StoreError> {
    match batch.expected_serial {
        Some(expected) if expected != state.serial => Err(StoreError::SerialMismatch {
            zone: cell.name.to_string(),
            expected,
            actual: state.serial,
        }),
        _ => Ok(()),
    }
}

/// A batch validated by [`ZoneStore::prepare`], not applied yet.
#[derive(Debug)]
pub(crate) struct Prepared {
    cell: Arc<ZoneCell>,
    ops: Vec<ChangeOp>,
    base_serial: u32,
    /// The canonical batch as it will be journaled and published.
    pub(crate) batch: Arc<AppliedBatch>,
    sent_changes: usize,
}

impl Prepared {
    /// The serial the zone is at before this batch.
    pub(crate) fn base_serial(&self) -> u32 {
        self.base_serial
    }
}

/// See [`ZoneStore::follow_step`].
#[derive(Debug)]
pub(crate) enum FollowStep {
    Current,
    Snapshot(Arc<ZoneSnapshot>),
    Batches(Vec<Arc<AppliedBatch>>),
    /// The history does not reach back to the position; the zone is at `current`.
    BeyondHistory {
        current: u32,
    },
}

/// A zone: immutable identity outside the lock, mutable state inside.
#[derive(Debug)]
pub(crate) struct ZoneCell {
    pub(crate) name: Arc<str>,
    origin: Name,
    state: RwLock<ZoneState>,
    /// Serializes journaled writers from validation to commit (held across the journal append).
    pub(crate) writer: tokio::sync::Mutex<()>,
    /// Serial of the zone's latest journal snapshot (or its base when none).
    pub(crate) compacted_at: AtomicU32,
    /// A compaction is running for this zone.
    pub(crate) compacting: AtomicBool,
    /// Bumped after every change; the zone's followers wait on it (a version, not a queue, so
    /// a follower that does not read costs nothing here).
    changed: watch::Sender<u64>,
}

impl ZoneCell {
    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees a new version after every change of this zone.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl ZoneCell {
    fn summary(&self) -> ZoneSummary {
        let state = read(&self.state);
        ZoneSummary {
            name: self.name.to_string(),
            serial: state.serial,
            records: state.records,
        }
    }
}

#[derive(Debug)]
struct ZoneState {
    apex: NameKey,
    serial: u32,
    nodes: BTreeMap<NameKey, Arc<Node>>,
    records: usize,
    /// Built on first use after each change.
    snapshot: OnceLock<Arc<ZoneSnapshot>>,
    history: VecDeque<Arc<AppliedBatch>>,
    history_changes: usize,
}

/// The records of one owner name, SOA first, then by type code and rdata.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    name: Box<str>,
    rrs: Vec<Rr>,
}

impl Node {
    fn position(&self, rtype: RecordType, rdata: &str) -> Result<usize, usize> {
        self.rrs
            .binary_search_by(|rr| (rank(rr.rtype), &*rr.rdata).cmp(&(rank(rtype), rdata)))
    }
}

/// The SOA sorts first so transfers start with it, as AXFR does (RFC 5936 §2.2).
fn rank(rtype: RecordType) -> u32 {
    if rtype == RecordType::SOA {
        0
    } else {
        u32::from(u16::from(rtype)) + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    rtype: RecordType,
    ttl: u32,
    rdata: Box<str>,
}

impl Rr {
    fn to_proto(&self, name: &str) -> pb::Record {
        proto_record(name, self.rtype, self.ttl, &self.rdata)
    }
}

/// Owner name as a byte key whose order is DNS canonical order (RFC 4034 §6.1): labels from the
/// root, separated by 0; label bytes 0 and 1 are escaped as 1 1 and 1 2 so 0 only separates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct NameKey(Box<[u8]>);

impl NameKey {
    /// `name` must be lower case already.
    fn of(name: &Name) -> Self {
        let mut key = Vec::with_capacity(name.len());
        for (i, label) in name.iter().rev().enumerate() {
            if i > 0 {
                key.push(0);
            }
            for &b in label {
                match b {
                    0 => key.extend_from_slice(&[1, 1]),
                    1 => key.extend_from_slice(&[1, 2]),
                    _ => key.push(b),
                }
            }
        }
        Self(key.into_boxed_slice())
    }

    /// Whether `other` is a strict descendant of this name.
    fn is_ancestor_of(&self, other: &NameKey) -> bool {
        let (me, them) = (&self.0, &other.0);
        them.len() > me.len()
            && them.starts_with(me)
            && (me.is_empty() || them.get(me.len()) == Some(&0))
    }
}

/// A validated record with its key, ready to insert.
#[derive(Debug, Clone)]
struct Entry {
    key: NameKey,
    name: Box<str>,
    rr: Rr,
}

impl Entry {
    fn new(record: ZoneRecord) -> Self {
        Self {
            key: NameKey::of(&record.name),
            name: name_text(&record.name).into_boxed_str(),
            rr: Rr {
                rtype: record.rtype,
                ttl: record.ttl,
                rdata: record.rdata.into_boxed_str(),
            },
        }
    }

    fn to_proto(&self) -> pb::Record {
        self.rr.to_proto(&self.name)
    }

    fn describe(&self) -> String {
        format!("{} {} {}", self.name, self.rr.rtype, self.rr.rdata)
    }
}

/// A parsed change of a batch.
#[derive(Debug, Clone)]
enum ChangeOp {
    Create(Entry),
    Delete(Entry),
    Edit { previous: Entry, record: Entry },
}

/// How to undo one applied step when a later change of the batch fails.
#[derive(Debug)]
enum Undo {
    Remove {
        key: NameKey,
        rtype: RecordType,
        rdata: Box<str>,
    },
    Restore(Entry),
}

fn parse_change(index: usize, change: &pb::Change, origin: &Name) -> Result<ChangeOp, StoreError> {
    let record = |which: &str, record: Option<&pb::Record>| {
        let record = record.ok_or_else(|| {
            StoreError::invalid(format!("changes[{index}].{which}"), "missing record")
        })?;
        ZoneRecord::parse(record, origin)
            .map(Entry::new)
            .map_err(|e| {
                StoreError::invalid(format!("changes[{index}].{which}.{}", e.field), e.reason)
            })
    };
    match Op::try_from(change.op) {
        Ok(Op::Create) => Ok(ChangeOp::Create(record("record", change.record.as_ref())?)),
        Ok(Op::Delete) => Ok(ChangeOp::Delete(record("record", change.record.as_ref())?)),
        Ok(Op::Edit) => Ok(ChangeOp::Edit {
            previous: record("previous", change.previous.as_ref())?,
            record: record("record", change.record.as_ref())?,
        }),
        Ok(Op::Unspecified) => Err(StoreError::invalid(
            format!("changes[{index}].op"),
            "operation unspecified (CREATE, EDIT or DELETE required)",
        )),
        Err(_) => Err(StoreError::invalid(
            format!("changes[{index}].op"),
            format!("unknown operation {}", change.op),
        )),
    }
}

fn change(op: Op, record: pb::Record, previous: Option<pb::Record>) -> pb::Change {
    pb::Change {
        op: op.into(),
        record: Some(record),
        previous,
    }
}

impl ZoneState {
    fn new(apex: NameKey) -> Self {
        Self {
            apex,
            serial: 0,
            nodes: BTreeMap::new(),
            records: 0,
            snapshot: OnceLock::new(),
            history: VecDeque::new(),
            history_changes: 0,
        }
    }

    fn contains(&self, entry: &Entry) -> bool {
        self.nodes
            .get(&entry.key)
            .is_some_and(|node| node.position(entry.rr.rtype, &entry.rr.rdata).is_ok())
    }

    /// Inserts a record known to be absent.
    fn insert(&mut self, entry: Entry) {
        let node = match self.nodes.entry(entry.key) {
            MapEntry::Occupied(occupied) => Arc::make_mut(occupied.into_mut()),
            MapEntry::Vacant(vacant) => Arc::make_mut(vacant.insert(Arc::new(Node {
                name: entry.name,
                rrs: Vec::new(),
            }))),
        };
        if let Err(at) = node.position(entry.rr.rtype, &entry.rr.rdata) {
            node.rrs.insert(at, entry.rr);
            self.records += 1;
        }
    }

    fn remove(&mut self, key: &NameKey, rtype: RecordType, rdata: &str) -> Option<Rr> {
        let shared = self.nodes.get_mut(key)?;
        let at = shared.position(rtype, rdata).ok()?;
        let node = Arc::make_mut(shared);
        let rr = node.rrs.remove(at);
        if node.rrs.is_empty() {
            self.nodes.remove(key);
        }
        self.records -= 1;
        Some(rr)
    }

    fn soa(&self) -> Option<&Rr> {
        self.nodes
            .get(&self.apex)?
            .rrs
            .first()
            .filter(|rr| rr.rtype == RecordType::SOA)
    }

    fn has_descendant(&self, key: &NameKey) -> bool {
        self.nodes
            .range((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .is_some_and(|(next, _)| key.is_ancestor_of(next))
    }

    fn snapshot(&self, zone: &Arc<str>) -> Arc<ZoneSnapshot> {
        Arc::clone(self.snapshot.get_or_init(|| {
            Arc::new(ZoneSnapshot {
                zone: Arc::clone(zone),
                serial: self.serial,
                nodes: self.nodes.values().cloned().collect(),
                records: self.records,
            })
        }))
    }

    /// Caller checked `serial <= self.serial`.
    fn changes_since(&self, zone: &Arc<str>, serial: u32) -> ZoneChanges {
        if serial == self.serial {
            return ZoneChanges::Incremental(Vec::new());
        }
        match self.history.front() {
            // History serials are consecutive, so the first wanted batch is found by offset.
            Some(first) if u64::from(first.serial) <= u64::from(serial) + 1 => {
                let skip = usize::try_from(u64::from(serial) + 1 - u64::from(first.serial))
                    .unwrap_or(usize::MAX);
                ZoneChanges::Incremental(self.history.iter().skip(skip).cloned().collect())
            }
            _ => ZoneChanges::Full(self.snapshot(zone)),
        }
    }

    /// Applies all changes or none; returns them in canonical form (stored TTLs for removals).
    fn apply_ops(&mut self, ops: Vec<ChangeOp>) -> Result<Vec<pb::Change>, StoreError> {
        self.apply_logged(ops).map(|(changes, _)| changes)
    }

    /// Like `apply_ops`, also returning how to undo the applied changes.
    fn apply_logged(
        &mut self,
        ops: Vec<ChangeOp>,
    ) -> Result<(Vec<pb::Change>, Vec<Undo>), StoreError> {
        let mut undo = Vec::new();
        let mut changes = Vec::with_capacity(ops.len() + 1);
        for (index, op) in ops.into_iter().enumerate() {
            match self.apply_op(index, op, &mut undo) {
                Ok(change) => changes.push(change),
                Err(err) => {
                    self.rollback(undo);
                    return Err(err);
                }
            }
        }
        Ok((changes, undo))
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Remove { key, rtype, rdata } => {
                    self.remove(&key, rtype, &rdata);
                }
                Undo::Restore(entry) => self.insert(entry),
            }
        }
    }

    fn apply_op(
        &mut self,
        index: usize,
        op: ChangeOp,
        undo: &mut Vec<Undo>,
    ) -> Result<pb::Change, StoreError> {
        let is_soa = |entry: &Entry| entry.rr.rtype == RecordType::SOA;
        match op {
            ChangeOp::Create(entry) => {
                if is_soa(&entry) && self.soa().is_some() {
                    return Err(StoreError::SoaConflict {
                        index,
                        reason: "the zone already has a SOA; EDIT it instead",
                    });
                }
                let record = self.create(index, entry, undo)?;
                Ok(change(Op::Create, record, None))
            }
            ChangeOp::Delete(entry) => {
                if is_soa(&entry) {
                    return Err(StoreError::SoaConflict {
                        index,
                        reason: "the SOA cannot be deleted; EDIT it instead",
                    });
                }
                let removed = self.delete(index, entry, undo)?;
                Ok(change(Op::Delete, removed, None))
            }
            ChangeOp::Edit { previous, record } => {
                if is_soa(&previous) != is_soa(&record) {
                    return Err(StoreError::SoaConflict {
                        index,
                        reason: "EDIT cannot change a record to or from SOA",
                    });
                }
                let removed = self.delete(index, previous, undo)?;
                let record = self.create(index, record, undo)?;
                Ok(change(Op::Edit, record, Some(removed)))
            }
        }
    }

    fn create(
        &mut self,
        index: usize,
        entry: Entry,
        undo: &mut Vec<Undo>,
    ) -> Result<pb::Record, StoreError> {
        if self.contains(&entry) {
            return Err(StoreError::RecordExists {
                index,
                record: entry.describe(),
            });
        }
        let record = entry.to_proto();
        undo.push(Undo::Remove {
            key: entry.key.clone(),
            rtype: entry.rr.rtype,
            rdata: entry.rr.rdata.clone(),
        });
        self.insert(entry);
        Ok(record)
    }

    fn delete(
        &mut self,
        index: usize,
        entry: Entry,
        undo: &mut Vec<Undo>,
    ) -> Result<pb::Record, StoreError> {
        let Some(rr) = self.remove(&entry.key, entry.rr.rtype, &entry.rr.rdata) else {
            return Err(StoreError::RecordMissing {
                index,
                record: entry.describe(),
            });
        };
        let removed = Entry { rr, ..entry };
        let record = removed.to_proto();
        undo.push(Undo::Restore(removed));
        Ok(record)
    }

    /// The EDIT that would write `serial` into the SOA, with the new SOA rdata; `None` when the
    /// SOA already carries it.
    fn soa_serial_change(&self, serial: u32) -> Option<(pb::Change, String)> {
        let old = self.soa()?;
        let rdata = soa_with_serial(&old.rdata, serial)?;
        if rdata == *old.rdata {
            return None;
        }
        let name = &self.nodes.get(&self.apex)?.name;
        let previous = old.to_proto(name);
        let record = proto_record(name, old.rtype, old.ttl, &rdata);
        Some((change(Op::Edit, record, Some(previous)), rdata))
    }

    /// Writes `serial` into the SOA; returns the EDIT describing it, if the SOA changed.
    fn set_soa_serial(&mut self, serial: u32) -> Option<pb::Change> {
        let (change, rdata) = self.soa_serial_change(serial)?;
        let node = Arc::make_mut(self.nodes.get_mut(&self.apex)?);
        let soa = node.rrs.first_mut()?;
        // The SOA sorts first by type alone, so changing its rdata keeps the order.
        soa.rdata = rdata.into_boxed_str();
        Some(change)
    }

    fn remember(&mut self, batch: Arc<AppliedBatch>, config: &StoreConfig) {
        self.history_changes += batch.changes.len();
        self.history.push_back(batch);
        while self.history.len() > config.history_batches
            || (self.history_changes > config.history_changes && !self.history.is_empty())
        {
            if let Some(old) = self.history.pop_front() {
                self.history_changes -= old.changes.len();
            }
        }
    }
}

/// The SOA serial from canonical SOA rdata (`mname rname serial refresh retry expire minimum`).
fn soa_serial(rdata: &str) -> Option<u32> {
    rdata.split(' ').nth(2)?.parse().ok()
}

fn soa_with_serial(rdata: &str, serial: u32) -> Option<String> {
    let fields: Vec<&str> = rdata.split(' ').collect();
    let [mname, rname, _, rest @ ..] = fields.as_slice() else {
        return None;
    };
    Some(format!("{mname} {rname} {serial} {}", rest.join(" ")))
}

/// Parses a whole zone; the zone must have a SOA, which gives the initial serial.
fn build_zone(text: &str, rule: OriginRule, path: &Path) -> Result<ZoneCell, StoreError> {
    let file_error = |line: usize, message: String| StoreError::ZoneFile {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = ZoneReader::new(text, rule);
    let mut zone: Option<ZoneState> = None;
    let mut soa_line = None;
    while let Some((line, record)) = reader
        .next_record()
        .map_err(|e| file_error(e.line, e.message))?
    {
        if record.rtype == RecordType::SOA {
            if let Some(first) = soa_line {
                return Err(file_error(
                    line,
                    format!("second SOA record (first at line {first})"),
                ));
            }
            soa_line = Some(line);
        }
        let state = zone.get_or_insert_with(|| {
            let origin = reader.zone_origin().cloned().unwrap_or_else(Name::root);
            ZoneState::new(NameKey::of(&origin))
        });
        // Duplicate records collapse into one, as in any RRset.
        state.insert(Entry::new(record));
    }
    let (Some(mut state), Some(origin)) = (zone, reader.zone_origin().cloned()) else {
        return Err(file_error(
            0,
            "zone has no records (a SOA is required)".to_owned(),
        ));
    };
    let serial = state.soa().and_then(|soa| soa_serial(&soa.rdata));
    let Some(serial) = serial else {
        return Err(file_error(
            0,
            "zone has no SOA record at its apex".to_owned(),
        ));
    };
    state.serial = serial;
    Ok(ZoneCell {
        name: name_text(&origin).into(),
        origin,
        state: RwLock::new(state),
        writer: tokio::sync::Mutex::new(()),
        compacted_at: AtomicU32::new(0),
        compacting: AtomicBool::new(false),
        changed: watch::Sender::new(0),
    })
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Writers validate before they mutate, so a panicking holder leaves consistent data.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

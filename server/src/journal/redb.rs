//! [`RedbJournal`]: the journal in one embedded redb file. Every append is one write transaction
//! committed with `Durability::Immediate` (fsync'd before `append` returns), so an acknowledged
//! batch survives `kill -9` and power loss, and a batch is either wholly in the file or not at all.
//!
//! Layout: `zones` (zone → [`ZoneMeta`]), `entries` ((zone, serial) → `ZoneUpdate` protobuf),
//! `snapshots` (zone → `ZoneSnapshot` protobuf), `format` (`version` → 1).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction,
};
use zone_proto::zone::v1 as pb;

use super::{
    Journal, JournalError, JournalFuture, ReadAfter, ZoneBase, ZoneJournalState, ZoneOpen,
};
use crate::zones::{AppliedBatch, ZoneSnapshot};

const ZONES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("zones");
const ENTRIES: TableDefinition<'_, (&str, u32), &[u8]> = TableDefinition::new("entries");
const SNAPSHOTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshots");
const FORMAT: TableDefinition<'_, &str, u32> = TableDefinition::new("format");
const FORMAT_VERSION: u32 = 1;
/// redb's page cache; the journal is mostly appended to, so a small cache is enough.
const CACHE_BYTES: usize = 64 << 20;
/// How long `close` waits for operations in progress.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Per-zone bookkeeping, stored as protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct ZoneMeta {
    #[prost(uint32, tag = "1")]
    base_serial: u32,
    #[prost(bytes = "vec", tag = "2")]
    base_digest: Vec<u8>,
    #[prost(uint32, tag = "3")]
    last_serial: u32,
    #[prost(uint32, tag = "4")]
    oldest_after: u32,
    #[prost(uint32, optional, tag = "5")]
    snapshot_serial: Option<u32>,
    #[prost(uint64, tag = "6")]
    entries: u64,
}

impl ZoneMeta {
    fn new(base: &ZoneBase) -> Self {
        Self::from_state(&ZoneJournalState::new(base))
    }

    fn from_state(state: &ZoneJournalState) -> Self {
        Self {
            base_serial: state.base_serial,
            base_digest: state.base_digest.to_vec(),
            last_serial: state.last_serial,
            oldest_after: state.oldest_after,
            snapshot_serial: state.snapshot_serial,
            entries: state.entries,
        }
    }

    fn to_state(&self, zone: &str) -> Result<ZoneJournalState, JournalError> {
        let base_digest = self.base_digest.as_slice().try_into().map_err(|_| {
            JournalError::Corrupt(format!("zone `{zone}`: base digest is not 32 bytes"))
        })?;
        Ok(ZoneJournalState {
            base_serial: self.base_serial,
            base_digest,
            last_serial: self.last_serial,
            oldest_after: self.oldest_after,
            snapshot_serial: self.snapshot_serial,
            entries: self.entries,
        })
    }
}

/// The journal in a redb file; see the module docs.
#[derive(Debug)]
pub struct RedbJournal {
    path: PathBuf,
    /// `None` once closed. Operations clone the `Arc` and run without holding the lock.
    db: RwLock<Option<Arc<Database>>>,
}

impl RedbJournal {
    /// Opens the journal at `path`, creating it when missing. A file left by a crash is
    /// recovered to its last committed transaction. Only one process may have it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, JournalError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: redb::Error| JournalError::Open {
            path: path.clone(),
            source,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_err(e.into()))?;
        let init = || -> Result<(), JournalError> {
            let txn = db.begin_write()?;
            {
                let mut format = txn.open_table(FORMAT)?;
                let version = format.get("version")?.map(|v| v.value());
                match version {
                    None => {
                        format.insert("version", FORMAT_VERSION)?;
                    }
                    Some(FORMAT_VERSION) => {}
                    Some(other) => {
                        return Err(JournalError::Corrupt(format!(
                            "journal format {other} is not supported (this build reads {FORMAT_VERSION})"
                        )));
                    }
                }
                txn.open_table(ZONES)?;
                txn.open_table(ENTRIES)?;
                txn.open_table(SNAPSHOTS)?;
            }
            txn.commit()?;
            Ok(())
        };
        init().map_err(|e| match e {
            JournalError::Storage(source) => open_err(source),
            other => other,
        })?;
        Ok(Arc::new(Self {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file (releasing its lock, so it can be opened again, e.g. by a restarted
    /// server in the same process) after waiting up to 5 s for operations in progress. Later
    /// operations fail with [`JournalError::Closed`].
    pub async fn close(&self) -> Result<(), JournalError> {
        let taken = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut db) = taken else {
            return Ok(());
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    return tokio::task::spawn_blocking(move || db.close())
                        .await
                        .map_err(|e| JournalError::Task(e.to_string()))?
                        .map_err(JournalError::from);
                }
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Dropped by whichever operation finishes last.
                Err(_) => return Ok(()),
            }
        }
    }

    fn db(&self) -> Result<Arc<Database>, JournalError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(JournalError::Closed)
    }

    /// Runs `f` on the blocking pool (redb does synchronous I/O and fsync).
    fn blocking<T, F>(&self, f: F) -> JournalFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, JournalError> + Send + 'static,
    {
        Box::pin(async move {
            let db = self.db()?;
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(|e| JournalError::Task(e.to_string()))?
        })
    }
}

fn read_meta(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    zone: &str,
) -> Result<Option<ZoneMeta>, JournalError> {
    match table.get(zone)? {
        Some(bytes) => ZoneMeta::decode(bytes.value())
            .map(Some)
            .map_err(|e| JournalError::Corrupt(format!("zone `{zone}` metadata: {e}"))),
        None => Ok(None),
    }
}

fn write_meta(txn: &WriteTransaction, zone: &str, meta: &ZoneMeta) -> Result<(), JournalError> {
    txn.open_table(ZONES)?
        .insert(zone, meta.encode_to_vec().as_slice())?;
    Ok(())
}

/// Removes the zone's entries with serials in `from..=to`; returns how many.
fn remove_entries(
    txn: &WriteTransaction,
    zone: &str,
    from: u32,
    to: u32,
) -> Result<u64, JournalError> {
    if from > to {
        return Ok(0);
    }
    let mut removed = 0u64;
    txn.open_table(ENTRIES)?
        .retain_in((zone, from)..=(zone, to), |_, _| {
            removed += 1;
            false
        })?;
    Ok(removed)
}

impl Journal for RedbJournal {
    fn open_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneOpen> {
        let base = base.clone();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let existing = read_meta(&txn.open_table(ZONES)?, &base.zone)?;
            match existing {
                Some(meta) => {
                    let state = meta.to_state(&base.zone)?;
                    txn.abort()?;
                    Ok(if state.base_digest == base.digest {
                        ZoneOpen::Known(state)
                    } else {
                        ZoneOpen::BaseChanged(state)
                    })
                }
                None => {
                    let meta = ZoneMeta::new(&base);
                    write_meta(&txn, &base.zone, &meta)?;
                    txn.commit()?;
                    Ok(ZoneOpen::New(meta.to_state(&base.zone)?))
                }
            }
        })
    }

    fn reset_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneJournalState> {
        let base = base.clone();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            remove_entries(&txn, &base.zone, 0, u32::MAX)?;
            txn.open_table(SNAPSHOTS)?.remove(base.zone.as_str())?;
            let meta = ZoneMeta::new(&base);
            write_meta(&txn, &base.zone, &meta)?;
            txn.commit()?;
            meta.to_state(&base.zone)
        })
    }

    fn append(&self, batch: Arc<AppliedBatch>, expected_last: u32) -> JournalFuture<'_, ()> {
        self.blocking(move |db| {
            let zone = batch.zone();
            let bytes = batch.to_update().encode_to_vec();
            let txn = db.begin_write()?;
            let Some(mut meta) = read_meta(&txn.open_table(ZONES)?, zone)? else {
                return Err(JournalError::UnknownZone(zone.to_owned()));
            };
            if meta.last_serial != expected_last {
                return Err(JournalError::Conflict {
                    zone: zone.to_owned(),
                    expected: expected_last,
                    actual: meta.last_serial,
                });
            }
            if expected_last.checked_add(1) != Some(batch.serial()) {
                return Err(JournalError::NotConsecutive {
                    zone: zone.to_owned(),
                    expected: expected_last,
                    serial: batch.serial(),
                });
            }
            txn.open_table(ENTRIES)?
                .insert((zone, batch.serial()), bytes.as_slice())?;
            meta.last_serial = batch.serial();
            meta.entries += 1;
            write_meta(&txn, zone, &meta)?;
            // Durability::Immediate (the default): fsync'd before commit returns.
            txn.commit()?;
            Ok(())
        })
    }

    fn read_after<'a>(
        &'a self,
        zone: &'a str,
        after: u32,
        limit: usize,
    ) -> JournalFuture<'a, ReadAfter> {
        let zone = zone.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let Some(meta) = read_meta(&txn.open_table(ZONES)?, &zone)? else {
                return Err(JournalError::UnknownZone(zone));
            };
            if after < meta.oldest_after {
                return Ok(ReadAfter::Compacted {
                    oldest_after: meta.oldest_after,
                });
            }
            if after > meta.last_serial {
                return Ok(ReadAfter::Ahead {
                    last_serial: meta.last_serial,
                });
            }
            let mut batches = Vec::new();
            if after == meta.last_serial {
                return Ok(ReadAfter::Entries(batches));
            }
            let entries = txn.open_table(ENTRIES)?;
            let mut want = after + 1;
            for entry in entries
                .range((zone.as_str(), want)..=(zone.as_str(), meta.last_serial))?
                .take(limit.max(1))
            {
                let (key, value) = entry?;
                let serial = key.value().1;
                let update = pb::ZoneUpdate::decode(value.value()).map_err(|e| {
                    JournalError::Corrupt(format!("zone `{zone}` batch {serial}: {e}"))
                })?;
                if serial != want || update.serial != serial || update.zone != zone {
                    return Err(JournalError::Corrupt(format!(
                        "zone `{zone}`: expected batch {want}, found key {serial} holding \
                         `{}` serial {}",
                        update.zone, update.serial
                    )));
                }
                batches.push(Arc::new(AppliedBatch::from_update(update)));
                want = want.saturating_add(1);
            }
            if batches.is_empty() {
                return Err(JournalError::Corrupt(format!(
                    "zone `{zone}`: batch {} is missing",
                    after + 1
                )));
            }
            Ok(ReadAfter::Entries(batches))
        })
    }

    fn load_snapshot<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<pb::ZoneSnapshot>> {
        let zone = zone.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SNAPSHOTS)?;
            let Some(bytes) = table.get(zone.as_str())? else {
                return Ok(None);
            };
            pb::ZoneSnapshot::decode(bytes.value())
                .map(Some)
                .map_err(|e| JournalError::Corrupt(format!("zone `{zone}` snapshot: {e}")))
        })
    }

    fn compact(&self, snapshot: Arc<ZoneSnapshot>, keep_after: u32) -> JournalFuture<'_, ()> {
        self.blocking(move |db| {
            let zone = snapshot.zone();
            let serial = snapshot.serial();
            let bytes = snapshot.to_proto().encode_to_vec();
            let txn = db.begin_write()?;
            let Some(mut meta) = read_meta(&txn.open_table(ZONES)?, zone)? else {
                return Err(JournalError::UnknownZone(zone.to_owned()));
            };
            if serial > meta.last_serial {
                return Err(JournalError::NotConsecutive {
                    zone: zone.to_owned(),
                    expected: meta.last_serial,
                    serial,
                });
            }
            if meta.snapshot_serial.is_none_or(|s| s < serial) {
                txn.open_table(SNAPSHOTS)?.insert(zone, bytes.as_slice())?;
                meta.snapshot_serial = Some(serial);
            }
            let keep_after = keep_after.min(serial);
            if keep_after > meta.oldest_after {
                let removed = remove_entries(&txn, zone, meta.oldest_after + 1, keep_after)?;
                meta.entries = meta.entries.saturating_sub(removed);
                meta.oldest_after = keep_after;
            }
            write_meta(&txn, zone, &meta)?;
            txn.commit()?;
            Ok(())
        })
    }

    fn zone_state<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<ZoneJournalState>> {
        let zone = zone.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            read_meta(&txn.open_table(ZONES)?, &zone)?
                .map(|meta| meta.to_state(&zone))
                .transpose()
        })
    }
}

//! The durable path of the zone store: attaching a [`Journal`] (replaying it on top of the zones
//! loaded from files) and pushing batches through it: validate, append durably, apply, wake
//! followers, in that order, so nothing is acknowledged or published before it is durable.
//!
//! Decisions:
//! - One writer per zone at a time (an async mutex held from validation to commit): the dry run
//!   that validates a batch stays valid until it is applied, and the journal's expected-serial
//!   check only fails when another *server* shares the journal.
//! - The critical section runs in its own task, so a client that cancels its call cannot stop it
//!   between the append and the in-memory apply.
//! - Zone files that changed since the journal was started: [`BasePolicy::Refuse`] (default)
//!   stops with [`JournalError::BaseChanged`]; [`BasePolicy::Rebase`] drops the zone's journal
//!   and keeps serving the files, with the serial raised above the journal's last one so edges
//!   see a newer zone (they get a snapshot: their serial is older than the new base).
//! - A zone inserted after the journal was attached is registered on its first push.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use zone_proto::zone::v1 as pb;

use super::error::StoreError;
use super::store::{Applied, ZoneCell, ZoneStore};
use crate::journal::{
    BasePolicy, Journal, JournalError, JournalOptions, ReadAfter, ReplayOutcome, ZoneBase,
    ZoneOpen, ZoneReplay,
};

/// Batches with at least this many changes are validated on the blocking pool (parsing is CPU
/// work).
pub(crate) const BLOCKING_BATCH_CHANGES: usize = 256;
/// Batches read from the journal at a time while replaying or catching up.
const REPLAY_PAGE: usize = 256;

/// The journal of a store and its options.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) options: JournalOptions,
}

impl ZoneStore {
    /// Attaches a journal: registers every loaded zone with it (the zone as loaded is its base)
    /// or replays what the journal holds on top of it. From then on batches must go through
    /// [`push`](Self::push). Call once, after loading the zones and before serving.
    ///
    /// Errors: [`JournalError::BaseChanged`] when a zone's files changed since the journal was
    /// started and the policy is [`BasePolicy::Refuse`]; journal I/O or corruption errors.
    pub async fn attach_journal(
        &self,
        journal: Arc<dyn Journal>,
        options: JournalOptions,
    ) -> Result<Vec<ZoneReplay>, StoreError> {
        let attached = Attached {
            journal: Arc::clone(&journal),
            options: options.clone(),
        };
        // Set first, so no `apply` can slip in while the journal is replayed.
        if !self.set_attached(attached) {
            return Err(StoreError::Internal(
                "a journal is already attached to this store".into(),
            ));
        }
        let mut report = Vec::new();
        for cell in self.cells() {
            report.push(self.recover_zone(&cell, journal.as_ref(), &options).await?);
        }
        Ok(report)
    }

    /// The attached journal, if any.
    pub fn journal(&self) -> Option<Arc<dyn Journal>> {
        self.attached().map(|a| Arc::clone(&a.journal))
    }

    /// Applies one batch atomically and returns the new serial. With a journal attached the
    /// batch is durable in the journal before this returns `Ok` (and before any follower sees
    /// it); a batch that fails validation leaves zone and journal untouched. Without a journal
    /// this is [`apply`](Self::apply).
    pub async fn push(&self, batch: pb::ChangeBatch) -> Result<Applied, StoreError> {
        if self.attached().is_none() {
            if batch.changes.len() < BLOCKING_BATCH_CHANGES {
                return self.apply(&batch);
            }
            let store = self.clone();
            return tokio::task::spawn_blocking(move || store.apply(&batch))
                .await
                .map_err(|e| StoreError::Internal(format!("applying the batch failed: {e}")))?;
        }
        let store = self.clone();
        tokio::spawn(async move { store.push_durable(batch).await })
            .await
            .map_err(|e| StoreError::Internal(format!("journaling the batch failed: {e}")))?
    }

    async fn push_durable(&self, batch: pb::ChangeBatch) -> Result<Applied, StoreError> {
        let attached = self
            .attached()
            .ok_or_else(|| StoreError::Internal("no journal attached".into()))?;
        let journal = attached.journal.as_ref();
        let cell = self.cell(&batch.zone)?;
        let _writer = cell.writer.lock().await;
        let batch = Arc::new(batch);
        let mut registered = false;
        loop {
            let prepared = if batch.changes.len() >= BLOCKING_BATCH_CHANGES {
                let (store, cell, batch) = (self.clone(), Arc::clone(&cell), Arc::clone(&batch));
                tokio::task::spawn_blocking(move || store.prepare(&cell, &batch))
                    .await
                    .map_err(|e| {
                        StoreError::Internal(format!("validating the batch failed: {e}"))
                    })?
            } else {
                self.prepare(&cell, &batch)
            }?;
            let serial = prepared.batch.serial();
            let started = std::time::Instant::now();
            let appended = journal
                .append(Arc::clone(&prepared.batch), prepared.base_serial())
                .await;
            let result = match &appended {
                Ok(()) => "ok",
                Err(JournalError::Conflict { .. }) => "conflict",
                Err(_) => "error",
            };
            metrics::counter!(crate::observe::JOURNAL_APPENDS, "result" => result).increment(1);
            metrics::histogram!(crate::observe::JOURNAL_APPEND_LATENCY)
                .record(started.elapsed().as_secs_f64());
            match appended {
                Ok(()) => {}
                Err(JournalError::UnknownZone(_)) if !registered => {
                    registered = true;
                    self.recover_zone(&cell, journal, &attached.options).await?;
                    continue;
                }
                Err(err @ JournalError::Conflict { .. }) => {
                    // Another writer appended first: take its batches, so a retry starts there.
                    if let Err(catch_up) = self.catch_up_from_journal(&cell, journal).await {
                        tracing::warn!(zone = %cell.name, error = %catch_up, "cannot catch up with the journal");
                    }
                    return Err(err.into());
                }
                Err(err) => {
                    // An error after the commit point would leave the batch durable: then it
                    // counts as applied, like a crash right after the commit. Compared by
                    // content: on a shared journal another server may hold that serial.
                    match journal
                        .read_after(&cell.name, prepared.base_serial(), 1)
                        .await
                    {
                        Ok(ReadAfter::Entries(entries))
                            if entries.first().is_some_and(|b| {
                                b.serial() == serial && **b == *prepared.batch
                            }) => {}
                        _ => return Err(err.into()),
                    }
                }
            }
            let applied = self.commit(prepared)?;
            self.maybe_compact(&cell, attached);
            return Ok(applied);
        }
    }

    /// Writes a journal snapshot of `zone` now and drops its batches older than the retention;
    /// returns the snapshot serial.
    pub async fn compact_journal(&self, zone: &str) -> Result<u32, StoreError> {
        let attached = self
            .attached()
            .ok_or_else(|| StoreError::Internal("no journal attached".into()))?;
        let cell = self.cell(zone)?;
        compact(self, &cell, attached.journal.as_ref(), &attached.options).await
    }

    /// Starts a background compaction when enough batches accumulated since the last one.
    fn maybe_compact(&self, cell: &Arc<ZoneCell>, attached: &Attached) {
        let every = attached.options.compact_every;
        let since = self
            .cell_serial(cell)
            .saturating_sub(cell.compacted_at.load(Ordering::Relaxed));
        if every == 0 || since < every || cell.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, cell) = (self.clone(), Arc::clone(cell));
        let (journal, options) = (Arc::clone(&attached.journal), attached.options.clone());
        tokio::spawn(async move {
            if let Err(err) = compact(&store, &cell, journal.as_ref(), &options).await {
                tracing::warn!(zone = %cell.name, error = %err, "journal compaction failed");
            }
            cell.compacting.store(false, Ordering::Release);
        });
    }

    /// Registers a zone with the journal or replays the journal onto it.
    async fn recover_zone(
        &self,
        cell: &ZoneCell,
        journal: &dyn Journal,
        options: &JournalOptions,
    ) -> Result<ZoneReplay, StoreError> {
        let zone = cell.name.to_string();
        let (digest, file_serial) = self.digest(cell);
        let base = ZoneBase {
            zone: zone.clone(),
            serial: file_serial,
            digest,
        };
        let (state, outcome) = match journal.open_zone(&base).await? {
            ZoneOpen::New(state) => (state, ReplayOutcome::Registered),
            ZoneOpen::Known(state) => (state, ReplayOutcome::Replayed),
            ZoneOpen::BaseChanged(state) => match options.base_policy {
                BasePolicy::Refuse => {
                    return Err(JournalError::BaseChanged {
                        zone,
                        journal_base_serial: state.base_serial,
                        journal_last_serial: state.last_serial,
                        batches: state.entries,
                        file_serial,
                    }
                    .into());
                }
                BasePolicy::Rebase => {
                    // Never reuse a serial edges may hold for other contents.
                    let serial = if file_serial <= state.last_serial {
                        state
                            .last_serial
                            .checked_add(1)
                            .ok_or_else(|| StoreError::SerialExhausted(zone.clone()))?
                    } else {
                        file_serial
                    };
                    // The base keeps the files' digest (so the next start matches) with the
                    // raised serial (applied again at replay).
                    let state = journal.reset_zone(&ZoneBase { serial, ..base }).await?;
                    (state, ReplayOutcome::Rebased)
                }
            },
        };
        let from = state.replay_from();
        match state.snapshot_serial {
            Some(snapshot_serial) => {
                let snapshot = journal.load_snapshot(&zone).await?.ok_or_else(|| {
                    JournalError::Corrupt(format!(
                        "zone `{zone}`: snapshot {snapshot_serial} is missing"
                    ))
                })?;
                if snapshot.serial != snapshot_serial {
                    return Err(JournalError::Corrupt(format!(
                        "zone `{zone}`: snapshot is at serial {}, metadata says {snapshot_serial}",
                        snapshot.serial
                    ))
                    .into());
                }
                self.replace_records(cell, snapshot.serial, &snapshot.records)
                    .map_err(|e| JournalError::Corrupt(format!("zone `{zone}` snapshot: {e}")))?;
            }
            None if state.base_serial != file_serial => self.force_serial(cell, state.base_serial),
            None => {}
        }
        let mut batches = 0u64;
        let mut position = from;
        while position < state.last_serial {
            let page = journal.read_after(&zone, position, REPLAY_PAGE).await?;
            let ReadAfter::Entries(entries) = page else {
                return Err(JournalError::Corrupt(format!(
                    "zone `{zone}`: cannot read the batches after serial {position}: {page:?}"
                ))
                .into());
            };
            if entries.is_empty() {
                return Err(JournalError::Corrupt(format!(
                    "zone `{zone}`: batches after serial {position} are missing"
                ))
                .into());
            }
            for batch in entries {
                position = batch.serial();
                self.replay(cell, batch)
                    .map_err(|e| JournalError::Corrupt(format!("zone `{zone}`: {e}")))?;
                batches += 1;
            }
        }
        let serial = self.cell_serial(cell);
        if serial != state.last_serial {
            return Err(JournalError::Corrupt(format!(
                "zone `{zone}`: replay ended at serial {serial}, the journal's last is {}",
                state.last_serial
            ))
            .into());
        }
        cell.compacted_at.store(from, Ordering::Relaxed);
        Ok(ZoneReplay {
            zone,
            file_serial,
            from_serial: from,
            batches,
            serial,
            outcome,
        })
    }

    /// Applies the batches other servers appended to a shared journal after the zone's serial
    /// (waiting for a push in progress to finish first); returns the zone's serial after.
    ///
    /// A shared journal's tail calls this when it learns of new batches (see
    /// [`crate::journal::NatsTail`]); followers of this store then see them as if pushed here.
    pub async fn sync_from_journal(&self, zone: &str) -> Result<u32, StoreError> {
        let attached = self
            .attached()
            .ok_or_else(|| StoreError::Internal("no journal attached".into()))?;
        let cell = self.cell(zone)?;
        let _writer = cell.writer.lock().await;
        self.catch_up_from_journal(&cell, attached.journal.as_ref())
            .await?;
        Ok(self.cell_serial(&cell))
    }

    /// Applies the batches another writer appended after the zone's serial.
    async fn catch_up_from_journal(
        &self,
        cell: &ZoneCell,
        journal: &dyn Journal,
    ) -> Result<(), StoreError> {
        loop {
            let position = self.cell_serial(cell);
            match journal
                .read_after(&cell.name, position, REPLAY_PAGE)
                .await?
            {
                ReadAfter::Entries(entries) if !entries.is_empty() => {
                    for batch in entries {
                        self.replay(cell, batch)?;
                    }
                }
                ReadAfter::Compacted { .. } => {
                    let snapshot = journal.load_snapshot(&cell.name).await?.ok_or_else(|| {
                        JournalError::Corrupt(format!("zone `{}`: snapshot missing", cell.name))
                    })?;
                    if snapshot.serial <= position {
                        return Ok(());
                    }
                    self.replace_records(cell, snapshot.serial, &snapshot.records)?;
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Snapshots the zone into the journal, keeping `options.retain` batches before it.
async fn compact(
    store: &ZoneStore,
    cell: &ZoneCell,
    journal: &dyn Journal,
    options: &JournalOptions,
) -> Result<u32, StoreError> {
    let snapshot = store.cell_snapshot(cell);
    let serial = snapshot.serial();
    let keep_after = serial.saturating_sub(options.retain);
    journal.compact(snapshot, keep_after).await?;
    cell.compacted_at.fetch_max(serial, Ordering::Relaxed);
    Ok(serial)
}

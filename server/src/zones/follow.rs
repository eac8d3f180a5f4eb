//! Following zones from a serial: a gap-free, duplicate-free sequence of snapshots and applied
//! batches per zone.
//!
//! Followers *pull*: each keeps only its position per zone and, when woken by the store's change
//! signal (a version number, not a queue), reads what comes after it: from the in-memory
//! history, else from the journal (a slow follower far behind), else a fresh snapshot (position
//! 0, ahead of the zone, or older than anything kept). It holds at most one page of events at a
//! time, so memory per follower is bounded whatever its lag, and a follower that stops reading
//! costs nothing to publishers. Gaps and duplicates cannot happen: every read asks for "the
//! batches after my position".

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::error::StoreError;
use super::store::{AppliedBatch, FollowStep, ZoneCell, ZoneSnapshot, ZoneStore};
use crate::journal::ReadAfter;

/// Batches a follower reads from the journal at a time.
const JOURNAL_PAGE: usize = 64;

/// What a follower receives for one zone, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ZoneEvent {
    /// Replace the zone with this copy.
    Snapshot(Arc<ZoneSnapshot>),
    /// Apply these changes; the follower is at `serial - 1`.
    Update(Arc<AppliedBatch>),
}

impl ZoneEvent {
    pub fn zone(&self) -> &str {
        match self {
            Self::Snapshot(snapshot) => snapshot.zone(),
            Self::Update(batch) => batch.zone(),
        }
    }

    /// The zone serial after this event.
    pub fn serial(&self) -> u32 {
        match self {
            Self::Snapshot(snapshot) => snapshot.serial(),
            Self::Update(batch) => batch.serial(),
        }
    }
}

#[derive(Debug)]
struct Followed {
    cell: Arc<ZoneCell>,
    changes: watch::Receiver<u64>,
    /// The serial the follower reaches once everything queued is consumed.
    position: u32,
}

/// Follows a set of zones; see [`ZoneStore::follow`].
#[derive(Debug)]
pub struct ZoneFollower {
    store: ZoneStore,
    zones: Vec<Followed>,
    /// Where the next scan starts, so one busy zone cannot starve the others.
    next_zone: usize,
    pending: VecDeque<ZoneEvent>,
}

impl ZoneStore {
    /// Starts following `(zone, serial)` pairs: serial 0 (nothing yet), a serial ahead of the
    /// zone or older than the history and the journal starts with a snapshot; otherwise with the
    /// batches after it. A zone may appear once.
    pub fn follow<'a>(
        &self,
        cursors: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<ZoneFollower, StoreError> {
        let mut zones: Vec<Followed> = Vec::new();
        for (zone, serial) in cursors {
            let cell = self.cell(zone)?;
            if zones.iter().any(|f| f.cell.name == cell.name) {
                return Err(StoreError::invalid(
                    "zones",
                    format!("zone `{}` listed twice", cell.name),
                ));
            }
            zones.push(Followed {
                changes: cell.changes(),
                cell,
                position: serial,
            });
        }
        self.fanout().followers.fetch_add(1, Ordering::Relaxed);
        Ok(ZoneFollower {
            store: self.clone(),
            zones,
            next_zone: 0,
            pending: VecDeque::new(),
        })
    }
}

impl ZoneFollower {
    /// The next event, waiting for one to be published.
    ///
    /// Cancel-safe: state changes only after the last await of each step.
    pub async fn next(&mut self) -> Option<ZoneEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.store
                    .fanout()
                    .pending_events
                    .fetch_sub(1, Ordering::Relaxed);
                return Some(event);
            }
            // Marked seen before the scan: a change during the scan wakes the wait below.
            for followed in &mut self.zones {
                followed.changes.borrow_and_update();
            }
            if self.fill().await {
                continue;
            }
            if self.zones.is_empty() {
                return None;
            }
            // Wait for any followed zone to change (zones are never dropped from a store, so
            // their senders live as long as the follower).
            let waits = self
                .zones
                .iter_mut()
                .map(|followed| Box::pin(followed.changes.changed()));
            let (changed, _, _) = futures::future::select_all(waits).await;
            if changed.is_err() {
                return None;
            }
        }
    }

    /// Zones followed, with the serial each reaches once queued events are consumed.
    pub fn positions(&self) -> impl Iterator<Item = (&str, u32)> {
        self.zones.iter().map(|f| (&*f.cell.name, f.position))
    }

    /// Queues the next events of the first zone (round robin) that has any.
    async fn fill(&mut self) -> bool {
        let count = self.zones.len();
        for k in 0..count {
            let index = (self.next_zone + k) % count;
            if self.fill_zone(index).await {
                self.next_zone = (index + 1) % count;
                return true;
            }
        }
        false
    }

    async fn fill_zone(&mut self, index: usize) -> bool {
        let Some(followed) = self.zones.get(index) else {
            return false;
        };
        let (cell, position) = (Arc::clone(&followed.cell), followed.position);
        let events = match self
            .store
            .follow_step(&cell, position, self.store.read_ahead())
        {
            FollowStep::Current => return false,
            FollowStep::Snapshot(snapshot) => vec![ZoneEvent::Snapshot(snapshot)],
            FollowStep::Batches(batches) => batches.into_iter().map(ZoneEvent::Update).collect(),
            FollowStep::BeyondHistory { current } => {
                self.read_journal(&cell, position, current).await
            }
        };
        let Some(last) = events.last().map(ZoneEvent::serial) else {
            return false;
        };
        if let Some(followed) = self.zones.get_mut(index) {
            followed.position = last;
        }
        self.store
            .fanout()
            .pending_events
            .fetch_add(events.len(), Ordering::Relaxed);
        self.pending.extend(events);
        true
    }

    /// The batches after `position` from the journal (up to the zone's serial in memory, so the
    /// follower never gets ahead of snapshots), or a snapshot when the journal cannot help.
    async fn read_journal(&self, cell: &ZoneCell, position: u32, current: u32) -> Vec<ZoneEvent> {
        if let Some(journal) = self.store.journal() {
            let limit = JOURNAL_PAGE.min(self.store.read_ahead());
            match journal.read_after(&cell.name, position, limit).await {
                Ok(ReadAfter::Entries(batches))
                    if batches
                        .first()
                        .is_some_and(|b| u64::from(b.serial()) == u64::from(position) + 1) =>
                {
                    return batches
                        .into_iter()
                        .take_while(|b| b.serial() <= current)
                        .map(ZoneEvent::Update)
                        .collect();
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(zone = %cell.name, error = %err, "journal read failed; sending a snapshot");
                }
            }
        }
        vec![ZoneEvent::Snapshot(self.store.cell_snapshot(cell))]
    }
}

impl Drop for ZoneFollower {
    fn drop(&mut self) {
        let fanout = self.store.fanout();
        fanout.followers.fetch_sub(1, Ordering::Relaxed);
        fanout
            .pending_events
            .fetch_sub(self.pending.len(), Ordering::Relaxed);
    }
}

//! Following zones from a serial: a gap-free, duplicate-free sequence of snapshots and applied
//! batches per zone, on top of the store's lossy broadcast.
//!
//! The follower subscribes to the broadcast *before* reading its starting point, so every batch is
//! either in the catch-up or still to come on the channel; batches it already has are skipped by
//! serial. When the broadcast overflows (a slow follower) or a serial is skipped, it catches up
//! from the zone's history, or from a fresh snapshot if the history no longer reaches back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::error::StoreError;
use super::store::{AppliedBatch, ZoneChanges, ZoneSnapshot, ZoneStore};

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

/// Follows a set of zones; see [`ZoneStore::follow`].
#[derive(Debug)]
pub struct ZoneFollower {
    store: ZoneStore,
    events: Receiver<Arc<AppliedBatch>>,
    /// The serial each zone is at once everything handed out or queued is applied.
    positions: HashMap<Arc<str>, u32>,
    pending: VecDeque<ZoneEvent>,
}

impl ZoneStore {
    /// Starts following `(zone, serial)` pairs: serial 0 (nothing yet), a serial older than the
    /// history or one ahead of the zone starts with a snapshot; otherwise with the batches after
    /// it. A zone may appear once.
    pub fn follow<'a>(
        &self,
        cursors: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<ZoneFollower, StoreError> {
        let mut follower = ZoneFollower {
            store: self.clone(),
            events: self.subscribe(),
            positions: HashMap::new(),
            pending: VecDeque::new(),
        };
        for (zone, serial) in cursors {
            let cell = self.cell(zone)?;
            if follower
                .positions
                .insert(Arc::clone(&cell.name), serial)
                .is_some()
            {
                return Err(StoreError::invalid(
                    "zones",
                    format!("zone `{}` listed twice", cell.name),
                ));
            }
            follower.catch_up(&cell.name);
        }
        Ok(follower)
    }
}

impl ZoneFollower {
    /// The next event, waiting for one to be published; `None` once the store is gone.
    ///
    /// Cancel-safe: the only await is the broadcast receive, and state changes only after it.
    pub async fn next(&mut self) -> Option<ZoneEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            match self.events.recv().await {
                Ok(batch) => {
                    let Some(position) = self.positions.get_mut(batch.zone()) else {
                        continue;
                    };
                    if batch.serial() <= *position {
                        continue; // already delivered by a catch-up
                    }
                    if batch.serial() == position.wrapping_add(1) {
                        *position = batch.serial();
                        return Some(ZoneEvent::Update(batch));
                    }
                    let zone = Arc::clone(&batch.zone);
                    self.catch_up(&zone);
                }
                Err(RecvError::Lagged(_)) => {
                    let zones: Vec<Arc<str>> = self.positions.keys().cloned().collect();
                    for zone in zones {
                        self.catch_up(&zone);
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Zones followed, with the serial each reaches once queued events are consumed.
    pub fn positions(&self) -> impl Iterator<Item = (&str, u32)> {
        self.positions
            .iter()
            .map(|(zone, serial)| (&**zone, *serial))
    }

    /// Queues whatever brings `zone` from its position to the store's current serial.
    fn catch_up(&mut self, zone: &Arc<str>) {
        let Some(position) = self.positions.get(zone).copied() else {
            return;
        };
        // Zones are never removed, so the lookup only fails if the name is not a zone at all.
        let Ok(cell) = self.store.cell(zone) else {
            return;
        };
        let new_position = match self.store.catch_up(&cell, position) {
            ZoneChanges::Incremental(batches) => {
                let last = batches.last().map_or(position, |b| b.serial());
                self.pending
                    .extend(batches.into_iter().map(ZoneEvent::Update));
                last
            }
            ZoneChanges::Full(snapshot) => {
                let serial = snapshot.serial();
                self.pending.push_back(ZoneEvent::Snapshot(snapshot));
                serial
            }
        };
        self.positions.insert(Arc::clone(zone), new_position);
    }
}

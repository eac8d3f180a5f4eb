//! [`MemoryJournal`]: the journal contract in memory, for tests and benchmarks that want the
//! journaled code path without disk I/O. Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zone_proto::zone::v1 as pb;

use super::{
    Journal, JournalError, JournalFuture, ReadAfter, ZoneBase, ZoneJournalState, ZoneOpen,
};
use crate::zones::{AppliedBatch, ZoneSnapshot};

#[derive(Debug)]
struct MemoryZone {
    state: ZoneJournalState,
    entries: BTreeMap<u32, Arc<AppliedBatch>>,
    snapshot: Option<pb::ZoneSnapshot>,
}

/// An in-memory [`Journal`]; see the module docs.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    zones: Mutex<HashMap<String, MemoryZone>>,
}

impl MemoryJournal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn zones(&self) -> MutexGuard<'_, HashMap<String, MemoryZone>> {
        self.zones.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, JournalError>) -> JournalFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl Journal for MemoryJournal {
    fn open_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneOpen> {
        let mut zones = self.zones();
        let open = match zones.get(&base.zone) {
            Some(zone) if zone.state.base_digest == base.digest => {
                ZoneOpen::Known(zone.state.clone())
            }
            Some(zone) => ZoneOpen::BaseChanged(zone.state.clone()),
            None => {
                let state = ZoneJournalState::new(base);
                zones.insert(
                    base.zone.clone(),
                    MemoryZone {
                        state: state.clone(),
                        entries: BTreeMap::new(),
                        snapshot: None,
                    },
                );
                ZoneOpen::New(state)
            }
        };
        ready(Ok(open))
    }

    fn reset_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneJournalState> {
        let state = ZoneJournalState::new(base);
        self.zones().insert(
            base.zone.clone(),
            MemoryZone {
                state: state.clone(),
                entries: BTreeMap::new(),
                snapshot: None,
            },
        );
        ready(Ok(state))
    }

    fn append(&self, batch: Arc<AppliedBatch>, expected_last: u32) -> JournalFuture<'_, ()> {
        let mut zones = self.zones();
        let result = match zones.get_mut(batch.zone()) {
            None => Err(JournalError::UnknownZone(batch.zone().to_owned())),
            Some(zone) if zone.state.last_serial != expected_last => Err(JournalError::Conflict {
                zone: batch.zone().to_owned(),
                expected: expected_last,
                actual: zone.state.last_serial,
            }),
            Some(_) if expected_last.checked_add(1) != Some(batch.serial()) => {
                Err(JournalError::NotConsecutive {
                    zone: batch.zone().to_owned(),
                    expected: expected_last,
                    serial: batch.serial(),
                })
            }
            Some(zone) => {
                zone.state.last_serial = batch.serial();
                zone.state.entries += 1;
                zone.entries.insert(batch.serial(), batch);
                Ok(())
            }
        };
        ready(result)
    }

    fn read_after<'a>(
        &'a self,
        zone: &'a str,
        after: u32,
        limit: usize,
    ) -> JournalFuture<'a, ReadAfter> {
        let zones = self.zones();
        let result = match zones.get(zone) {
            None => Err(JournalError::UnknownZone(zone.to_owned())),
            Some(z) if after < z.state.oldest_after => Ok(ReadAfter::Compacted {
                oldest_after: z.state.oldest_after,
            }),
            Some(z) if after > z.state.last_serial => Ok(ReadAfter::Ahead {
                last_serial: z.state.last_serial,
            }),
            Some(z) => Ok(ReadAfter::Entries(
                z.entries
                    .range(after.saturating_add(1)..)
                    .filter(|(serial, _)| **serial > after)
                    .take(limit.max(1))
                    .map(|(_, batch)| Arc::clone(batch))
                    .collect(),
            )),
        };
        ready(result)
    }

    fn load_snapshot<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<pb::ZoneSnapshot>> {
        ready(Ok(self.zones().get(zone).and_then(|z| z.snapshot.clone())))
    }

    fn compact(&self, snapshot: Arc<ZoneSnapshot>, keep_after: u32) -> JournalFuture<'_, ()> {
        let mut zones = self.zones();
        let serial = snapshot.serial();
        let result = match zones.get_mut(snapshot.zone()) {
            None => Err(JournalError::UnknownZone(snapshot.zone().to_owned())),
            Some(z) if serial > z.state.last_serial => Err(JournalError::NotConsecutive {
                zone: snapshot.zone().to_owned(),
                expected: z.state.last_serial,
                serial,
            }),
            Some(z) => {
                if z.state.snapshot_serial.is_none_or(|s| s < serial) {
                    z.snapshot = Some(snapshot.to_proto());
                    z.state.snapshot_serial = Some(serial);
                }
                let keep_after = keep_after.min(serial);
                if keep_after > z.state.oldest_after {
                    z.entries.retain(|s, _| *s > keep_after);
                    z.state.entries = z.entries.len() as u64;
                    z.state.oldest_after = keep_after;
                }
                Ok(())
            }
        };
        ready(result)
    }

    fn zone_state<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<ZoneJournalState>> {
        ready(Ok(self.zones().get(zone).map(|z| z.state.clone())))
    }
}

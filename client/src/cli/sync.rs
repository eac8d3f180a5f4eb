//! The `sync` subcommand: subscribe like an edge node, print snapshots and updates, ack serials.
//!
//! Without `--follow` it stops once caught up. From serial 0 the server sends a snapshot first,
//! which is current by definition. From a later serial the target is the serial each zone had on
//! the server when the command started, learnt with a GetRecord of the apex SOA; when it cannot be
//! learnt (no right to call GetRecord) the command stops after [`QUIET`] without messages.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zone_proto::zone::v1::{
    Ack, RecordQuery, Subscribe, SyncMessage, ZoneCursor, sync_message::Kind,
};

use super::CliError;
use super::commands::emit;
use super::connect::Client;
use super::output::ChangeCounts;

/// How long the stream must stay silent to count as caught up when the target is unknown.
const QUIET: Duration = Duration::from_millis(500);

/// Per-zone progress towards the catch-up target.
#[derive(Debug)]
struct ZoneState {
    serial: u32,
    target: Option<u32>,
    caught_up: bool,
}

pub(super) async fn run(
    client: &mut Client,
    mut zones: Vec<String>,
    from: u32,
    follow: bool,
) -> Result<(), CliError> {
    let mut seen = std::collections::HashSet::new();
    zones.retain(|zone| seen.insert(zone.clone()));
    let mut states = HashMap::new();
    for zone in &zones {
        let target = if follow || from == 0 {
            None
        } else {
            current_serial(client, zone).await
        };
        states.insert(
            zone.clone(),
            ZoneState {
                serial: from,
                target,
                // Starting at or past the server's serial: nothing to catch up (a snapshot
                // is still awaited when starting from 0).
                caught_up: from != 0 && target.is_some_and(|t| from >= t),
            },
        );
    }

    // Capacity covers the subscribe plus one ack per message in flight; acks are best-effort.
    let (tx, rx) = mpsc::channel::<SyncMessage>(64);
    let subscribe = SyncMessage {
        kind: Some(Kind::Subscribe(Subscribe {
            zones: zones
                .iter()
                .map(|zone| ZoneCursor {
                    zone: zone.clone(),
                    serial: from,
                })
                .collect(),
        })),
    };
    // Cannot fail: the receiver is alive and the channel empty.
    let _ = tx.try_send(subscribe);
    let mut stream = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    // Created once so a Ctrl-C between two reads is not lost; only polled with --follow, so
    // without it Ctrl-C keeps its default effect.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        if !follow && states.values().all(|s| s.caught_up) {
            break;
        }
        // Wait with a quiet timeout only while some zone's target is unknown.
        // From 0 a snapshot is due, however long the server takes to build it.
        let quiet_applies =
            !follow && from != 0 && states.values().any(|s| !s.caught_up && s.target.is_none());
        let message = tokio::select! {
            // Ctrl-C first: its handler is then installed before the first line is printed.
            biased;
            signal = &mut ctrl_c, if follow => {
                if signal.is_err() {
                    return Err(CliError::Usage("cannot listen for Ctrl-C".into()));
                }
                break;
            }
            message = stream.message() => message?,
            () = tokio::time::sleep(QUIET), if quiet_applies => {
                for state in states.values_mut() {
                    if state.target.is_none() {
                        state.caught_up = true;
                    }
                }
                continue;
            }
        };
        let Some(message) = message else {
            // The server ended the stream.
            break;
        };
        let (zone, serial) = match message.kind {
            Some(Kind::Snapshot(snapshot)) => {
                emit(&format!(
                    "snapshot {}: serial {}, {} records",
                    snapshot.zone,
                    snapshot.serial,
                    snapshot.records.len()
                ))?;
                if let Some(state) = states.get_mut(&snapshot.zone) {
                    state.serial = snapshot.serial;
                    state.caught_up = true;
                }
                (snapshot.zone, snapshot.serial)
            }
            Some(Kind::Update(update)) => {
                emit(&format!(
                    "{} serial {}: {}",
                    update.zone,
                    update.serial,
                    ChangeCounts::of(&update.changes)
                ))?;
                if let Some(state) = states.get_mut(&update.zone) {
                    state.serial = update.serial;
                    if state.target.is_some_and(|t| update.serial >= t) {
                        state.caught_up = true;
                    }
                }
                (update.zone, update.serial)
            }
            // Subscribe and Ack only travel edge → server; ignore anything else.
            Some(Kind::Subscribe(_) | Kind::Ack(_)) | None => continue,
        };
        let ack = SyncMessage {
            kind: Some(Kind::Ack(Ack { zone, serial })),
        };
        // A failed ack means the call is over; the next read reports why.
        let _ = tx.send(ack).await;
    }

    let summary: Vec<_> = zones
        .iter()
        .filter_map(|zone| {
            states
                .get(zone)
                .map(|s| format!("{zone} at serial {}", s.serial))
        })
        .collect();
    emit(&format!("synced: {}", summary.join(", ")))
}

/// The zone's serial now, or None when it cannot be learnt.
async fn current_serial(client: &mut Client, zone: &str) -> Option<u32> {
    let query = RecordQuery {
        zone: zone.to_owned(),
        name: zone.to_owned(),
        r#type: "SOA".to_owned(),
    };
    match client.get_record(query).await {
        Ok(set) => Some(set.into_inner().serial),
        Err(status) => {
            tracing::debug!(%zone, code = ?status.code(), "cannot learn the zone serial");
            None
        }
    }
}

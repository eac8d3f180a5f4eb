//! The `zone.v1.Zones` gRPC service: a thin layer mapping RPCs onto [`ZoneStore`].
//!
//! Every RPC checks the caller's right on each zone a message names
//! ([`check_zone_access`]) before touching the store, so an unauthorized caller cannot tell
//! whether a zone exists.
//!
//! Decisions beyond the proto:
//! - GetRecord: NXDOMAIN (name absent, not an empty non-terminal) is `NOT_FOUND`; NODATA (name
//!   present, no record of the type) is an empty `RecordSet`.
//! - TransferZone with `since_serial` equal to the zone serial sends no message at all (nothing
//!   changed); incremental batches carry `changes`, full ones `records`, so a client can tell a
//!   fallback to a full transfer. A serial ahead of the zone is `OUT_OF_RANGE`.
//! - PushChanges applies each batch as it arrives; the first failing batch ends the call with
//!   its status and earlier batches stay applied. The result names the zone of the last batch.
//!   With a journal attached every batch is durable before the next is read (and before the
//!   result acknowledges it).
//! - Sync: a cursor ahead of the zone (e.g. the server restarted from older files) gets a
//!   snapshot instead of an error. After the client half-closes, updates keep flowing until it
//!   goes away. A `ZoneSnapshot` is one message holding the whole zone, hence the larger encoding
//!   limit ([`MAX_ENCODING_MESSAGE_SIZE`]).
//! - Sync flow control is the transport's: at most [`SYNC_BUFFER`] messages wait per stream
//!   beyond what its window holds; meanwhile the follower reads nothing, so a subscriber that
//!   stops reading holds a bounded amount of memory ([`ZoneStore::fanout_stats`]). The edge is
//!   the authority on its position: it resumes by subscribing from the serial it applied.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt, stream};
use http::Extensions;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::sync_message::Kind;
use zone_proto::zone::v1::zones_server::{Zones, ZonesServer};

use super::follow::ZoneEvent;
use super::store::{ZoneChanges, ZoneSnapshot, ZoneStore};
use crate::identity::check_zone_access;

/// Records per full-transfer batch when the request leaves `batch_size` at 0.
pub const DEFAULT_TRANSFER_BATCH: usize = 500;
/// Largest honoured `batch_size`; larger requests are clamped (keeps messages around 1 MiB).
pub const MAX_TRANSFER_BATCH: usize = 10_000;
/// Largest request message (a pushed `ChangeBatch`).
pub const MAX_DECODING_MESSAGE_SIZE: usize = 16 << 20;
/// Largest response message: a Sync `ZoneSnapshot` of a large zone is a single message.
pub const MAX_ENCODING_MESSAGE_SIZE: usize = zone_proto::MAX_ZONE_MESSAGE_SIZE;
/// Sync messages buffered per subscriber before the server waits for the client.
pub const SYNC_BUFFER: usize = 16;

/// `zone.v1.Zones` over a shared [`ZoneStore`].
#[derive(Debug, Clone)]
pub struct ZonesService {
    store: ZoneStore,
}

impl ZonesService {
    pub fn new(store: ZoneStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &ZoneStore {
        &self.store
    }
}

/// The service ready to add to a server, with message limits for large batches and gzip accepted.
pub fn zones_server(store: ZoneStore) -> ZonesServer<ZonesService> {
    ZonesServer::new(ZonesService::new(store))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Zones for ZonesService {
    async fn get_record(
        &self,
        request: Request<pb::RecordQuery>,
    ) -> Result<Response<pb::RecordSet>, Status> {
        check_zone_access(request.extensions(), &request.get_ref().zone)?;
        Ok(Response::new(self.store.lookup(request.get_ref())?))
    }

    type TransferZoneStream = ResponseStream<pb::RecordBatch>;

    async fn transfer_zone(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<Self::TransferZoneStream>, Status> {
        check_zone_access(request.extensions(), &request.get_ref().zone)?;
        let request = request.into_inner();
        let batch_size = match request.batch_size {
            0 => DEFAULT_TRANSFER_BATCH,
            n => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_TRANSFER_BATCH),
        };
        let changes = match request.since_serial {
            Some(serial) => self.store.changes_since(&request.zone, serial)?,
            None => ZoneChanges::Full(self.store.snapshot(&request.zone)?),
        };
        let stream: Self::TransferZoneStream = match changes {
            ZoneChanges::Incremental(batches) => {
                Box::pin(stream::iter(batches).map(|batch| Ok(batch.to_record_batch())))
            }
            ZoneChanges::Full(snapshot) => full_transfer(&snapshot, batch_size),
        };
        Ok(Response::new(stream))
    }

    async fn push_changes(
        &self,
        request: Request<Streaming<pb::ChangeBatch>>,
    ) -> Result<Response<pb::PushResult>, Status> {
        let (_, extensions, batches) = request.into_parts();
        push_all(&self.store, &extensions, batches)
            .await
            .map(Response::new)
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SyncMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let (_, extensions, inbound) = request.into_parts();
        let (tx, rx) = mpsc::channel(SYNC_BUFFER);
        // Respond at once and read `subscribe` in the task: a client may wait for the response
        // headers before it sends anything.
        tokio::spawn(run_sync(self.store.clone(), extensions, inbound, tx));
        Ok(Response::new(SyncStream {
            rx,
            store: self.store.clone(),
        }))
    }
}

/// Full-transfer batches built lazily from a snapshot, so a slow client holds no lock.
fn full_transfer(
    snapshot: &std::sync::Arc<ZoneSnapshot>,
    batch_size: usize,
) -> ResponseStream<pb::RecordBatch> {
    Box::pin(stream::iter(snapshot.batches(batch_size).map(Ok)))
}

/// The server side of a Sync call: the messages its session queued, counted in
/// [`ZoneStore::fanout_stats`] until the transport takes them.
#[derive(Debug)]
pub struct SyncStream {
    rx: mpsc::Receiver<Result<pb::SyncMessage, Status>>,
    store: ZoneStore,
}

impl Stream for SyncStream {
    type Item = Result<pb::SyncMessage, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &item {
            self.store
                .fanout()
                .queued_messages
                .fetch_sub(1, Ordering::Relaxed);
        }
        item
    }
}

impl Drop for SyncStream {
    fn drop(&mut self) {
        // Close first: a send racing with this drop then fails and uncounts itself.
        self.rx.close();
        let left = self.rx.len();
        self.store
            .fanout()
            .queued_messages
            .fetch_sub(left, Ordering::Relaxed);
    }
}

/// Sends on a Sync stream, counting the message as queued while it waits and sits in the channel.
async fn send_counted(
    store: &ZoneStore,
    tx: &mpsc::Sender<Result<pb::SyncMessage, Status>>,
    item: Result<pb::SyncMessage, Status>,
) -> bool {
    let queued = &store.fanout().queued_messages;
    queued.fetch_add(1, Ordering::Relaxed);
    if tx.send(item).await.is_ok() {
        true
    } else {
        queued.fetch_sub(1, Ordering::Relaxed);
        false
    }
}

/// Applies each batch as it arrives; the first error ends the call.
async fn push_all<S>(
    store: &ZoneStore,
    extensions: &Extensions,
    mut batches: S,
) -> Result<pb::PushResult, Status>
where
    S: Stream<Item = Result<pb::ChangeBatch, Status>> + Unpin,
{
    let mut result = pb::PushResult::default();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        check_zone_access(extensions, &batch.zone)?;
        let applied = store.push(batch).await?;
        let changes = u32::try_from(applied.changes).unwrap_or(u32::MAX);
        result.zone = applied.zone;
        result.serial = applied.serial;
        result.batches_applied = result.batches_applied.saturating_add(1);
        result.changes_applied = result.changes_applied.saturating_add(changes);
    }
    Ok(result)
}

/// One Sync call: runs until the client goes away; a failure becomes the stream's final status.
async fn run_sync<S>(
    store: ZoneStore,
    extensions: Extensions,
    inbound: S,
    tx: mpsc::Sender<Result<pb::SyncMessage, Status>>,
) where
    S: Stream<Item = Result<pb::SyncMessage, Status>> + Unpin,
{
    if let Err(status) = SyncSession::default()
        .run(&store, &extensions, inbound, &tx)
        .await
    {
        tracing::debug!(code = ?status.code(), message = status.message(), "sync stream ended");
        // The client may already be gone; then there is nobody to tell.
        send_counted(&store, &tx, Err(status)).await;
    }
}

/// Per-stream bookkeeping: what was sent and acknowledged, by canonical zone name.
#[derive(Debug, Default)]
struct SyncSession {
    sent: HashMap<String, u32>,
    acked: HashMap<String, u32>,
}

impl SyncSession {
    async fn run<S>(
        &mut self,
        store: &ZoneStore,
        extensions: &Extensions,
        mut inbound: S,
        tx: &mpsc::Sender<Result<pb::SyncMessage, Status>>,
    ) -> Result<(), Status>
    where
        S: Stream<Item = Result<pb::SyncMessage, Status>> + Unpin,
    {
        let first = tokio::select! {
            message = inbound.next() => message,
            () = tx.closed() => return Ok(()),
        };
        let subscribe = match first {
            Some(Ok(pb::SyncMessage {
                kind: Some(Kind::Subscribe(subscribe)),
            })) => subscribe,
            Some(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first Sync message must be `subscribe`",
                ));
            }
            Some(Err(status)) => return Err(status),
            None => return Ok(()),
        };
        if subscribe.zones.is_empty() {
            return Err(Status::invalid_argument("subscribe.zones: no zone given"));
        }
        for cursor in &subscribe.zones {
            check_zone_access(extensions, &cursor.zone)?;
        }
        for cursor in &subscribe.zones {
            // The edge may acknowledge the serial it claims to have, if the zone got that far.
            let zone = store.zone(&cursor.zone)?;
            if cursor.serial <= zone.serial {
                self.sent.insert(zone.name, cursor.serial);
            }
        }
        let mut follower =
            store.follow(subscribe.zones.iter().map(|c| (c.zone.as_str(), c.serial)))?;
        let _subscriber = crate::observe::Subscriber::new();

        let mut inbound_open = true;
        loop {
            tokio::select! {
                () = tx.closed() => return Ok(()),
                message = inbound.next(), if inbound_open => match message {
                    Some(Ok(message)) => self.on_client_message(message)?,
                    Some(Err(status)) => return Err(status),
                    // Half-close: no more acks, but the edge still wants updates.
                    None => inbound_open = false,
                },
                event = follower.next() => {
                    let Some(event) = event else {
                        return Err(Status::unavailable("the zone store shut down"));
                    };
                    let kind = match &event {
                        ZoneEvent::Snapshot(snapshot) => Kind::Snapshot(snapshot.to_proto()),
                        ZoneEvent::Update(batch) => Kind::Update(batch.to_update()),
                    };
                    self.sent.insert(event.zone().to_owned(), event.serial());
                    let message = Ok(pb::SyncMessage { kind: Some(kind) });
                    if !send_counted(store, tx, message).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn on_client_message(&mut self, message: pb::SyncMessage) -> Result<(), Status> {
        match message.kind {
            Some(Kind::Ack(ack)) => {
                let zone = canonical_zone(&ack.zone);
                let Some(&sent) = self.sent.get(&zone) else {
                    return Err(Status::invalid_argument(format!(
                        "ack.zone: `{}` is not followed on this stream, or nothing was sent yet",
                        ack.zone
                    )));
                };
                if ack.serial > sent {
                    return Err(Status::invalid_argument(format!(
                        "ack.serial: {} of zone `{zone}` was not sent (latest sent: {sent})",
                        ack.serial
                    )));
                }
                metrics::histogram!(crate::observe::SYNC_ACK_LAG)
                    .record(f64::from(sent.saturating_sub(ack.serial)));
                let acked = self.acked.entry(zone).or_default();
                *acked = (*acked).max(ack.serial);
                tracing::trace!(serial = *acked, "sync ack");
                Ok(())
            }
            Some(Kind::Subscribe(_)) => Err(Status::invalid_argument(
                "`subscribe` is only valid as the first Sync message",
            )),
            Some(Kind::Snapshot(_) | Kind::Update(_)) => Err(Status::invalid_argument(
                "`snapshot` and `update` are sent by the server, not the client",
            )),
            None => Err(Status::invalid_argument("empty Sync message")),
        }
    }
}

/// The store's spelling of a zone name: lower case with a trailing dot.
fn canonical_zone(zone: &str) -> String {
    let mut zone = zone.trim().to_ascii_lowercase();
    if !zone.ends_with('.') {
        zone.push('.');
    }
    zone
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use tonic::Code;
    use zone_proto::zone::v1::change::Op;

    use tokio_stream::wrappers::ReceiverStream;

    use super::*;
    use crate::identity::AuthenticatedUser;
    use crate::zones::durable::BLOCKING_BATCH_CHANGES;
    use crate::zones::{StoreConfig, synthetic_zone};

    const ZONE: &str = "example.test.";
    const ZONE_TEXT: &str = "$ORIGIN example.test.\n$TTL 300\n\
        @ SOA ns1 hostmaster 100 7200 900 1209600 300\n\
        @ NS ns1\n\
        ns1 A 192.0.2.53\n\
        www A 192.0.2.1\n\
        _sip._tcp SRV 10 5 5060 ns1\n";

    fn service_with(config: StoreConfig) -> ZonesService {
        let store = ZoneStore::with_config(config);
        store.insert_zone_text(ZONE, ZONE_TEXT).unwrap();
        ZonesService::new(store)
    }

    fn service() -> ZonesService {
        service_with(StoreConfig::default())
    }

    fn create(name: &str) -> pb::ChangeBatch {
        pb::ChangeBatch {
            zone: ZONE.into(),
            changes: vec![pb::Change {
                op: Op::Create.into(),
                record: Some(pb::Record {
                    name: name.into(),
                    r#type: "A".into(),
                    class: String::new(),
                    ttl: 60,
                    rdata: "192.0.2.7".into(),
                }),
                previous: None,
            }],
            expected_serial: None,
        }
    }

    /// A request as the auth layer leaves it for a user limited to `zones`.
    fn as_user<T>(message: T, zones: &[&str]) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(AuthenticatedUser {
            name: "edge".into(),
            zones: Some(zones.iter().map(|z| z.to_string()).collect()),
        });
        request
    }

    async fn transfer(
        service: &ZonesService,
        since_serial: Option<u32>,
        batch_size: u32,
    ) -> Result<Vec<pb::RecordBatch>, Status> {
        let request = pb::TransferRequest {
            zone: "Example.Test".into(),
            since_serial,
            batch_size,
        };
        let stream = service
            .transfer_zone(Request::new(request))
            .await?
            .into_inner();
        stream.collect::<Vec<_>>().await.into_iter().collect()
    }

    #[tokio::test]
    async fn full_transfer_is_batched_with_last_on_the_final_batch() {
        let batches = transfer(&service(), None, 2).await.unwrap();
        let shape: Vec<_> = batches.iter().map(|b| (b.records.len(), b.last)).collect();
        assert_eq!(shape, [(2, false), (2, false), (1, true)]);
        assert!(
            batches
                .iter()
                .all(|b| b.serial == 100 && b.zone == ZONE && b.changes.is_empty())
        );
        assert_eq!(batches[0].records[0].r#type, "SOA");
    }

    #[tokio::test]
    async fn batch_size_defaults_and_is_capped() {
        let store = ZoneStore::new();
        store
            .insert_zone_text("big.test.", &synthetic_zone("big.test.", 12_345, 1))
            .unwrap();
        let service = ZonesService::new(store);
        for (batch_size, want) in [(0, DEFAULT_TRANSFER_BATCH), (u32::MAX, MAX_TRANSFER_BATCH)] {
            let request = pb::TransferRequest {
                zone: "big.test.".into(),
                since_serial: None,
                batch_size,
            };
            let batches: Vec<_> = service
                .transfer_zone(Request::new(request))
                .await
                .unwrap()
                .into_inner()
                .map(|b| b.unwrap())
                .collect()
                .await;
            assert_eq!(batches[0].records.len(), want);
            assert_eq!(
                batches.iter().map(|b| b.records.len()).sum::<usize>(),
                12_345
            );
            assert_eq!(batches.iter().filter(|b| b.last).count(), 1);
        }
    }

    #[tokio::test]
    async fn incremental_transfer_sends_changes_or_falls_back() {
        let service = service_with(StoreConfig {
            history_batches: 2,
            ..StoreConfig::default()
        });
        for name in ["a", "b", "c"] {
            service.store().apply(&create(name)).unwrap();
        }
        let batches = transfer(&service, Some(101), 0).await.unwrap();
        let shape: Vec<_> = batches
            .iter()
            .map(|b| (b.serial, b.changes.len(), b.last))
            .collect();
        // Each batch: the create plus the SOA serial edit.
        assert_eq!(shape, [(102, 2, true), (103, 2, true)]);
        assert!(batches.iter().all(|b| b.records.is_empty()));
        assert!(transfer(&service, Some(103), 0).await.unwrap().is_empty());
        // 101 is no longer in a history of two batches: full transfer.
        let full = transfer(&service, Some(100), 0).await.unwrap();
        assert_eq!(
            (full.len(), full[0].records.len(), full[0].serial),
            (1, 8, 103)
        );
        let err = transfer(&service, Some(104), 0).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange);
    }

    #[tokio::test]
    async fn get_record_answers_nodata_empty_and_nxdomain_not_found() {
        let service = service();
        let get = |name: &str, rtype: &str| {
            service.get_record(Request::new(pb::RecordQuery {
                zone: ZONE.into(),
                name: name.into(),
                r#type: rtype.into(),
            }))
        };
        let www = get("www", "A").await.unwrap().into_inner();
        assert_eq!((www.serial, www.records.len()), (100, 1));
        assert!(
            get("www", "MX")
                .await
                .unwrap()
                .into_inner()
                .records
                .is_empty()
        );
        assert_eq!(get("absent", "").await.unwrap_err().code(), Code::NotFound);
        assert_eq!(
            get("bad name", "").await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[tokio::test]
    async fn zone_rights_are_checked_before_the_zone_is_looked_up() {
        let service = service();
        for zone in [ZONE, "unknown.test."] {
            let query = pb::RecordQuery {
                zone: zone.into(),
                name: "www".into(),
                r#type: String::new(),
            };
            let err = service
                .get_record(as_user(query, &["other.test."]))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{zone}");
            let request = pb::TransferRequest {
                zone: zone.into(),
                ..Default::default()
            };
            let err = service
                .transfer_zone(as_user(request, &["other.test."]))
                .await
                .err()
                .unwrap();
            assert_eq!(err.code(), Code::PermissionDenied);
        }
        let query = pb::RecordQuery {
            zone: ZONE.into(),
            name: "www".into(),
            r#type: String::new(),
        };
        assert!(
            service
                .get_record(as_user(query, &["EXAMPLE.test"]))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn push_applies_batches_until_the_first_error() {
        let store = service().store().clone();
        let batches = [create("a"), create("b"), create("a"), create("c")].map(Ok);
        let err = push_all(&store, &Extensions::new(), stream::iter(batches))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        assert_eq!(
            store.zone(ZONE).unwrap().serial,
            102,
            "the first two batches stay applied"
        );
        assert!(
            store
                .lookup(&pb::RecordQuery {
                    zone: ZONE.into(),
                    name: "c".into(),
                    r#type: String::new()
                })
                .is_err()
        );

        let result = push_all(
            &store,
            &Extensions::new(),
            stream::iter([create("d"), create("e")].map(Ok)),
        )
        .await
        .unwrap();
        assert_eq!(
            result,
            pb::PushResult {
                zone: ZONE.into(),
                serial: 104,
                batches_applied: 2,
                changes_applied: 2
            }
        );

        let mut limited = Extensions::new();
        limited.insert(AuthenticatedUser {
            name: "u".into(),
            zones: Some(vec!["other.test.".into()]),
        });
        let err = push_all(&store, &limited, stream::iter([Ok(create("f"))]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(store.zone(ZONE).unwrap().serial, 104);
    }

    #[tokio::test]
    async fn push_applies_large_batches_off_the_async_threads() {
        let store = service().store().clone();
        let mut big = create("x0");
        let template = big.changes[0].clone();
        big.changes = (0..BLOCKING_BATCH_CHANGES * 2)
            .map(|i| {
                let mut change = template.clone();
                if let Some(record) = change.record.as_mut() {
                    record.name = format!("x{i}");
                }
                change
            })
            .collect();
        let result = push_all(&store, &Extensions::new(), stream::iter([Ok(big)]))
            .await
            .unwrap();
        assert_eq!((result.serial, result.changes_applied), (101, 512));
    }

    type Outbound = mpsc::Receiver<Result<pb::SyncMessage, Status>>;

    /// Starts a Sync session; returns the client's sender, the server's messages and the task.
    fn start_sync(
        store: &ZoneStore,
    ) -> (
        mpsc::Sender<Result<pb::SyncMessage, Status>>,
        Outbound,
        tokio::task::JoinHandle<()>,
    ) {
        let (client_tx, client_rx) = mpsc::channel(4);
        let (tx, rx) = mpsc::channel(SYNC_BUFFER);
        let task = tokio::spawn(run_sync(
            store.clone(),
            Extensions::new(),
            ReceiverStream::new(client_rx),
            tx,
        ));
        (client_tx, rx, task)
    }

    fn subscribe(zones: &[(&str, u32)]) -> Result<pb::SyncMessage, Status> {
        let zones = zones.iter().map(|(zone, serial)| pb::ZoneCursor {
            zone: zone.to_string(),
            serial: *serial,
        });
        Ok(pb::SyncMessage {
            kind: Some(Kind::Subscribe(pb::Subscribe {
                zones: zones.collect(),
            })),
        })
    }

    fn ack(zone: &str, serial: u32) -> Result<pb::SyncMessage, Status> {
        Ok(pb::SyncMessage {
            kind: Some(Kind::Ack(pb::Ack {
                zone: zone.into(),
                serial,
            })),
        })
    }

    async fn recv(rx: &mut Outbound) -> Result<pb::SyncMessage, Status> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no message")
            .expect("stream ended")
    }

    #[tokio::test]
    async fn sync_sends_snapshot_then_live_updates_and_checks_acks() {
        let store = service().store().clone();
        let (client, mut rx, task) = start_sync(&store);
        client
            .send(subscribe(&[("example.test", 0)]))
            .await
            .unwrap();
        let Some(Kind::Snapshot(snapshot)) = recv(&mut rx).await.unwrap().kind else {
            panic!("want snapshot")
        };
        assert_eq!(
            (
                snapshot.zone.as_str(),
                snapshot.serial,
                snapshot.records.len()
            ),
            (ZONE, 100, 5)
        );

        client.send(ack(ZONE, 100)).await.unwrap();
        store.apply(&create("live")).unwrap();
        let Some(Kind::Update(update)) = recv(&mut rx).await.unwrap().kind else {
            panic!("want update")
        };
        assert_eq!((update.serial, update.changes.len()), (101, 2));
        client.send(ack("EXAMPLE.test.", 101)).await.unwrap();

        client.send(ack(ZONE, 102)).await.unwrap();
        let err = recv(&mut rx).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("102"), "{}", err.message());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn sync_from_a_known_serial_sends_only_the_missing_updates() {
        let store = service().store().clone();
        store.apply(&create("a")).unwrap();
        store.apply(&create("b")).unwrap();
        let (client, mut rx, _task) = start_sync(&store);
        client.send(subscribe(&[(ZONE, 101)])).await.unwrap();
        let Some(Kind::Update(update)) = recv(&mut rx).await.unwrap().kind else {
            panic!("want update")
        };
        assert_eq!(update.serial, 102);
        // The client half-closes; updates keep coming.
        drop(client);
        store.apply(&create("c")).unwrap();
        let Some(Kind::Update(update)) = recv(&mut rx).await.unwrap().kind else {
            panic!("want update")
        };
        assert_eq!(update.serial, 103);
    }

    #[tokio::test]
    async fn sync_rejects_a_bad_start() {
        let store = service().store().clone();
        let cases = [
            (ack(ZONE, 1), Code::InvalidArgument),
            (subscribe(&[]), Code::InvalidArgument),
            (subscribe(&[("unknown.test.", 0)]), Code::NotFound),
        ];
        for (first, code) in cases {
            let (client, mut rx, task) = start_sync(&store);
            client.send(first).await.unwrap();
            assert_eq!(recv(&mut rx).await.unwrap_err().code(), code);
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn sync_task_ends_when_the_client_goes_away() {
        let store = service().store().clone();
        let (client, mut rx, task) = start_sync(&store);
        client.send(subscribe(&[(ZONE, 0)])).await.unwrap();
        recv(&mut rx).await.unwrap();
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("task still running")
            .unwrap();
        drop(client);
    }
}

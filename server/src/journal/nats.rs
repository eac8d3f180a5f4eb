//! [`NatsJournal`]: the journal on NATS JetStream, so several zone-servers share one totally
//! ordered log per zone and a push to any of them reaches the subscribers of all.
//!
//! Layout (one JetStream account, nats-server 2.9 or newer):
//! - Stream `ZONE_META` (subjects `zone-meta.>`, one message kept per subject): per zone, its
//!   *meta* record (protobuf [`MetaRecord`]: base serial and digest, an *epoch*, the oldest kept
//!   serial, the snapshot serial). Its stream sequence is its revision; every write is
//!   conditional on it (`Nats-Expected-Last-Subject-Sequence`, 0 = "no record yet"), so two
//!   servers cannot both register or compact a zone from the same state.
//! - Stream `ZONE_<token>_<epoch>` (subject `zones.<token>.<epoch>`), one per zone and epoch,
//!   holding only that zone's batches (`ZoneUpdate` protobuf, header `Zone-Serial`). Batches
//!   are appended consecutively to a stream created empty, so the stream sequence of serial `s`
//!   is `s - base_serial`: no index is needed, and an append is conditional on the sequence of
//!   the batch it expects to follow (`Nats-Expected-Last-Subject-Sequence = expected_last -
//!   base_serial`); of two servers racing for a serial the server stores one, the other gets
//!   "wrong last sequence" → [`JournalError::Conflict`] (`ABORTED`). A rebase (new zone files)
//!   starts a new epoch, i.e. a new empty stream, instead of reusing sequences.
//! - Object store `zone-snapshots`: compaction snapshots, named `<token>.<epoch>.<serial>`.
//!   Compaction stores the snapshot, then raises the meta's oldest serial (readers behind it get
//!   [`ReadAfter::Compacted`]), then purges the stream below it (always keeping the last batch,
//!   which the next conditional append refers to).
//!
//! Durability is JetStream's: the publish is acknowledged once the stream's replicas (R=3 in a
//! cluster, see [`NatsOptions::replicas`]) stored it. Reads go to the stream leader (not direct
//! gets, which replicas may answer with stale data): `read_after` takes the stream's last
//! sequence from its info, then streams the batches after the serial through one ephemeral
//! ordered pull consumer (`DeliverPolicy::ByStartSequence`, one pull of at most `limit`
//! messages) and stops at that last sequence, so a bounded read never waits for batches not
//! appended yet; the consumer is deleted right after. A sequence that arrives out of turn means
//! a compaction purged the range meanwhile: the read starts over and answers
//! [`ReadAfter::Compacted`]. A read of one batch is one direct get (half the round trips).
//!
//! Resending a batch. Appends are never duplicated: each serial has one stream sequence and the
//! append names the one before it. A batch resent with the same expected serial is stored if
//! the first attempt was not (refused while disconnected, or lost before JetStream stored it);
//! if the first attempt *was* stored and only its answer was lost, the resend is refused with
//! [`JournalError::Conflict`] (`ABORTED`), not acknowledged as an idempotent success: the other
//! journals answer the same, and by then the zone store may already have learnt the batch (its
//! own `expected_serial` check answers `ABORTED` before the journal is asked), so success
//! would depend on timing. The client re-reads the zone and finds its change at the next
//! serial. Within one push the store already tells the cases apart: when the append's answer
//! is lost it reads the batch back and counts it as applied if it is there.
//!
//! Availability: when the client is not connected, or JetStream does not answer within
//! [`NatsOptions::timeout`], operations fail with [`JournalError::Unavailable`] (`UNAVAILABLE`)
//! and are never queued for later. A publish that timed out may still have been stored: the
//! zone store then learns it like any other server's batch.
//!
//! Other servers' batches: [`NatsTail`] (started by [`attach_nats`]) listens on `zones.>` and,
//! for every batch published there, has the store read the journal from its serial
//! ([`ZoneStore::sync_from_journal`]), so this server's followers see batches pushed to any
//! server, in journal order. A periodic poll covers signals lost while disconnected.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::{Context, ContextBuilder, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{
    self, ConsumerErrorKind, LastRawMessageErrorKind, StorageType,
};
use async_nats::{Client, ConnectOptions, ServerAddr};
use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;
use zone_proto::zone::v1 as pb;

use super::{
    Journal, JournalError, JournalFuture, JournalOptions, ReadAfter, ZoneBase, ZoneJournalState,
    ZoneOpen, ZoneReplay,
};
use crate::zones::{AppliedBatch, StoreError, ZoneSnapshot, ZoneStore};

const META_STREAM: &str = "ZONE_META";
const META_PREFIX: &str = "zone-meta";
const BATCH_PREFIX: &str = "zones";
const SNAPSHOT_BUCKET: &str = "zone-snapshots";
const SERIAL_HEADER: &str = "Zone-Serial";
/// Zone names whose escaped form is longer are hashed (stream names must stay short).
const MAX_TOKEN: usize = 100;
/// Attempts of a conditional meta write racing with other servers.
const META_RETRIES: usize = 8;

/// Options of a [`NatsJournal`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsOptions {
    /// Replicas of every stream it creates (1 for one nats-server, 3 for a 3-node cluster).
    /// Default 1; `?replicas=N` in the URL.
    pub replicas: usize,
    /// How long a JetStream request or publish may take before it is `UNAVAILABLE`. Default 2 s.
    pub timeout: Duration,
    /// How often [`NatsTail`] checks every zone for batches it was not told about (signals lost
    /// while disconnected). Default 1 s.
    pub poll_interval: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            timeout: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl NatsOptions {
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Whether `--journal` names a NATS server rather than a file.
pub fn is_nats_url(journal: &str) -> bool {
    let lower = journal.to_ascii_lowercase();
    ["nats://", "tls://"].iter().any(|p| lower.starts_with(p))
}

/// Splits `nats://HOST:PORT[,nats://HOST2:PORT...][?replicas=N]` into the servers and options.
pub fn parse_nats_url(url: &str) -> Result<(Vec<ServerAddr>, NatsOptions), JournalError> {
    let bad = |why: String| JournalError::Config(format!("journal URL `{url}`: {why}"));
    let (servers, query) = url.split_once('?').unwrap_or((url, ""));
    let mut options = NatsOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("replicas", n)) => {
                options.replicas = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| bad(format!("replicas must be 1..=5, not `{n}`")))?;
            }
            _ => return Err(bad(format!("unknown option `{pair}` (known: replicas=N)"))),
        }
    }
    let addrs = servers
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<ServerAddr>()
                .map_err(|e| bad(format!("`{s}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((addrs, options))
}

/// Per-zone bookkeeping in `ZONE_META`, stored as protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct MetaRecord {
    #[prost(string, tag = "1")]
    zone: String,
    /// Names the zone's batch stream; new on every (re)registration.
    #[prost(uint64, tag = "2")]
    epoch: u64,
    #[prost(uint32, tag = "3")]
    base_serial: u32,
    #[prost(bytes = "vec", tag = "4")]
    base_digest: Vec<u8>,
    #[prost(uint32, tag = "5")]
    oldest_after: u32,
    #[prost(uint32, optional, tag = "6")]
    snapshot_serial: Option<u32>,
}

impl MetaRecord {
    fn new(base: &ZoneBase) -> Self {
        Self {
            zone: base.zone.clone(),
            epoch: rand::random(),
            base_serial: base.serial,
            base_digest: base.digest.to_vec(),
            oldest_after: base.serial,
            snapshot_serial: None,
        }
    }
}

/// A zone's meta record with its revision (its sequence in `ZONE_META`).
#[derive(Debug, Clone)]
struct Meta {
    record: MetaRecord,
    revision: u64,
    token: String,
}

impl Meta {
    fn stream(&self) -> String {
        format!("ZONE_{}_{:016x}", self.token, self.record.epoch)
    }

    fn subject(&self) -> String {
        format!("{BATCH_PREFIX}.{}.{:016x}", self.token, self.record.epoch)
    }

    fn base(&self) -> u32 {
        self.record.base_serial
    }

    /// The stream sequence of the batch with `serial` (> base).
    fn seq(&self, serial: u32) -> u64 {
        u64::from(serial.saturating_sub(self.base()))
    }

    fn serial_at(&self, seq: u64) -> Result<u32, JournalError> {
        u32::try_from(u64::from(self.base()) + seq).map_err(|_| {
            JournalError::Corrupt(format!(
                "zone `{}`: stream sequence {seq} is beyond the serial space",
                self.record.zone
            ))
        })
    }

    fn snapshot_object(&self, serial: u32) -> String {
        format!("{}.{:016x}.{serial}", self.token, self.record.epoch)
    }

    fn state(&self, last_seq: u64) -> Result<ZoneJournalState, JournalError> {
        let base_digest = self.record.base_digest.as_slice().try_into().map_err(|_| {
            JournalError::Corrupt(format!(
                "zone `{}`: base digest is not 32 bytes",
                self.record.zone
            ))
        })?;
        let last_serial = self.serial_at(last_seq)?;
        let oldest_after = self.record.oldest_after.clamp(self.base(), last_serial);
        Ok(ZoneJournalState {
            base_serial: self.base(),
            base_digest,
            last_serial,
            oldest_after,
            snapshot_serial: self.record.snapshot_serial,
            entries: u64::from(last_serial - oldest_after),
        })
    }
}

/// The zone's name as one subject token and stream-name part: `[a-z0-9-]` kept, every other
/// byte `_xx` (hex); long names are hashed (`_h` + SHA-256), which no escaped name can equal.
fn zone_token(zone: &str) -> String {
    let mut token = String::with_capacity(zone.len() + 8);
    for b in zone.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => token.push(char::from(b)),
            _ => {
                let _ = write!(token, "_{b:02x}");
            }
        }
    }
    if token.len() <= MAX_TOKEN {
        return token;
    }
    let mut hashed = String::from("_h");
    for b in Sha256::digest(zone.as_bytes()) {
        let _ = write!(hashed, "{b:02x}");
    }
    hashed
}

fn unavailable(what: impl fmt::Display, err: impl fmt::Display) -> JournalError {
    JournalError::Unavailable(format!("{what}: {err}"))
}

/// The journal on NATS JetStream; see the module docs.
pub struct NatsJournal {
    client: Client,
    js: Context,
    snapshots: ObjectStore,
    options: NatsOptions,
    /// Last meta record seen per zone (the batch path uses it; refreshed on any surprise).
    metas: Mutex<HashMap<String, Arc<Meta>>>,
}

impl fmt::Debug for NatsJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsJournal")
            .field("state", &self.client.connection_state())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NatsJournal {
    /// Connects to `url` (see [`parse_nats_url`]; `?replicas=N` overrides `options.replicas`)
    /// and creates the shared streams when missing. Fails with [`JournalError::Unavailable`]
    /// when no server answers or JetStream is not enabled there.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Arc<Self>, JournalError> {
        let (servers, parsed) = parse_nats_url(url)?;
        let options = if url.contains('?') {
            NatsOptions {
                replicas: parsed.replicas,
                ..options
            }
        } else {
            options
        };
        let client = ConnectOptions::new()
            .name("zone-server journal")
            .connection_timeout(options.timeout)
            .max_reconnects(None)
            // Back soon after a nats-server restart; never hammer a dead one.
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)))
            })
            .connect(servers)
            .await
            .map_err(|e| unavailable(format!("cannot connect to NATS at {url}"), e))?;
        let js = ContextBuilder::new()
            .timeout(options.timeout)
            .build(client.clone());
        js.get_or_create_stream(stream::Config {
            name: META_STREAM.into(),
            description: Some("zone-server: per-zone journal metadata".into()),
            subjects: vec![format!("{META_PREFIX}.>")],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            num_replicas: options.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            unavailable(
                format!("cannot create stream {META_STREAM} on {url} (is JetStream enabled: nats-server -js?)"),
                e,
            )
        })?;
        let snapshots = match js.get_object_store(SNAPSHOT_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: SNAPSHOT_BUCKET.into(),
                    description: Some("zone-server: journal compaction snapshots".into()),
                    storage: StorageType::File,
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(format!("cannot create bucket {SNAPSHOT_BUCKET}"), e))?,
        };
        Ok(Arc::new(Self {
            client,
            js,
            snapshots,
            options,
            metas: Mutex::new(HashMap::new()),
        }))
    }

    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The NATS client (shared with [`NatsTail`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn metas(&self) -> MutexGuard<'_, HashMap<String, Arc<Meta>>> {
        self.metas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses at once while disconnected, so nothing is queued in the client to be sent (and
    /// maybe stored) long after the caller was told `UNAVAILABLE`.
    fn check_connected(&self) -> Result<(), JournalError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(JournalError::Unavailable(format!(
                "not connected to NATS ({state:?})"
            ))),
        }
    }

    /// The zone's meta record: the cached one unless `fresh`.
    async fn meta(&self, zone: &str, fresh: bool) -> Result<Option<Arc<Meta>>, JournalError> {
        if !fresh && let Some(meta) = self.metas().get(zone) {
            return Ok(Some(Arc::clone(meta)));
        }
        self.check_connected()?;
        let token = zone_token(zone);
        let stream = self
            .js
            .get_stream_no_info(META_STREAM)
            .await
            .map_err(|e| unavailable(META_STREAM, e))?;
        let message = match stream
            .get_last_raw_message_by_subject(&format!("{META_PREFIX}.{token}"))
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                self.metas().remove(zone);
                return Ok(None);
            }
            Err(e) => return Err(unavailable(format!("reading the meta of `{zone}`"), e)),
        };
        let record = MetaRecord::decode(message.payload.as_ref())
            .map_err(|e| JournalError::Corrupt(format!("zone `{zone}` meta: {e}")))?;
        if record.zone != zone {
            return Err(JournalError::Corrupt(format!(
                "meta record {token} names zone `{}`, not `{zone}`",
                record.zone
            )));
        }
        let meta = Arc::new(Meta {
            record,
            revision: message.sequence,
            token,
        });
        self.metas().insert(zone.to_owned(), Arc::clone(&meta));
        Ok(Some(meta))
    }

    /// Writes `record` if the zone's meta is still at `revision` (0: absent); `None` when
    /// another server wrote first.
    async fn write_meta(
        &self,
        record: MetaRecord,
        revision: u64,
    ) -> Result<Option<Arc<Meta>>, JournalError> {
        self.check_connected()?;
        let token = zone_token(&record.zone);
        let publish = PublishMessage::build()
            .payload(Bytes::from(record.encode_to_vec()))
            .expected_last_subject_sequence(revision);
        let ack = self
            .js
            .send_publish(format!("{META_PREFIX}.{token}"), publish)
            .await
            .map_err(|e| unavailable(format!("writing the meta of `{}`", record.zone), e))?
            .await;
        match ack {
            Ok(ack) => {
                let zone = record.zone.clone();
                let meta = Arc::new(Meta {
                    record,
                    revision: ack.sequence,
                    token,
                });
                self.metas().insert(zone, Arc::clone(&meta));
                Ok(Some(meta))
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                self.metas().remove(&record.zone);
                Ok(None)
            }
            Err(e) => Err(unavailable(
                format!("writing the meta of `{}`", record.zone),
                e,
            )),
        }
    }

    /// Creates the zone's batch stream when missing (a crash may have left a meta without it).
    async fn ensure_stream(&self, meta: &Meta) -> Result<(), JournalError> {
        self.check_connected()?;
        self.js
            .get_or_create_stream(stream::Config {
                name: meta.stream(),
                description: Some(format!("zone-server journal of {}", meta.record.zone)),
                subjects: vec![meta.subject()],
                storage: StorageType::File,
                num_replicas: self.options.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("creating stream {}", meta.stream()), e))?;
        Ok(())
    }

    /// The last sequence ever stored in the zone's stream (0: none), `None` when the stream is
    /// missing.
    async fn last_seq(&self, meta: &Meta) -> Result<Option<u64>, JournalError> {
        self.check_connected()?;
        let subject = format!("STREAM.INFO.{}", meta.stream());
        let response: Response<stream::Info> = self
            .js
            .request(subject, &())
            .await
            .map_err(|e| unavailable(format!("stream {}", meta.stream()), e))?;
        match response {
            Response::Ok(info) => Ok(Some(info.state.last_sequence)),
            Response::Err { error } if error.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            Response::Err { error } => Err(unavailable(format!("stream {}", meta.stream()), error)),
        }
    }

    async fn state_of(&self, meta: &Meta) -> Result<ZoneJournalState, JournalError> {
        let last = self.last_seq(meta).await?.unwrap_or(0);
        meta.state(last)
    }

    /// Deletes what an old epoch left (its stream, its snapshot); failures only cost space.
    async fn drop_epoch(&self, old: &Meta) {
        if let Err(e) = self.js.delete_stream(old.stream()).await {
            tracing::warn!(stream = %old.stream(), error = %e, "cannot delete an old journal stream");
        }
        if let Some(serial) = old.record.snapshot_serial {
            let _ = self.snapshots.delete(old.snapshot_object(serial)).await;
        }
    }

    /// Batches `first..=last` of the zone's stream, in order, through one ephemeral ordered
    /// consumer starting at `first` (one pull for the whole range instead of a request per
    /// batch); `None` when one of them is gone (purged or the stream deleted meanwhile).
    async fn read_range(
        &self,
        meta: &Meta,
        first: u64,
        last: u64,
    ) -> Result<Option<Vec<Arc<AppliedBatch>>>, JournalError> {
        let count = last - first + 1;
        let name = format!("zone-read-{:016x}", rand::random::<u64>());
        let config = pull::OrderedConfig {
            name: Some(name.clone()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            // The server sends no more than the range per pull, however long the stream is.
            max_batch: i64::try_from(count).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let consumer = match self
            .js
            .create_consumer_on_stream(config, meta.stream())
            .await
        {
            Ok(consumer) => consumer,
            Err(e)
                if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(unavailable(format!("reading {}", meta.stream()), e)),
        };
        let read = match consumer.messages().await {
            Ok(messages) => self.consume(meta, messages, first, count).await,
            Err(e) => Err(unavailable(format!("reading {}", meta.stream()), e)),
        };
        // Ephemeral, but it would linger for its inactivity threshold (30 s): delete it now,
        // off the read path. A consumer the ordered stream recreated (after a gap) expires.
        let (js, stream) = (self.js.clone(), meta.stream());
        tokio::spawn(async move {
            let _ = js.delete_consumer_from_stream(name, stream).await;
        });
        read
    }

    /// Takes `count` consecutive batches from `first` off an ordered consumer.
    async fn consume(
        &self,
        meta: &Meta,
        mut messages: pull::Ordered,
        first: u64,
        count: u64,
    ) -> Result<Option<Vec<Arc<AppliedBatch>>>, JournalError> {
        let zone = &meta.record.zone;
        let mut batches = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for seq in first..first + count {
            // Bounded: a consumer on a deleted stream would be recreated forever.
            let message = match tokio::time::timeout(self.options.timeout, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => {
                    return Err(unavailable(format!("reading `{zone}` batch #{seq}"), e));
                }
                Ok(None) => {
                    return Err(JournalError::Unavailable(format!(
                        "reading `{zone}` batch #{seq}: the consumer ended"
                    )));
                }
                Err(_) => {
                    return Err(JournalError::Unavailable(format!(
                        "reading `{zone}` batch #{seq}: no answer within {:?}",
                        self.options.timeout
                    )));
                }
            };
            let stored_at = message
                .info()
                .map_err(|e| unavailable(format!("reading `{zone}` batch #{seq}"), e))?
                .stream_sequence;
            if stored_at != seq {
                // Purged by a compaction that raced with this read: the caller re-reads.
                return Ok(None);
            }
            let header = message
                .headers
                .as_ref()
                .and_then(|h| h.get(SERIAL_HEADER))
                .map(|v| v.as_str());
            batches.push(Arc::new(decode_batch(meta, seq, header, &message.payload)?));
        }
        Ok(Some(batches))
    }

    async fn try_read_after(
        &self,
        meta: &Meta,
        after: u32,
        limit: usize,
    ) -> Result<Option<ReadAfter>, JournalError> {
        let Some(last_seq) = self.last_seq(meta).await? else {
            return Ok(None);
        };
        let state = meta.state(last_seq)?;
        if after < state.oldest_after {
            return Ok(Some(ReadAfter::Compacted {
                oldest_after: state.oldest_after,
            }));
        }
        if after > state.last_serial {
            return Ok(Some(ReadAfter::Ahead {
                last_serial: state.last_serial,
            }));
        }
        let first = meta.seq(after) + 1;
        if first > last_seq {
            return Ok(Some(ReadAfter::Entries(Vec::new())));
        }
        // Ends at the last sequence the stream info named: a bounded read never waits for
        // batches not appended yet.
        let limit = u64::try_from(limit.max(1)).unwrap_or(u64::MAX);
        let last = last_seq.min(first.saturating_add(limit - 1));
        let batches = if first == last {
            self.get_one(meta, first).await?.map(|b| vec![b])
        } else {
            self.read_range(meta, first, last).await?
        };
        Ok(batches.map(ReadAfter::Entries))
    }

    /// Batch `seq` by one direct request: a consumer (create, pull, delete) costs about twice
    /// as long for the one batch a tail or a push's re-check usually reads.
    async fn get_one(
        &self,
        meta: &Meta,
        seq: u64,
    ) -> Result<Option<Arc<AppliedBatch>>, JournalError> {
        let zone = &meta.record.zone;
        let stream = self
            .js
            .get_stream_no_info(meta.stream())
            .await
            .map_err(|e| unavailable(meta.stream(), e))?;
        let message = match stream.get_raw_message(seq).await {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(unavailable(format!("reading `{zone}` batch #{seq}"), e)),
        };
        let header = message.headers.get(SERIAL_HEADER).map(|v| v.as_str());
        Ok(Some(Arc::new(decode_batch(
            meta,
            seq,
            header,
            &message.payload,
        )?)))
    }
}

/// Batch `seq` of the zone's stream, checked against the serial that sequence stands for.
fn decode_batch(
    meta: &Meta,
    seq: u64,
    header: Option<&str>,
    payload: &[u8],
) -> Result<AppliedBatch, JournalError> {
    let zone = &meta.record.zone;
    let serial = meta.serial_at(seq)?;
    let update = pb::ZoneUpdate::decode(payload)
        .map_err(|e| JournalError::Corrupt(format!("zone `{zone}` batch {serial}: {e}")))?;
    if header != Some(serial.to_string().as_str())
        || update.serial != serial
        || update.zone != *zone
    {
        return Err(JournalError::Corrupt(format!(
            "zone `{zone}`: stream {} #{seq} should hold batch {serial}, holds `{}` serial {} \
             (header {header:?})",
            meta.stream(),
            update.zone,
            update.serial
        )));
    }
    Ok(AppliedBatch::from_update(update))
}

impl Journal for NatsJournal {
    fn open_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneOpen> {
        Box::pin(async move {
            for _ in 0..META_RETRIES {
                if let Some(meta) = self.meta(&base.zone, true).await? {
                    self.ensure_stream(&meta).await?;
                    let state = self.state_of(&meta).await?;
                    return Ok(if state.base_digest == base.digest {
                        ZoneOpen::Known(state)
                    } else {
                        ZoneOpen::BaseChanged(state)
                    });
                }
                if let Some(meta) = self.write_meta(MetaRecord::new(base), 0).await? {
                    self.ensure_stream(&meta).await?;
                    return Ok(ZoneOpen::New(ZoneJournalState::new(base)));
                }
                // Another server registered the zone meanwhile: read its record.
            }
            Err(JournalError::Unavailable(format!(
                "zone `{}`: registration kept racing with other servers",
                base.zone
            )))
        })
    }

    fn reset_zone<'a>(&'a self, base: &'a ZoneBase) -> JournalFuture<'a, ZoneJournalState> {
        Box::pin(async move {
            for _ in 0..META_RETRIES {
                let old = self.meta(&base.zone, true).await?;
                let revision = old.as_ref().map_or(0, |m| m.revision);
                let Some(meta) = self.write_meta(MetaRecord::new(base), revision).await? else {
                    continue;
                };
                self.ensure_stream(&meta).await?;
                if let Some(old) = old {
                    self.drop_epoch(&old).await;
                }
                return Ok(ZoneJournalState::new(base));
            }
            Err(JournalError::Unavailable(format!(
                "zone `{}`: reset kept racing with other servers",
                base.zone
            )))
        })
    }

    fn append(&self, batch: Arc<AppliedBatch>, expected_last: u32) -> JournalFuture<'_, ()> {
        Box::pin(async move {
            let zone = batch.zone();
            let serial = batch.serial();
            let payload = Bytes::from(batch.to_update().encode_to_vec());
            let mut fresh = false;
            loop {
                let Some(meta) = self.meta(zone, fresh).await? else {
                    if fresh {
                        return Err(JournalError::UnknownZone(zone.to_owned()));
                    }
                    fresh = true;
                    continue;
                };
                let conflict = |actual: u32| JournalError::Conflict {
                    zone: zone.to_owned(),
                    expected: expected_last,
                    actual,
                };
                if expected_last < meta.base() {
                    let state = self.state_of(&meta).await?;
                    return Err(conflict(state.last_serial));
                }
                if expected_last.checked_add(1) != Some(serial) {
                    return Err(JournalError::NotConsecutive {
                        zone: zone.to_owned(),
                        expected: expected_last,
                        serial,
                    });
                }
                self.check_connected()?;
                let publish = PublishMessage::build()
                    .payload(payload.clone())
                    .header(SERIAL_HEADER, serial.to_string())
                    .expected_last_subject_sequence(meta.seq(expected_last));
                let sent = self.js.send_publish(meta.subject(), publish).await;
                let acked = match sent {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(ack) if ack.sequence == meta.seq(serial) => return Ok(()),
                    Ok(ack) => {
                        return Err(JournalError::Corrupt(format!(
                            "zone `{zone}`: batch {serial} was stored at {} #{}, expected #{}",
                            meta.stream(),
                            ack.sequence,
                            meta.seq(serial)
                        )));
                    }
                    Err(e) => match e.kind() {
                        PublishErrorKind::WrongLastSequence => {
                            let state = self.state_of(&meta).await?;
                            return Err(conflict(state.last_serial));
                        }
                        PublishErrorKind::MaxPayloadExceeded => {
                            return Err(JournalError::TooLarge(format!(
                                "batch {serial} of zone `{zone}` ({} bytes): {e}",
                                payload.len()
                            )));
                        }
                        // No stream answered: a stale epoch (the zone was rebased by another
                        // server), a crash before the stream was created, or JetStream down.
                        PublishErrorKind::StreamNotFound if !fresh => {
                            fresh = true;
                            if let Some(now) = self.meta(zone, true).await?
                                && now.record.epoch == meta.record.epoch
                            {
                                self.ensure_stream(&now).await?;
                            }
                        }
                        _ => {
                            return Err(unavailable(
                                format!("appending batch {serial} of zone `{zone}`"),
                                e,
                            ));
                        }
                    },
                }
            }
        })
    }

    fn read_after<'a>(
        &'a self,
        zone: &'a str,
        after: u32,
        limit: usize,
    ) -> JournalFuture<'a, ReadAfter> {
        Box::pin(async move {
            // The cached meta first; any surprise (stream gone, batch purged) re-reads it.
            for fresh in [false, true, true] {
                let Some(meta) = self.meta(zone, fresh).await? else {
                    if fresh {
                        return Err(JournalError::UnknownZone(zone.to_owned()));
                    }
                    continue;
                };
                match self.try_read_after(&meta, after, limit).await? {
                    Some(ReadAfter::Compacted { .. }) if !fresh => {}
                    Some(read) => return Ok(read),
                    None if fresh && self.last_seq(&meta).await?.is_none() => {
                        // Registered, stream not created yet (crash in between): no batches.
                        return Ok(if after > meta.base() {
                            ReadAfter::Ahead {
                                last_serial: meta.base(),
                            }
                        } else if after < meta.base() {
                            ReadAfter::Compacted {
                                oldest_after: meta.base(),
                            }
                        } else {
                            ReadAfter::Entries(Vec::new())
                        });
                    }
                    None => {}
                }
            }
            Err(JournalError::Corrupt(format!(
                "zone `{zone}`: the batches after serial {after} are missing"
            )))
        })
    }

    fn load_snapshot<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<pb::ZoneSnapshot>> {
        Box::pin(async move {
            let mut last_error = None;
            // A compaction may replace the snapshot between reading the meta and the object.
            for _ in 0..3 {
                let Some(meta) = self.meta(zone, true).await? else {
                    return Ok(None);
                };
                let Some(serial) = meta.record.snapshot_serial else {
                    return Ok(None);
                };
                let name = meta.snapshot_object(serial);
                let mut object = match self.snapshots.get(&name).await {
                    Ok(object) => object,
                    Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                        last_error = Some(format!("snapshot object {name} is missing"));
                        continue;
                    }
                    Err(e) => return Err(unavailable(format!("reading snapshot {name}"), e)),
                };
                let mut bytes = Vec::new();
                object
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| unavailable(format!("reading snapshot {name}"), e))?;
                let snapshot = pb::ZoneSnapshot::decode(bytes.as_slice())
                    .map_err(|e| JournalError::Corrupt(format!("snapshot {name}: {e}")))?;
                return Ok(Some(snapshot));
            }
            Err(JournalError::Corrupt(format!(
                "zone `{zone}`: {}",
                last_error.unwrap_or_default()
            )))
        })
    }

    fn compact(&self, snapshot: Arc<ZoneSnapshot>, keep_after: u32) -> JournalFuture<'_, ()> {
        Box::pin(async move {
            let zone = snapshot.zone();
            let serial = snapshot.serial();
            let mut stored: Option<(u64, u32)> = None;
            for _ in 0..META_RETRIES {
                let Some(meta) = self.meta(zone, true).await? else {
                    return Err(JournalError::UnknownZone(zone.to_owned()));
                };
                let last_seq = self.last_seq(&meta).await?.unwrap_or(0);
                let state = meta.state(last_seq)?;
                if serial > state.last_serial || serial < meta.base() {
                    return Err(JournalError::NotConsecutive {
                        zone: zone.to_owned(),
                        expected: state.last_serial,
                        serial,
                    });
                }
                let mut record = meta.record.clone();
                if record.snapshot_serial.is_none_or(|s| s < serial) {
                    // Stored once per epoch; the meta points at it only after it is complete.
                    if stored != Some((record.epoch, serial)) {
                        let name = meta.snapshot_object(serial);
                        let bytes = snapshot.to_proto().encode_to_vec();
                        self.snapshots
                            .put(name.as_str(), &mut bytes.as_slice())
                            .await
                            .map_err(|e| unavailable(format!("storing snapshot {name}"), e))?;
                        stored = Some((record.epoch, serial));
                    }
                    record.snapshot_serial = Some(serial);
                }
                let keep_after = keep_after.min(serial);
                if keep_after > record.oldest_after {
                    record.oldest_after = keep_after;
                }
                if record != meta.record {
                    let Some(_) = self.write_meta(record.clone(), meta.revision).await? else {
                        continue;
                    };
                }
                // Purge below the oldest kept batch, but keep the last batch: the next
                // conditional append names its sequence.
                let purge_below = (meta.seq(record.oldest_after) + 1).min(last_seq);
                if purge_below > 1 {
                    self.js
                        .get_stream_no_info(meta.stream())
                        .await
                        .map_err(|e| unavailable(meta.stream(), e))?
                        .purge()
                        .sequence(purge_below)
                        .await
                        .map_err(|e| unavailable(format!("purging {}", meta.stream()), e))?;
                }
                if let Some(old) = meta.record.snapshot_serial
                    && record.snapshot_serial != Some(old)
                {
                    let _ = self.snapshots.delete(meta.snapshot_object(old)).await;
                }
                return Ok(());
            }
            Err(JournalError::Unavailable(format!(
                "zone `{zone}`: compaction kept racing with other servers"
            )))
        })
    }

    fn zone_state<'a>(&'a self, zone: &'a str) -> JournalFuture<'a, Option<ZoneJournalState>> {
        Box::pin(async move {
            match self.meta(zone, true).await? {
                Some(meta) => Ok(Some(self.state_of(&meta).await?)),
                None => Ok(None),
            }
        })
    }
}

/// Connects to the NATS server(s) at `url`, attaches the journal to `store` (replaying it; load
/// the zones first) and starts the [`NatsTail`] that applies other servers' batches. Keep the
/// tail: dropping it stops that.
pub async fn attach_nats(
    store: &ZoneStore,
    url: &str,
    options: JournalOptions,
    nats: NatsOptions,
) -> Result<(Arc<NatsJournal>, Vec<ZoneReplay>, NatsTail), StoreError> {
    let journal = NatsJournal::connect(url, nats).await?;
    // Listening before the replay: a batch appended meanwhile is signalled, not missed.
    let subscriber = journal
        .client
        .subscribe(format!("{BATCH_PREFIX}.>"))
        .await
        .map_err(|e| unavailable("subscribing to zone batches", e))?;
    let replayed = store.attach_journal(journal.clone(), options).await?;
    let tail = NatsTail::start(store.clone(), Arc::clone(&journal), subscriber);
    Ok((journal, replayed, tail))
}

/// Applies batches other servers append to the shared journal; see the module docs. Stops when
/// dropped.
#[derive(Debug)]
pub struct NatsTail {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NatsTail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long the tail waits for a signalled batch to become readable (the signal can overtake
/// the stream's store) before the periodic poll takes over.
const SIGNAL_WAIT: [u64; 6] = [1, 2, 5, 10, 20, 50];

impl NatsTail {
    fn start(
        store: ZoneStore,
        journal: Arc<NatsJournal>,
        subscriber: async_nats::Subscriber,
    ) -> Self {
        let task = tokio::spawn(tail(store, journal, subscriber));
        Self { task }
    }
}

async fn tail(store: ZoneStore, journal: Arc<NatsJournal>, mut subscriber: async_nats::Subscriber) {
    let mut tokens: HashMap<String, String> = HashMap::new();
    let mut poll =
        tokio::time::interval(journal.options.poll_interval.max(Duration::from_millis(10)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = subscriber.next() => {
                let Some(message) = message else { return };
                let mut parts = message.subject.split('.');
                let token = parts.nth(1).unwrap_or_default();
                if !tokens.contains_key(token) {
                    tokens = store.zones().into_iter().map(|z| (zone_token(&z.name), z.name)).collect();
                }
                let Some(zone) = tokens.get(token) else { continue };
                let signalled = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(SERIAL_HEADER))
                    .and_then(|v| v.as_str().parse::<u32>().ok())
                    .unwrap_or(0);
                sync_until(&store, zone, signalled).await;
            }
            _ = poll.tick() => {
                for zone in store.zones() {
                    let behind = match journal.meta(&zone.name, false).await {
                        Ok(Some(meta)) => match journal.last_seq(&meta).await {
                            Ok(Some(last)) => meta.serial_at(last).is_ok_and(|s| s > zone.serial),
                            _ => false,
                        },
                        _ => false,
                    };
                    if behind {
                        sync_until(&store, &zone.name, 0).await;
                    }
                }
            }
        }
    }
}

/// Brings `zone` up to the journal, waiting briefly for `signalled` to become readable.
async fn sync_until(store: &ZoneStore, zone: &str, signalled: u32) {
    for wait in SIGNAL_WAIT {
        if store.zone(zone).is_ok_and(|z| z.serial >= signalled) && signalled != 0 {
            return;
        }
        match store.sync_from_journal(zone).await {
            Ok(serial) if serial >= signalled => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(zone, error = %e, "cannot apply batches from the shared journal");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn zone_tokens_are_single_subject_tokens_and_distinct() {
        assert_eq!(zone_token("example.com."), "example_2ecom_2e");
        assert_eq!(zone_token("a_b."), "a_5fb_2e");
        assert_ne!(zone_token("a-b."), zone_token("a_b."));
        let long = format!("{}.", "x".repeat(120));
        let token = zone_token(&long);
        assert!(token.starts_with("_h") && token.len() == 66, "{token}");
        for t in [zone_token("Ex ample.*>."), token] {
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{t}"
            );
        }
    }

    #[test]
    fn urls_name_servers_and_options() {
        assert!(is_nats_url("nats://127.0.0.1:4222"));
        assert!(!is_nats_url("journal.redb"));
        let (servers, options) = parse_nats_url("nats://127.0.0.1:4222").unwrap();
        assert_eq!((servers.len(), options.replicas), (1, 1));
        let (servers, options) =
            parse_nats_url("nats://a:4222,nats://b:4222,nats://c:4222?replicas=3").unwrap();
        assert_eq!((servers.len(), options.replicas), (3, 3));
        for bad in ["nats://a:4222?replicas=9", "nats://a:4222?colour=red"] {
            let err = parse_nats_url(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        }
    }

    #[test]
    fn serials_map_to_stream_sequences_from_the_base() {
        let meta = Meta {
            record: MetaRecord {
                zone: "z.".into(),
                epoch: 0xab,
                base_serial: 100,
                base_digest: vec![0; 32],
                oldest_after: 103,
                snapshot_serial: Some(105),
            },
            revision: 7,
            token: zone_token("z."),
        };
        assert_eq!(meta.seq(101), 1);
        assert_eq!(meta.seq(100), 0);
        assert_eq!(meta.serial_at(5).unwrap(), 105);
        assert_eq!(meta.stream(), "ZONE_z_2e_00000000000000ab");
        assert_eq!(meta.subject(), "zones.z_2e.00000000000000ab");
        let state = meta.state(10).unwrap();
        assert_eq!(
            (state.last_serial, state.oldest_after, state.entries),
            (110, 103, 7)
        );
    }
}

//! zone-edge: keeps a local copy of zones in sync with a zone server over `Zones/Sync` and answers
//! lookups from it.
//!
//! How it works:
//! - It subscribes with, per zone, the serial of its copy (0 when it has none: the server sends
//!   a snapshot first), applies every snapshot and update in order ([`ZoneCopy`]) and checks that
//!   each update continues its serial.
//! - The copies are persisted to a state file ([`state_file`]) at most every `persist_delay`
//!   while updates arrive; only then are their serials acknowledged (an ack means "durably
//!   applied here"). A restarted edge loads the file and resumes from those serials (the last
//!   acked ones); a reconnect within one process resumes from the copy in memory, which is at
//!   least as far. The file is rewritten whole, which suits zones up to some 10^5 records; for
//!   larger ones raise `persist_delay`.
//! - When the stream breaks (network drop, server restart, migration failure) it reconnects
//!   with exponential backoff (with jitter) and resumes from its copy's serial, over whatever
//!   transport the connector picks. A gap or a change that does not fit the copy drops that
//!   zone's copy and resubscribes from 0 (a snapshot), so a copy never silently diverges.
//! - Refusals that retrying cannot fix (unauthenticated, no right on a zone, unknown zone, bad
//!   request) end [`Edge::run`] with an error.
//!
//! Lookups: what a DNS edge wants is an answer from memory with NXDOMAIN and NODATA kept apart,
//! while the copy keeps changing underneath: [`Edge::lookup`] (GetRecord semantics), served to
//! local resolvers as a read-only `zone.v1.Zones` ([`serve::zones_server`]: GetRecord and full
//! TransferZone from the copy). `zone-edge lookup` reads the state file of a stopped (or running)
//! edge for scripts.

pub mod copy;
pub mod dns;
pub mod serve;
pub mod state_file;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use grpc_h3::{Endpoint, QuicSettings, Transport};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::sync_message::Kind;
use zone_proto::zone::v1::zones_client::ZonesClient;

use crate::cli::connect::{Client, Credentials};
use crate::cli::output::status_text;
pub use copy::{CopyError, LookupError, ZoneCopy};
pub use state_file::StateFileError;

/// The edge's metrics (`zone-edge run --metrics ADDR` exports them; grpc-h3 adds its per-call
/// and QUIC ones): the serial each zone's copy is at (gauge, attribute `zone`).
pub const ZONE_SERIAL: &str = "zone_edge.zone.serial";
/// Sync streams that ended and were started again (counter).
pub const RECONNECTS: &str = "zone_edge.reconnects";
/// Zones started over from a snapshot after an update that did not fit the copy (counter).
pub const RESYNCS: &str = "zone_edge.resyncs";
/// Serials applied but not yet persisted and acknowledged, at each ack (histogram): how far
/// the acknowledged state trails the copy.
pub const LAG: &str = "zone_edge.ack_lag_serials";

/// Describes the metrics above for exporters.
pub fn describe_metrics() {
    use metrics::Unit;
    metrics::describe_gauge!(ZONE_SERIAL, Unit::Count, "Serial of each zone's copy");
    metrics::describe_counter!(RECONNECTS, Unit::Count, "Sync streams restarted");
    metrics::describe_counter!(RESYNCS, Unit::Count, "Zones restarted from a snapshot");
    metrics::describe_histogram!(LAG, Unit::Count, "Serials applied but not yet acknowledged");
}

/// Acks queued towards the server; acks are cumulative, so a full queue just skips one.
const ACK_QUEUE: usize = 64;

/// Everything that can stop or interrupt an edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{}", status_text(.0))]
    Rpc(Status),
    #[error("zone `{zone}`: {source}")]
    Copy { zone: String, source: CopyError },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Config(String),
}

impl EdgeError {
    /// Errors retrying cannot fix: they end [`Edge::run`].
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::State(_) | Self::Config(_) => true,
            Self::Rpc(status) => matches!(
                status.code(),
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::NotFound
                    | Code::InvalidArgument
                    | Code::Unimplemented
            ),
            Self::Connect(_) | Self::Copy { .. } | Self::Protocol(_) => false,
        }
    }
}

/// Settings of an [`Edge`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeConfig {
    /// Zones to keep (any spelling; kept lower case with a trailing dot).
    pub zones: Vec<String>,
    /// Where copies persist; `None` keeps them in memory only (acks then mean "applied").
    pub state_file: Option<PathBuf>,
    /// Longest time an applied update waits to be persisted (and acknowledged). Default 50 ms.
    pub persist_delay: Duration,
    /// First and largest reconnect delay. Default 100 ms and 5 s.
    pub backoff: (Duration, Duration),
}

impl EdgeConfig {
    pub fn new<S: AsRef<str>>(zones: impl IntoIterator<Item = S>) -> Self {
        Self {
            zones: zones
                .into_iter()
                .map(|z| canonical_zone(z.as_ref()))
                .collect(),
            state_file: None,
            persist_delay: Duration::from_millis(50),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    pub fn persist_delay(mut self, delay: Duration) -> Self {
        self.persist_delay = delay;
        self
    }

    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }
}

/// Counters of an edge's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdgeStats {
    /// Sync streams opened.
    pub sessions: u64,
    pub snapshots: u64,
    pub updates: u64,
    /// Copies dropped because an update did not fit (followed by a snapshot).
    pub resyncs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicU64,
    snapshots: AtomicU64,
    updates: AtomicU64,
    resyncs: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    config: EdgeConfig,
    zones: RwLock<BTreeMap<String, ZoneCopy>>,
    /// Serial per zone as last written to the state file.
    persisted: RwLock<HashMap<String, u32>>,
    /// Held while the state file is written (also by the blocking writer after a cancel).
    persist_lock: Arc<tokio::sync::Mutex<()>>,
    changed: watch::Sender<u64>,
    counters: Counters,
}

/// A synced set of zone copies; cheap to clone (clones share the copies).
#[derive(Debug, Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

impl Edge {
    /// An edge with the copies from the state file (zones no longer configured are dropped).
    pub fn open(config: EdgeConfig) -> Result<Edge, EdgeError> {
        if config.zones.is_empty() {
            return Err(EdgeError::Config("no zone to keep".into()));
        }
        let mut zones = match &config.state_file {
            Some(path) => state_file::load(path)?,
            None => BTreeMap::new(),
        };
        zones.retain(|zone, _| config.zones.contains(zone));
        let persisted = zones
            .iter()
            .map(|(zone, copy)| (zone.clone(), copy.serial()))
            .collect();
        Ok(Edge {
            inner: Arc::new(Inner {
                config,
                zones: RwLock::new(zones),
                persisted: RwLock::new(persisted),
                persist_lock: Arc::new(tokio::sync::Mutex::new(())),
                changed: watch::Sender::new(0),
                counters: Counters::default(),
            }),
        })
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.inner.config
    }

    /// The serial of a zone's copy, `None` before its first snapshot.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        self.read_zones()
            .get(&canonical_zone(zone))
            .map(ZoneCopy::serial)
    }

    /// A zone's copy as a snapshot.
    pub fn snapshot(&self, zone: &str) -> Option<pb::ZoneSnapshot> {
        let zone = canonical_zone(zone);
        self.read_zones().get(&zone).map(|c| c.to_snapshot(&zone))
    }

    /// The serial each zone was last persisted (and acknowledged) at.
    pub fn persisted_serial(&self, zone: &str) -> Option<u32> {
        self.inner
            .persisted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&canonical_zone(zone))
            .copied()
    }

    pub fn stats(&self) -> EdgeStats {
        let c = &self.inner.counters;
        EdgeStats {
            sessions: c.sessions.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            updates: c.updates.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
        }
    }

    /// Waits (at most `timeout`) until the zone's copy reaches `serial`; true if it did.
    pub async fn wait_for_serial(&self, zone: &str, serial: u32, timeout: Duration) -> bool {
        let mut changed = self.inner.changed.subscribe();
        let reached = |edge: &Edge| edge.serial(zone).is_some_and(|s| s >= serial);
        let wait = async {
            while !reached(self) {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        reached(self)
    }

    /// GetRecord from the copies: `NOT_FOUND` for NXDOMAIN or a zone this edge does not keep,
    /// an empty set for NODATA, `UNAVAILABLE` for a kept zone not received yet.
    pub fn lookup(&self, query: &pb::RecordQuery) -> Result<pb::RecordSet, Status> {
        let zone = canonical_zone(&query.zone);
        let zones = self.read_zones();
        let Some(copy) = zones.get(&zone) else {
            return Err(if self.inner.config.zones.contains(&zone) {
                Status::unavailable(format!("zone `{zone}` has not been received yet"))
            } else {
                Status::not_found(format!("zone `{zone}` is not kept by this edge"))
            });
        };
        let records = copy
            .lookup(&zone, &query.name, &query.r#type)
            .map_err(|e| match e {
                LookupError::NxDomain(_) => Status::not_found(e.to_string()),
                _ => Status::invalid_argument(e.to_string()),
            })?;
        Ok(pb::RecordSet {
            zone,
            serial: copy.serial(),
            records,
        })
    }

    /// Keeps the copies in sync until `shutdown` resolves (then persists them) or a fatal error.
    /// `connect` is called for every (re)connection; a session that received something resets
    /// the backoff.
    pub async fn run<C, F>(
        &self,
        mut connect: C,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), EdgeError>
    where
        C: FnMut() -> F,
        F: Future<Output = Result<Client, EdgeError>>,
    {
        tokio::pin!(shutdown);
        let (first, max) = self.inner.config.backoff;
        let mut delay = first;
        loop {
            let before = self.progress();
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                outcome = self.session(&mut connect) => outcome,
            };
            if self.progress() != before {
                delay = first;
            }
            metrics::counter!(RECONNECTS).increment(1);
            match outcome {
                Ok(()) => tracing::info!("the server ended the sync stream; reconnecting"),
                Err(err) if err.is_fatal() => {
                    self.persist().await?;
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "sync interrupted");
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(jitter(delay)) => {}
            }
            delay = (delay * 2).min(max);
        }
        self.persist().await
    }

    /// One Sync stream: subscribe from the copies' serials, apply, persist, ack.
    async fn session<C, F>(&self, connect: &mut C) -> Result<(), EdgeError>
    where
        C: FnMut() -> F,
        F: Future<Output = Result<Client, EdgeError>>,
    {
        let mut client = connect().await?;
        let cursors: Vec<pb::ZoneCursor> = {
            let zones = self.read_zones();
            self.inner
                .config
                .zones
                .iter()
                .map(|zone| pb::ZoneCursor {
                    zone: zone.clone(),
                    serial: zones.get(zone).map_or(0, ZoneCopy::serial),
                })
                .collect()
        };
        let mut acked: HashMap<String, u32> =
            cursors.iter().map(|c| (c.zone.clone(), c.serial)).collect();
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        let subscribe = pb::SyncMessage {
            kind: Some(Kind::Subscribe(pb::Subscribe { zones: cursors })),
        };
        // Cannot fail: the channel is new and empty.
        let _ = tx.try_send(subscribe);
        let mut stream = client
            .sync(ReceiverStream::new(rx))
            .await
            .map_err(EdgeError::Rpc)?
            .into_inner();
        self.inner.counters.sessions.fetch_add(1, Ordering::Relaxed);
        tracing::info!("subscribed");
        let mut dirty_since: Option<Instant> = None;
        loop {
            let persist_at = dirty_since.map(|t| t + self.inner.config.persist_delay);
            let far = Instant::now() + Duration::from_secs(3600);
            let message = tokio::select! {
                message = stream.message() => message,
                () = tokio::time::sleep_until(persist_at.unwrap_or(far).into()), if persist_at.is_some() => {
                    self.persist().await?;
                    dirty_since = None;
                    self.send_acks(&tx, &mut acked);
                    continue;
                }
            };
            match message {
                Ok(Some(message)) => {
                    self.apply(message)?;
                    dirty_since.get_or_insert_with(Instant::now);
                }
                Ok(None) => {
                    self.persist().await?;
                    return Ok(());
                }
                Err(status) => {
                    if dirty_since.is_some() {
                        self.persist().await?;
                    }
                    return Err(EdgeError::Rpc(status));
                }
            }
        }
    }

    fn apply(&self, message: pb::SyncMessage) -> Result<(), EdgeError> {
        let counters = &self.inner.counters;
        match message.kind {
            Some(Kind::Snapshot(snapshot)) => {
                let zone = self.kept_zone(&snapshot.zone)?;
                let copy = ZoneCopy::from_snapshot(&snapshot);
                tracing::info!(%zone, serial = copy.serial(), records = copy.len(), "snapshot");
                metrics::gauge!(ZONE_SERIAL, "zone" => zone.clone()).set(f64::from(copy.serial()));
                self.write_zones().insert(zone, copy);
                counters.snapshots.fetch_add(1, Ordering::Relaxed);
            }
            Some(Kind::Update(update)) => {
                let zone = self.kept_zone(&update.zone)?;
                let mut zones = self.write_zones();
                let result = match zones.get_mut(&zone) {
                    Some(copy) => copy.apply(&update),
                    None => Err(CopyError::Gap {
                        copy: 0,
                        update: update.serial,
                    }),
                };
                if let Err(source) = result {
                    // Start this zone over from a snapshot rather than keep a wrong copy.
                    zones.remove(&zone);
                    counters.resyncs.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(RESYNCS).increment(1);
                    return Err(EdgeError::Copy { zone, source });
                }
                tracing::debug!(%zone, serial = update.serial, "update");
                metrics::gauge!(ZONE_SERIAL, "zone" => zone).set(f64::from(update.serial));
                counters.updates.fetch_add(1, Ordering::Relaxed);
            }
            // Subscribe and Ack travel edge → server only.
            _ => return Ok(()),
        }
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }

    fn kept_zone(&self, zone: &str) -> Result<String, EdgeError> {
        let zone = canonical_zone(zone);
        if self.inner.config.zones.contains(&zone) {
            Ok(zone)
        } else {
            Err(EdgeError::Protocol(format!(
                "received zone `{zone}`, which was not subscribed"
            )))
        }
    }

    /// Acknowledges every zone persisted beyond what this stream acknowledged.
    fn send_acks(&self, tx: &mpsc::Sender<pb::SyncMessage>, acked: &mut HashMap<String, u32>) {
        let persisted = self
            .inner
            .persisted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let applied: HashMap<String, u32> = self
            .read_zones()
            .iter()
            .map(|(zone, copy)| (zone.clone(), copy.serial()))
            .collect();
        for (zone, serial) in persisted {
            if let Some(&now) = applied.get(&zone) {
                metrics::histogram!(LAG).record(f64::from(now.saturating_sub(serial)));
            }
            let last = acked.entry(zone.clone()).or_default();
            if serial != *last {
                let ack = pb::SyncMessage {
                    kind: Some(Kind::Ack(pb::Ack { zone, serial })),
                };
                if tx.try_send(ack).is_ok() {
                    *last = serial;
                }
            }
        }
    }

    /// Writes the copies to the state file (when there is one) and records their serials as
    /// persisted.
    pub async fn persist(&self) -> Result<(), EdgeError> {
        let inner = Arc::clone(&self.inner);
        let guard = Arc::clone(&inner.persist_lock).lock_owned().await;
        let write = move || -> Result<(), StateFileError> {
            let _guard = guard;
            let (snapshots, serials): (Vec<_>, HashMap<_, _>) = {
                let zones = inner.zones.read().unwrap_or_else(PoisonError::into_inner);
                zones
                    .iter()
                    .map(|(zone, copy)| (copy.to_snapshot(zone), (zone.clone(), copy.serial())))
                    .unzip()
            };
            if let Some(path) = &inner.config.state_file {
                state_file::save(path, &snapshots)?;
            }
            *inner
                .persisted
                .write()
                .unwrap_or_else(PoisonError::into_inner) = serials;
            Ok(())
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| EdgeError::Config(format!("persisting the copies failed: {e}")))?
            .map_err(EdgeError::from)
    }

    fn progress(&self) -> u64 {
        let c = &self.inner.counters;
        c.snapshots.load(Ordering::Relaxed) + c.updates.load(Ordering::Relaxed)
    }

    fn read_zones(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ZoneCopy>> {
        self.inner
            .zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_zones(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ZoneCopy>> {
        self.inner
            .zones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where and how an edge connects to its zone server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EdgeConnector {
    pub addr: String,
    pub transport: Transport,
    /// CA certificate (PEM); `None` with `plaintext`.
    pub ca_pem: Option<Vec<u8>>,
    pub server_name: Option<String>,
    pub plaintext: bool,
    pub credentials: Credentials,
    /// Keep-alive PING interval; a dead path is noticed within about twice this. Default 5 s.
    pub keep_alive: Duration,
    /// The channel every (re)connection uses, made on the first: a balanced channel keeps what
    /// it learnt (a dead server stays ejected) across the edge's reconnections.
    channel: Arc<std::sync::Mutex<Option<grpc_h3::Channel>>>,
}

impl EdgeConnector {
    pub fn new(addr: impl Into<String>, transport: Transport) -> Self {
        Self {
            addr: addr.into(),
            transport,
            ca_pem: None,
            server_name: None,
            plaintext: false,
            credentials: Credentials::none(),
            keep_alive: Duration::from_secs(5),
            channel: Arc::default(),
        }
    }

    pub fn ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub fn plaintext(mut self, plaintext: bool) -> Self {
        self.plaintext = plaintext;
        self
    }

    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The endpoints of `addr`'s servers: keep-alives on both wires, a QUIC idle timeout of 3
    /// intervals, a connect timeout of 2 (at least 1 s).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, EdgeError> {
        self.servers().map(|(_, endpoints)| endpoints)
    }

    /// `addr`'s items and their endpoints.
    fn servers(&self) -> Result<(Vec<String>, Vec<Endpoint>), EdgeError> {
        let items = crate::servers::parse(&self.addr).map_err(EdgeError::Config)?;
        let endpoints = items
            .iter()
            .map(|addr| self.endpoint(addr))
            .collect::<Result<_, _>>()?;
        Ok((items, endpoints))
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, EdgeError> {
        let scheme = if self.plaintext { "http" } else { "https" };
        let quic = QuicSettings::default().idle_timeout(self.keep_alive * 3);
        let mut endpoint = Endpoint::new(format!("{scheme}://{addr}"))
            .map_err(|e| EdgeError::Config(format!("invalid address `{addr}`: {e}")))?
            .transport(self.transport)
            .connect_timeout((self.keep_alive * 2).max(Duration::from_secs(1)))
            .keep_alive_interval(self.keep_alive)
            .keep_alive_timeout(self.keep_alive)
            .quic_settings(quic);
        if let Some(pem) = &self.ca_pem {
            endpoint = endpoint
                .ca_certificate_pem(pem)
                .map_err(|e| EdgeError::Config(format!("invalid CA certificate: {e}")))?;
        }
        if let Some(name) = &self.server_name {
            endpoint = endpoint.server_name(name.clone());
        }
        Ok(endpoint)
    }

    /// The channel the edge uses, once it made one (`Channel::backends` shows which server its
    /// Sync is on).
    pub fn channel(&self) -> Option<grpc_h3::Channel> {
        self.channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A client with the credentials attached, once a server is reachable.
    pub async fn connect(&self) -> Result<Client, EdgeError> {
        let channel = {
            let mut slot = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(channel) => channel.clone(),
                None => {
                    let (items, endpoints) = self.servers()?;
                    let channel = crate::servers::channel(&items, endpoints);
                    *slot = Some(channel.clone());
                    channel
                }
            }
        };
        channel.ready().await.map_err(|e| {
            EdgeError::Connect(format!("{} over {}: {e:#}", self.addr, self.transport))
        })?;
        Ok(client(channel, self.credentials.clone()))
    }
}

/// A Zones client over `channel` that accepts whole-zone snapshots.
pub fn client(channel: grpc_h3::Channel, credentials: Credentials) -> Client {
    ZonesClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(zone_proto::MAX_ZONE_MESSAGE_SIZE)
}

/// The zone spelling of the server: lower case with a trailing dot.
pub fn canonical_zone(zone: &str) -> String {
    let mut zone = zone.trim().to_ascii_lowercase();
    if !zone.ends_with('.') {
        zone.push('.');
    }
    zone
}

/// `delay` ± 20 %, so edges cut off together do not reconnect in lockstep.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 2500.0;
    delay.mul_f64(factor)
}

/// The copies in a state file, for `zone-edge lookup` and `status`.
pub fn load_state(path: &Path) -> Result<BTreeMap<String, ZoneCopy>, EdgeError> {
    Ok(state_file::load(path)?)
}

//! Client-side balancing: one [`Channel`] over several servers ("backends"), each with its own
//! connection on the endpoint's wire (HTTP/3, HTTP/2 or Auto), as gRPC's `round_robin` policy
//! keeps one subchannel per resolved address.
//!
//! - Membership: a static list, a DNS name re-resolved periodically (every A/AAAA record a
//!   backend, as a Kubernetes headless service answers), or a stream of [`Change`]s.
//! - Picking: power of two choices on calls in flight (default), or round robin. Only backends
//!   whose connection is up are picked; new backends connect in the background.
//! - Failures (gRFC A6, "transparent retry"): a call that never left the client — connecting
//!   failed, or the connection refused the stream before anything was sent (GOAWAY, closed) —
//!   goes to another backend. A call that may have reached a server fails `UNAVAILABLE` and is
//!   not retried. A backend whose connection fails is ejected and probed back in with
//!   exponential backoff (gRPC connection-backoff.md: 1 s initial, ×1.6, 120 s at most); a
//!   draining backend (GOAWAY) refuses new streams, so its calls move elsewhere.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use tokio::sync::{mpsc, watch};
use tonic::Status;
pub use tower::discover::Change;

use super::Endpoint;
use super::auto::{AutoBody, AutoConnection};
use super::channel::{Channel, SendError};
use crate::Transport;
use crate::body::RequestBody;
use crate::error::Error;
use crate::h2::client::H2Connection;
use crate::h3::client::H3Connection;

/// How a balanced channel picks the backend of each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pick {
    /// Two ready backends at random, the one with fewer calls in flight ("power of two
    /// choices", as tower's and tonic's balancers): load follows each backend's speed.
    #[default]
    PowerOfTwoChoices,
    /// Each ready backend in turn (gRPC's `round_robin`).
    RoundRobin,
}

/// Resolves a host name to the addresses of its backends. The default asks the system
/// resolver (`getaddrinfo`); a service registry, or a test, can answer instead.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host` has now, each with `port`.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

#[derive(Debug)]
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Box::pin(async move {
            let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        })
    }
}

/// Builds a balanced [`Channel`]: `Balance::new().pick(Pick::RoundRobin).dns(endpoint)`.
///
/// Settings of the calls themselves (default deadline, user agent, trace propagation) come from
/// the endpoint passed to [`dns`](Self::dns) or the first of [`list`](Self::list); each backend
/// connects with its own endpoint's wire, TLS and timeouts.
#[derive(Clone)]
pub struct Balance {
    pick: Pick,
    backoff_initial: Duration,
    backoff_max: Duration,
    resolve_interval: Duration,
    resolver: Arc<dyn Resolve>,
}

impl fmt::Debug for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("pick", &self.pick)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("resolve_interval", &self.resolve_interval)
            .finish_non_exhaustive()
    }
}

impl Default for Balance {
    fn default() -> Self {
        Self::new()
    }
}

impl Balance {
    /// Power of two choices, gRPC's connection backoff (1 s … 120 s), DNS re-resolved every 30 s
    /// (gRPC's DNS resolver waits at least 30 s between resolutions).
    pub fn new() -> Self {
        Balance {
            pick: Pick::default(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            resolve_interval: Duration::from_secs(30),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// How each call's backend is chosen.
    pub fn pick(mut self, pick: Pick) -> Self {
        self.pick = pick;
        self
    }

    /// How long an ejected backend waits before it is probed (connected) again: `initial`, then
    /// ×1.6 per failed probe up to `max`, each with ±20 % jitter.
    pub fn ejection_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// How often [`dns`](Self::dns) resolves the name again.
    pub fn resolve_interval(mut self, interval: Duration) -> Self {
        self.resolve_interval = interval;
        self
    }

    /// Resolves names with `resolver` instead of the system resolver.
    pub fn resolver(mut self, resolver: impl Resolve) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// A channel over these endpoints (each its own backend). Call within a Tokio runtime:
    /// backends connect in the background.
    pub fn list(self, endpoints: impl IntoIterator<Item = Endpoint>) -> Channel {
        let endpoints: Vec<Endpoint> = endpoints.into_iter().collect();
        let Some(first) = endpoints.first().cloned() else {
            return Channel::failed(
                Error::new(crate::error::Kind::Config)
                    .context("a balanced channel needs at least one endpoint"),
            );
        };
        let balancer = Balancer::new(&self, &first);
        let backends = endpoints
            .into_iter()
            .filter_map(|e| balancer.backend(e))
            .collect();
        balancer.set(backends);
        Channel::balanced(&first, balancer)
    }

    /// A channel whose backends are every address `endpoint`'s host resolves to, resolved again
    /// every [`resolve_interval`](Self::resolve_interval): added addresses become backends,
    /// vanished ones are removed (their calls in flight finish). A failed or empty resolution
    /// keeps the previous backends. The origin and TLS name stay the host's. Call within a Tokio
    /// runtime.
    pub fn dns(self, endpoint: Endpoint) -> Channel {
        let balancer = Balancer::new(&self, &endpoint);
        let channel = Channel::balanced(&endpoint, balancer.clone());
        let weak = Arc::downgrade(&balancer);
        drop(balancer);
        spawn(resolve_loop(weak, endpoint, self));
        channel
    }

    /// A channel whose backends the application inserts and removes through the returned sender
    /// (tonic's `Channel::balance_channel`). Calls wait for a first backend (up to their deadline,
    /// or 10 s). Call within a Tokio runtime.
    pub fn channel<K>(self, capacity: usize) -> (Channel, mpsc::Sender<Change<K, Endpoint>>)
    where
        K: Hash + Eq + Send + Clone + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let template = match Endpoint::new("https://balanced") {
            Ok(endpoint) => endpoint,
            Err(err) => return (Channel::failed(err), tx),
        };
        let balancer = Balancer::new(&self, &template);
        let channel = Channel::balanced(&template, balancer.clone());
        let weak = Arc::downgrade(&balancer);
        drop(balancer);
        spawn(change_loop(weak, rx));
        (channel, tx)
    }
}

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(task);
        }
        Err(_) => tracing::warn!(
            "grpc-h3: a balanced channel made outside a Tokio runtime gets no backend updates"
        ),
    }
}

/// One backend's figures, from [`Channel::backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's address (`host:port`, or the resolved socket address).
    pub name: String,
    /// Whether calls go to it now: connected and not ejected.
    pub ready: bool,
    /// Calls on it now.
    pub in_flight: usize,
    /// Calls sent to it, ever (those moved elsewhere unsent not counted).
    pub calls: u64,
    /// Calls that failed on it for a transport reason (connection lost, reset) after they may
    /// have reached it. Application errors (a status in trailers) are not counted.
    pub failed: u64,
    /// Times it was ejected.
    pub ejections: u64,
}

const CONNECTING: u8 = 0;
const READY: u8 = 1;
const EJECTED: u8 = 2;

/// A backend's connection on its wire.
enum Conn {
    H2(Arc<H2Connection>),
    H3(Arc<H3Connection>),
    Auto(Arc<AutoConnection>),
}

impl Conn {
    fn new(endpoint: &Endpoint) -> Result<Self, Error> {
        Ok(match endpoint.transport {
            Transport::H2 => Conn::H2(Arc::new(H2Connection::new(endpoint)?)),
            Transport::H3 => Conn::H3(Arc::new(H3Connection::new(endpoint)?)),
            Transport::Auto => Conn::Auto(Arc::new(AutoConnection::new(endpoint)?)),
        })
    }

    async fn connect_now(&self) -> Result<(), Error> {
        match self {
            Conn::H2(c) => c.connect_now().await,
            Conn::H3(c) => c.connect_now().await,
            Conn::Auto(c) => c.connect_now().await,
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            Conn::H2(c) => c.is_connected(),
            Conn::H3(c) => c.is_connected(),
            Conn::Auto(c) => c.is_connected(),
        }
    }

    async fn send(&self, req: Request<RequestBody>) -> Result<Response<AutoBody>, SendError> {
        match self {
            Conn::H2(c) => Ok(c.send(req).await?.map(AutoBody::H2)),
            Conn::H3(c) => Ok(c.send(req).await?.map(AutoBody::H3)),
            Conn::Auto(c) => c.send(req).await,
        }
    }
}

struct Backend {
    name: String,
    /// The backend's own origin, when it differs from the channel's (set per call).
    origin: Option<(Scheme, Authority)>,
    conn: Conn,
    connect_timeout: Duration,
    transport: Transport,
    state: AtomicU8,
    in_flight: AtomicUsize,
    calls: AtomicU64,
    failed: AtomicU64,
    ejections: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// A removed backend stops its probes.
    removed: std::sync::atomic::AtomicBool,
}

impl Backend {
    fn stats(&self) -> BackendStats {
        BackendStats {
            name: self.name.clone(),
            ready: self.state.load(Ordering::Acquire) == READY,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct Balancer {
    pick: Pick,
    backoff_initial: Duration,
    backoff_max: Duration,
    origin: (Scheme, Authority),
    transport: Transport,
    /// How long a call waits for a first ready backend when it has no deadline of its own.
    wait_for_ready: Duration,
    backends: RwLock<Arc<[Arc<Backend>]>>,
    /// Bumped on every membership or readiness change; calls waiting for a backend watch it.
    changed: watch::Sender<u64>,
    next: AtomicUsize,
}

impl Balancer {
    fn new(config: &Balance, template: &Endpoint) -> Arc<Self> {
        Arc::new(Balancer {
            pick: config.pick,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            origin: (template.scheme.clone(), template.authority.clone()),
            transport: template.transport,
            wait_for_ready: template.connect_timeout,
            backends: RwLock::new(Arc::from(Vec::new())),
            changed: watch::Sender::new(0),
            next: AtomicUsize::new(0),
        })
    }

    /// A backend for `endpoint`, connecting in the background; `None` (logged) if its
    /// configuration is unusable.
    fn backend(self: &Arc<Self>, mut endpoint: Endpoint) -> Option<Arc<Backend>> {
        endpoint.replay_unprocessed = true;
        let name = match endpoint.connect_addr {
            Some(addr) => addr.to_string(),
            None => endpoint.authority.to_string(),
        };
        let conn = match Conn::new(&endpoint) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(backend = %name, error = %err, "grpc-h3 balancer: backend skipped");
                return None;
            }
        };
        let origin = (endpoint.scheme != self.origin.0 || endpoint.authority != self.origin.1)
            .then(|| (endpoint.scheme.clone(), endpoint.authority.clone()));
        let backend = Arc::new(Backend {
            name,
            origin,
            conn,
            connect_timeout: endpoint.connect_timeout,
            transport: endpoint.transport,
            state: AtomicU8::new(CONNECTING),
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            last_error: Mutex::new(None),
            removed: std::sync::atomic::AtomicBool::new(false),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(connect_backend(
                Arc::downgrade(self),
                Arc::downgrade(&backend),
            ));
        } else {
            // No runtime to connect in the background: the first call connects it.
            backend.state.store(READY, Ordering::Release);
        }
        Some(backend)
    }

    fn snapshot(&self) -> Arc<[Arc<Backend>]> {
        self.backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, backends: Vec<Arc<Backend>>) {
        let now: Arc<[Arc<Backend>]> = Arc::from(backends);
        let old = {
            let mut guard = self
                .backends
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *guard, now.clone())
        };
        for gone in old
            .iter()
            .filter(|b| !now.iter().any(|n| Arc::ptr_eq(n, b)))
        {
            gone.removed.store(true, Ordering::Release);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn stats(&self) -> Vec<BackendStats> {
        self.snapshot().iter().map(|b| b.stats()).collect()
    }

    pub(crate) fn transport_in_use(&self) -> Transport {
        match self.transport {
            Transport::Auto => self
                .snapshot()
                .iter()
                .find(|b| b.state.load(Ordering::Acquire) == READY)
                .map(|b| match &b.conn {
                    Conn::Auto(c) => c.transport_in_use(),
                    _ => b.transport,
                })
                .unwrap_or(Transport::H2),
            t => t,
        }
    }

    /// Waits until at least one backend is ready (or every backend has failed).
    pub(crate) async fn connect_now(&self) -> Result<(), Error> {
        let mut changed = self.changed.subscribe();
        let wait = async {
            loop {
                let backends = self.snapshot();
                if backends
                    .iter()
                    .any(|b| b.state.load(Ordering::Acquire) == READY)
                {
                    return Ok(());
                }
                let known = !backends.is_empty();
                if known
                    && backends
                        .iter()
                        .all(|b| b.state.load(Ordering::Acquire) == EJECTED)
                {
                    return Err(self.none_ready(&backends));
                }
                if changed.changed().await.is_err() {
                    return Err(self.none_ready(&backends));
                }
            }
        };
        tokio::time::timeout(self.wait_for_ready, wait)
            .await
            .unwrap_or_else(|_| {
                Err(
                    Error::new(crate::error::Kind::ConnectTimeout).context(format!(
                        "no backend of {} ready after {:?}",
                        self.origin.1, self.wait_for_ready
                    )),
                )
            })
    }

    fn none_ready(&self, backends: &[Arc<Backend>]) -> Error {
        let last = backends.iter().find_map(|b| {
            b.last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        let context = match last {
            Some(last) => format!(
                "no backend of {} is available ({} ejected); last error: {last}",
                self.origin.1,
                backends.len()
            ),
            None => format!("no backend of {} is available", self.origin.1),
        };
        Error::new(crate::error::Kind::Connect).context(context)
    }

    /// A ready backend not in `tried`, by the channel's policy.
    fn pick(&self, backends: &[Arc<Backend>], tried: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let eligible = |b: &Arc<Backend>| {
            b.state.load(Ordering::Acquire) == READY && !tried.iter().any(|t| Arc::ptr_eq(t, b))
        };
        let n = backends.iter().filter(|b| eligible(b)).count();
        if n == 0 {
            return None;
        }
        let nth = |k: usize| backends.iter().filter(|b| eligible(b)).nth(k).cloned();
        match self.pick {
            Pick::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Pick::PowerOfTwoChoices if n == 1 => nth(0),
            Pick::PowerOfTwoChoices => {
                let i = fastrand::usize(..n);
                let j = (i + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (nth(i)?, nth(j)?);
                let load = |b: &Backend| b.in_flight.load(Ordering::Relaxed);
                Some(if load(&b) < load(&a) { b } else { a })
            }
        }
    }

    /// Sends one call to a backend; a call that never left the client moves to another one.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
    ) -> Result<Response<BalancedBody>, SendError> {
        let mut req = req;
        let mut tried: Vec<Arc<Backend>> = Vec::new();
        let mut last: Option<Status> = None;
        loop {
            let backends = self.snapshot();
            let backend = match self.pick(&backends, &tried) {
                Some(backend) => backend,
                None if tried.is_empty() => match self.connect_now().await {
                    Ok(()) => continue,
                    Err(err) => return Err(SendError::Unsent(err.into(), Box::new(req))),
                },
                None => {
                    let status =
                        last.unwrap_or_else(|| Status::unavailable("no backend available"));
                    return Err(SendError::Unsent(status, Box::new(req)));
                }
            };
            if let Some((scheme, authority)) = &backend.origin {
                set_origin(&mut req, scheme, authority);
            }
            let in_flight = InFlight::new(backend.clone());
            match backend.conn.send(req).await {
                Ok(response) => {
                    return Ok(response.map(|body| BalancedBody {
                        inner: body,
                        in_flight,
                        balancer: self.clone(),
                        failed: false,
                    }));
                }
                Err(SendError::Unsent(status, unsent)) => {
                    in_flight.unsent();
                    tracing::debug!(backend = %backend.name, %status, "call moved to another backend");
                    self.eject(&backend, status.message());
                    last = Some(status);
                    tried.push(backend);
                    req = *unsent;
                }
                Err(SendError::Failed(status)) => {
                    backend.failed.fetch_add(1, Ordering::Relaxed);
                    if !backend.conn.is_connected() {
                        self.eject(&backend, status.message());
                    }
                    return Err(SendError::Failed(status));
                }
            }
        }
    }

    /// Takes `backend` out of picking and probes it back in with backoff.
    fn eject(self: &Arc<Self>, backend: &Arc<Backend>, why: &str) {
        *backend
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why.to_string());
        let was = backend.state.swap(EJECTED, Ordering::AcqRel);
        if was == EJECTED {
            return;
        }
        backend.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(backend = %backend.name, error = %why, "grpc-h3 balancer: backend ejected");
        self.changed.send_modify(|v| *v += 1);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(probe(Arc::downgrade(self), Arc::downgrade(backend)));
        }
    }

    fn mark_ready(&self, backend: &Backend) {
        backend.state.store(READY, Ordering::Release);
        self.changed.send_modify(|v| *v += 1);
    }
}

/// Replaces the request's scheme and authority with a backend's own.
fn set_origin(req: &mut Request<RequestBody>, scheme: &Scheme, authority: &Authority) {
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Connects a new backend; ready when connected, else ejected (and probed).
async fn connect_backend(balancer: Weak<Balancer>, backend: Weak<Backend>) {
    let Some(b) = backend.upgrade() else { return };
    let result = tokio::time::timeout(b.connect_timeout, b.conn.connect_now()).await;
    let Some(balancer) = balancer.upgrade() else {
        return;
    };
    match result {
        Ok(Ok(())) => balancer.mark_ready(&b),
        Ok(Err(err)) => balancer.eject(&b, &format!("{err:#}")),
        Err(_) => balancer.eject(
            &b,
            &format!("connect timed out after {:?}", b.connect_timeout),
        ),
    }
}

/// Probes an ejected backend until it connects again, with exponential backoff and jitter.
async fn probe(balancer: Weak<Balancer>, backend: Weak<Backend>) {
    let (mut wait, max) = match balancer.upgrade() {
        Some(b) => (b.backoff_initial, b.backoff_max),
        None => return,
    };
    loop {
        tokio::time::sleep(wait.mul_f64(0.8 + 0.4 * fastrand::f64())).await;
        let Some(b) = backend.upgrade() else { return };
        if b.removed.load(Ordering::Acquire) {
            return;
        }
        let result = tokio::time::timeout(b.connect_timeout, b.conn.connect_now()).await;
        let Some(balancer) = balancer.upgrade() else {
            return;
        };
        match result {
            Ok(Ok(())) => {
                tracing::info!(backend = %b.name, "grpc-h3 balancer: backend back in");
                balancer.mark_ready(&b);
                return;
            }
            Ok(Err(err)) => {
                *b.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("{err:#}"));
            }
            Err(_) => {}
        }
        wait = wait.mul_f64(1.6).min(max);
    }
}

/// Re-resolves `endpoint`'s host every interval and updates the backends.
async fn resolve_loop(balancer: Weak<Balancer>, endpoint: Endpoint, config: Balance) {
    let host = endpoint.host.clone();
    let port = endpoint.port;
    let mut current: HashMap<SocketAddr, Arc<Backend>> = HashMap::new();
    loop {
        let result = config.resolver.resolve(&host, port).await;
        let Some(bal) = balancer.upgrade() else {
            return;
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                let mut next = HashMap::with_capacity(addrs.len());
                let mut added = false;
                for addr in addrs {
                    let backend = match current.remove(&addr) {
                        Some(b) => Some(b),
                        None => {
                            added = true;
                            let mut e = endpoint.clone();
                            e.connect_addr = Some(addr);
                            // HTTP/3 "on the same port" (Auto) means each backend's own port
                            // when a resolver answers with ports (as SRV records would).
                            if e.h3_port == Some(e.port) {
                                e.h3_port = Some(addr.port());
                            }
                            bal.backend(e)
                        }
                    };
                    if let Some(b) = backend {
                        next.insert(addr, b);
                    }
                }
                // What is left of the old set vanished from the answer.
                let removed = !current.is_empty();
                current = next;
                if added || removed {
                    tracing::debug!(%host, backends = current.len(), "grpc-h3 balancer: resolved");
                    publish(&bal, &current);
                }
            }
            Ok(_) => {
                tracing::warn!(%host, "grpc-h3 balancer: name resolved to no address; keeping the backends")
            }
            Err(err) => {
                tracing::warn!(%host, error = %err, "grpc-h3 balancer: resolution failed; keeping the backends")
            }
        }
        drop(bal);
        tokio::time::sleep(config.resolve_interval).await;
    }
}

/// Applies the application's inserts and removals until its sender is dropped.
async fn change_loop<K: Hash + Eq + Send + Clone + 'static>(
    balancer: Weak<Balancer>,
    mut changes: mpsc::Receiver<Change<K, Endpoint>>,
) {
    let mut current: HashMap<K, Arc<Backend>> = HashMap::new();
    while let Some(change) = changes.recv().await {
        let Some(bal) = balancer.upgrade() else {
            return;
        };
        match change {
            Change::Insert(key, endpoint) => {
                if let Some(backend) = bal.backend(endpoint) {
                    current.insert(key, backend);
                }
            }
            Change::Remove(key) => {
                current.remove(&key);
            }
        }
        publish(&bal, &current);
    }
}

/// Hands `current`'s backends to the balancer, in a stable order.
fn publish<K>(balancer: &Balancer, current: &HashMap<K, Arc<Backend>>) {
    let mut list: Vec<Arc<Backend>> = current.values().cloned().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    balancer.set(list);
}

/// Counts a call in flight on its backend until its response ends.
struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    fn new(backend: Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        backend.calls.fetch_add(1, Ordering::Relaxed);
        InFlight { backend }
    }

    /// The call never left: it does not count as sent to this backend.
    fn unsent(self) {
        self.backend.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A balanced call's response body: keeps the call counted on its backend until it ends.
pub(crate) struct BalancedBody {
    inner: AutoBody,
    in_flight: InFlight,
    balancer: Arc<Balancer>,
    failed: bool,
}

impl http_body::Body for BalancedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        // The body's own errors are the transport's (a status from the server is a trailer).
        if let Poll::Ready(Some(Err(status))) = &polled
            && !this.failed
        {
            this.failed = true;
            let backend = &this.in_flight.backend;
            backend.failed.fetch_add(1, Ordering::Relaxed);
            // A long stream (a Sync) learns of its server's death here, not in `send`.
            if !backend.conn.is_connected() {
                this.balancer.eject(backend, status.message());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

//! The tower layer that enforces per-RPC Basic credentials (RFC 7617) and method rights in front
//! of every route; see the parent module for the decision order.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use grpc_h3::ConnectionInfo;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tonic::Status;

use super::users::{User, Users, default_argon2, hash_password, verify_phc};
use crate::identity::AuthenticatedUser;

/// Prefixes of methods that need no credentials by default: health checks, so load balancers and
/// orchestrators can probe without a password.
pub const DEFAULT_PUBLIC_PREFIXES: &[&str] = &["grpc.health.v1.Health/"];
/// How long a successful password verification is reused.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Upper bound on cached verifications (all users together).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Cached verifications per user: a few concurrent clients with different (rotated) passwords.
const CACHE_PER_USER: usize = 4;

const NO_TLS: &str = "credentials refused on a connection without TLS";
const BAD_CREDENTIALS: &str = "invalid user name or password";
const MISSING: &str = "missing credentials: send `authorization: Basic base64(user:password)`";
const MALFORMED: &str = "malformed authorization header: expected `Basic base64(user:password)`";

// RFC 7617 uses base64 with padding (RFC 4648 §4); accept unpadded too, as many clients omit it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A tower layer that checks per-RPC credentials and method rights; see the module docs.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

/// Builder for [`AuthLayer`] with non-default public prefixes or cache settings.
#[derive(Debug)]
pub struct AuthLayerBuilder {
    users: Users,
    public_prefixes: Vec<String>,
    cache_ttl: Duration,
    cache_capacity: usize,
    argon2_concurrency: usize,
}

impl AuthLayer {
    /// A layer for `users` with the defaults: health is public, verifications cached for 60 s.
    pub fn new(users: Users) -> AuthLayer {
        AuthLayer::builder(users).build()
    }

    /// A builder starting from the defaults.
    pub fn builder(users: Users) -> AuthLayerBuilder {
        AuthLayerBuilder {
            users,
            public_prefixes: DEFAULT_PUBLIC_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            argon2_concurrency: std::thread::available_parallelism().map_or(4, |n| n.get()),
        }
    }

    /// How many argon2 verifications this layer has run (cache misses and unknown users); lets
    /// benchmarks and tests show that per-RPC auth is not measuring argon2.
    pub fn argon2_runs(&self) -> u64 {
        self.shared.argon2_runs.load(Ordering::Relaxed)
    }
}

impl AuthLayerBuilder {
    /// Methods whose full name (`pkg.Service/Method`) starts with one of these need no
    /// credentials. Replaces the default (`grpc.health.v1.Health/`); an empty list protects all.
    pub fn public_prefixes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.public_prefixes = prefixes
            .into_iter()
            .map(|p| {
                let p: String = p.into();
                p.strip_prefix('/').map(str::to_string).unwrap_or(p)
            })
            .collect();
        self
    }

    /// How long a successful verification is reused; zero disables the cache.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Upper bound on cached verifications.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// How many argon2 verifications may run at once (default: the number of CPUs); more wait,
    /// so a burst of bad passwords cannot occupy the whole blocking pool.
    pub fn argon2_concurrency(mut self, n: usize) -> Self {
        self.argon2_concurrency = n.max(1);
        self
    }

    /// The layer.
    pub fn build(self) -> AuthLayer {
        AuthLayer {
            shared: Arc::new(Shared {
                users: self.users,
                public_prefixes: self.public_prefixes,
                cache: VerifiedCache::new(self.cache_ttl, self.cache_capacity),
                argon2_slots: Arc::new(Semaphore::new(self.argon2_concurrency)),
                argon2_runs: AtomicU64::new(0),
                dummy_hash: OnceLock::new(),
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Call the instance that poll_ready readied; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let outcome = shared.authorize(&mut request).await;
            let result = match &outcome {
                Ok(Access::Public) => "PUBLIC",
                Ok(Access::Granted) => "OK",
                Err(status) => match status.code() {
                    tonic::Code::Unauthenticated => "UNAUTHENTICATED",
                    tonic::Code::PermissionDenied => "PERMISSION_DENIED",
                    _ => "INTERNAL",
                },
            };
            metrics::counter!(crate::observe::AUTH_OUTCOMES, "result" => result).increment(1);
            match outcome {
                Ok(_) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// Why a call may go on.
enum Access {
    /// A public method (health checks): no credentials asked.
    Public,
    /// Valid credentials with the right to the method.
    Granted,
}

#[derive(Debug)]
struct Shared {
    users: Users,
    public_prefixes: Vec<String>,
    cache: VerifiedCache,
    argon2_slots: Arc<Semaphore>,
    argon2_runs: AtomicU64,
    /// Hash of a random password, verified for unknown users so that they cost the same time.
    dummy_hash: OnceLock<String>,
}

impl Shared {
    async fn authorize<B>(
        self: &Arc<Self>,
        request: &mut http::Request<B>,
    ) -> Result<Access, Status> {
        let method = request
            .uri()
            .path()
            .strip_prefix('/')
            .unwrap_or(request.uri().path())
            .to_string();
        let headers = request.headers_mut();
        let several = headers.get_all(AUTHORIZATION).iter().nth(1).is_some();
        // Removed before any decision, so neither the inner service nor a log ever sees it.
        let header = headers.remove(AUTHORIZATION);

        if self.public_prefixes.iter().any(|p| method.starts_with(p)) {
            return Ok(Access::Public);
        }
        let Some(header) = header else {
            tracing::debug!(%method, "rejected: no credentials");
            return Err(Status::unauthenticated(MISSING));
        };
        let tls = request
            .extensions()
            .get::<ConnectionInfo>()
            .is_some_and(|info| info.tls);
        if !tls {
            tracing::debug!(%method, "rejected: credentials without TLS");
            return Err(Status::unauthenticated(NO_TLS));
        }
        if several {
            tracing::debug!(%method, "rejected: several authorization headers");
            return Err(Status::unauthenticated(
                "several authorization headers; send exactly one",
            ));
        }
        let (name, password) = parse_basic(&header).inspect_err(|_| {
            tracing::debug!(%method, "rejected: malformed authorization header");
        })?;
        let user = self.verify(&name, password).await.inspect_err(|_| {
            tracing::debug!(user = %name, %method, "rejected: invalid credentials");
        })?;
        if !user.allows(&method) {
            tracing::debug!(user = %name, %method, "rejected: no right");
            return Err(Status::permission_denied(format!(
                "user `{name}` may not call `{method}`"
            )));
        }
        tracing::debug!(user = %name, %method, "authenticated");
        let zones = user.zones().map(<[String]>::to_vec);
        request
            .extensions_mut()
            .insert(AuthenticatedUser { name, zones });
        Ok(Access::Granted)
    }

    /// Checks `password` for `name`: from the cache when verified recently, else with argon2 on
    /// the blocking pool.
    async fn verify(self: &Arc<Self>, name: &str, password: Vec<u8>) -> Result<&User, Status> {
        let Some(user) = self.users.get(name) else {
            // Spend the same work as for a known user, then fail with the same message.
            self.run_argon2(None, password).await?;
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        let digest = self.cache.digest(name, user.password_hash(), &password);
        if self.cache.contains(name, &digest) {
            return Ok(user);
        }
        if self
            .run_argon2(Some(user.password_hash().to_string()), password)
            .await?
        {
            self.cache.insert(name, digest);
            Ok(user)
        } else {
            Err(Status::unauthenticated(BAD_CREDENTIALS))
        }
    }

    /// Verifies `password` against `hash` (`None`: the dummy hash) on the blocking pool.
    async fn run_argon2(
        self: &Arc<Self>,
        hash: Option<String>,
        password: Vec<u8>,
    ) -> Result<bool, Status> {
        let internal = |_| Status::internal("credential check failed");
        let permit = self
            .argon2_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(internal)?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            shared.argon2_runs.fetch_add(1, Ordering::Relaxed);
            match &hash {
                Some(hash) => verify_phc(hash, &password),
                None => verify_phc(shared.dummy_hash(), &password),
            }
        })
        .await
        .map_err(|_| Status::internal("credential check failed"))
    }

    fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            let password: [u8; 16] = rand::random();
            // Hashing cannot fail with default parameters and a 16-byte salt; should it, an
            // empty hash makes the dummy verification fail fast, which is still a rejection.
            hash_password(&default_argon2(), &password).unwrap_or_default()
        })
    }
}

/// Splits `Basic base64(user:password)`; the scheme is case-insensitive (RFC 7617 §2, RFC 9110
/// §11.1).
fn parse_basic(header: &http::HeaderValue) -> Result<(String, Vec<u8>), Status> {
    let malformed = || Status::unauthenticated(MALFORMED);
    let text = header.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Status::unauthenticated(
            "unsupported authorization scheme: expected Basic",
        ));
    }
    let decoded = BASE64
        .decode(token.trim_start_matches(' '))
        .map_err(|_| malformed())?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(malformed)?;
    let password = decoded[colon + 1..].to_vec();
    let mut name = decoded;
    name.truncate(colon);
    let name = String::from_utf8(name).map_err(|_| malformed())?;
    if name.is_empty() {
        return Err(malformed());
    }
    Ok((name, password))
}

/// Recently verified credentials. Entries are keyed by user and hold SHA-256 over a per-process
/// random key, the stored hash and the password — never the password itself — and are compared
/// in constant time. The stored hash is part of the digest so a changed password invalidates old
/// entries.
struct VerifiedCache {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Vec<CacheEntry>>>,
}

/// A verified-credentials digest and when it expires.
type CacheEntry = ([u8; 32], Instant);

// The key and digests stay out of debug output: together they would allow guessing passwords
// offline.
impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    fn new(ttl: Duration, capacity: usize) -> VerifiedCache {
        VerifiedCache {
            key: rand::random(),
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, name: &str, hash: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        // Length prefixes keep the fields unambiguous.
        for field in [name.as_bytes(), hash.as_bytes()] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        h.update(password);
        h.finalize().into()
    }

    fn contains(&self, name: &str, digest: &[u8; 32]) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = entries.get(name) else {
            return false;
        };
        let mut hit = subtle::Choice::from(0);
        for (d, expires) in list {
            if *expires > now {
                hit |= d.ct_eq(digest);
            }
        }
        hit.into()
    }

    fn insert(&self, name: &str, digest: [u8; 32]) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = entries.values().map(Vec::len).sum();
        if total >= self.capacity {
            entries.retain(|_, list| {
                list.retain(|(_, expires)| *expires > now);
                !list.is_empty()
            });
            let total: usize = entries.values().map(Vec::len).sum();
            if total >= self.capacity {
                // Still full of live entries: start over rather than grow; the cost is one
                // argon2 run per active client.
                entries.clear();
            }
        }
        let list = entries.entry(name.to_string()).or_default();
        list.retain(|(d, expires)| *expires > now && !bool::from(d.ct_eq(&digest)));
        if list.len() >= CACHE_PER_USER {
            list.remove(0);
        }
        list.push((digest, now + self.ttl));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

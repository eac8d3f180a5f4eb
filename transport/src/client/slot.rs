//! The one live connection of a channel's wire, connected lazily, once at a time, and replaced
//! after a loss — shared by the HTTP/2 and HTTP/3 wires.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::future::{self, BoxFuture, Either, Ready};

use crate::error::{Error, Kind};

/// A connection handle `T` (cheap to clone) with a liveness test.
pub(crate) trait Live: Clone {
    /// Still usable for new calls.
    fn is_alive(&self) -> bool;
}

/// What [`Slot::get`] returns: ready at once from the cache, or the boxed connect.
pub(crate) type Get<'a, T> = Either<Ready<Result<T, Error>>, BoxFuture<'a, Result<T, Error>>>;

#[derive(Debug)]
pub(crate) struct Slot<T> {
    current: Mutex<Option<T>>,
    /// Counts finished connect attempts; the last one's error, if it failed.
    connecting: tokio::sync::Mutex<()>,
    attempts: std::sync::atomic::AtomicU64,
    last_error: Mutex<Option<Error>>,
}

impl<T: Live> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot {
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            attempts: std::sync::atomic::AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The live connection, if there is one (never connects).
    pub(crate) fn peek(&self) -> Option<T> {
        self.cached()
    }

    fn cached(&self) -> Option<T> {
        let guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().filter(|c| c.is_alive()).cloned()
    }

    /// The live connection, or a new one from `connect()` within `timeout` (`target()` names it
    /// in the error). Concurrent callers wait for one connect and share its result — a failure
    /// too: callers queued behind a failed attempt fail with it rather than each trying again,
    /// so a dead server costs them one connect timeout, not one each.
    ///
    /// The per-call fast path builds no connect future: the slow path is boxed, since connect
    /// futures are large (~10 KiB over QUIC) and, inlined, every call's future would be that
    /// large and memcpy'd as such.
    pub(crate) fn get<'a, F, Fut>(
        &'a self,
        connect: F,
        timeout: Duration,
        target: impl FnOnce() -> String + Send + 'a,
    ) -> Get<'a, T>
    where
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, Error>> + Send + 'a,
        T: Send + 'a,
    {
        if let Some(c) = self.cached() {
            return Either::Left(future::ready(Ok(c)));
        }
        Either::Right(Box::pin(async move {
            use std::sync::atomic::Ordering;
            let seen = self.attempts.load(Ordering::Acquire);
            let _connecting = self.connecting.lock().await;
            if let Some(c) = self.cached() {
                return Ok(c);
            }
            if self.attempts.load(Ordering::Acquire) != seen {
                let last = self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(err) = last.as_ref() {
                    return Err(err.shared());
                }
            }
            let result = tokio::time::timeout(timeout, connect())
                .await
                .map_err(|_| {
                    Error::new(Kind::ConnectTimeout)
                        .context(format!("{} after {timeout:?}", target()))
                })
                .and_then(|r| r);
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = result.as_ref().err().map(Error::shared);
            self.attempts.fetch_add(1, Ordering::Release);
            let conn = result?;
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
            Ok(conn)
        }))
    }

    /// Drops the cached connection if `dead` says so, so the next call reconnects.
    pub(crate) fn forget_if(&self, dead: impl FnOnce(&T) -> bool) {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_some_and(dead) {
            *guard = None;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone)]
    struct Conn;
    impl Live for Conn {
        fn is_alive(&self) -> bool {
            true
        }
    }

    /// Callers queued behind a failing connect share its failure: one attempt, not one each.
    #[tokio::test]
    async fn a_failed_connect_fails_its_waiters_too() {
        let slot = Slot::<Conn>::new();
        let attempts = AtomicUsize::new(0);
        let connect = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Conn, _>(Error::new(Kind::Connect).context("refused"))
        };
        let calls = (0..8).map(|_| slot.get(connect, Duration::from_secs(5), || "t".into()));
        let results = futures::future::join_all(calls).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        for r in results {
            let err = r.err().unwrap();
            assert!(err.is_connect());
            assert_eq!(err.to_string(), "connection failed: refused");
        }
        // A later caller tries again.
        let _ = slot
            .get(connect, Duration::from_secs(5), || "t".into())
            .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}

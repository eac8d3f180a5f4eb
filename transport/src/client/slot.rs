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
    connecting: tokio::sync::Mutex<()>,
}

impl<T: Live> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot {
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
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
    /// in the error). Concurrent callers wait for one connect and share its result.
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
            let _connecting = self.connecting.lock().await;
            if let Some(c) = self.cached() {
                return Ok(c);
            }
            let conn = tokio::time::timeout(timeout, connect())
                .await
                .map_err(|_| {
                    Error::new(Kind::ConnectTimeout)
                        .context(format!("{} after {timeout:?}", target()))
                })??;
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

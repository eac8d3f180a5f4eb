//! The one live connection of a channel's wire, connected lazily, once at a time, and replaced
//! after a loss — shared by the HTTP/2 and HTTP/3 wires.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Kind};

/// A connection handle `T` (cheap to clone) with a liveness test.
pub(crate) trait Live: Clone {
    /// Still usable for new calls.
    fn is_alive(&self) -> bool;
}

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

    /// The live connection, if there is one: the per-call fast path, which builds no connect
    /// future (those are large, and moving them costs every call a big memcpy).
    pub(crate) fn cached(&self) -> Option<T> {
        let guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().filter(|c| c.is_alive()).cloned()
    }

    /// The live connection, or a new one from `connect` within `timeout` (`target` names it in
    /// the error). Concurrent callers wait for one connect and share its result.
    pub(crate) async fn get<F>(
        &self,
        connect: F,
        timeout: Duration,
        target: &str,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let conn = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            Error::new(Kind::ConnectTimeout).context(format!("{target} after {timeout:?}"))
        })??;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the cached connection if `dead` says so, so the next call reconnects.
    pub(crate) fn forget_if(&self, dead: impl FnOnce(&T) -> bool) {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_some_and(dead) {
            *guard = None;
        }
    }
}

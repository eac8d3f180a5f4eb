//! A runtime of its own for a server under test, so the test can kill the server the way kill -9
//! does: every task dropped at once and every socket closed by the kernel — no GOAWAY, no QUIC
//! CONNECTION_CLOSE, no drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

/// The server's runtime; killed on drop.
#[derive(Debug)]
pub struct KillableRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl KillableRuntime {
    /// Runs `start` on a new one-worker runtime and returns its output (e.g. the bound address)
    /// once it has produced it; whatever `start` spawned keeps running there.
    pub async fn start<F, T>(start: F) -> (Self, T)
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let started = runtime.spawn(start);
        let out = started.await.unwrap();
        (
            KillableRuntime {
                runtime: Some(runtime),
            },
            out,
        )
    }

    /// Drops every task of the runtime now.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for KillableRuntime {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A closed-loop load generator: `n` workers each issue one operation at a time, back to back,
//! until the case's time bound or operation bound is reached, whichever comes first.
//!
//! Latencies are kept as raw nanoseconds per worker (no shared lock on the hot path) and merged
//! into one HDR histogram at the end; memory is bounded by the operation bound.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::cpu::CpuMeter;

/// Highest latency the histograms track (longer ones are clamped): one hour.
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

/// One repeatable operation (a call, a transfer, a round trip) owned by one worker.
pub trait Op: Send + 'static {
    fn call(&mut self) -> impl Future<Output = anyhow::Result<Work>> + Send;

    /// Ends the worker's use of the op, untimed (e.g. half-closes a long-lived stream and reads
    /// its status, as a well-behaved client does, instead of dropping it mid-stream).
    fn finish(self) -> impl Future<Output = anyhow::Result<()>> + Send
    where
        Self: Sized,
    {
        async { Ok(()) }
    }
}

/// What operations moved, for throughput figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// gRPC message bytes (encoded protobuf plus the 5-byte length prefix).
    pub bytes: u64,
    /// gRPC messages.
    pub messages: u64,
    /// Domain items (records, changes).
    pub items: u64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.bytes += other.bytes;
        self.messages += other.messages;
        self.items += other.items;
    }
}

/// Bounds of one load loop.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub duration: Duration,
    pub max_ops: u64,
}

/// Outcome of one load loop.
#[derive(Debug)]
pub struct LoadReport {
    pub ops: u64,
    /// From the first operation's start to the last one's end.
    pub elapsed: Duration,
    /// Process CPU time over the same span.
    pub cpu: Duration,
    pub work: Work,
    /// Per-operation latency in nanoseconds.
    pub latency: Histogram<u64>,
}

impl LoadReport {
    pub fn ops_per_sec(&self) -> f64 {
        per_sec(self.ops as f64, self.elapsed)
    }

    /// Raw size of the loop (operations and seconds), kept with every sample so that a reader
    /// can tell whether the time or the count bound ended it.
    pub fn extent(&self) -> [(&'static str, f64); 2] {
        [
            ("ops", self.ops as f64),
            ("elapsed_s", self.elapsed.as_secs_f64()),
        ]
    }
}

/// `count / elapsed`, 0 for an empty span.
pub fn per_sec(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// An empty latency histogram in nanoseconds (3 significant digits).
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)?)
}

/// Runs one worker per element of `ops` until `budget` is spent. The first failing operation
/// ends the loop with its error; a panicking worker ends it with the panic message. Dropping the
/// returned future aborts every worker.
pub async fn closed_loop<O: Op>(ops: Vec<O>, budget: Budget) -> anyhow::Result<LoadReport> {
    let claimed = Arc::new(AtomicU64::new(0));
    let meter = CpuMeter::start();
    let start = Instant::now();
    let deadline = start + budget.duration;
    let mut workers = JoinSet::new();
    for mut op in ops {
        let claimed = claimed.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut work = Work::default();
            while Instant::now() < deadline
                && claimed.fetch_add(1, Ordering::Relaxed) < budget.max_ops
            {
                let t0 = Instant::now();
                work += op.call().await?;
                latencies.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            op.finish().await?;
            anyhow::Ok((latencies, work))
        });
    }
    let mut latency = latency_histogram()?;
    let mut work = Work::default();
    let mut ops = 0u64;
    while let Some(joined) = workers.join_next().await {
        let (latencies, w) = match joined {
            Ok(result) => result?,
            Err(e) if e.is_panic() => anyhow::bail!(
                "worker panicked: {}",
                crate::panics::describe(e.into_panic())
            ),
            Err(e) => anyhow::bail!("worker failed: {e}"),
        };
        ops += latencies.len() as u64;
        for ns in latencies {
            latency.saturating_record(ns.max(1));
        }
        work += w;
    }
    Ok(LoadReport {
        ops,
        elapsed: start.elapsed(),
        cpu: meter.elapsed(),
        work,
        latency,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    struct Sleep(Duration);

    impl Op for Sleep {
        async fn call(&mut self) -> anyhow::Result<Work> {
            tokio::time::sleep(self.0).await;
            Ok(Work {
                bytes: 10,
                messages: 1,
                items: 2,
            })
        }
    }

    struct FailSecond(u32);

    impl Op for FailSecond {
        async fn call(&mut self) -> anyhow::Result<Work> {
            self.0 += 1;
            anyhow::ensure!(self.0 < 2, "second call fails");
            Ok(Work::default())
        }
    }

    #[tokio::test]
    async fn stops_at_the_operation_bound() {
        let budget = Budget {
            duration: Duration::from_secs(10),
            max_ops: 7,
        };
        let report = closed_loop(vec![Sleep(Duration::ZERO), Sleep(Duration::ZERO)], budget)
            .await
            .unwrap();
        assert_eq!(report.ops, 7);
        assert_eq!(report.latency.len(), 7);
        assert_eq!(report.work.bytes, 70);
        assert_eq!(report.work.items, 14);
    }

    #[tokio::test]
    async fn stops_at_the_time_bound() {
        let budget = Budget {
            duration: Duration::from_millis(100),
            max_ops: u64::MAX,
        };
        let report = closed_loop(vec![Sleep(Duration::from_millis(20))], budget)
            .await
            .unwrap();
        assert!((3..=6).contains(&report.ops), "{} ops", report.ops);
        assert!(report.elapsed < Duration::from_secs(1));
        assert!(report.latency.value_at_quantile(0.5) >= 20_000_000);
    }

    #[tokio::test]
    async fn the_first_error_ends_the_loop() {
        let budget = Budget {
            duration: Duration::from_secs(10),
            max_ops: 100,
        };
        let err = closed_loop(vec![FailSecond(0)], budget).await.unwrap_err();
        assert!(err.to_string().contains("second call fails"), "{err}");
    }
}

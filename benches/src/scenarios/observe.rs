//! What recording metrics costs: `unary-64b-c32` and `stream-64k` with the Prometheus recorder
//! (metrics-exporter-prometheus, as `--metrics` installs it) switched on and off, in one case as
//! four half-length slices in ABBA order (mirrored every other round), like the auth scenario.
//!
//! A recorder cannot be uninstalled, and grpc-h3 registers each handle once and keeps it, so the
//! process installs a recorder whose handles forward to Prometheus' while switched on and do
//! nothing while off (one relaxed atomic load, next to no-op handles without a recorder).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::calls::{UnaryOp, unary_load};
use super::streams::{server_stream_op, stream_op};
use super::{Case, SMALL, Sample};
use crate::load::{Budget, Op as _, closed_loop, per_sec};
use crate::target::{AnyChannel, ServerSet};

/// The process's recorder: Prometheus' handles, each behind the switch.
struct Switch {
    on: AtomicBool,
    prometheus: PrometheusRecorder,
}

/// A Prometheus handle that acts only while the switch is on.
struct Gated<H> {
    on: &'static AtomicBool,
    inner: H,
}

impl<H> Gated<H> {
    fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
}

impl CounterFn for Gated<Counter> {
    fn increment(&self, value: u64) {
        if self.on() {
            self.inner.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        if self.on() {
            self.inner.absolute(value);
        }
    }
}

impl GaugeFn for Gated<Gauge> {
    fn increment(&self, value: f64) {
        if self.on() {
            self.inner.increment(value);
        }
    }

    fn decrement(&self, value: f64) {
        if self.on() {
            self.inner.decrement(value);
        }
    }

    fn set(&self, value: f64) {
        if self.on() {
            self.inner.set(value);
        }
    }
}

impl HistogramFn for Gated<Histogram> {
    fn record(&self, value: f64) {
        if self.on() {
            self.inner.record(value);
        }
    }
}

impl Recorder for &'static Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Gated {
            on: &self.on,
            inner: self.prometheus.register_counter(key, metadata),
        }))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Gated {
            on: &self.on,
            inner: self.prometheus.register_gauge(key, metadata),
        }))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Gated {
            on: &self.on,
            inner: self.prometheus.register_histogram(key, metadata),
        }))
    }
}

/// Installs the switched recorder (off) before any call, so the handles grpc-h3 registers on a
/// method's first call are gated ones; without it `metrics-cost` fails rather than measure
/// nothing.
pub fn install_recorder() {
    let _ = switch();
}

/// The process-wide switch, installed on first use.
fn switch() -> anyhow::Result<&'static Switch> {
    static SWITCH: OnceLock<Option<&'static Switch>> = OnceLock::new();
    SWITCH
        .get_or_init(|| {
            // The recorder as `--metrics` configures it (buckets, naming).
            let prometheus = metrics_http::builder().ok()?.build_recorder();
            let switch: &'static Switch = Box::leak(Box::new(Switch {
                on: AtomicBool::new(false),
                prometheus,
            }));
            metrics::set_global_recorder(switch).ok().map(|()| switch)
        })
        .context("the metrics recorder could not be built or another one is installed")
}

/// What the slices of one side measured: work done, wall seconds, process CPU seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    work: f64,
    secs: f64,
    cpu_secs: f64,
}

impl Totals {
    fn rate(self) -> f64 {
        per_sec(self.work, std::time::Duration::from_secs_f64(self.secs))
    }

    /// CPU microseconds per unit of work: unlike the rate, the hypervisor's steal does not count.
    fn cpu_us_per_unit(self) -> f64 {
        if self.work > 0.0 {
            self.cpu_secs * 1e6 / self.work
        } else {
            f64::NAN
        }
    }
}

/// Runs `measure` in ABBA slices with the recorder off and on; returns the (off, on) totals.
async fn abba<F, Fut>(case: &Case, mut measure: F) -> anyhow::Result<(Totals, Totals)>
where
    F: FnMut(Budget) -> Fut,
    Fut: Future<Output = anyhow::Result<Totals>>,
{
    let switch = switch()?;
    let slice = Budget {
        duration: case.budget.duration / 2,
        max_ops: case.budget.max_ops / 2,
    };
    let order = if case.round.is_multiple_of(2) {
        [false, true, true, false]
    } else {
        [true, false, false, true]
    };
    let (mut off, mut on) = (Totals::default(), Totals::default());
    for recording in order {
        switch.on.store(recording, Ordering::Relaxed);
        let measured = measure(slice).await;
        switch.on.store(false, Ordering::Relaxed);
        let slice = measured?;
        let side = if recording { &mut on } else { &mut off };
        side.work += slice.work;
        side.secs += slice.secs;
        side.cpu_secs += slice.cpu_secs;
    }
    Ok((off, on))
}

pub(super) async fn metrics_cost(case: &Case) -> anyhow::Result<Sample> {
    let (u_off, u_on) = abba(case, |slice| async move {
        let report = unary_load(case, 32, SMALL, ServerSet::Plain, slice).await?;
        Ok(Totals {
            work: report.ops as f64,
            secs: report.elapsed.as_secs_f64(),
            cpu_secs: report.cpu.as_secs_f64(),
        })
    })
    .await?;
    let (s_off, s_on) = abba(case, |slice| async move {
        let mut op = server_stream_op(case).await?;
        op.call().await.context("first stream")?;
        let report = closed_loop(vec![op], slice).await?;
        Ok(Totals {
            work: report.work.bytes as f64 * 8.0 / 1e9,
            secs: report.elapsed.as_secs_f64(),
            cpu_secs: report.cpu.as_secs_f64(),
        })
    })
    .await?;
    // Rate lost, and CPU added per call / per Gbit, in percent.
    let lost = |off: f64, on: f64| (1.0 - on / off) * 100.0;
    let added = |off: f64, on: f64| (on / off - 1.0) * 100.0;
    Ok(Sample {
        metrics: vec![
            ("unary_rate_off", u_off.rate()),
            ("unary_rate_on", u_on.rate()),
            ("unary_cost_pct", lost(u_off.rate(), u_on.rate())),
            (
                "unary_cpu_cost_pct",
                added(u_off.cpu_us_per_unit(), u_on.cpu_us_per_unit()),
            ),
            ("stream_gbit_off", s_off.rate()),
            ("stream_gbit_on", s_on.rate()),
            ("stream_cost_pct", lost(s_off.rate(), s_on.rate())),
            (
                "stream_cpu_cost_pct",
                added(s_off.cpu_us_per_unit(), s_on.cpu_us_per_unit()),
            ),
        ],
        latency: None,
    })
}

/// Unary calls in flight in the `metrics-count` workload, as in `unary-64b-c32`.
const COUNT_CONCURRENCY: usize = 32;
/// Warm-up unary calls before the first counted phase (registers every handle, sizes buffers).
const COUNT_WARMUP_CALLS: u64 = 64;

/// The bounded workload `zone-bench metrics-count` runs under callgrind, on `channel`: a warm-up,
/// then `calls` and `2 × calls` unary 64 B calls at c=32, then one and two `StreamingOutputCall`s
/// of `messages` 64 KiB messages. `mark(k)` is called before phase k (1..=4) and after the last
/// one (5), where callgrind dumps its counters; the differences of the paired phases cancel
/// everything a phase costs once. `upkeep` ends each phase (the exporter's histogram folding,
/// which a recorder pays per sample too).
pub async fn count_workload(
    channel: AnyChannel,
    calls: u64,
    messages: usize,
    mark: impl Fn(usize),
    upkeep: impl Fn(),
) -> anyhow::Result<()> {
    let unary = |n: u64| {
        let ops = (0..COUNT_CONCURRENCY)
            .map(|_| UnaryOp::new(channel.clone(), SMALL, None))
            .collect();
        closed_loop(ops, counted(n))
    };
    let streams = |n: u64| closed_loop(vec![stream_op(channel.clone(), messages)], counted(n));
    check_ops(unary(COUNT_WARMUP_CALLS).await?, COUNT_WARMUP_CALLS)?;
    check_ops(streams(1).await?, 1)?;
    upkeep();
    for (phase, n) in [(1, calls), (2, 2 * calls)] {
        mark(phase);
        check_ops(unary(n).await?, n)?;
        upkeep();
    }
    for (phase, n) in [(3, 1), (4, 2)] {
        mark(phase);
        check_ops(streams(n).await?, n)?;
        upkeep();
    }
    mark(5);
    Ok(())
}

/// A budget of exactly `ops` operations (no time bound that could cut a phase short).
fn counted(ops: u64) -> Budget {
    Budget {
        duration: std::time::Duration::from_secs(24 * 3600),
        max_ops: ops,
    }
}

fn check_ops(report: crate::load::LoadReport, expected: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        report.ops == expected,
        "{} operations instead of {expected}",
        report.ops
    );
    Ok(())
}

//! Auth on vs off: the same unary load (64 B, c=32) against the plain servers and against the
//! servers behind the per-RPC auth layer, in one case as four half-length slices in ABBA order
//! (off, on, on, off; mirrored every other round), so that drifting background load on the
//! machine weighs on both sides alike.

use hdrhistogram::Histogram;

use super::calls::unary_load;
use super::{Case, SMALL, Sample};
use crate::load::{Budget, LoadReport, latency_histogram, per_sec};
use crate::target::ServerSet;

const CONCURRENCY: usize = 32;

/// The slices of one side, merged.
struct Side {
    ops: u64,
    elapsed: std::time::Duration,
    latency: Histogram<u64>,
}

impl Side {
    fn new() -> anyhow::Result<Side> {
        Ok(Side {
            ops: 0,
            elapsed: std::time::Duration::ZERO,
            latency: latency_histogram()?,
        })
    }

    fn add(&mut self, report: &LoadReport) -> anyhow::Result<()> {
        self.ops += report.ops;
        self.elapsed += report.elapsed;
        self.latency.add(&report.latency)?;
        Ok(())
    }

    fn rate(&self) -> f64 {
        per_sec(self.ops as f64, self.elapsed)
    }

    fn p50_us(&self) -> f64 {
        self.latency.value_at_quantile(0.5) as f64 / 1_000.0
    }
}

pub(super) async fn auth(case: &Case) -> anyhow::Result<Sample> {
    let runs = case
        .target
        .auth
        .as_ref()
        .and_then(|a| a.argon2_runs.clone());
    let argon2_before = runs.as_ref().map(|f| f());
    let (a, b) = if case.round.is_multiple_of(2) {
        (ServerSet::Plain, ServerSet::Auth)
    } else {
        (ServerSet::Auth, ServerSet::Plain)
    };
    let slice = Budget {
        duration: case.budget.duration / 2,
        max_ops: case.budget.max_ops / 2,
    };
    let mut off = Side::new()?;
    let mut on = Side::new()?;
    for service in [a, b, b, a] {
        let report = unary_load(case, CONCURRENCY, SMALL, service, slice).await?;
        match service {
            ServerSet::Plain => off.add(&report)?,
            ServerSet::Auth => on.add(&report)?,
        }
    }
    let (rate_off, rate_on) = (off.rate(), on.rate());
    let mut metrics = vec![
        ("rate_off", rate_off),
        ("rate_on", rate_on),
        ("overhead_pct", (1.0 - rate_on / rate_off) * 100.0),
        ("p50_off_us", off.p50_us()),
        ("p50_on_us", on.p50_us()),
    ];
    if let (Some(runs), Some(before)) = (runs, argon2_before) {
        metrics.push(("argon2_runs", runs().saturating_sub(before) as f64));
    }
    Ok(Sample {
        metrics,
        latency: None,
    })
}

//! Runs the selected scenarios against a [`Target`] in interleaved rounds: each round runs every
//! wire once (h2, h3, peer, h2, h3, peer, …), the first rounds are warm-up and discarded.
//!
//! Each case runs in its own task under a hard timeout. A case that fails, hangs or panics is
//! recorded with its error text as that wire's result for the scenario (later rounds of that
//! wire are skipped); it never aborts the run.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Settings;
use crate::load::Budget;
use crate::panics;
use crate::path::NetPath;
use crate::results::{ScenarioResult, TransportResult};
use crate::scenarios::{self, Case, Sample, ScenarioDef};
use crate::stats::{LatencyDist, Summary};
use crate::target::{Target, Wire};

/// Tells the runner when the peer's servers are gone, so it records that instead of waiting for
/// every remaining peer case to time out (servers in another namespace pass no health).
pub trait PeerHealth {
    fn peer_exit_reason(&mut self) -> Option<String>;
}

impl PeerHealth for crate::servers::LocalServers {
    fn peer_exit_reason(&mut self) -> Option<String> {
        crate::servers::LocalServers::peer_exit_reason(self)
    }
}

/// Runs `work` in its own task, bounded by `limit`; an error, a panic or a hang becomes error
/// text, naming any panic (of any task) that happened meanwhile. The task is aborted on timeout
/// (and with it every task it owns through a `JoinSet`).
pub async fn guarded<T, F>(work: F, limit: Duration) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mark = panics::mark();
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    let failure = match tokio::time::timeout(limit, task).await {
        Ok(Ok(Ok(value))) => return Ok(value),
        Ok(Err(e)) if e.is_panic() => {
            return Err(format!("panicked: {}", panics::describe(e.into_panic())));
        }
        Err(_) => {
            abort.abort();
            format!(
                "no result within {:.1} s (hang); case abandoned",
                limit.as_secs_f64()
            )
        }
        Ok(Err(e)) => format!("case task failed: {e}"),
        Ok(Ok(Err(e))) => format!("{e:#}"),
    };
    let panicked = panics::since(mark);
    if panicked.is_empty() {
        Err(failure)
    } else {
        Err(format!(
            "{failure}; meanwhile a task panicked: {}",
            panicked.join("; ")
        ))
    }
}

/// Per-wire accumulation of one scenario's cases.
struct Acc {
    wire: Wire,
    samples: Vec<BTreeMap<&'static str, f64>>,
    latency: Option<Histogram<u64>>,
    error: Option<String>,
}

impl Acc {
    fn add(&mut self, sample: Sample) {
        self.samples.push(sample.metrics.into_iter().collect());
        if let Some(h) = sample.latency {
            match &mut self.latency {
                Some(merged) => {
                    // Same bounds on both sides, so adding cannot fail.
                    let _ = merged.add(&h);
                }
                None => self.latency = Some(h),
            }
        }
    }

    fn finish(self) -> TransportResult {
        let mut keys: Vec<&'static str> = Vec::new();
        for s in &self.samples {
            for k in s.keys() {
                if !keys.contains(k) {
                    keys.push(k);
                }
            }
        }
        let summary = keys
            .into_iter()
            .filter_map(|k| {
                let values: Vec<f64> = self
                    .samples
                    .iter()
                    .filter_map(|s| s.get(k).copied())
                    .collect();
                Summary::of(&values).map(|s| (k, s))
            })
            .collect();
        TransportResult {
            wire: self.wire,
            samples: self.samples,
            summary,
            latency: self.latency.as_ref().and_then(LatencyDist::of),
            error: self.error,
        }
    }
}

/// Runs scenarios in interleaved rounds.
pub struct Runner {
    settings: Arc<Settings>,
    target: Arc<Target>,
    path: NetPath,
    wires: Vec<Wire>,
    progress: ProgressBar,
}

impl Runner {
    pub fn new(
        settings: Arc<Settings>,
        target: Arc<Target>,
        path: NetPath,
        scenarios: usize,
    ) -> Runner {
        let wires: Vec<Wire> = Wire::ALL
            .into_iter()
            .filter(|w| target.has(*w))
            .filter(|w| settings.wires.is_empty() || settings.wires.contains(w))
            .collect();
        let rounds = settings.warmup_rounds + settings.reps;
        let total = (scenarios * rounds * wires.len()) as u64;
        let draw = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let progress = ProgressBar::with_draw_target(Some(total), draw);
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} {msg}")
        {
            progress.set_style(style.progress_chars("=> "));
        }
        Runner {
            settings,
            target,
            path,
            wires,
            progress,
        }
    }

    pub fn wires(&self) -> &[Wire] {
        &self.wires
    }

    /// Runs every round of `def` and summarises it.
    pub async fn run_scenario(
        &self,
        def: &'static ScenarioDef,
        mut health: Option<&mut (dyn PeerHealth + 'static)>,
    ) -> ScenarioResult {
        let settings = &self.settings;
        let rounds = settings.warmup_rounds + settings.reps;
        let mut accs: Vec<Acc> = self
            .wires
            .iter()
            .filter(|w| !(def.ours_only && w.is_peer()))
            .map(|&wire| Acc {
                wire,
                samples: Vec::new(),
                latency: None,
                error: None,
            })
            .collect();
        for round in 0..rounds {
            let warmup = round < settings.warmup_rounds;
            for acc in &mut accs {
                let wire = acc.wire;
                self.progress.set_message(format!(
                    "{} {} {wire} {}",
                    self.path,
                    def.name,
                    if warmup {
                        "warm-up".to_string()
                    } else {
                        format!(
                            "rep {}/{}",
                            round + 1 - settings.warmup_rounds,
                            settings.reps
                        )
                    }
                ));
                if acc.error.is_none() && wire.uses_peer_server() {
                    acc.error = health.as_mut().and_then(|h| h.peer_exit_reason());
                }
                if acc.error.is_some() {
                    self.progress.inc(1);
                    continue;
                }
                let case = Case {
                    target: self.target.clone(),
                    wire,
                    settings: settings.clone(),
                    budget: Budget {
                        duration: settings.duration_for(round),
                        max_ops: settings.max_ops,
                    },
                    round,
                };
                match guarded(scenarios::run(def, case), settings.case_timeout).await {
                    Ok(sample) if !warmup => acc.add(sample),
                    Ok(_) => {}
                    Err(e) => {
                        let e = if warmup { format!("warm-up: {e}") } else { e };
                        self.progress.suspend(|| {
                            eprintln!("zone-bench: {} over {wire} ({}): {e}", def.name, self.path)
                        });
                        acc.error = Some(e);
                    }
                }
                self.progress.inc(1);
            }
        }
        ScenarioResult::new(def, self.path, accs.into_iter().map(Acc::finish).collect())
    }

    pub fn finish(&self) {
        self.progress.finish_and_clear();
    }

    /// Runs every scenario of `defs` in order, then clears the progress bar.
    pub async fn run_all(
        &self,
        defs: &[&'static ScenarioDef],
        mut health: Option<&mut (dyn PeerHealth + 'static)>,
    ) -> Vec<ScenarioResult> {
        let mut results = Vec::with_capacity(defs.len());
        for &def in defs {
            results.push(self.run_scenario(def, health.as_deref_mut()).await);
        }
        self.finish();
        results
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_panics_and_hangs_become_results() {
        let limit = Duration::from_millis(200);
        assert_eq!(guarded(async { anyhow::Ok(7) }, limit).await, Ok(7));
        let err = guarded(
            async { anyhow::bail!("refused") as anyhow::Result<()> },
            limit,
        )
        .await;
        assert_eq!(err, Err("refused".to_string()));
        let panicked = guarded(
            async move {
                if limit > Duration::ZERO {
                    panic!("boom");
                }
                anyhow::Ok(())
            },
            limit,
        )
        .await
        .unwrap_err();
        assert!(panicked.starts_with("panicked: boom"), "{panicked}");
        let started = std::time::Instant::now();
        let hung = guarded(
            async {
                std::future::pending::<()>().await;
                anyhow::Ok(())
            },
            limit,
        )
        .await
        .unwrap_err();
        assert!(hung.contains("hang"), "{hung}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn summaries_cover_every_metric_seen() {
        let mut acc = Acc {
            wire: Wire::H3,
            samples: Vec::new(),
            latency: None,
            error: None,
        };
        for (a, b) in [(1.0, 10.0), (3.0, 30.0), (2.0, 20.0)] {
            acc.add(Sample {
                metrics: vec![("a", a), ("b", b)],
                latency: None,
            });
        }
        let r = acc.finish();
        assert_eq!(r.samples.len(), 3);
        assert_eq!(r.median("a"), Some(2.0));
        assert_eq!(r.summary["b"].max, 30.0);
        assert!(r.latency.is_none());
    }
}

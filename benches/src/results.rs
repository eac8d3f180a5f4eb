//! The results of a run as written to `results.json`: raw samples, summaries, ratios, goals, and
//! where they were measured (machine, commit, command line, settings).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::cli::Settings;
use crate::path::NetPath;
use crate::scenarios::{MetricSpec, ScenarioDef};
use crate::stats::{LatencyDist, Ratio, Summary};
use crate::target::Wire;

/// One wire's outcome in one scenario.
#[derive(Debug, Serialize)]
pub struct TransportResult {
    pub wire: Wire,
    /// Measured repetitions (warm-up excluded), metric → value.
    pub samples: Vec<BTreeMap<&'static str, f64>>,
    pub summary: BTreeMap<&'static str, Summary>,
    /// All measured repetitions merged (latency scenarios only).
    pub latency: Option<LatencyDist>,
    /// Why the wire has no (or fewer) samples: a failure, hang or panic, recorded as a result.
    pub error: Option<String>,
}

impl TransportResult {
    pub fn median(&self, key: &str) -> Option<f64> {
        self.summary.get(key).map(|s| s.median)
    }
}

/// Ratios of medians with their paired-repetition ranges; for "lower is better" metrics a ratio
/// below 1 favours the numerator.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ratios {
    pub h3_over_h2: Option<Ratio>,
    pub ours_over_peer: Option<Ratio>,
    /// tonic-h3's client against our server over it against its own server: our server's
    /// figure seen by a client that is not ours.
    pub peer_client_ours_over_peer: Option<Ratio>,
}

/// One scenario's outcome over every wire.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub name: &'static str,
    /// The network path the calls travelled.
    pub path: NetPath,
    pub description: &'static str,
    pub metrics: &'static [MetricSpec],
    pub notes: &'static [&'static str],
    pub transports: Vec<TransportResult>,
    pub ratios: BTreeMap<&'static str, Ratios>,
}

impl ScenarioResult {
    pub fn new(def: &'static ScenarioDef, path: NetPath, transports: Vec<TransportResult>) -> Self {
        let mut result = ScenarioResult {
            name: def.name,
            path,
            description: def.description,
            metrics: def.metrics,
            notes: def.notes,
            transports,
            ratios: BTreeMap::new(),
        };
        for metric in def.metrics.iter().filter(|m| m.ratios) {
            let get = |a: Wire, b: Wire| {
                Ratio::of(
                    result.median(a, metric.key)?,
                    result.median(b, metric.key)?,
                    &result.samples(a, metric.key),
                    &result.samples(b, metric.key),
                )
            };
            let r = Ratios {
                h3_over_h2: get(Wire::H3, Wire::H2),
                ours_over_peer: get(Wire::H3, Wire::Peer),
                peer_client_ours_over_peer: get(Wire::PeerClient, Wire::Peer),
            };
            result.ratios.insert(metric.key, r);
        }
        result
    }

    pub fn transport(&self, wire: Wire) -> Option<&TransportResult> {
        self.transports.iter().find(|t| t.wire == wire)
    }

    pub fn median(&self, wire: Wire, key: &str) -> Option<f64> {
        self.transport(wire).and_then(|t| t.median(key))
    }

    /// `key` of each measured repetition of `wire`, in round order (empty when it did not run).
    pub fn samples(&self, wire: Wire, key: &str) -> Vec<Option<f64>> {
        self.transport(wire).map_or_else(Vec::new, |t| {
            t.samples.iter().map(|s| s.get(key).copied()).collect()
        })
    }
}

/// Where the run happened.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
    /// `debug` or `release`: debug figures are not performance figures.
    pub build: &'static str,
    /// 1-, 5- and 15-minute load averages when the run ended (other work on the machine
    /// skews every figure).
    pub load_average: Option<[f64; 3]>,
    /// Share of the CPU time the hypervisor gave these vCPUs to others during the run
    /// (`steal` in /proc/stat), in percent: it slows every wire alike, in phases.
    pub steal_pct: Option<f64>,
}

impl Machine {
    /// The header lines every report starts with: commit, machine, build, load.
    pub fn markdown_lines(&self, git_commit: Option<&str>) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "- commit: `{}`", git_commit.unwrap_or("unknown"));
        let _ = writeln!(
            out,
            "- machine: {} CPUs, {}, kernel {}, {}/{}",
            self.nproc,
            self.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.kernel.as_deref().unwrap_or("unknown"),
            self.os,
            self.arch
        );
        let _ = writeln!(out, "- build: {}", self.build);
        if let Some([one, five, fifteen]) = self.load_average {
            let _ = writeln!(
                out,
                "- load average at the end: {one:.2} {five:.2} {fifteen:.2} (other work on the \
                 machine skews every figure)"
            );
        }
        if let Some(steal) = self.steal_pct {
            let _ = writeln!(
                out,
                "- CPU steal during the run: {steal:.1} % (the hypervisor running others on these \
                 vCPUs; it slows every wire alike, so compare ratios of one run)"
            );
        }
        if self.build == "debug" {
            let _ = writeln!(
                out,
                "  (debug build: the figures say nothing about performance)"
            );
        }
        out
    }

    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(&cpuinfo),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| load_average(&s)),
            steal_pct: None,
        }
    }
}

/// All CPUs' time in clock ticks from /proc/stat: `(steal, total)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// Now, or `None` where /proc/stat is missing or unreadable.
    pub fn now() -> Option<CpuTimes> {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| Self::parse(&s))
    }

    fn parse(stat: &str) -> Option<CpuTimes> {
        // cpu user nice system idle iowait irq softirq steal guest guest_nice
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(CpuTimes {
            steal: *fields.get(7)?,
            // guest time is already counted in user time.
            total: fields.iter().take(8).sum(),
        })
    }

    /// Steal between `self` and `later`, in percent of all CPU time.
    pub fn steal_pct_until(self, later: CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64 * 100.0)
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| matches!(k.trim(), "model name" | "Model" | "cpu model"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn load_average(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// The checked-out commit of the repository this binary was built from (`git rev-parse HEAD`),
/// with `-dirty` when the work tree has changes; `None` without git or outside a repository.
pub fn git_commit() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// A goal of the issue, checked against the results (reported, never asserted).
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: String,
    /// `>=` or `<=`.
    pub comparison: &'static str,
    pub threshold: f64,
    pub value: Option<f64>,
    /// The range of the paired repetitions' ratios (or of the repetitions, for a plain value).
    pub interval: Option<[f64; 2]>,
    /// `Some(true)`/`Some(false)` only when the whole interval is on one side of the threshold;
    /// `None` when it straddles it (undecided) or a figure is missing.
    pub pass: Option<bool>,
}

/// Everything `results.json` holds.
#[derive(Debug, Serialize)]
pub struct RunResults {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub command_line: Vec<String>,
    pub git_commit: Option<String>,
    pub machine: Machine,
    pub settings: Settings,
    pub wires: Vec<WireInfo>,
    pub scenarios: Vec<ScenarioResult>,
    pub goals: Vec<Goal>,
}

#[derive(Debug, Serialize)]
pub struct WireInfo {
    pub wire: Wire,
    pub description: &'static str,
}

impl WireInfo {
    pub fn of(wire: Wire) -> Self {
        WireInfo {
            wire,
            description: wire.describe(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_comes_from_the_first_model_name_line() {
        let text = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n\
                    processor\t: 1\nmodel name\t: Example CPU @ 2.0GHz\n";
        assert_eq!(cpu_model(text).as_deref(), Some("Example CPU @ 2.0GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn load_average_reads_the_first_three_fields() {
        assert_eq!(
            load_average("0.52 1.10 2.00 3/345 12345\n"),
            Some([0.52, 1.10, 2.00])
        );
        assert_eq!(load_average("garbage"), None);
    }

    #[test]
    fn steal_is_the_share_of_all_cpu_time_between_two_readings() {
        let before = CpuTimes::parse("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n").unwrap();
        let after = CpuTimes::parse("cpu  125 0 50 825 0 0 0 100 9 0\n").unwrap();
        assert_eq!(before.steal_pct_until(after), Some(50.0));
        assert_eq!(after.steal_pct_until(before), None);
        assert_eq!(CpuTimes::parse("intr 1 2\n"), None);
    }
}

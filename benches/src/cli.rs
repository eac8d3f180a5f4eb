//! Command line of `zone-bench` and the run settings derived from it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Side-by-side gRPC benchmarks over HTTP/2 and HTTP/3 (ours) and HTTP/3 (tonic-h3): the
/// scenarios over a 1500-byte link between two namespaces (as root) and over loopback (`run`, the
/// default), through the impaired-network lab (`netlab`), a long soak (`soak`), and fault
/// recovery (`faults`). Every subcommand takes the options below.
#[derive(Debug, Parser)]
#[command(
    name = "zone-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

/// What to run.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The scenarios side by side over both paths (what runs without a subcommand).
    Run(Args),
    /// The scenarios through the impaired-network lab: an RTT × loss grid, fan-out and faults
    /// over emulated links (needs root).
    Netlab(Args),
    /// A long mixed load per wire (unary 64 B at high concurrency, server-stream transfers, a bidi
    /// stream), sampled every second (errors, p99, RSS, open fds); writes soak.md and soak.json.
    Soak(Args),
    /// Fault recovery: a server process killed and restarted under load, HTTP/3 client rebinding
    /// under load; writes faults.md and faults.json.
    Faults(Args),
    /// DNS query throughput: zone-edge's DNS server and Knot DNS serving the same zone file,
    /// loaded by dnsperf (scripts/install-dns-bench-tools.sh); writes dns/dns.md and dns.json.
    Dns(Args),
    /// What the Prometheus metrics recorder costs, in instructions per call counted by
    /// valgrind's callgrind (deterministic, unlike time on a shared VM): unary 64 B c=32 and a
    /// 64 KiB server stream per wire, recorder installed vs none; writes metrics-count/.
    MetricsCount(Args),
}

impl Args {
    /// What `run --full` runs through the lab after the scenarios: the cells the deployed-paths
    /// goals are judged on (unary c=1 p99 at 1 % loss, small calls beside a stream, stream
    /// throughput with Cubic and BBR at 5 %), at 50 ms RTT with the full profile's repetitions
    /// and loss-event bounds; `None` when this is not a full `run`.
    pub fn full_lab(&self) -> Option<Args> {
        let plain_run = !(self.netlab
            || self.soak
            || self.faults
            || self.dns
            || self.metrics_count
            || self.count_child.is_some()
            || self.fault_server.is_some());
        (self.full && plain_run && self.scenarios.is_empty()).then(|| Args {
            netlab: true,
            scenarios: vec!["grid".to_string()],
            rtts_ms: vec![50],
            losses_pct: vec![1.0, 5.0],
            cells: vec![GridCell::C1, GridCell::Hol, GridCell::Stream],
            // The lab's own profile, not the run's case length.
            reps: None,
            duration: None,
            out: self.out.join("netlab"),
            ..self.clone()
        })
    }
}

impl Cli {
    /// The options, with the mode the subcommand selected.
    pub fn into_args(self) -> Args {
        match self.command {
            None => self.args,
            Some(Command::Run(args)) => args,
            Some(Command::Netlab(args)) => Args {
                netlab: true,
                ..args
            },
            Some(Command::Soak(args)) => Args { soak: true, ..args },
            Some(Command::Faults(args)) => Args {
                faults: true,
                ..args
            },
            Some(Command::Dns(args)) => Args { dns: true, ..args },
            Some(Command::MetricsCount(args)) => Args {
                metrics_count: true,
                ..args
            },
        }
    }
}

/// The options of every subcommand.
#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// The full grid: 5 repetitions of 2 s per case, zone of 100 000 records (about 20 minutes
    /// over both paths); as root, then the lab's cells of the deployed-paths goals (`netlab` at
    /// 50 ms RTT, 1 % and 5 % loss: c1, hol, stream; about 40 minutes more, into `<out>/netlab`).
    /// The default is 3 repetitions of 0.5 s (a few minutes).
    #[arg(long, conflicts_with_all = ["quick", "tiny"])]
    pub full: bool,

    /// Short run; the default of `run` already is. With `netlab`, `soak` and `faults`: their short
    /// profiles.
    #[arg(long)]
    pub quick: bool,

    /// Smallest possible run for CI smoke tests (implies --quick); figures are meaningless.
    #[arg(long, hide = true)]
    pub tiny: bool,

    /// Run only these scenarios (exact names, or a prefix such as `unary`); default all. With
    /// `netlab`: `grid` (RTT × loss grid, faults), `edge-fanout` and/or `edge-dns`.
    #[arg(long = "scenario", value_name = "NAME", num_args = 1..)]
    pub scenarios: Vec<String>,

    /// Directory for report.md, results.json and the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "target/zone-bench")]
    pub out: PathBuf,

    /// The `netlab` subcommand.
    #[arg(skip)]
    pub netlab: bool,

    /// Measured repetitions per scenario and transport (after one discarded warm-up round).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: Option<u32>,

    /// Time bound of one measured case, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Network paths to run the scenarios over [default: mtu1500 then loopback; mtu1500 needs
    /// root and is skipped with a message without it].
    #[arg(long = "path", value_name = "PATH", value_delimiter = ',', num_args = 1..)]
    pub paths: Vec<crate::path::NetPath>,

    /// Run only these wires (default all); e.g. `--wire h3` to profile one transport alone.
    #[arg(long = "wire", value_name = "WIRE", value_delimiter = ',', num_args = 1..)]
    pub wires: Vec<crate::target::Wire>,

    /// `QuicSettings::mtu_upper_bound` of grpc-h3's HTTP/3 client and servers (default 1452),
    /// the bound of the per-connection MTU search on paths whose MTU is not known up front
    /// (see the setting's docs). tonic-h3 keeps quinn's defaults.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(1200..=65527))]
    pub quic_mtu: Option<u16>,

    /// Turn off `QuicSettings::loopback_mtu` for grpc-h3's HTTP/3 client and servers: loopback
    /// connections then start at 1200 bytes and search up to `--quic-mtu`, as on other paths.
    #[arg(long)]
    pub no_loopback_mtu: bool,

    /// Swap the servers behind the two HTTP/3 wires: the `h3` column is then grpc-h3's client
    /// against tonic-h3's server, the `tonic-h3` column tonic-h3's client against grpc-h3's
    /// server. Tells which side a difference between the two HTTP/3 stacks comes from.
    #[arg(long)]
    pub cross_pair: bool,

    /// `netlab`: round-trip times of the grid in ms, instead of the profile's (e.g. `--rtt 50`);
    /// also narrows the edge-dns cells (50 ms × 0, 1, 5 % loss).
    #[arg(long = "rtt", value_name = "MS", value_delimiter = ',', num_args = 1..,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub rtts_ms: Vec<u64>,

    /// `netlab`: random loss rates of the grid in percent, instead of the profile's (e.g.
    /// `--loss 1,5`).
    #[arg(long = "loss", value_name = "PCT", value_delimiter = ',', num_args = 1..,
          value_parser = parse_loss)]
    pub losses_pct: Vec<f64>,

    /// `netlab`: measure only these cells of each grid point (default all).
    #[arg(long = "cell", value_name = "CELL", value_delimiter = ',', num_args = 1..)]
    pub cells: Vec<GridCell>,

    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,

    /// The `soak` subcommand.
    #[arg(skip)]
    pub soak: bool,

    /// `soak`: length of the soak of each wire in seconds [default: 300; 20 with --quick, 3 with
    /// --tiny].
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SOAK_SECS))]
    pub soak_secs: Option<u64>,

    /// The `faults` subcommand.
    #[arg(skip)]
    pub faults: bool,

    /// The `dns` subcommand.
    #[arg(skip)]
    pub dns: bool,

    /// The `metrics-count` subcommand.
    #[arg(skip)]
    pub metrics_count: bool,

    /// `metrics-count`: unary calls of the shorter counted phase (the longer runs twice as many).
    /// A phase's count varies by ~±1 M instructions (timers, I/O batching), so far fewer than
    /// 2000 calls drown the recorder's ~2 k per call.
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(32..=1_000_000))]
    pub calls: u64,

    /// `metrics-count`: 64 KiB messages per counted server stream.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub stream_messages: u64,

    /// `metrics-count`: runs of each wire and recording; the goal is decided only when every
    /// repeat's pair is on one side of it (the h2 stream's count varies by ~1 % with how TCP
    /// reads split).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,

    /// Internal (`metrics-count`): run the counted workload once, with the Prometheus recorder
    /// or none, on the one `--wire` (under callgrind).
    #[arg(long, hide = true, value_name = "RECORDER")]
    pub count_child: Option<Recording>,

    /// Internal (`faults`): serve TestService on this port, print the READY line, run until
    /// killed.
    #[arg(long, hide = true, value_name = "PORT", requires = "cert_dir")]
    pub fault_server: Option<u16>,

    /// Internal (`faults`): certificate directory of the `--fault-server` child.
    #[arg(long, hide = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

impl Args {
    /// The options of a command line (program name first), with its subcommand's mode.
    #[cfg(test)]
    pub fn parse_from_cli<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(argv).map(Cli::into_args)
    }
}

/// Whether a `metrics-count` workload runs with the Prometheus recorder installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recording {
    /// No recorder installed: the `metrics` facade's no-op handles.
    Off,
    /// The Prometheus recorder as `--metrics` builds it (metrics-http's buckets).
    On,
}

/// Hard upper bound of `--soak-secs` (one hour per wire).
pub const MAX_SOAK_SECS: u64 = 3600;

fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.01..=600.0).contains(&secs) {
        return Err(format!("{secs} s is outside 0.01..=600 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_loss(text: &str) -> Result<f64, String> {
    let pct: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !(0.0..=50.0).contains(&pct) {
        return Err(format!("{pct} % is outside 0..=50 %"));
    }
    Ok(pct)
}

/// One measurement of a netlab grid point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GridCell {
    /// Unary 64 B, one call in flight: latency (p50, p99).
    C1,
    /// Unary 64 B, 32 calls in flight: p99 and calls/s.
    C32,
    /// Server stream of 64 KiB messages: throughput.
    Stream,
    /// 32 small calls beside a stream on one connection: p99 (head-of-line blocking).
    Hol,
}

impl GridCell {
    /// Every cell, in the order they run.
    pub const ALL: [GridCell; 4] = [GridCell::C1, GridCell::C32, GridCell::Stream, GridCell::Hol];
}

/// Which preset the settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Full,
    Quick,
    Tiny,
}

/// Sizes and bounds of one run. Every load loop stops at `duration` or `max_ops`, whichever
/// comes first, and every case is abandoned after `case_timeout`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub profile: Profile,
    /// Measured rounds per scenario (each round runs every transport once).
    pub reps: usize,
    /// Discarded rounds before the measured ones.
    pub warmup_rounds: usize,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup_duration: Duration,
    /// Upper bound on operations (calls, transfers, round trips) of one case.
    pub max_ops: u64,
    /// Upper bound on fresh connections in the set-up scenario.
    pub max_connects: u64,
    /// Records of the synthetic zone that `transfer-small` streams.
    pub zone_records: usize,
    /// 64 KiB messages per `StreamingOutputCall` in `stream-64k`.
    pub stream_messages: usize,
    /// Batches per `PushChanges` call and changes per batch in `push`.
    pub push_batches: usize,
    pub push_changes: usize,
    /// Timed publishes per subscriber count in `edge-fanout` (1 and 64 subscribers).
    pub fanout_publishes: usize,
    /// Timed publishes to 1000 subscribers in `edge-fanout`.
    pub fanout_publishes_1000: usize,
    #[serde(serialize_with = "secs")]
    pub case_timeout: Duration,
    /// Wires to run (empty = every wire the target offers).
    pub wires: Vec<crate::target::Wire>,
    /// Paths to run over, in order.
    pub paths: Vec<crate::path::NetPath>,
    /// `--quic-mtu`: grpc-h3's QUIC `mtu_upper_bound`, when not the default.
    pub quic_mtu: Option<u16>,
    /// grpc-h3's QUIC `loopback_mtu` (`--no-loopback-mtu` clears it).
    pub loopback_mtu: bool,
    /// `--cross-pair`: each HTTP/3 client talks to the other stack's server.
    pub cross_pair: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Settings {
    /// The preset selected by `--full`/`--tiny` (default: quick), with `--reps`/`--duration`
    /// applied.
    pub fn from_args(args: &Args) -> Settings {
        // The scenario run is quick unless `--full`; soak, faults and the netlab keep their own
        // default (full) and take `--quick`.
        let quick = if args.soak || args.faults || args.netlab {
            args.quick
        } else {
            !args.full
        };
        let mut s = if args.tiny {
            Settings {
                profile: Profile::Tiny,
                reps: 1,
                warmup_rounds: 1,
                duration: Duration::from_millis(100),
                warmup_duration: Duration::from_millis(50),
                max_ops: 2_000,
                max_connects: 3,
                zone_records: 2_000,
                stream_messages: 16,
                push_batches: 4,
                push_changes: 16,
                fanout_publishes: 20,
                fanout_publishes_1000: 3,
                case_timeout: Duration::ZERO,
                wires: Vec::new(),
                paths: Vec::new(),
                quic_mtu: None,
                loopback_mtu: true,
                cross_pair: false,
            }
        } else if quick {
            Settings {
                profile: Profile::Quick,
                reps: 3,
                warmup_rounds: 1,
                duration: Duration::from_millis(500),
                warmup_duration: Duration::from_millis(250),
                max_ops: 1_000_000,
                max_connects: 40,
                zone_records: 20_000,
                stream_messages: 128,
                push_batches: 8,
                push_changes: 50,
                fanout_publishes: 200,
                fanout_publishes_1000: 10,
                case_timeout: Duration::ZERO,
                wires: Vec::new(),
                paths: Vec::new(),
                quic_mtu: None,
                loopback_mtu: true,
                cross_pair: false,
            }
        } else {
            Settings {
                profile: Profile::Full,
                reps: 5,
                warmup_rounds: 1,
                duration: Duration::from_secs(2),
                warmup_duration: Duration::from_secs(1),
                max_ops: 5_000_000,
                max_connects: 300,
                zone_records: 100_000,
                stream_messages: 256,
                push_batches: 16,
                push_changes: 50,
                fanout_publishes: 1000,
                fanout_publishes_1000: 100,
                case_timeout: Duration::ZERO,
                wires: Vec::new(),
                paths: Vec::new(),
                quic_mtu: None,
                loopback_mtu: true,
                cross_pair: false,
            }
        };
        if let Some(reps) = args.reps {
            s.reps = reps as usize;
        }
        if let Some(d) = args.duration {
            s.duration = d;
            s.warmup_duration = d / 2;
        }
        // A case runs at most two timed phases (auth: off and on) plus set-up; a hang is cut off
        // well before it could stall the whole run.
        let slack = match s.profile {
            Profile::Full => Duration::from_secs(20),
            Profile::Quick => Duration::from_secs(8),
            Profile::Tiny => Duration::from_secs(5),
        };
        s.case_timeout = s.duration * 2 + slack;
        s.wires.clone_from(&args.wires);
        s.paths = if args.paths.is_empty() {
            crate::path::NetPath::ALL.to_vec()
        } else {
            // Report order, each once.
            crate::path::NetPath::ALL
                .into_iter()
                .filter(|p| args.paths.contains(p))
                .collect()
        };
        s.quic_mtu = args.quic_mtu;
        s.loopback_mtu = !args.no_loopback_mtu;
        s.cross_pair = args.cross_pair;
        s
    }

    /// grpc-h3's QUIC settings for this run's client and servers.
    pub fn quic(&self) -> grpc_h3::QuicSettings {
        let mut quic = grpc_h3::QuicSettings::default().loopback_mtu(self.loopback_mtu);
        if let Some(mtu) = self.quic_mtu {
            quic = quic.mtu_upper_bound(mtu);
        }
        quic
    }

    /// Time bound of a case in round `round` (warm-up rounds are shorter).
    pub fn duration_for(&self, round: usize) -> Duration {
        if round < self.warmup_rounds {
            self.warmup_duration
        } else {
            self.duration
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn full_run_goes_on_to_the_labs_goal_cells() {
        let args =
            Args::parse_from_cli(["zone-bench", "--full", "--out", "/tmp/zb", "--reps", "7"])
                .unwrap();
        let lab = args
            .full_lab()
            .expect("a full run measures the lab's goal cells");
        assert!(lab.netlab && lab.full);
        assert_eq!(lab.scenarios, ["grid"]);
        assert_eq!(lab.rtts_ms, [50]);
        assert_eq!(lab.losses_pct, [1.0, 5.0]);
        assert_eq!(lab.cells, [GridCell::C1, GridCell::Hol, GridCell::Stream]);
        // The lab keeps its own profile: the run's case length and repetitions are not its own.
        assert_eq!((lab.reps, lab.duration), (None, None));
        assert_eq!(lab.out, PathBuf::from("/tmp/zb/netlab"));

        for argv in [
            &["zone-bench"][..],
            &["zone-bench", "--full", "--scenario", "unary"],
            &["zone-bench", "netlab", "--full"],
            &["zone-bench", "soak", "--full"],
        ] {
            let args = Args::parse_from_cli(argv).unwrap();
            assert!(args.full_lab().is_none(), "{argv:?}");
        }
    }

    #[test]
    fn scenario_flag_takes_several_names_and_repeats() {
        let args = Args::parse_from_cli([
            "zone-bench",
            "--scenario",
            "unary-64b-c1",
            "push",
            "--scenario",
            "connect",
        ])
        .unwrap();
        assert_eq!(args.scenarios, ["unary-64b-c1", "push", "connect"]);
    }

    #[test]
    fn overrides_apply_to_the_preset() {
        let args =
            Args::parse_from_cli(["zone-bench", "--quick", "--reps", "7", "--duration", "0.3"])
                .unwrap();
        let s = Settings::from_args(&args);
        assert_eq!(s.profile, Profile::Quick);
        assert_eq!(s.reps, 7);
        assert_eq!(s.duration, Duration::from_millis(300));
        assert!(s.case_timeout > s.duration * 2);
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(Args::parse_from_cli(["zone-bench", "--reps", "0"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "--duration", "-1"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "--duration", "abc"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "--wire", "h4"]).is_err());
    }

    #[test]
    fn grid_selection_takes_lists_and_refuses_bad_values() {
        let args = Args::parse_from_cli([
            "zone-bench",
            "netlab",
            "--rtt",
            "50",
            "--loss",
            "1,5",
            "--cell",
            "c1,hol",
        ])
        .unwrap();
        assert_eq!(args.rtts_ms, [50]);
        assert_eq!(args.losses_pct, [1.0, 5.0]);
        assert_eq!(args.cells, [GridCell::C1, GridCell::Hol]);
        assert!(Args::parse_from_cli(["zone-bench", "netlab", "--loss", "80"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "netlab", "--loss", "x"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "netlab", "--rtt", "5000"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "netlab", "--cell", "c64"]).is_err());
    }

    #[test]
    fn metrics_count_takes_its_sizes_and_refuses_tiny_ones() {
        let args = Args::parse_from_cli(["zone-bench", "metrics-count", "--calls", "500"]).unwrap();
        assert!(args.metrics_count);
        assert_eq!((args.calls, args.stream_messages), (500, 256));
        assert!(Args::parse_from_cli(["zone-bench", "metrics-count", "--calls", "8"]).is_err());
        let child =
            Args::parse_from_cli(["zone-bench", "--count-child", "on", "--wire", "h3"]).unwrap();
        assert_eq!(child.count_child, Some(Recording::On));
    }

    #[test]
    fn wire_filter_takes_a_list() {
        let args = Args::parse_from_cli(["zone-bench", "--wire", "h3,tonic-h3"]).unwrap();
        let s = Settings::from_args(&args);
        assert_eq!(
            s.wires,
            [crate::target::Wire::H3, crate::target::Wire::Peer]
        );
    }

    #[test]
    fn the_scenario_run_is_quick_unless_full_and_runs_both_paths_in_report_order() {
        use crate::path::NetPath;
        let s = Settings::from_args(&Args::parse_from_cli(["zone-bench"]).unwrap());
        assert_eq!(s.profile, Profile::Quick);
        assert_eq!(s.paths, [NetPath::Mtu1500, NetPath::Loopback]);
        let args = Args::parse_from_cli(["zone-bench", "--full", "--path", "loopback,mtu1500"]);
        let s = Settings::from_args(&args.unwrap());
        assert_eq!(s.profile, Profile::Full);
        assert_eq!(s.paths, [NetPath::Mtu1500, NetPath::Loopback]);
        let args = Args::parse_from_cli(["zone-bench", "--path", "loopback"]).unwrap();
        assert_eq!(Settings::from_args(&args).paths, [NetPath::Loopback]);
        assert!(Args::parse_from_cli(["zone-bench", "--path", "mtu9000"]).is_err());
        assert!(Args::parse_from_cli(["zone-bench", "--full", "--quick"]).is_err());
        // Soak and faults keep their full default.
        let args = Args::parse_from_cli(["zone-bench", "soak"]).unwrap();
        assert_eq!(Settings::from_args(&args).profile, Profile::Full);
    }
}

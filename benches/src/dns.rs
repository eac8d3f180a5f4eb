//! `zone-bench dns`: query throughput of zone-edge's DNS server (`zone-edge run --dns`) against
//! Knot DNS serving the same zone file, both loaded by `dnsperf` on loopback in one run,
//! interleaved (edge, Knot, edge, Knot, …) so both see the same machine. Needs `knotd` and
//! `dnsperf` (scripts/install-dns-bench-tools.sh); without them it says so and exits 0.
//!
//! The edge runs in this process, built from a state file holding the zone as the zone server
//! parses it, with the DNS server `zone-edge run --dns` starts. Knot runs as a child with a
//! generated configuration on another loopback port. The queries: every RRset of the zone, by
//! name and type, in a loop. Writes dns.md and dns.json under `--out`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use zone_client::edge::dns::{DnsConfig, DnsServer};
use zone_client::edge::{Edge, EdgeConfig, state_file};
use zone_server::zones::ZoneStore;

use crate::cli::Args;

const ZONE: &str = "example.com.";
const ZONE_FILE: &str = include_str!("../../server/zones/example.com.zone");

/// dnsperf's settings, the same for both servers.
const CLIENTS: &str = "4";
const OUTSTANDING: &str = "200";

/// One dnsperf run's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Figures {
    server: &'static str,
    round: u32,
    qps: f64,
    avg_latency_ms: f64,
    latency_stddev_ms: f64,
    lost: u64,
    sent: u64,
    noerror_pct: f64,
}

pub fn main(args: &Args) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zone-bench dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let missing: Vec<&str> = ["knotd", "dnsperf"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        println!(
            "zone-bench dns: skipped, {} not installed (run scripts/install-dns-bench-tools.sh)",
            missing.join(" and ")
        );
        return Ok(());
    }
    let secs = args
        .duration
        .unwrap_or(if args.quick || args.tiny {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(10)
        })
        .as_secs()
        .max(1);
    let rounds = args.reps.unwrap_or(if args.tiny { 1 } else { 3 });
    let dir = args.out.join("dns");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute: knotd resolves relative paths against its own directories.
    let dir = std::fs::canonicalize(&dir)?;
    let zone_path = dir.join("example.com.zone");
    std::fs::write(&zone_path, ZONE_FILE)?;

    // The zone as the zone server parses it: the edge's copy, and the query list.
    let store = ZoneStore::new();
    store.insert_zone_text(ZONE, ZONE_FILE)?;
    let snapshot = store.snapshot(ZONE)?.to_proto();
    let queries = dir.join("queries.txt");
    let mut lines: Vec<String> = snapshot
        .records
        .iter()
        .map(|r| format!("{} {}", r.name, r.r#type))
        .collect();
    lines.dedup();
    std::fs::write(&queries, lines.join("\n") + "\n")?;
    let state = dir.join("edge.state");
    state_file::save(&state, &[snapshot])?;
    let edge = Edge::open(EdgeConfig::new([ZONE]).state_file(&state))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = runtime.block_on(DnsServer::bind(
        "127.0.0.1:0".parse()?,
        DnsConfig::default(),
    ))?;
    let edge_addr = server.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.serve(edge, async {
        let _ = stopped.await;
    }));

    let knot = Knot::start(&dir, &zone_path)?;
    wait_for_answer(knot.addr, Duration::from_secs(10)).context("knotd did not answer")?;
    wait_for_answer(edge_addr, Duration::from_secs(10)).context("zone-edge did not answer")?;

    println!(
        "zone-bench dns: {} queries (one per RRset) in a loop, {secs} s per run, {rounds} rounds, \
         dnsperf -c {CLIENTS} -q {OUTSTANDING}; zone-edge {edge_addr}, knotd {}",
        lines.len(),
        knot.addr
    );
    let mut figures = Vec::new();
    for round in 1..=rounds {
        for (server, addr) in [("zone-edge", edge_addr), ("knot", knot.addr)] {
            let f = dnsperf(server, round, addr, &queries, secs)?;
            if f.noerror_pct < 99.0 {
                bail!(
                    "{server} answered only {:.1} % NOERROR: not a fair comparison",
                    f.noerror_pct
                );
            }
            println!(
                "  round {round} {server:<9} {:>10.0} q/s  avg {:.3} ms  sd {:.3} ms  lost {}/{}  NOERROR {:.0} %",
                f.qps, f.avg_latency_ms, f.latency_stddev_ms, f.lost, f.sent, f.noerror_pct
            );
            figures.push(f);
        }
    }
    drop(knot);
    let _ = stop.send(());
    let _ = runtime.block_on(serving);

    let median = |server: &str, value: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = figures
            .iter()
            .filter(|f| f.server == server)
            .map(value)
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (edge_qps, knot_qps) = (median("zone-edge", |f| f.qps), median("knot", |f| f.qps));
    let ratio = edge_qps / knot_qps;
    let verdict = if ratio >= 0.5 { "met" } else { "missed" };
    let mut report = String::new();
    report.push_str(&format!(
        "# zone-bench dns\n\nQueries per second of zone-edge's DNS server and Knot DNS serving the \
         same zone file (server/zones/example.com.zone) on loopback, {} queries (one per RRset) \
         in a loop, dnsperf -c {CLIENTS} -q {OUTSTANDING} -l {secs}, {rounds} interleaved rounds.\n\n",
        lines.len()
    ));
    report
        .push_str("| server | q/s (median) | avg latency ms (median) | latency sd ms (median) |\n");
    report.push_str("|---|---:|---:|---:|\n");
    for server in ["zone-edge", "knot"] {
        report.push_str(&format!(
            "| {server} | {:.0} | {:.3} | {:.3} |\n",
            median(server, |f| f.qps),
            median(server, |f| f.avg_latency_ms),
            median(server, |f| f.latency_stddev_ms)
        ));
    }
    report.push_str(&format!(
        "\nzone-edge / Knot: {ratio:.2} (goal ≥ 0.5: {verdict}).\n\n| round | server | q/s | avg ms | sd ms | lost | NOERROR % |\n|---|---|---:|---:|---:|---:|---:|\n"
    ));
    for f in &figures {
        report.push_str(&format!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {}/{} | {:.1} |\n",
            f.round,
            f.server,
            f.qps,
            f.avg_latency_ms,
            f.latency_stddev_ms,
            f.lost,
            f.sent,
            f.noerror_pct
        ));
    }
    std::fs::write(dir.join("dns.md"), &report)?;
    std::fs::write(
        dir.join("dns.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!(
        "zone-edge {edge_qps:.0} q/s, knot {knot_qps:.0} q/s: ratio {ratio:.2} (goal ≥ 0.5: {verdict}); {}",
        dir.join("dns.md").display()
    );
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// A `knotd` child serving the zone file on a free loopback port; killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
}

impl Knot {
    fn start(dir: &Path, zone: &Path) -> anyhow::Result<Knot> {
        let addr = free_port()?;
        let run = dir.join("knot");
        std::fs::create_dir_all(&run)?;
        // Knot's defaults otherwise: one UDP and one TCP worker per core.
        let config = format!(
            "server:\n    listen: {ip}@{port}\n    rundir: \"{run}\"\n\
             database:\n    storage: \"{run}\"\n\
             log:\n  - target: stderr\n    any: warning\n\
             zone:\n  - domain: {ZONE}\n    file: \"{zone}\"\n    storage: \"{run}\"\n    \
             journal-content: none\n    zonefile-sync: -1\n",
            ip = addr.ip(),
            port = addr.port(),
            run = run.display(),
            zone = zone.display(),
        );
        let conf: PathBuf = run.join("knot.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting knotd")?;
        Ok(Knot { child, addr })
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free on both UDP and TCP at the time of asking.
fn free_port() -> anyhow::Result<SocketAddr> {
    for _ in 0..16 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let addr = tcp.local_addr()?;
        if UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no port free on both UDP and TCP")
}

/// Sends an SOA query for the zone over UDP until an authoritative NOERROR answer with a record
/// comes back (so a server that failed to load the zone is not measured).
fn wait_for_answer(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    // A hand-made query: ID 0x4242, RD clear, one question `example.com. SOA IN`.
    let mut query = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ZONE.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len())?);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 512];
    while Instant::now() < deadline {
        socket.send_to(&query, addr)?;
        if let Ok((len, _)) = socket.recv_from(&mut buffer)
            && len >= 12
            && buffer[..2] == [0x42, 0x42]
        {
            let (aa, rcode) = (buffer[2] & 0x04 != 0, buffer[3] & 0x0f);
            let answers = u16::from_be_bytes([buffer[6], buffer[7]]);
            if aa && rcode == 0 && answers > 0 {
                return Ok(());
            }
            bail!("{addr} answered without the zone (AA {aa}, RCODE {rcode}, {answers} answers)");
        }
    }
    bail!("no answer from {addr} within {within:?}")
}

fn dnsperf(
    server: &'static str,
    round: u32,
    addr: SocketAddr,
    queries: &Path,
    secs: u64,
) -> anyhow::Result<Figures> {
    let output = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-l", &secs.to_string(), "-c", CLIENTS, "-q", OUTSTANDING])
        .output()
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("dnsperf against {server} failed: {text}");
    }
    parse_dnsperf(server, round, &text)
        .with_context(|| format!("cannot read dnsperf's output:\n{text}"))
}

/// The figures of dnsperf's summary ("Queries sent:", "Queries lost:", "Response codes:",
/// "Queries per second:", "Average Latency (s):", "Latency StdDev (s):").
fn parse_dnsperf(server: &'static str, round: u32, text: &str) -> anyhow::Result<Figures> {
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
    };
    let first_number = |name: &str| -> anyhow::Result<f64> {
        let value = field(name).with_context(|| format!("no `{name}`"))?;
        let number = value.split_whitespace().next().unwrap_or_default();
        number
            .parse()
            .with_context(|| format!("`{name}` is `{value}`"))
    };
    let noerror_pct = field("Response codes:")
        .and_then(|codes| {
            let (_, rest) = codes.split_once("NOERROR ")?;
            let (count, _) = rest.split_once(' ')?;
            let (_, pct) = rest.split_once('(')?;
            let (pct, _) = pct.split_once('%')?;
            count.parse::<u64>().ok()?;
            pct.parse().ok()
        })
        .unwrap_or(0.0);
    Ok(Figures {
        server,
        round,
        qps: first_number("Queries per second:")?,
        avg_latency_ms: first_number("Average Latency (s):")? * 1000.0,
        latency_stddev_ms: first_number("Latency StdDev (s):")? * 1000.0,
        lost: first_number("Queries lost:")? as u64,
        sent: first_number("Queries sent:")? as u64,
        noerror_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsperf_summaries_are_read() -> anyhow::Result<()> {
        let text = "\
Statistics:

  Queries sent:         1018617
  Queries completed:    1018617 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 1018617 (100.00%)
  Average packet size:  request 33, response 120
  Run time (s):         10.000330
  Queries per second:   101858.338617

  Average Latency (s):  0.000934 (min 0.000017, max 0.010342)
  Latency StdDev (s):   0.000329
";
        let f = parse_dnsperf("knot", 1, text)?;
        assert_eq!((f.sent, f.lost), (1_018_617, 0));
        assert!((f.qps - 101_858.338_617).abs() < 1e-6);
        assert!((f.avg_latency_ms - 0.934).abs() < 1e-9);
        assert!((f.latency_stddev_ms - 0.329).abs() < 1e-9);
        assert!((f.noerror_pct - 100.0).abs() < 1e-9);
        assert!(parse_dnsperf("knot", 1, "nothing").is_err());
        Ok(())
    }
}

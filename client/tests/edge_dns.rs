//! `zone-edge run --dns` checked with DNS clients nobody here wrote: `dig` (bind9-dnsutils) and
//! `kdig` (knot-dnsutils), over UDP and TCP, against a zone server publishing a zone file. Every
//! answer is compared field by field (owner, TTL, class, type, rdata) with the zone file's
//! records as the zone server parsed them. Without the tools (scripts/install-dns-tools.sh) the
//! tests print why and pass without checking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_server::journal::RedbJournal;
use zone_server::zones::ZoneStore;

mod origin;
use origin::{Serving, certs, journaled_store};

const ZONE: &str = "example.com.";
/// The repository's example zone plus the cases it lacks: a wildcard, a delegation with glue, an
/// empty non-terminal, an RRset too large for 512 bytes.
const EXTRA: &str = "
*.wild          IN  TXT   \"wild\"
*.wild      90  IN  A     192.0.2.90
sub             IN  NS    ns.sub
sub             IN  NS    ns.example.net.
ns.sub          IN  A     192.0.2.99
a.b.deep        IN  A     192.0.2.7
";

fn zone_text() -> String {
    let mut text = include_str!("../../server/zones/example.com.zone").to_owned();
    text.push_str(EXTRA);
    for i in 0..20 {
        text.push_str(&format!("big 60 IN TXT \"{i:02}{}\"\n", "x".repeat(90)));
    }
    text
}

/// The tools present, or why the test is skipped.
fn tools() -> Option<Vec<&'static str>> {
    let present: Vec<&str> = ["dig", "kdig"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .collect();
    if present.len() < 2 {
        eprintln!(
            "skipping: dig and kdig are needed (have {present:?}); run scripts/install-dns-tools.sh"
        );
        return None;
    }
    Some(present)
}

/// The zone server publishing the zone file, journaled so edges can Sync.
struct Origin {
    store: ZoneStore,
    journal: Arc<RedbJournal>,
    serving: Serving,
}

impl Origin {
    async fn start(dir: &Path) -> Origin {
        let (store, journal) = journaled_store(dir, ZONE, &zone_text()).await;
        let serving = Serving::start(&store, "127.0.0.1:0".parse().unwrap()).await;
        Origin {
            store,
            journal,
            serving,
        }
    }

    fn records(&self) -> Vec<pb::Record> {
        self.store.snapshot(ZONE).unwrap().records().collect()
    }

    fn serial(&self) -> u32 {
        self.store.zone(ZONE).unwrap().serial
    }

    async fn push(&self, changes: Vec<pb::Change>) {
        self.store
            .push(pb::ChangeBatch {
                zone: ZONE.into(),
                changes,
                expected_serial: None,
            })
            .await
            .unwrap();
    }

    async fn stop(mut self) {
        self.serving.stop().await;
        self.journal.close().await.unwrap();
    }
}

/// A `zone-edge run --dns 127.0.0.1:0` child, killed on drop.
struct EdgeDns {
    child: Child,
    dns: SocketAddr,
}

impl Drop for EdgeDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_edge(dir: &Path, origin: &Origin) -> EdgeDns {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &certs().ca_pem).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zone-edge"))
        .args([
            "run",
            "--addr",
            &origin.serving.addr.to_string(),
            "--transport",
            "h2",
        ])
        .args(["--ca", ca.to_str().unwrap()])
        .args(["--state", dir.join("edge.state").to_str().unwrap()])
        .args(["--dns", "127.0.0.1:0", ZONE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no READY line");
    let dns = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dns="))
        .unwrap_or_else(|| panic!("no dns= in {ready:?}"))
        .parse()
        .unwrap();
    let edge = EdgeDns { child, dns };
    wait_for_serial(&edge, origin.serial()).await;
    edge
}

/// One record line of dig or kdig output: (owner, TTL, class, type, rdata), names lower case.
type Row = (String, u32, String, String, String);

/// What a client printed, by section.
#[derive(Debug, Default)]
struct Reply {
    status: String,
    flags: BTreeSet<String>,
    answer: Vec<Row>,
    authority: Vec<Row>,
    additional: Vec<Row>,
}

/// Runs `tool @ADDR -p PORT args…` and parses its output (dig and kdig print the same
/// section layout; their header lines differ in punctuation and case only).
fn ask(tool: &str, dns: SocketAddr, args: &[&str]) -> Reply {
    let output = Command::new(tool)
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string()])
        .args(["+norecurse", "+time=3", "+retry=1"])
        .args(args)
        // kdig's +comments names the sections; its +header prints status and flags.
        .args((tool == "kdig" && args.contains(&"+comments")).then_some("+header"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{tool} {args:?}: {text}");
    parse_reply(&text).unwrap_or_else(|| panic!("{tool} {args:?}: cannot parse\n{text}"))
}

fn parse_reply(text: &str) -> Option<Reply> {
    let mut reply = Reply::default();
    // A transfer prints its records without a section name.
    let mut section = "ANSWER";
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
            reply.status = rest.split([',', ';']).next()?.trim().to_owned();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(flags) = lower.strip_prefix(";; flags:") {
            let flags = flags.split(';').next()?;
            reply.flags = flags.split_whitespace().map(str::to_owned).collect();
        }
        if line.starts_with(';') {
            for name in [
                "ANSWER",
                "AUTHORITY",
                "ADDITIONAL",
                "QUESTION",
                "EDNS",
                "OPT",
            ] {
                if line.starts_with(&format!(";; {name}")) {
                    section = name;
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let owner = fields.next()?.to_ascii_lowercase();
        let ttl = fields.next()?.parse().ok()?;
        let class = fields.next()?.to_owned();
        let rtype = fields.next()?.to_owned();
        let rdata = fields.collect::<Vec<_>>().join(" ");
        let row = (owner, ttl, class, rtype, rdata);
        match section {
            "ANSWER" => reply.answer.push(row),
            "AUTHORITY" => reply.authority.push(row),
            "ADDITIONAL" => reply.additional.push(row),
            _ => {}
        }
    }
    Some(reply)
}

/// A zone file record as a client prints it. TLSA's hex is compared case-insensitively and
/// without the spaces clients may put in it.
fn row(record: &pb::Record) -> Row {
    normalize((
        record.name.to_ascii_lowercase(),
        record.ttl,
        "IN".into(),
        record.r#type.clone(),
        record.rdata.clone(),
    ))
}

fn normalize(mut row: Row) -> Row {
    if row.3 == "TLSA" {
        let fields: Vec<&str> = row.4.split_whitespace().collect();
        if fields.len() > 3 {
            row.4 = format!(
                "{} {}",
                fields[..3].join(" "),
                fields[3..].concat().to_ascii_lowercase()
            );
        }
    }
    row
}

fn sorted(rows: &[Row]) -> Vec<Row> {
    let mut rows: Vec<Row> = rows.iter().cloned().map(normalize).collect();
    rows.sort();
    rows
}

async fn wait_for_serial(edge: &EdgeDns, serial: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = ask(
            "dig",
            edge.dns,
            &[ZONE, "SOA", "+noall", "+answer", "+comments"],
        );
        let current = reply
            .answer
            .first()
            .and_then(|r| r.4.split_whitespace().nth(2)?.parse::<u32>().ok());
        if current == Some(serial) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "edge at {current:?}, want {serial}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The RRsets of the zone file outside the delegation, by (owner, type).
fn rrsets(records: &[pb::Record]) -> Vec<((String, String), Vec<Row>)> {
    let mut sets: std::collections::BTreeMap<(String, String), Vec<Row>> = Default::default();
    for record in records {
        let name = record.name.to_ascii_lowercase();
        if name == "sub.example.com." || name.ends_with(".sub.example.com.") {
            continue;
        }
        sets.entry((name, record.r#type.clone()))
            .or_default()
            .push(row(record));
    }
    sets.into_iter()
        .map(|(key, mut rows)| {
            rows.sort();
            (key, rows)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_and_kdig_get_every_rrset_of_the_zone_file_over_udp_and_tcp() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let edge = start_edge(dir.path(), &origin).await;
    let sets = rrsets(&origin.records());
    assert!(sets.len() > 20, "{sets:?}");
    for tool in &tools {
        for transport in ["+notcp", "+tcp"] {
            for ((name, rtype), expected) in &sets {
                let reply = ask(
                    tool,
                    edge.dns,
                    &[
                        name,
                        rtype,
                        transport,
                        "+bufsize=4096",
                        "+noall",
                        "+answer",
                        "+comments",
                    ],
                );
                let what = format!("{tool} {transport} {name} {rtype}");
                assert_eq!(reply.status, "NOERROR", "{what}");
                assert!(reply.flags.contains("aa"), "{what}: {:?}", reply.flags);
                assert!(!reply.flags.contains("tc"), "{what}: {:?}", reply.flags);
                assert_eq!(sorted(&reply.answer), *expected, "{what}");
            }
        }
    }
    drop(edge);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_and_kdig_see_the_authoritative_cases() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let edge = start_edge(dir.path(), &origin).await;
    let records = origin.records();
    let of = |name: &str, rtype: &str| -> Vec<Row> {
        let mut rows: Vec<Row> = records
            .iter()
            .filter(|r| r.name == name && r.r#type == rtype)
            .map(row)
            .collect();
        rows.sort();
        rows
    };
    let soa = of(ZONE, "SOA");
    // RFC 2308 §3: the negative answer's SOA TTL is min(TTL, MINIMUM) = min(3600, 300).
    let negative_soa: Vec<Row> = soa
        .iter()
        .cloned()
        .map(|(owner, _, class, rtype, rdata)| (owner, 300, class, rtype, rdata))
        .collect();
    let full = [
        "+noall",
        "+answer",
        "+authority",
        "+additional",
        "+comments",
    ];
    for tool in &tools {
        for transport in ["+notcp", "+tcp"] {
            let query = |name: &str, rtype: &str, extra: &[&str]| {
                let mut args = vec![name, rtype, transport];
                args.extend_from_slice(&full);
                args.extend_from_slice(extra);
                ask(tool, edge.dns, &args)
            };
            let what = format!("{tool} {transport}");
            // NXDOMAIN and NODATA with the SOA (RFC 2308).
            let nx = query("absent.example.com.", "A", &[]);
            assert_eq!(nx.status, "NXDOMAIN", "{what}");
            assert!(nx.flags.contains("aa"), "{what}");
            assert!(nx.answer.is_empty(), "{what}");
            assert_eq!(sorted(&nx.authority), negative_soa, "{what}");
            for (name, rtype) in [("mail.example.com.", "MX"), ("b.deep.example.com.", "A")] {
                let nodata = query(name, rtype, &[]);
                assert_eq!(nodata.status, "NOERROR", "{what} {name}");
                assert!(nodata.answer.is_empty(), "{what} {name}");
                assert_eq!(sorted(&nodata.authority), negative_soa, "{what} {name}");
            }
            // In-zone CNAME followed (RFC 1034 §4.3.2): www → the apex.
            let cname = query("www.example.com.", "A", &[]);
            let mut expected = of("www.example.com.", "CNAME");
            expected.extend(of(ZONE, "A"));
            expected.sort();
            assert_eq!(sorted(&cname.answer), expected, "{what}");
            assert!(cname.flags.contains("aa"), "{what}");
            // Wildcards (RFC 4592): the query name as owner, the wildcard's TTL and data.
            let wild = query("anything.wild.example.com.", "A", &[]);
            assert_eq!(
                sorted(&wild.answer),
                [(
                    "anything.wild.example.com.".to_owned(),
                    90,
                    "IN".to_owned(),
                    "A".to_owned(),
                    "192.0.2.90".to_owned()
                )],
                "{what}"
            );
            // A delegation: a referral, AA clear, NS and glue.
            let referral = query("host.sub.example.com.", "A", &[]);
            assert_eq!(referral.status, "NOERROR", "{what}");
            assert!(
                !referral.flags.contains("aa"),
                "{what}: {:?}",
                referral.flags
            );
            assert!(referral.answer.is_empty(), "{what}");
            assert_eq!(
                sorted(&referral.authority),
                of("sub.example.com.", "NS"),
                "{what}"
            );
            assert_eq!(
                sorted(&referral.additional),
                of("ns.sub.example.com.", "A"),
                "{what}"
            );
            // Outside the zones: REFUSED.
            let refused = query("www.example.org.", "A", &[]);
            assert_eq!(refused.status, "REFUSED", "{what}");
            // ANY: one RRset (RFC 8482).
            let any = query("api.example.com.", "ANY", &[]);
            assert_eq!(any.status, "NOERROR", "{what}");
            let types: BTreeSet<&str> = any.answer.iter().map(|r| r.3.as_str()).collect();
            assert_eq!(types.len(), 1, "{what}: {:?}", any.answer);
            let only = types.iter().next().copied().unwrap_or_default();
            assert_eq!(sorted(&any.answer), of("api.example.com.", only), "{what}");
        }
        // EDNS: the client's size is honoured; TC=1 when the answer does not fit, and the same
        // query over TCP is answered whole.
        let big = of("big.example.com.", "TXT");
        let small = ask(
            tool,
            edge.dns,
            &[
                "big.example.com.",
                "TXT",
                "+notcp",
                "+ignore",
                "+bufsize=1232",
                "+noall",
                "+answer",
                "+comments",
            ],
        );
        assert!(small.flags.contains("tc"), "{tool}: {:?}", small.flags);
        assert!(small.answer.is_empty(), "{tool}");
        let roomy = ask(
            tool,
            edge.dns,
            &[
                "big.example.com.",
                "TXT",
                "+notcp",
                "+bufsize=4096",
                "+noall",
                "+answer",
                "+comments",
            ],
        );
        assert!(!roomy.flags.contains("tc"), "{tool}");
        assert_eq!(sorted(&roomy.answer), big, "{tool}");
        let tcp = ask(
            tool,
            edge.dns,
            &[
                "big.example.com.",
                "TXT",
                "+tcp",
                "+noall",
                "+answer",
                "+comments",
            ],
        );
        assert!(!tcp.flags.contains("tc"), "{tool}");
        assert_eq!(sorted(&tcp.answer), big, "{tool}");
    }
    // dig without +ignore retries a truncated answer over TCP by itself and gets it whole.
    let retried = ask(
        "dig",
        edge.dns,
        &[
            "big.example.com.",
            "TXT",
            "+notcp",
            "+bufsize=512",
            "+noall",
            "+answer",
            "+comments",
        ],
    );
    assert_eq!(sorted(&retried.answer), of("big.example.com.", "TXT"));
    drop(edge);
    origin.stop().await;
}

fn soa_serial(row: &Row) -> Option<u32> {
    (row.3 == "SOA")
        .then(|| row.4.split_whitespace().nth(2)?.parse().ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_and_kdig_transfer_the_zone_with_axfr_and_ixfr() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let edge = start_edge(dir.path(), &origin).await;
    let first = origin.serial();

    // AXFR: the SOA first and last, every record of the zone file once in between.
    for tool in &tools {
        let axfr = ask(tool, edge.dns, &[ZONE, "AXFR", "+noall", "+answer"]);
        let rows = &axfr.answer;
        assert!(rows.len() > 2, "{tool}: {rows:?}");
        assert_eq!(soa_serial(&rows[0]), Some(first), "{tool}");
        assert_eq!(soa_serial(&rows[rows.len() - 1]), Some(first), "{tool}");
        let mut expected: Vec<Row> = origin.records().iter().map(row).collect();
        expected.sort();
        assert_eq!(sorted(&rows[..rows.len() - 1]), expected, "{tool}");
    }

    // Two batches, then IXFR from the first serial: the differences (RFC 1995 §4).
    let record = |name: &str, rdata: &str| pb::Record {
        name: name.into(),
        r#type: "A".into(),
        class: String::new(),
        ttl: 300,
        rdata: rdata.into(),
    };
    let change = |op: Op, record: pb::Record, previous: Option<pb::Record>| pb::Change {
        op: op.into(),
        record: Some(record),
        previous,
    };
    origin
        .push(vec![change(Op::Create, record("new", "192.0.2.150"), None)])
        .await;
    origin
        .push(vec![change(
            Op::Edit,
            record("vpn", "192.0.2.201"),
            Some(record("vpn", "192.0.2.200")),
        )])
        .await;
    let last = origin.serial();
    assert_eq!(last, first + 2);
    wait_for_serial(&edge, last).await;
    let ixfr_from = format!("IXFR={first}");
    for tool in &tools {
        let ixfr = ask(tool, edge.dns, &[ZONE, &ixfr_from, "+noall", "+answer"]);
        let summary: Vec<(Option<u32>, String)> = ixfr
            .answer
            .iter()
            .map(|r| (soa_serial(r), format!("{} {} {}", r.0, r.3, r.4)))
            .map(|(s, text)| (s, if s.is_some() { String::new() } else { text }))
            .collect();
        let soa = |s: u32| (Some(s), String::new());
        let rr = |text: &str| (None, text.to_owned());
        assert_eq!(
            summary,
            [
                soa(last),
                soa(first),
                soa(first + 1),
                rr("new.example.com. A 192.0.2.150"),
                soa(first + 1),
                rr("vpn.example.com. A 192.0.2.200"),
                soa(last),
                rr("vpn.example.com. A 192.0.2.201"),
                soa(last),
            ],
            "{tool}"
        );
        // From a serial older than the history: the whole zone (RFC 1995 §4).
        let old = format!("IXFR={}", first - 1);
        let full = ask(tool, edge.dns, &[ZONE, &old, "+noall", "+answer"]);
        let rows = &full.answer;
        assert_eq!(soa_serial(&rows[0]), Some(last), "{tool}");
        assert_eq!(soa_serial(&rows[rows.len() - 1]), Some(last), "{tool}");
        let mut expected: Vec<Row> = origin.records().iter().map(row).collect();
        expected.sort();
        assert_eq!(sorted(&rows[..rows.len() - 1]), expected, "{tool}");
    }
    drop(edge);
    origin.stop().await;
}

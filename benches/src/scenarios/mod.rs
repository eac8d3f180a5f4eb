//! The benchmark scenarios (issue #5): what each one measures, its metrics, and how one
//! case (one scenario, one wire, one repetition) runs against a [`Target`].
//!
//! Every case connects a fresh channel, makes one untimed call (the tonic-h3 channel connects
//! lazily; this also checks the answer), then runs a load loop bounded in time and count.

mod auth;
mod calls;
pub(crate) mod edge_dns;
pub(crate) mod fanout;
mod journal;
pub mod observe;
mod streams;

use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::Settings;
use crate::load::Budget;
use crate::target::{Target, Wire};

/// Zone that `transfer-small` streams (synthetic, `Settings::zone_records` records).
pub const TRANSFER_ZONE: &str = "bench.example.";
/// Zone that `push` edits; each call creates records and deletes them again, so it stays small.
pub const PUSH_ZONE: &str = "push.example.";
/// Records of [`PUSH_ZONE`] before any push.
pub const PUSH_ZONE_RECORDS: usize = 100;
/// Payload of the small unary calls and ping-pong messages.
pub const SMALL: usize = 64;
/// Payload of the large unary calls and of the server-stream messages.
pub const LARGE: usize = 64 * 1024;

/// Which direction of a metric is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// Informational (a count, a check).
    Neither,
}

/// One reported figure of a scenario.
#[derive(Debug, Serialize)]
pub struct MetricSpec {
    pub key: &'static str,
    /// Column text including the unit.
    pub label: &'static str,
    pub better: Better,
    /// Shown in the terminal table (all metrics go to report.md and results.json).
    pub headline: bool,
    /// Whether ratios between wires mean anything (not for differences that hover around 0).
    pub ratios: bool,
}

const fn m(key: &'static str, label: &'static str, better: Better, headline: bool) -> MetricSpec {
    MetricSpec {
        key,
        label,
        better,
        headline,
        ratios: !matches!(better, Better::Neither),
    }
}

/// A metric without ratios between wires.
const fn no_ratio(
    key: &'static str,
    label: &'static str,
    better: Better,
    headline: bool,
) -> MetricSpec {
    MetricSpec {
        ratios: false,
        ..m(key, label, better, headline)
    }
}

const LATENCY: &[MetricSpec] = &[
    m("rate", "calls/s", Better::Higher, true),
    m("p50_us", "p50 µs", Better::Lower, true),
    m("p99_us", "p99 µs", Better::Lower, true),
    m("p999_us", "p99.9 µs", Better::Lower, false),
    m("cpu_us_per_call", "CPU µs/call", Better::Lower, false),
];

const PING_PONG: &[MetricSpec] = &[
    m("rate", "round trips/s", Better::Higher, false),
    m("p50_us", "p50 µs", Better::Lower, true),
    m("p99_us", "p99 µs", Better::Lower, true),
    m("p999_us", "p99.9 µs", Better::Lower, false),
    m("cpu_us_per_call", "CPU µs/round trip", Better::Lower, false),
];

const TRANSFER: &[MetricSpec] = &[
    m("gbit_s", "Gbit/s", Better::Higher, true),
    m("msg_s", "messages/s", Better::Higher, false),
    m("records_s", "records/s", Better::Higher, true),
    m("cpu_s_per_gib", "CPU s/GiB", Better::Lower, true),
];

const STREAM: &[MetricSpec] = &[
    m("gbit_s", "Gbit/s", Better::Higher, true),
    m("msg_s", "messages/s", Better::Higher, false),
    m("cpu_s_per_gib", "CPU s/GiB", Better::Lower, true),
];

const PUSH: &[MetricSpec] = &[
    m("changes_s", "changes/s", Better::Higher, true),
    m("calls_s", "calls/s", Better::Higher, false),
    m("p50_ms", "call p50 ms", Better::Lower, true),
    m("gbit_s", "Gbit/s", Better::Higher, false),
];

const CONNECT: &[MetricSpec] = &[
    m("p50_ms", "full set-up p50 ms", Better::Lower, true),
    m("p99_ms", "full set-up p99 ms", Better::Lower, false),
    m("mean_ms", "full set-up mean ms", Better::Lower, false),
    m(
        "cpu_ms_per_connect",
        "CPU ms/full set-up",
        Better::Lower,
        false,
    ),
    m("connects_s", "full set-ups/s", Better::Higher, false),
    m(
        "resumed_p50_ms",
        "resumed set-up p50 ms",
        Better::Lower,
        true,
    ),
    m(
        "resumed_p99_ms",
        "resumed set-up p99 ms",
        Better::Lower,
        false,
    ),
    m(
        "resumed_cpu_ms_per_connect",
        "CPU ms/resumed set-up",
        Better::Lower,
        false,
    ),
];

const AUTH: &[MetricSpec] = &[
    m("rate_off", "calls/s auth off", Better::Higher, false),
    m("rate_on", "calls/s auth on", Better::Higher, true),
    no_ratio("overhead_pct", "auth cost %", Better::Lower, true),
    m("p50_off_us", "p50 µs auth off", Better::Lower, false),
    m("p50_on_us", "p50 µs auth on", Better::Lower, false),
    m("argon2_runs", "argon2 runs", Better::Neither, false),
];

const METRICS_COST: &[MetricSpec] = &[
    m(
        "unary_rate_off",
        "calls/s recorder off",
        Better::Higher,
        false,
    ),
    m("unary_rate_on", "calls/s recorder on", Better::Higher, true),
    no_ratio("unary_cost_pct", "unary rate cost %", Better::Lower, true),
    no_ratio(
        "unary_cpu_cost_pct",
        "unary CPU/call cost %",
        Better::Lower,
        true,
    ),
    m(
        "stream_gbit_off",
        "stream Gbit/s recorder off",
        Better::Higher,
        false,
    ),
    m(
        "stream_gbit_on",
        "stream Gbit/s recorder on",
        Better::Higher,
        true,
    ),
    no_ratio("stream_cost_pct", "stream rate cost %", Better::Lower, true),
    no_ratio(
        "stream_cpu_cost_pct",
        "stream CPU/Gbit cost %",
        Better::Lower,
        true,
    ),
];

const FANOUT: &[MetricSpec] = &[
    m("p50_ms_1", "1 sub p50 ms", Better::Lower, true),
    m("p99_ms_1", "1 sub p99 ms", Better::Lower, true),
    m("p50_ms_64", "64 subs p50 ms", Better::Lower, true),
    m("p99_ms_64", "64 subs p99 ms", Better::Lower, true),
    m("p50_ms_1000", "1000 subs p50 ms", Better::Lower, true),
    m("p99_ms_1000", "1000 subs p99 ms", Better::Lower, true),
    m("redb_p50_ms_1", "redb 1 sub p50 ms", Better::Lower, true),
    m("redb_p99_ms_1", "redb 1 sub p99 ms", Better::Lower, true),
    m("redb_p50_ms_64", "redb 64 subs p50 ms", Better::Lower, true),
    m("redb_p99_ms_64", "redb 64 subs p99 ms", Better::Lower, true),
];

const EDGE_DNS: &[MetricSpec] = &[
    m("p50_ms_1", "1 edge answered p50 ms", Better::Lower, true),
    m("p99_ms_1", "1 edge answered p99 ms", Better::Lower, true),
    m("p50_ms_64", "64 edges answered p50 ms", Better::Lower, true),
    m("p99_ms_64", "64 edges answered p99 ms", Better::Lower, true),
    m(
        "applied_p50_ms_1",
        "1 edge applied p50 ms",
        Better::Lower,
        false,
    ),
    m(
        "applied_p99_ms_1",
        "1 edge applied p99 ms",
        Better::Lower,
        false,
    ),
    m(
        "applied_p50_ms_64",
        "64 edges applied p50 ms",
        Better::Lower,
        false,
    ),
    m(
        "applied_p99_ms_64",
        "64 edges applied p99 ms",
        Better::Lower,
        true,
    ),
    no_ratio(
        "stale_answers",
        "answers without the change after apply",
        Better::Neither,
        false,
    ),
];

const JOURNAL: &[MetricSpec] = &[
    m("redb_rate", "redb publishes/s", Better::Higher, true),
    m("nats_rate", "JetStream publishes/s", Better::Higher, true),
    m("redb_p50_ms_1", "redb 1 sub p50 ms", Better::Lower, true),
    m("redb_p99_ms_1", "redb 1 sub p99 ms", Better::Lower, false),
    m("redb_p50_ms_64", "redb 64 subs p50 ms", Better::Lower, true),
    m(
        "redb_p99_ms_64",
        "redb 64 subs p99 ms",
        Better::Lower,
        false,
    ),
    m(
        "nats_p50_ms_1",
        "JetStream 1 sub p50 ms",
        Better::Lower,
        true,
    ),
    m(
        "nats_p99_ms_1",
        "JetStream 1 sub p99 ms",
        Better::Lower,
        false,
    ),
    m(
        "nats_p50_ms_64",
        "JetStream 64 subs p50 ms",
        Better::Lower,
        true,
    ),
    m(
        "nats_p99_ms_64",
        "JetStream 64 subs p99 ms",
        Better::Lower,
        false,
    ),
];

/// What a scenario does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `TestService/UnaryCall`, `size` bytes each way, from `concurrency` workers on one channel.
    Unary { concurrency: usize, size: usize },
    /// `Zones/TransferZone` of the synthetic zone (small records, default batches).
    Transfer,
    /// `TestService/StreamingOutputCall` of 64 KiB messages.
    ServerStream,
    /// `Zones/PushChanges`: a client stream of change batches.
    Push,
    /// `TestService/FullDuplexCall`: one 64 B message each way per round trip.
    PingPong,
    /// Fresh channel (full handshake) plus one `EmptyCall`.
    Connect,
    /// Unary 64 B at c=32 against servers without and with the per-RPC auth layer.
    Auth,
    /// `PushChanges` to a journaled store → `Sync` subscribers: propagation latency.
    EdgeFanout,
    /// `PushChanges` → in-process edges → the first DNS answer from each edge with the change.
    EdgeDns,
    /// The redb journal against the shared NATS JetStream one: publish rate, propagation.
    JournalCompare,
    /// Unary 64 B c=32 and the 64 KiB stream with the Prometheus recorder off vs on.
    MetricsCost,
}

/// A scenario of the catalogue.
#[derive(Debug)]
pub struct ScenarioDef {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub metrics: &'static [MetricSpec],
    /// Caveats printed with the results.
    pub notes: &'static [&'static str],
    /// Measured over grpc-h3 (h2, h3) only, not the tonic-h3 peer.
    pub ours_only: bool,
}

impl ScenarioDef {
    /// Whether the scenario calls the run's shared servers (the [`crate::target::Target`]); the
    /// journal scenarios start servers of their own on loopback, so they run on that path only.
    pub fn uses_target(&self) -> bool {
        !matches!(
            self.kind,
            Kind::EdgeFanout | Kind::EdgeDns | Kind::JournalCompare
        )
    }
}

/// Every scenario, in run order.
pub static CATALOGUE: &[ScenarioDef] = &[
    ScenarioDef {
        name: "unary-64b-c1",
        description: "UnaryCall, 64 B request and response, 1 call in flight",
        kind: Kind::Unary {
            concurrency: 1,
            size: SMALL,
        },
        metrics: LATENCY,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "unary-64b-c32",
        description: "UnaryCall, 64 B request and response, 32 calls in flight on one connection",
        kind: Kind::Unary {
            concurrency: 32,
            size: SMALL,
        },
        metrics: LATENCY,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "unary-64b-c256",
        description: "UnaryCall, 64 B request and response, 256 calls in flight on one connection",
        kind: Kind::Unary {
            concurrency: 256,
            size: SMALL,
        },
        metrics: LATENCY,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "unary-64k-c32",
        description: "UnaryCall, 64 KiB request and response, 32 calls in flight",
        kind: Kind::Unary {
            concurrency: 32,
            size: LARGE,
        },
        metrics: LATENCY,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "transfer-small",
        description: "TransferZone of the synthetic zone (small records, 500 per message)",
        kind: Kind::Transfer,
        metrics: TRANSFER,
        notes: &["CPU is the whole process (client and server together), from getrusage."],
        ours_only: false,
    },
    ScenarioDef {
        name: "stream-64k",
        description: "StreamingOutputCall: server stream of 64 KiB messages",
        kind: Kind::ServerStream,
        metrics: STREAM,
        notes: &["CPU is the whole process (client and server together), from getrusage."],
        ours_only: false,
    },
    ScenarioDef {
        name: "push",
        description: "PushChanges: client stream of change batches (create, then delete)",
        kind: Kind::Push,
        metrics: PUSH,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "pingpong",
        description: "FullDuplexCall: 64 B ping, 64 B pong, one at a time on one stream",
        kind: Kind::PingPong,
        metrics: PING_PONG,
        notes: &[],
        ours_only: false,
    },
    ScenarioDef {
        name: "connect",
        description: "Connection set-up: new channel (new socket, TLS 1.3 handshake) and its \
                      first EmptyCall; full handshakes, then resumed ones",
        kind: Kind::Connect,
        metrics: CONNECT,
        notes: &[
            "Full: every channel from a fresh grpc_h3::Endpoint / tonic-h3 client config, so no \
             session ticket exists. Resumed: channels from one Endpoint (grpc-h3 shares its TLS \
             session cache across them) or one client config (tonic-h3), after a first \
             connection fetched a ticket; PSK resumption without 0-RTT. Neither client API says \
             whether a given handshake resumed; the time difference shows it.",
        ],
        ours_only: false,
    },
    ScenarioDef {
        name: "metrics-cost",
        description: "UnaryCall 64 B c=32 and the 64 KiB server stream with the Prometheus \
                      metrics recorder off vs on (grpc-h3's A66 and QUIC metrics)",
        kind: Kind::MetricsCost,
        metrics: METRICS_COST,
        notes: &[
            "Each case runs four half-length slices per load, off/on/on/off (mirrored every \
             other round). Off = no-op handles, as with no recorder installed.",
            "Timed figures: on a shared VM their spread exceeds the 3 % goal. `zone-bench \
             metrics-count` counts instructions per call under callgrind instead, which decides \
             it (docs/observability.md).",
        ],
        ours_only: true,
    },
    ScenarioDef {
        name: "auth",
        description: "UnaryCall 64 B, c=32, servers without vs with the per-RPC auth layer \
                      (Basic credentials, verification cached)",
        kind: Kind::Auth,
        metrics: AUTH,
        notes: &[
            "Each case runs four half-length slices, off/on/on/off (mirrored every other \
             round), so drifting background load weighs on both sides alike.",
            "argon2 runs once per server (first call, in the warm-up round), then the layer's \
             verification cache answers (TTL raised to the whole run): the figure is the \
             per-call auth work, not argon2. `argon2 runs` in report.md counts runs per case.",
            "tonic-h3 has no grpc_h3::ConnectionInfo; an adapter inserts it (QUIC is always TLS) \
             in front of the same AuthLayer.",
        ],
        ours_only: false,
    },
    ScenarioDef {
        name: "edge-fanout",
        description: "Edge push fan-out: a PushChanges call (MemoryJournal; redb rows: RedbJournal) → every \
                      Sync subscriber received the batch; 1, 64 and 1000 subscribers",
        kind: Kind::EdgeFanout,
        metrics: FANOUT,
        notes: &[
            "Each case starts its own grpc-h3 server (h2 and h3 on one port) over a store with \
             a MemoryJournal attached, so every push is journaled before it is published (no \
             disk: the figure is propagation, not fsync).",
            "Subscribers are raw Sync streams, 64 per connection (1000 subscribers = 16 \
             connections), subscribed at the zone's current serial; they do not ack.",
            "One publisher, a gRPC client on its own connection over the same wire: the clock \
             starts before its PushChanges call (one batch) and stops when a subscriber's \
             stream yields that serial; the next push waits until every subscriber has it \
             (latency without queueing). Quick/tiny runs push to 1000 subscribers only a few \
             times.",
            "redb rows: the same with a RedbJournal on a temporary file (zone_server::journal::\
             attach_redb), so publish→edge includes the fsync'd commit; 1 and 64 subscribers.",
        ],
        ours_only: true,
    },
    ScenarioDef {
        name: "edge-dns",
        description: "Edge propagation to DNS: a PushChanges call editing an A record → the \
                      first DNS answer from each edge (zone-edge's DNS server, in process) that \
                      carries the new address; 1 and 64 edges",
        kind: Kind::EdgeDns,
        metrics: EDGE_DNS,
        notes: &[
            "The edge-fanout server (MemoryJournal) and publisher; each edge is a zone_client \
             Edge with its own connection and Sync stream over the measured wire, no state file \
             (answers come from the copy as soon as a batch is applied; the persist delay only \
             delays acks), and its own DnsServer on 127.0.0.1:0 with one UDP thread.",
            "Per edge, a UDP DNS client (hickory-proto wire format) waits for the edge's \
             applied-serial notification (Edge::wait_for_serial: the applied columns), then \
             queries the probe name until the answer carries the new address (answered). The \
             clock starts before the PushChanges call; the next round waits until every edge \
             answered. A real resolver polling on a timer would add up to its poll interval.",
        ],
        ours_only: true,
    },
    ScenarioDef {
        name: "journal-redb-vs-nats",
        description: "Journal: redb (one server, fsync'd) vs NATS JetStream shared by two \
                      servers (push to A, subscribers on B): publish rate, propagation to 1 and \
                      64 Sync subscribers",
        kind: Kind::JournalCompare,
        metrics: JOURNAL,
        notes: &[
            "Publish rate: one publisher pushing sequentially (a zone has one writer at a \
             time), no subscribers; each push is durable before the next starts.",
            "JetStream: a nats-server -js child (single node, file store) on loopback; the \
             publisher's store and the subscribers' server's store share it, so propagation \
             includes B's tail reading the batch back. Skipped (redb only) when nats-server is \
             not installed (scripts/install-nats.sh).",
        ],
        ours_only: true,
    },
];

/// The scenarios named in `names` (exact names or prefixes), in catalogue order; all for none.
pub fn select(names: &[String]) -> Result<Vec<&'static ScenarioDef>, String> {
    if names.is_empty() {
        return Ok(CATALOGUE.iter().collect());
    }
    let mut chosen = vec![false; CATALOGUE.len()];
    for name in names {
        let exact = CATALOGUE.iter().position(|s| s.name == name);
        let hits: Vec<usize> = match exact {
            Some(i) => vec![i],
            None => (0..CATALOGUE.len())
                .filter(|&i| CATALOGUE[i].name.starts_with(name.as_str()))
                .collect(),
        };
        if hits.is_empty() {
            let known: Vec<&str> = CATALOGUE.iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown scenario `{name}`; known: {}",
                known.join(", ")
            ));
        }
        for i in hits {
            chosen[i] = true;
        }
    }
    Ok(CATALOGUE
        .iter()
        .zip(chosen)
        .filter_map(|(s, c)| c.then_some(s))
        .collect())
}

/// One case: a scenario over one wire in one round.
#[derive(Debug, Clone)]
pub struct Case {
    pub target: Arc<Target>,
    pub wire: Wire,
    pub settings: Arc<Settings>,
    pub budget: Budget,
    pub round: usize,
}

/// What one case measured.
#[derive(Debug)]
pub struct Sample {
    pub metrics: Vec<(&'static str, f64)>,
    /// Per-operation latency (ns) for scenarios with a latency distribution.
    pub latency: Option<Histogram<u64>>,
}

/// Runs one case of `def`.
pub async fn run(def: &'static ScenarioDef, case: Case) -> anyhow::Result<Sample> {
    match def.kind {
        Kind::Unary { concurrency, size } => calls::unary(&case, concurrency, size).await,
        Kind::PingPong => calls::ping_pong(&case).await,
        Kind::Connect => calls::connect(&case).await,
        Kind::Transfer => streams::transfer(&case).await,
        Kind::ServerStream => streams::server_stream(&case).await,
        Kind::Push => streams::push(&case).await,
        Kind::Auth => auth::auth(&case).await,
        Kind::MetricsCost => observe::metrics_cost(&case).await,
        Kind::EdgeFanout => fanout::edge_fanout(&case).await,
        Kind::EdgeDns => edge_dns::edge_dns(&case).await,
        Kind::JournalCompare => journal::redb_vs_nats(&case).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_metrics_known() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for s in CATALOGUE {
            assert!(s.metrics.iter().any(|m| m.headline), "{}", s.name);
        }
    }

    #[test]
    fn selection_by_name_and_prefix_keeps_catalogue_order() {
        let got = select(&["push".into(), "unary".into()]).unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "unary-64b-c1",
                "unary-64b-c32",
                "unary-64b-c256",
                "unary-64k-c32",
                "push"
            ]
        );
        assert_eq!(select(&[]).unwrap().len(), CATALOGUE.len());
        let err = select(&["nope".into()]).unwrap_err();
        assert!(err.contains("unknown scenario `nope`"), "{err}");
    }
}

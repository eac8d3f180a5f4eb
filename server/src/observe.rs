//! The zone server's own metrics (beside grpc-h3's per-call ones), recorded through the `metrics`
//! facade; `--metrics ADDR` exports them. Attributes name zones (the operator's, a bounded set)
//! and outcomes, never users or peers.

/// Journal appends by result ("ok", "conflict", "error") (counter).
pub const JOURNAL_APPENDS: &str = "zone_server.journal.appends";
/// Seconds one journal append took, through its commit (histogram).
pub const JOURNAL_APPEND_LATENCY: &str = "zone_server.journal.append_latency";
/// The latest serial of each zone (gauge; attribute `zone`).
pub const ZONE_SERIAL: &str = "zone_server.zone.serial";
/// Sync subscriptions open now (gauge).
pub const SYNC_SUBSCRIBERS: &str = "zone_server.sync.subscribers";
/// Serials a subscriber had been sent but not yet acknowledged, at each of its acks
/// (histogram): how far edges trail what they were sent.
pub const SYNC_ACK_LAG: &str = "zone_server.sync.ack_lag_serials";
/// Per-RPC authentication outcomes (counter; attribute `result`: "OK", "PUBLIC",
/// "UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL").
pub const AUTH_OUTCOMES: &str = "zone_server.auth.outcomes";

/// Describes the metrics above (units, help) for exporters.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(JOURNAL_APPENDS, Unit::Count, "Journal appends by result");
    metrics::describe_histogram!(
        JOURNAL_APPEND_LATENCY,
        Unit::Seconds,
        "Journal append latency"
    );
    metrics::describe_gauge!(ZONE_SERIAL, Unit::Count, "Latest serial per zone");
    metrics::describe_gauge!(SYNC_SUBSCRIBERS, Unit::Count, "Open Sync subscriptions");
    metrics::describe_histogram!(SYNC_ACK_LAG, Unit::Count, "Serials sent but unacknowledged");
    metrics::describe_counter!(
        AUTH_OUTCOMES,
        Unit::Count,
        "Per-RPC authentication outcomes"
    );
}

/// An open Sync subscription, counted in [`SYNC_SUBSCRIBERS`] until dropped.
pub(crate) struct Subscriber(metrics::Gauge);

impl Subscriber {
    pub(crate) fn new() -> Self {
        let gauge = metrics::gauge!(SYNC_SUBSCRIBERS);
        gauge.increment(1.0);
        Subscriber(gauge)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

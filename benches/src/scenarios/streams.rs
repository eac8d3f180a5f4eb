//! Throughput scenarios: zone transfer (server stream of small records), server stream of 64 KiB
//! messages, and change pushes (client stream).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{ResponseParameters, StreamingOutputCallRequest};
use zone_proto::zone::v1::change::Op as ChangeOp;
use zone_proto::zone::v1::zones_client::ZonesClient;
use zone_proto::zone::v1::{Change, ChangeBatch, Record, TransferRequest};

use super::{Case, LARGE, PUSH_ZONE, Sample, TRANSFER_ZONE};
use crate::load::{LoadReport, Op, Work, closed_loop, per_sec};
use crate::target::{AnyChannel, ServerSet};

/// Client decode limit: above the largest message any scenario asks for.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// gRPC length prefix of every message (PROTOCOL-HTTP2.md, "Length-Prefixed-Message").
const FRAME_PREFIX: u64 = 5;
const GIB: f64 = (1u64 << 30) as f64;

fn zones_client(channel: AnyChannel) -> ZonesClient<AnyChannel> {
    ZonesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn wire_len(message: &impl prost::Message) -> u64 {
    message.encoded_len() as u64 + FRAME_PREFIX
}

/// Gbit/s, messages/s and CPU seconds per GiB of a streaming load loop.
fn throughput_metrics(report: &LoadReport) -> Vec<(&'static str, f64)> {
    let bytes = report.work.bytes as f64;
    let cpu_per_gib = if bytes > 0.0 {
        report.cpu.as_secs_f64() / (bytes / GIB)
    } else {
        f64::NAN
    };
    vec![
        ("gbit_s", per_sec(bytes * 8.0, report.elapsed) / 1e9),
        (
            "msg_s",
            per_sec(report.work.messages as f64, report.elapsed),
        ),
        ("cpu_s_per_gib", cpu_per_gib),
    ]
}

/// One full transfer of the synthetic zone.
struct TransferOp {
    client: ZonesClient<AnyChannel>,
    expected_records: usize,
}

impl Op for TransferOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        let request = TransferRequest {
            zone: TRANSFER_ZONE.to_string(),
            since_serial: None,
            batch_size: 0,
        };
        let mut batches = self.client.transfer_zone(request).await?.into_inner();
        let mut work = Work::default();
        let mut last = false;
        while let Some(batch) = batches.message().await? {
            work.bytes += wire_len(&batch);
            work.messages += 1;
            work.items += batch.records.len() as u64;
            last = batch.last;
        }
        anyhow::ensure!(last, "transfer ended without its last batch");
        anyhow::ensure!(
            work.items == self.expected_records as u64,
            "transfer of {} records, expected {}",
            work.items,
            self.expected_records
        );
        Ok(work)
    }
}

pub(super) async fn transfer(case: &Case) -> anyhow::Result<Sample> {
    let channel = case.target.connect(case.wire, ServerSet::Plain).await?;
    let mut op = TransferOp {
        client: zones_client(channel),
        expected_records: case.settings.zone_records,
    };
    op.call().await.context("first transfer")?;
    let report = closed_loop(vec![op], case.budget).await?;
    let mut metrics = throughput_metrics(&report);
    metrics.push((
        "records_s",
        per_sec(report.work.items as f64, report.elapsed),
    ));
    Ok(Sample {
        metrics,
        latency: None,
    })
}

/// One `StreamingOutputCall` of `messages` 64 KiB messages.
pub(super) struct ServerStreamOp {
    client: TestServiceClient<AnyChannel>,
    request: StreamingOutputCallRequest,
    messages: usize,
}

impl Op for ServerStreamOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        let mut stream = self
            .client
            .streaming_output_call(self.request.clone())
            .await?
            .into_inner();
        let mut work = Work::default();
        while let Some(message) = stream.message().await? {
            let got = message.payload.as_ref().map_or(0, |p| p.body.len());
            anyhow::ensure!(got == LARGE, "message of {got} B, expected {LARGE}");
            work.bytes += wire_len(&message);
            work.messages += 1;
        }
        anyhow::ensure!(
            work.messages == self.messages as u64,
            "stream of {} messages, expected {}",
            work.messages,
            self.messages
        );
        Ok(work)
    }
}

pub(super) async fn server_stream(case: &Case) -> anyhow::Result<Sample> {
    let mut op = server_stream_op(case).await?;
    op.call().await.context("first stream")?;
    let report = closed_loop(vec![op], case.budget).await?;
    Ok(Sample {
        metrics: throughput_metrics(&report),
        latency: None,
    })
}

/// A fresh channel's `stream-64k` operation (one StreamingOutputCall of the run's message count).
pub(super) async fn server_stream_op(case: &Case) -> anyhow::Result<ServerStreamOp> {
    let channel = case.target.connect(case.wire, ServerSet::Plain).await?;
    Ok(stream_op(channel, case.settings.stream_messages))
}

/// A `StreamingOutputCall` of `messages` 64 KiB messages on `channel`.
pub(super) fn stream_op(channel: AnyChannel, messages: usize) -> ServerStreamOp {
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: LARGE as i32,
                ..ResponseParameters::default()
            };
            messages
        ],
        ..StreamingOutputCallRequest::default()
    };
    ServerStreamOp {
        client: TestServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        request,
        messages,
    }
}

/// Distinguishes the record names of successive push calls (names must not collide with records
/// left behind by an aborted call).
static PUSH_CALLS: AtomicU64 = AtomicU64::new(0);

/// One `PushChanges` call: pairs of batches, the first creating `changes` A records, the second
/// deleting them again, so the zone ends as it started.
struct PushOp {
    client: ZonesClient<AnyChannel>,
    pairs: usize,
    changes: usize,
}

impl PushOp {
    fn batches(&self) -> Vec<ChangeBatch> {
        let call = PUSH_CALLS.fetch_add(1, Ordering::Relaxed);
        let mut batches = Vec::with_capacity(self.pairs * 2);
        for pair in 0..self.pairs {
            let records: Vec<Record> = (0..self.changes)
                .map(|i| Record {
                    name: format!("p{call}-{pair}-{i}.{PUSH_ZONE}"),
                    r#type: "A".to_string(),
                    class: String::new(),
                    ttl: 300,
                    rdata: format!("192.0.2.{}", 1 + i % 254),
                })
                .collect();
            for op in [ChangeOp::Create, ChangeOp::Delete] {
                batches.push(ChangeBatch {
                    zone: PUSH_ZONE.to_string(),
                    changes: records
                        .iter()
                        .map(|r| Change {
                            op: op as i32,
                            record: Some(r.clone()),
                            previous: None,
                        })
                        .collect(),
                    expected_serial: None,
                });
            }
        }
        batches
    }
}

impl Op for PushOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        let batches = self.batches();
        let work = Work {
            bytes: batches.iter().map(wire_len).sum(),
            messages: batches.len() as u64,
            items: batches.iter().map(|b| b.changes.len() as u64).sum(),
        };
        let result = self
            .client
            .push_changes(tokio_stream::iter(batches))
            .await?
            .into_inner();
        anyhow::ensure!(
            u64::from(result.batches_applied) == work.messages
                && u64::from(result.changes_applied) == work.items,
            "server applied {} batches / {} changes, sent {} / {}",
            result.batches_applied,
            result.changes_applied,
            work.messages,
            work.items
        );
        Ok(work)
    }
}

pub(super) async fn push(case: &Case) -> anyhow::Result<Sample> {
    let channel = case.target.connect(case.wire, ServerSet::Plain).await?;
    let mut op = PushOp {
        client: zones_client(channel),
        pairs: case.settings.push_batches.div_ceil(2).max(1),
        changes: case.settings.push_changes.max(1),
    };
    op.call().await.context("first push")?;
    let report = closed_loop(vec![op], case.budget).await?;
    let ms = |p: f64| report.latency.value_at_quantile(p) as f64 / 1e6;
    let mut metrics = vec![
        (
            "changes_s",
            per_sec(report.work.items as f64, report.elapsed),
        ),
        ("calls_s", report.ops_per_sec()),
        ("p50_ms", ms(0.5)),
        (
            "gbit_s",
            per_sec(report.work.bytes as f64 * 8.0, report.elapsed) / 1e9,
        ),
    ];
    metrics.extend(report.extent());
    Ok(Sample {
        metrics,
        latency: None,
    })
}

//! Latency scenarios: unary calls at a given concurrency, bidi ping-pong, connection set-up.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::metadata::AsciiMetadataValue;
use zone_proto::grpc_testing::test_service_client::TestServiceClient;
use zone_proto::grpc_testing::{
    Empty, Payload, ResponseParameters, SimpleRequest, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

use super::{Case, SMALL, Sample};
use crate::load::{Budget, LoadReport, Op, Work, closed_loop, per_sec};
use crate::target::{AnyChannel, Connector, ServerSet, Target, Wire};

/// Client decode limit: above the largest message any scenario asks for.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn test_client(channel: AnyChannel) -> TestServiceClient<AnyChannel> {
    TestServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn payload(size: usize) -> Payload {
    Payload {
        r#type: 0,
        body: vec![0x5a; size],
    }
}

/// One `UnaryCall` of `size` bytes each way, optionally with credentials.
pub(super) struct UnaryOp {
    client: TestServiceClient<AnyChannel>,
    request: SimpleRequest,
    size: usize,
    authorization: Option<AsciiMetadataValue>,
}

impl UnaryOp {
    pub(super) fn new(
        channel: AnyChannel,
        size: usize,
        authorization: Option<AsciiMetadataValue>,
    ) -> Self {
        UnaryOp {
            client: test_client(channel),
            request: SimpleRequest {
                response_size: i32::try_from(size).unwrap_or(i32::MAX),
                payload: Some(payload(size)),
                ..SimpleRequest::default()
            },
            size,
            authorization,
        }
    }
}

impl Op for UnaryOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        let mut request = tonic::Request::new(self.request.clone());
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let response = self.client.unary_call(request).await?.into_inner();
        let got = response.payload.map_or(0, |p| p.body.len());
        anyhow::ensure!(
            got == self.size,
            "response payload of {got} B, expected {}",
            self.size
        );
        Ok(Work {
            messages: 2,
            ..Work::default()
        })
    }
}

/// Connects to `service` over the case's wire and runs unary calls from `concurrency` workers
/// within `budget`.
pub(super) async fn unary_load(
    case: &Case,
    concurrency: usize,
    size: usize,
    service: ServerSet,
    budget: Budget,
) -> anyhow::Result<LoadReport> {
    let channel = case.target.connect(case.wire, service).await?;
    let authorization = match service {
        ServerSet::Plain => None,
        ServerSet::Auth => Some(
            case.target
                .authorization()
                .context("no credentials for the auth servers")?
                .parse::<AsciiMetadataValue>()?,
        ),
    };
    UnaryOp::new(channel.clone(), size, authorization.clone())
        .call()
        .await
        .context("first call")?;
    let ops = (0..concurrency)
        .map(|_| UnaryOp::new(channel.clone(), size, authorization.clone()))
        .collect();
    closed_loop(ops, budget).await
}

/// Rate, latency quantiles and CPU per call of a unary load loop.
pub(super) fn latency_metrics(report: &LoadReport) -> Vec<(&'static str, f64)> {
    let q = |p: f64| report.latency.value_at_quantile(p) as f64 / 1_000.0;
    let cpu_per_call = if report.ops > 0 {
        report.cpu.as_secs_f64() * 1e6 / report.ops as f64
    } else {
        f64::NAN
    };
    let mut metrics = vec![
        ("rate", report.ops_per_sec()),
        ("p50_us", q(0.5)),
        ("p99_us", q(0.99)),
        ("p999_us", q(0.999)),
        ("cpu_us_per_call", cpu_per_call),
    ];
    metrics.extend(report.extent());
    metrics
}

pub(super) async fn unary(case: &Case, concurrency: usize, size: usize) -> anyhow::Result<Sample> {
    let report = unary_load(case, concurrency, size, ServerSet::Plain, case.budget).await?;
    Ok(Sample {
        metrics: latency_metrics(&report),
        latency: Some(report.latency),
    })
}

/// One ping-pong round trip on an open `FullDuplexCall`.
struct PingPongOp {
    /// Held for the whole case: tonic-h3 closes its connection when the last clone of its
    /// channel goes away, even with a call still open (grpc-h3 and hyper keep it for the call).
    _client: TestServiceClient<AnyChannel>,
    pings: mpsc::Sender<StreamingOutputCallRequest>,
    pongs: Streaming<StreamingOutputCallResponse>,
    ping: StreamingOutputCallRequest,
}

impl Op for PingPongOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        self.pings
            .send(self.ping.clone())
            .await
            .map_err(|_| anyhow::anyhow!("request stream closed"))?;
        let pong = self
            .pongs
            .message()
            .await?
            .context("response stream ended early")?;
        let got = pong.payload.map_or(0, |p| p.body.len());
        anyhow::ensure!(got == SMALL, "pong of {got} B, expected {SMALL}");
        Ok(Work {
            messages: 2,
            ..Work::default()
        })
    }

    /// Half-closes the call and reads it to its status. (Dropping it with a read pending makes
    /// tonic-h3 0.0.6 panic: h3-quinn's `stop_sending` unwraps a stream its read future holds.)
    async fn finish(self) -> anyhow::Result<()> {
        let PingPongOp {
            pings, mut pongs, ..
        } = self;
        drop(pings);
        anyhow::ensure!(pongs.message().await?.is_none(), "pong without a ping");
        Ok(())
    }
}

pub(super) async fn ping_pong(case: &Case) -> anyhow::Result<Sample> {
    let channel = case.target.connect(case.wire, ServerSet::Plain).await?;
    let (pings, rx) = mpsc::channel(1);
    let mut client = test_client(channel);
    let pongs = client
        .full_duplex_call(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let ping = StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: SMALL as i32,
            ..ResponseParameters::default()
        }],
        payload: Some(payload(SMALL)),
        ..StreamingOutputCallRequest::default()
    };
    let mut op = PingPongOp {
        _client: client,
        pings,
        pongs,
        ping,
    };
    op.call().await.context("first round trip")?;
    let report = closed_loop(vec![op], case.budget).await?;
    Ok(Sample {
        metrics: latency_metrics(&report),
        latency: Some(report.latency),
    })
}

/// A new channel (new socket, new connection) and its first call: from a fresh connector (full
/// handshake), or from a shared one whose earlier connections left session tickets (resumed).
struct ConnectOp {
    target: Arc<Target>,
    wire: Wire,
    shared: Option<Connector>,
}

impl Op for ConnectOp {
    async fn call(&mut self) -> anyhow::Result<Work> {
        let channel = match &self.shared {
            Some(connector) => connector.connect().await?,
            None => self.target.connect(self.wire, ServerSet::Plain).await?,
        };
        test_client(channel).empty_call(Empty {}).await?;
        Ok(Work::default())
    }
}

pub(super) async fn connect(case: &Case) -> anyhow::Result<Sample> {
    // Half the time bound for full handshakes, half for resumed ones.
    let budget = Budget {
        duration: case.budget.duration / 2,
        max_ops: case.settings.max_connects,
    };
    let full = ConnectOp {
        target: case.target.clone(),
        wire: case.wire,
        shared: None,
    };
    let full = closed_loop(vec![full], budget).await?;
    let mut resumed = ConnectOp {
        target: case.target.clone(),
        wire: case.wire,
        shared: Some(case.target.connector(case.wire, ServerSet::Plain)?),
    };
    resumed
        .call()
        .await
        .context("first connection (for a session ticket)")?;
    let resumed = closed_loop(vec![resumed], budget).await?;

    let ms = |r: &LoadReport, p: f64| r.latency.value_at_quantile(p) as f64 / 1e6;
    let cpu_ms = |r: &LoadReport| {
        if r.ops > 0 {
            r.cpu.as_secs_f64() * 1e3 / r.ops as f64
        } else {
            f64::NAN
        }
    };
    let mut metrics = vec![
        ("p50_ms", ms(&full, 0.5)),
        ("p99_ms", ms(&full, 0.99)),
        ("mean_ms", full.latency.mean() / 1e6),
        ("cpu_ms_per_connect", cpu_ms(&full)),
        ("connects_s", per_sec(full.ops as f64, full.elapsed)),
        ("resumed_p50_ms", ms(&resumed, 0.5)),
        ("resumed_p99_ms", ms(&resumed, 0.99)),
        ("resumed_cpu_ms_per_connect", cpu_ms(&resumed)),
        ("resumed_ops", resumed.ops as f64),
    ];
    metrics.extend(full.extent());
    Ok(Sample {
        metrics,
        latency: None,
    })
}

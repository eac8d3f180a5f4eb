//! The edge's copies served read-only as `zone.v1.Zones`: GetRecord and full TransferZone answer
//! from memory; PushChanges and Sync are `UNIMPLEMENTED` (changes go to the origin server, and
//! edges do not chain).

use std::pin::Pin;

use futures::{Stream, stream};
use tonic::{Request, Response, Status, Streaming};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::zones_server::{Zones, ZonesServer};

use super::{Edge, canonical_zone};

/// Records per TransferZone batch when the request leaves `batch_size` at 0.
const DEFAULT_BATCH: usize = 500;
const MAX_BATCH: usize = 10_000;

/// `zone.v1.Zones` over an [`Edge`]'s copies.
#[derive(Debug, Clone)]
pub struct EdgeZones {
    edge: Edge,
}

/// The service, ready to add to a `grpc_h3::Server`.
pub fn zones_server(edge: Edge) -> ZonesServer<EdgeZones> {
    ZonesServer::new(EdgeZones { edge })
        .max_encoding_message_size(zone_proto::MAX_ZONE_MESSAGE_SIZE)
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Zones for EdgeZones {
    async fn get_record(
        &self,
        request: Request<pb::RecordQuery>,
    ) -> Result<Response<pb::RecordSet>, Status> {
        self.edge.lookup(request.get_ref()).map(Response::new)
    }

    type TransferZoneStream = ResponseStream<pb::RecordBatch>;

    async fn transfer_zone(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<Self::TransferZoneStream>, Status> {
        let request = request.into_inner();
        let zone = canonical_zone(&request.zone);
        let Some(snapshot) = self.edge.snapshot(&zone) else {
            // Same answers as a lookup of the apex would give.
            return Err(self
                .edge
                .lookup(&pb::RecordQuery {
                    zone,
                    name: "@".into(),
                    r#type: String::new(),
                })
                .err()
                .unwrap_or_else(|| Status::unavailable("zone not received yet")));
        };
        if request.since_serial == Some(snapshot.serial) {
            return Ok(Response::new(Box::pin(stream::empty())));
        }
        let size = match request.batch_size {
            0 => DEFAULT_BATCH,
            n => usize::try_from(n).unwrap_or(MAX_BATCH).min(MAX_BATCH),
        };
        let serial = snapshot.serial;
        let chunks: Vec<Vec<pb::Record>> = snapshot
            .records
            .chunks(size)
            .map(<[pb::Record]>::to_vec)
            .collect();
        let count = chunks.len().max(1);
        let mut chunks = chunks;
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let batches = chunks.into_iter().enumerate().map(move |(i, records)| {
            Ok(pb::RecordBatch {
                zone: zone.clone(),
                serial,
                records,
                changes: Vec::new(),
                last: i + 1 == count,
            })
        });
        Ok(Response::new(Box::pin(stream::iter(batches))))
    }

    async fn push_changes(
        &self,
        _request: Request<Streaming<pb::ChangeBatch>>,
    ) -> Result<Response<pb::PushResult>, Status> {
        Err(Status::unimplemented(
            "this is a read-only edge copy: push changes to the origin zone server",
        ))
    }

    type SyncStream = ResponseStream<pb::SyncMessage>;

    async fn sync(
        &self,
        _request: Request<Streaming<pb::SyncMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        Err(Status::unimplemented(
            "edges do not serve Sync: subscribe to the origin zone server",
        ))
    }
}

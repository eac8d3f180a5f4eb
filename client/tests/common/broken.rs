//! The deliberately broken interop server both interop suites (our client, the independent
//! peers) must catch.

use tonic::{Request, Response, Status, Streaming};
use zone_proto::grpc_testing::test_service_server::TestService;
use zone_proto::grpc_testing::{
    Empty, Payload, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use zone_server::interop::{ResponseStream, TestServiceImpl};

/// A TestService that gets things subtly wrong, for the interop suites to catch: one byte short
/// on UnaryCall, one byte extra in StreamingInputCall's aggregate, another status message than
/// asked for, a FullDuplexCall that ends after answering its first request, an "implemented"
/// UnimplementedCall, and (served without `EchoMetadata`) no metadata echo.
#[derive(Debug, Default)]
pub struct Broken {
    real: TestServiceImpl,
}

#[tonic::async_trait]
impl TestService for Broken {
    async fn empty_call(&self, req: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.real.empty_call(req).await
    }

    async fn unary_call(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let req = req.into_inner();
        if let Some(s) = req.response_status {
            return Err(Status::new(
                tonic::Code::from_i32(s.code),
                "not what you asked for",
            ));
        }
        let len = usize::try_from(req.response_size)
            .unwrap()
            .saturating_sub(1);
        Ok(Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: 0,
                body: vec![0; len],
            }),
            ..SimpleResponse::default()
        }))
    }

    async fn cacheable_unary_call(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.real.cacheable_unary_call(req).await
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        req: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.real.streaming_output_call(req).await
    }

    async fn streaming_input_call(
        &self,
        req: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut res = self.real.streaming_input_call(req).await?;
        res.get_mut().aggregated_payload_size += 1;
        Ok(res)
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        req: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?.unwrap_or_default();
        if let Some(s) = first.response_status {
            return Err(Status::new(
                tonic::Code::from_i32(s.code),
                "not what you asked for",
            ));
        }
        let responses: Vec<Result<StreamingOutputCallResponse, Status>> = first
            .response_parameters
            .iter()
            .map(|p| {
                Ok(StreamingOutputCallResponse {
                    payload: Some(Payload {
                        r#type: 0,
                        body: vec![0; usize::try_from(p.size).unwrap()],
                    }),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(responses))))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        req: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.real.half_duplex_call(req).await
    }

    async fn unimplemented_call(&self, _req: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

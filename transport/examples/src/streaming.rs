//! Server streaming and bidirectional streaming (tonic's streaming example, `grpc.examples.echo`)
//! over HTTP/3 and over HTTP/2, the same client code and the same server for both: only
//! `Endpoint::transport` differs. Dropping a response stream cancels its call on either wire.

use std::pin::Pin;
use std::time::Duration;

use grpc_h3::{Endpoint, Server, Transport};
use grpc_h3_examples::echo::echo_client::EchoClient;
use grpc_h3_examples::echo::echo_server::{Echo, EchoServer};
use grpc_h3_examples::echo::{EchoRequest, EchoResponse};
use grpc_h3_examples::{dev_tls, start};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type EchoStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

#[derive(Debug)]
pub struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary_echo(&self, _: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Err(Status::unimplemented("not part of this example"))
    }

    type ServerStreamingEchoStream = EchoStream;

    /// Repeats the message forever, one every 10 ms, until the client drops the stream.
    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoStream>, Status> {
        let message = request.into_inner().message;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            // Ends when the client drops the stream: the receiver goes, and `send` fails.
            while tx
                .send(Ok(EchoResponse {
                    message: message.clone(),
                }))
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!("server: the client dropped the stream; stopped sending");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn client_streaming_echo(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        Err(Status::unimplemented("not part of this example"))
    }

    type BidirectionalStreamingEchoStream = EchoStream;

    /// Echoes every message back as it arrives.
    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoStream>, Status> {
        let echoed = request
            .into_inner()
            .map(|message| message.map(|m| EchoResponse { message: m.message }));
        Ok(Response::new(Box::pin(echoed)))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_pem) = dev_tls()?;
    let server = start(
        Server::builder()
            .tls(tls)
            .add_service(EchoServer::new(EchoService)),
    )
    .await?;
    let port = server.port;

    for transport in [Transport::H3, Transport::H2] {
        let channel = Endpoint::new(format!("https://localhost:{port}"))?
            .transport(transport)
            .ca_certificate_pem(&ca_pem)?
            .connect()
            .await?;
        let mut client = EchoClient::new(channel);

        // Server streaming: take five, then drop the stream (the server's stream is cancelled).
        let request = EchoRequest {
            message: "foo".into(),
        };
        let stream = client.server_streaming_echo(request).await?.into_inner();
        let received: Vec<String> = stream
            .take(5)
            .map(|r| r.map(|m| m.message))
            .collect::<Result<_, _>>()
            .await?;
        println!(
            "{transport}: server streaming received {}",
            received.join(" ")
        );

        // Bidirectional: three messages out, three echoes back, then the client ends its side.
        let outbound =
            tokio_stream::iter(["a", "b", "c"]).map(|m| EchoRequest { message: m.into() });
        let mut inbound = client
            .bidirectional_streaming_echo(outbound)
            .await?
            .into_inner();
        let mut echoed = Vec::new();
        while let Some(reply) = inbound.message().await? {
            echoed.push(reply.message);
        }
        println!("{transport}: bidi echoed {}", echoed.join(" "));
    }

    server.stop().await
}

//! 0-RTT (TLS 1.3 early data over QUIC, RFC 9001 §4.6) for idempotent methods. The server accepts
//! early data only for the methods named in `accept_early_data`, because early data can be
//! replayed (RFC 8446 §8); any other call that arrives in it is refused unprocessed
//! (H3_REQUEST_REJECTED) and the client sends it again after the handshake. A client with
//! `early_data(true)` sends a small, complete request in the first flight of a resumed session:
//! a call costs no round trip of its own for the handshake.

use grpc_h3::{ConnectionInfo, Endpoint, Server, Transport};
use grpc_h3_examples::hello::greeter_client::GreeterClient;
use grpc_h3_examples::hello::greeter_server::{Greeter, GreeterServer};
use grpc_h3_examples::hello::{HelloReply, HelloRequest};
use grpc_h3_examples::{dev_tls, start};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let early = ConnectionInfo::of(&request).is_some_and(|i| i.early_data);
        Ok(Response::new(HelloReply {
            message: if early {
                "in 0-RTT"
            } else {
                "after the handshake"
            }
            .into(),
        }))
    }
}

/// Resumed connections to try: whether the first call beats the (sub-millisecond, loopback)
/// handshake depends on scheduling; on a real path with a round trip of its own it always does.
const ATTEMPTS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_pem) = dev_tls()?;
    let server = start(
        Server::builder()
            .tls(tls)
            // SayHello has no side effects, so a replay is harmless.
            .accept_early_data(["helloworld.Greeter/SayHello"])
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    let port = server.port;

    // One endpoint keeps the TLS session tickets: its channels after the first resume.
    let endpoint = Endpoint::new(format!("https://localhost:{port}"))?
        .transport(Transport::H3)
        .early_data(true)
        .ca_certificate_pem(&ca_pem)?;
    let say_hello = |channel| async move {
        let request = HelloRequest {
            name: String::new(),
        };
        GreeterClient::new(channel)
            .say_hello(request)
            .await
            .map(|r| r.into_inner().message)
    };

    let first = say_hello(endpoint.clone().connect().await?).await?;
    println!("first connection: {first}");
    let mut early = false;
    for attempt in 1..=ATTEMPTS {
        // Lazy: the call itself connects, so it can leave with the first flight.
        let reply = say_hello(endpoint.clone().connect_lazy()).await?;
        if reply == "in 0-RTT" {
            println!("resumed connection {attempt}: {reply}");
            early = true;
            break;
        }
    }
    if !early {
        println!("no call left in 0-RTT in {ATTEMPTS} resumed connections");
    }

    server.stop().await
}

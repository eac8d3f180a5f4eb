//! `Transport::Auto`: a client that knows nothing of the server's HTTP/3 starts on HTTP/2, learns
//! from the `Alt-Svc` header of the first response (RFC 7838; grpc-h3's server sends
//! `h3=":PORT"`) that HTTP/3 is on the same port, connects QUIC in the background, and moves
//! later calls to it. `Channel::transport_in_use` says which wire carries calls now.

use std::time::Duration;

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
        let wire = ConnectionInfo::of(&request).map_or("unknown", |i| i.transport.as_str());
        Ok(Response::new(HelloReply {
            message: format!("served over {wire}"),
        }))
    }
}

/// How many calls the client makes at most while waiting for the move to HTTP/3.
const MAX_CALLS: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_pem) = dev_tls()?;
    let server = start(
        Server::builder()
            .tls(tls)
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    let port = server.port;

    // Auto is the default transport; no `h3_port`, so nothing is known of HTTP/3 yet.
    let channel = Endpoint::new(format!("https://localhost:{port}"))?
        .transport(Transport::Auto)
        .ca_certificate_pem(&ca_pem)?
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel.clone());
    println!("before the first call: {}", channel.transport_in_use());
    for call in 1..=MAX_CALLS {
        let request = HelloRequest {
            name: String::new(),
        };
        let reply = client.say_hello(request).await?.into_inner();
        if call == 1 || channel.transport_in_use() == Transport::H3 {
            println!("call {call}: {}", reply.message);
        }
        if reply.message == "served over h3" {
            println!("moved to HTTP/3 after {call} calls");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("in use now: {}", channel.transport_in_use());

    server.stop().await
}

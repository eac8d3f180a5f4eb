//! tonic's helloworld over HTTP/3. The server and the client are tonic's, with one line changed
//! each: `grpc_h3::Server` instead of `tonic::transport::Server`, and a `grpc_h3::Endpoint`
//! channel instead of `GreeterClient::connect`. Both run in this one program so it can be run
//! as is (`cargo run -p grpc-h3-examples --bin helloworld`); split them where you deploy.

use grpc_h3::{Endpoint, Server, Transport};
use grpc_h3_examples::dev_tls;
use grpc_h3_examples::hello::greeter_client::GreeterClient;
use grpc_h3_examples::hello::greeter_server::{Greeter, GreeterServer};
use grpc_h3_examples::hello::{HelloReply, HelloRequest};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct MyGreeter {}

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // tonic's `remote_addr()` works over HTTP/3 as over HTTP/2.
        println!("server: a request from {:?}", request.remote_addr());
        let reply = HelloReply {
            message: format!("Hello {}!", request.into_inner().name),
        };
        Ok(Response::new(reply))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_pem) = dev_tls()?;

    // Server: tonic's `Server::builder().add_service(..).serve(addr)`, plus TLS (QUIC has no
    // plaintext). It serves HTTP/3 on UDP and HTTP/2 on TCP of the same port.
    let bound = Server::builder()
        .tls(tls)
        .add_service(GreeterServer::new(MyGreeter::default()))
        .bind("127.0.0.1:0".parse()?)
        .await?;
    let port = bound.h3_addr().map(|a| a.port()).ok_or("no UDP port")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    // Client: the one changed line builds the channel; the generated client is tonic's.
    let channel = Endpoint::new(format!("https://localhost:{port}"))?
        .transport(Transport::H3)
        .ca_certificate_pem(&ca_pem)?
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel);
    let request = Request::new(HelloRequest {
        name: "Tonic".into(),
    });
    let response = client.say_hello(request).await?;
    println!("RESPONSE={:?}", response.into_inner().message);

    let _ = stop.send(());
    server.await??;
    Ok(())
}

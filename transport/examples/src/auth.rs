//! Per-RPC credentials as a tower layer on the server, the same for both wires: it reads grpc-h3's
//! `ConnectionInfo` (which wire, the peer, whether TLS protects the connection) from the request's
//! extensions and checks a bearer token; the client adds the token with a tonic interceptor.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use grpc_h3::{ConnectionInfo, Endpoint, Server, Transport};
use grpc_h3_examples::hello::greeter_client::GreeterClient;
use grpc_h3_examples::hello::greeter_server::{Greeter, GreeterServer};
use grpc_h3_examples::hello::{HelloReply, HelloRequest};
use grpc_h3_examples::{dev_tls, start};
use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};
use tower_layer::Layer;
use tower_service::Service;

const TOKEN: &str = "Bearer example-token";

#[derive(Debug, Default)]
pub struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // Handlers see the same facts on both wires.
        let wire = ConnectionInfo::of(&request).map(|i| i.transport);
        let reply = HelloReply {
            message: format!("Hello {} over {wire:?}!", request.into_inner().name),
        };
        Ok(Response::new(reply))
    }
}

/// Lets a call through only on a TLS connection and with the expected `authorization` value.
#[derive(Debug, Clone, Copy)]
pub struct RequireToken;

impl<S> Layer<S> for RequireToken {
    type Service = CheckToken<S>;

    fn layer(&self, inner: S) -> CheckToken<S> {
        CheckToken { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CheckToken<S> {
    inner: S,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> Service<http::Request<Body>> for CheckToken<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        let info = request.extensions().get::<ConnectionInfo>();
        let tls = info.is_some_and(ConnectionInfo::is_tls);
        let authorized = request
            .headers()
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes());
        println!(
            "server: {} over {:?} from {:?}: {}",
            request.uri().path(),
            info.map(|i| i.transport),
            info.and_then(|i| i.remote_addr),
            if tls && authorized {
                "allowed"
            } else {
                "refused"
            }
        );
        if !(tls && authorized) {
            // A Trailers-Only response: the gRPC status without a body.
            let refused = Status::unauthenticated("a valid bearer token is required").into_http();
            return Box::pin(std::future::ready(Ok(refused)));
        }
        Box::pin(self.inner.call(request))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_pem) = dev_tls()?;
    let server = start(
        Server::builder()
            .tls(tls)
            .layer(RequireToken)
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    let port = server.port;

    for transport in [Transport::H3, Transport::H2] {
        let channel = Endpoint::new(format!("https://localhost:{port}"))?
            .transport(transport)
            .ca_certificate_pem(&ca_pem)?
            .connect()
            .await?;

        // Without the token: refused.
        let request = HelloRequest {
            name: "anonymous".into(),
        };
        match GreeterClient::new(channel.clone()).say_hello(request).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                println!("{transport}: without a token: {:?}", status.code());
            }
            other => {
                return Err(format!("{transport}: expected UNAUTHENTICATED, got {other:?}").into());
            }
        }

        // With the token, added to every call by an interceptor.
        let token = MetadataValue::from_static(TOKEN);
        let mut client = GreeterClient::with_interceptor(channel, move |mut req: Request<()>| {
            req.metadata_mut().insert("authorization", token.clone());
            Ok(req)
        });
        let request = HelloRequest {
            name: "alice".into(),
        };
        let reply = client.say_hello(request).await?.into_inner();
        println!("{transport}: with the token: {}", reply.message);
    }

    server.stop().await
}

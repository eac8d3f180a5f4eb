//! Shared by the examples: the generated code of their two services and a development certificate
//! set (a CA and a server certificate for `localhost`, made with rcgen on each run).

/// `helloworld.Greeter`, tonic's helloworld service.
pub mod hello {
    tonic::include_proto!("helloworld");
}

/// `grpc.examples.echo.Echo`, tonic's streaming example service.
pub mod echo {
    tonic::include_proto!("grpc.examples.echo");
}

/// TLS for an example server on 127.0.0.1 and the CA its clients trust.
pub fn dev_tls() -> Result<(grpc_h3::ServerTls, Vec<u8>), Box<dyn std::error::Error>> {
    let certs = dev_certs::DevCerts::generate()?;
    let tls = grpc_h3::ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)?;
    Ok((tls, certs.ca_pem))
}

/// A grpc-h3 server of an example, serving on 127.0.0.1 (HTTP/3 on UDP and HTTP/2 on TCP of
/// `port`) until [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    /// The port both wires listen on.
    pub port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), grpc_h3::Error>>,
}

/// Binds `server` to an ephemeral port of 127.0.0.1 and serves it on a task.
pub async fn start(server: grpc_h3::Server) -> Result<Running, Box<dyn std::error::Error>> {
    let bound = server.bind("127.0.0.1:0".parse()?).await?;
    let port = bound.h3_addr().map(|a| a.port()).ok_or("no UDP port")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    Ok(Running { port, stop, task })
}

impl Running {
    /// Shuts the server down gracefully (GOAWAY, drain) and waits for it.
    pub async fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

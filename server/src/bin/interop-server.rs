//! `interop-server`: serves grpc's interop `grpc.testing.TestService` and `grpc.health.v1.Health`
//! over HTTP/3 (UDP) and HTTP/2 (TCP) on one port, for grpc interop clients.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use grpc_h3::{Server, ServerTls, Wires};
use zone_proto::grpc_testing::test_service_server::TestServiceServer;
use zone_server::interop::{TestServiceImpl, test_service};
use zone_server::process::{error_chain, serve_announced};

/// Serve grpc's interop TestService (plus grpc.health.v1.Health) over HTTP/3 and HTTP/2.
///
/// Prints one line `READY h3=ADDR h2=ADDR` (`off` for a transport not served) once listening, then
/// serves until Ctrl-C or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "interop-server", version)]
struct Args {
    /// Port for both UDP (HTTP/3) and TCP (HTTP/2); 0 picks a free one.
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Directory with ca.pem, server.pem and server.key (generated with dev-certs when missing).
    #[arg(long, value_name = "DIR", default_value = "target/dev-certs")]
    cert_dir: PathBuf,
    /// Wire protocols to serve [default: both; h2 with --plaintext].
    #[arg(long, value_enum)]
    transport: Option<Wires>,
    /// No TLS: plaintext HTTP/2 (h2c) only, for debugging.
    #[arg(long)]
    plaintext: bool,
    /// Serve Prometheus metrics (gRPC calls per method and wire, QUIC) at http://ADDR/metrics;
    /// off by default. The READY line then ends with ` metrics=ADDR`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// Diagnostics go to stderr (stdout carries the machine-read lines); `RUST_LOG` overrides the
/// default level `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Resolves `--transport` against `--plaintext`: plaintext is HTTP/2 only (QUIC always uses TLS).
fn wires(args: &Args) -> anyhow::Result<Wires> {
    match (args.plaintext, args.transport) {
        (false, None) => Ok(Wires::Both),
        (false, Some(w)) | (true, Some(w @ Wires::H2)) => Ok(w),
        (true, None) => Ok(Wires::H2),
        (true, Some(t)) => anyhow::bail!(
            "--plaintext serves HTTP/2 only (HTTP/3 always uses TLS); drop --transport {} or use \
             --transport h2",
            t
        ),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let wires = wires(&args)?;
    let addr = SocketAddr::new(args.host, args.port);
    let metrics = match args.metrics {
        Some(addr) => Some(metrics_http::serve(addr).await?),
        None => None,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TestServiceServer<TestServiceImpl>>()
        .await;

    let mut builder = Server::builder();
    if !args.plaintext {
        let certs = dev_certs::DevCerts::load_or_generate(&args.cert_dir).with_context(|| {
            format!("cannot load certificates from {}", args.cert_dir.display())
        })?;
        let tls = ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).with_context(
            || {
                format!(
                    "cannot use the server certificate in {}",
                    args.cert_dir.display()
                )
            },
        )?;
        builder = builder.tls(tls);
    }
    let server = builder
        .wires(wires)
        .add_service(test_service())
        .add_service(health_service);
    serve_announced(server, addr, metrics).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("interop-server").chain(argv.iter().copied()))
    }

    #[test]
    fn wires_default_to_both_and_plaintext_to_h2() {
        let args = parse(&["--port", "0"]).unwrap();
        assert_eq!(wires(&args).unwrap(), Wires::Both);
        assert_eq!(args.cert_dir, PathBuf::from("target/dev-certs"));
        let args = parse(&["--port", "0", "--plaintext"]).unwrap();
        assert_eq!(wires(&args).unwrap(), Wires::H2);
        let args = parse(&["--port", "0", "--transport", "h3"]).unwrap();
        assert_eq!(wires(&args).unwrap(), Wires::H3);
    }

    #[test]
    fn plaintext_with_h3_is_refused_with_a_reason() {
        let args = parse(&["--port", "0", "--plaintext", "--transport", "h3"]).unwrap();
        let err = wires(&args).unwrap_err().to_string();
        assert!(err.contains("--plaintext serves HTTP/2 only"), "{err}");
    }

    #[test]
    fn error_chain_skips_causes_already_in_the_message() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(io)
            .context("reading x: disk on fire")
            .context("cannot load certificates");
        assert_eq!(
            error_chain(&err),
            "cannot load certificates: reading x: disk on fire"
        );
        let err = anyhow::anyhow!("root").context("outer");
        assert_eq!(error_chain(&err), "outer: root");
    }

    #[test]
    fn port_is_required_and_transport_values_are_checked() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--port", "1", "--transport", "h4"]).is_err());
    }
}

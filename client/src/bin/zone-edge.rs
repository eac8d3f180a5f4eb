//! `zone-edge`: keeps local copies of zones in sync with a zone server (snapshot, then every
//! change; acks; reconnects with backoff; resumes from its state file) and answers lookups from
//! them. See `zone_client::edge` for how.
//!
//! - `zone-edge run --addr H:P --ca FILE --state FILE [--serve ADDR] ZONE…`: syncs until Ctrl-C
//!   or SIGTERM; with `--serve`, serves GetRecord/TransferZone from the copies (HTTP/3 + HTTP/2, TLS
//!   with `--cert-dir`, generated when missing; `--serve-plaintext` for h2c) and prints
//!   `READY serve=ADDR` once listening (`READY` without it); `--metrics ADDR` adds ` metrics=ADDR`
//!   and serves Prometheus text at http://ADDR/metrics; `--dns ADDR` adds ` dns=ADDR` and answers
//!   DNS (UDP and TCP, AXFR, IXFR) for the zones from the copies (docs/edge-dns.md).
//! - `zone-edge lookup --state FILE ZONE NAME [--type T]`: answers from a state file.
//! - `zone-edge status --state FILE`: zones, serials and sizes in a state file.
//!
//! Exit codes: 0 ok, 1 sync or lookup failed (server refusal, NXDOMAIN, unreadable state),
//! 2 usage errors.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use grpc_h3::{Server, ServerTls, Transport, Wires};
use zone_client::cli::connect::Credentials;
use zone_client::cli::output::record_table;
use zone_client::edge::{self, Edge, EdgeConfig, EdgeConnector, EdgeError};

/// Keep local copies of DNS zones in sync with a zone server and answer lookups from them.
#[derive(Debug, Parser)]
#[command(name = "zone-edge", version)]
#[command(
    after_help = "Password: from the ZONE_PASSWORD environment variable, else prompted when \
    stdin is a terminal. Without --user no credentials are sent.\n\
    Exit codes: 0 ok, 1 sync or lookup failed, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync the zones until Ctrl-C or SIGTERM, optionally serving lookups from the copies.
    Run(RunArgs),
    /// Print the records of one name from a state file (NXDOMAIN: exit 1).
    Lookup {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        zone: String,
        name: String,
        /// Only records of this type.
        #[arg(long = "type", value_name = "TYPE", default_value = "")]
        record_type: String,
    },
    /// List the zones of a state file with their serials and record counts.
    Status {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Zones to keep.
    #[arg(required = true, value_name = "ZONE")]
    zones: Vec<String>,
    /// State file: the copies and their serials (created when missing).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Zone server address; several, comma-separated, or a name with several addresses: the
    /// edge syncs from one and resumes from its serial on another when that one fails.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
    addr: String,
    /// Wire protocol to the zone server.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    transport: Transport,
    /// PEM file of the CA that signed the zone server's certificate.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the host of --addr).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Connect to the zone server without TLS (h2c test servers only).
    #[arg(long)]
    plaintext: bool,
    /// User for Basic credentials; the password comes from ZONE_PASSWORD or a prompt.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Longest delay between applying an update and persisting (then acknowledging) it.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    persist_ms: u64,
    /// Serve GetRecord/TransferZone from the copies on this address (UDP+TCP, same port).
    #[arg(long, value_name = "HOST:PORT")]
    serve: Option<SocketAddr>,
    /// With --serve: directory with ca.pem, server.pem, server.key (generated when missing).
    #[arg(long, value_name = "DIR", default_value = "target/dev-certs")]
    cert_dir: PathBuf,
    /// With --serve: plaintext HTTP/2 (h2c) only, no TLS.
    #[arg(long, requires = "serve")]
    serve_plaintext: bool,
    /// Serve Prometheus metrics (gRPC calls per method and wire, QUIC, sync progress) at
    /// http://ADDR/metrics; off by default. The READY line then ends with ` metrics=ADDR`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Answer DNS for the zones from the copies, authoritatively, on UDP and TCP of ADDR
    /// (queries, AXFR, IXFR; docs/edge-dns.md). The READY line then has ` dns=ADDR`.
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zone_client::logging::init("warn,zone_client::edge=info");
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Lookup {
            state,
            zone,
            name,
            record_type,
        } => lookup(&state, &zone, &name, &record_type),
        Command::Status { state } => status(&state),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn usage(message: impl Into<String>) -> Failure {
    (2, message.into())
}

fn failed(err: impl std::fmt::Display) -> Failure {
    (1, err.to_string())
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let transport = args.transport;
    if args.plaintext && (args.ca.is_some() || transport == Transport::H3) {
        return Err(usage(
            "--plaintext excludes --ca and needs --transport h2 (HTTP/3 always uses TLS)",
        ));
    }
    let mut connector = EdgeConnector::new(args.addr.clone(), transport)
        .plaintext(args.plaintext)
        .credentials(
            Credentials::for_user(args.user.as_deref()).map_err(|e| usage(e.to_string()))?,
        );
    if !args.plaintext {
        let Some(ca) = &args.ca else {
            return Err(usage(
                "no CA certificate: pass --ca FILE, or --plaintext for h2c",
            ));
        };
        let pem = std::fs::read(ca)
            .map_err(|e| usage(format!("cannot read CA certificate {}: {e}", ca.display())))?;
        connector = connector.ca_pem(pem);
    }
    if let Some(name) = &args.server_name {
        connector = connector.server_name(name.clone());
    }
    connector.endpoints().map_err(|e| usage(e.to_string()))?;
    let config = EdgeConfig::new(&args.zones)
        .state_file(&args.state)
        .persist_delay(Duration::from_millis(args.persist_ms));
    let edge = Edge::open(config).map_err(failed)?;
    let tls = match (&args.serve, args.serve_plaintext) {
        (Some(_), false) => {
            let certs = dev_certs::DevCerts::load_or_generate(&args.cert_dir).map_err(|e| {
                failed(format!(
                    "cannot load certificates from {}: {e}",
                    args.cert_dir.display()
                ))
            })?;
            Some(
                ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem)
                    .map_err(failed)?,
            )
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let metrics = match args.metrics {
            Some(addr) => {
                let bound = metrics_http::serve(addr)
                    .await
                    .map_err(|e| failed(format!("{e:#}")))?;
                zone_client::edge::describe_metrics();
                Some(bound)
            }
            None => None,
        };
        let serving = match args.serve {
            Some(addr) => {
                let mut builder = Server::builder();
                builder = match tls {
                    Some(tls) => builder.tls(tls).wires(Wires::Both),
                    None => builder.wires(Wires::H2),
                };
                let bound = builder
                    .add_service(edge::serve::zones_server(edge.clone()))
                    .bind(addr)
                    .await
                    .map_err(|e| failed(format!("cannot listen on {addr}: {e}")))?;
                let local = bound.h2_addr().or(bound.h3_addr());
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(bound.serve_with_shutdown(async {
                    let _ = stopped.await;
                }));
                Some((local, stop, task))
            }
            None => None,
        };
        let dns = match args.dns {
            Some(addr) => {
                let server = edge::dns::DnsServer::bind(addr, edge::dns::DnsConfig::default())
                    .await
                    .map_err(failed)?;
                let bound = server
                    .local_addr()
                    .map_err(|e| failed(format!("cannot listen for DNS on {addr}: {e}")))?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(server.serve(edge.clone(), async {
                    let _ = stopped.await;
                }));
                Some((bound, stop, task))
            }
            None => None,
        };
        let mut ready = match &serving {
            Some((Some(addr), ..)) => format!("READY serve={addr}"),
            _ => "READY".to_owned(),
        };
        if let Some(addr) = metrics {
            ready.push_str(&format!(" metrics={addr}"));
        }
        if let Some((addr, ..)) = &dns {
            ready.push_str(&format!(" dns={addr}"));
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}")
            .and_then(|()| stdout.flush())
            .map_err(|e| failed(format!("cannot write to stdout: {e}")))?;
        drop(stdout);
        let result = edge
            .run(|| connector.connect(), shutdown_signal())
            .await
            .map_err(|e: EdgeError| failed(e));
        if let Some((_, stop, task)) = serving {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some((_, stop, task)) = dns {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        result
    })
}

fn lookup(state: &std::path::Path, zone: &str, name: &str, rtype: &str) -> Result<(), Failure> {
    let zones = edge::load_state(state).map_err(failed)?;
    let zone = edge::canonical_zone(zone);
    let Some(copy) = zones.get(&zone) else {
        return Err(failed(format!(
            "zone `{zone}` is not in {}",
            state.display()
        )));
    };
    let records = copy.lookup(&zone, name, rtype).map_err(failed)?;
    print!("{}", record_table(&records));
    println!("zone {zone} serial {}", copy.serial());
    Ok(())
}

fn status(state: &std::path::Path) -> Result<(), Failure> {
    let zones = edge::load_state(state).map_err(failed)?;
    if zones.is_empty() {
        println!("no zones in {}", state.display());
    }
    for (zone, copy) in zones {
        println!("{zone} serial {} records {}", copy.serial(), copy.len());
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

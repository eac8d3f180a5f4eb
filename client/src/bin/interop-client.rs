//! `interop-client`: runs grpc's standard interop cases against a server over HTTP/3 or HTTP/2 and
//! prints one `CASE PASS` / `CASE FAIL reason` line per case, then `N passed, N failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use grpc_h3::{Endpoint, Transport};
use zone_client::interop::{ALL_CASES, run_case};

/// Run grpc's standard interop test cases against an interop server.
///
/// Exit status: 0 when every case passed, 1 when one failed or the server is unreachable, 2 for
/// bad arguments (such as an unknown case name).
#[derive(Debug, Parser)]
#[command(name = "interop-client", version)]
struct Args {
    /// Server host name or IP address.
    #[arg(long, alias = "server_host")]
    host: String,
    /// Server port.
    #[arg(long, alias = "server_port")]
    port: u16,
    /// Wire protocol: h3, h2 or auto.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    transport: Transport,
    /// PEM file with the CA certificate to trust (e.g. ca.pem in the server's --cert-dir).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI) instead of --host.
    #[arg(long, alias = "server_host_override", value_name = "NAME")]
    server_name: Option<String>,
    /// No TLS: plaintext HTTP/2 (h2c), for a server started with --plaintext.
    #[arg(long)]
    plaintext: bool,
    /// Comma-separated case names, or `all`.
    #[arg(
        long = "test_case",
        alias = "test-case",
        value_name = "CASE[,CASE...]",
        value_delimiter = ',',
        required = true
    )]
    test_case: Vec<String>,
}

/// A command-line problem (exit 2) or a run-time one (exit 1).
enum Failure {
    Usage(String),
    Runtime(String),
}

/// Diagnostics go to stderr (stdout carries the machine-read lines); `RUST_LOG` overrides the
/// default level `warn`.
fn init_logging() {
    zone_client::logging::init("warn");
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let cases = match select_cases(&args.test_case) {
        Ok(cases) => cases,
        Err(msg) => return fail(Failure::Usage(msg)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            return fail(Failure::Runtime(format!(
                "cannot start the async runtime: {err}"
            )));
        }
    };
    match runtime.block_on(run(&args, &cases)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Failure::Runtime(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Expands `all` and checks every name before anything runs.
fn select_cases(names: &[String]) -> Result<Vec<&'static str>, String> {
    let mut cases = Vec::new();
    for name in names.iter().map(|n| n.trim()) {
        if name == "all" {
            cases.extend_from_slice(ALL_CASES);
        } else if let Some(case) = ALL_CASES.iter().find(|c| **c == name) {
            cases.push(*case);
        } else {
            return Err(format!(
                "unknown test case `{name}`; known cases: {}, all",
                ALL_CASES.join(", ")
            ));
        }
    }
    Ok(cases)
}

/// Connects, runs `cases` in order and prints the report. `Ok(true)` when all passed.
async fn run(args: &Args, cases: &[&str]) -> Result<bool, Failure> {
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let scheme = if args.plaintext { "http" } else { "https" };
    let uri = format!("{scheme}://{host}:{}", args.port);

    let mut endpoint = Endpoint::new(uri.as_str())
        .map_err(|e| Failure::Usage(format!("invalid server address {uri}: {e:#}")))?
        .transport(args.transport);
    if args.plaintext {
        if args.ca.is_some() {
            return Err(Failure::Usage(
                "--ca and --plaintext exclude each other".into(),
            ));
        }
        if args.transport == Transport::H3 {
            return Err(Failure::Usage(
                "--plaintext is HTTP/2 only (HTTP/3 always uses TLS)".into(),
            ));
        }
    } else {
        let Some(ca) = &args.ca else {
            return Err(Failure::Usage(
                "--ca FILE is required with TLS (the server's ca.pem), or pass --plaintext".into(),
            ));
        };
        let pem = std::fs::read(ca).map_err(|e| {
            Failure::Usage(format!("cannot read CA certificate {}: {e}", ca.display()))
        })?;
        endpoint = endpoint.ca_certificate_pem(&pem).map_err(|e| {
            Failure::Usage(format!("cannot use CA certificate {}: {e:#}", ca.display()))
        })?;
    }
    if let Some(name) = &args.server_name {
        endpoint = endpoint.server_name(name.as_str());
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Failure::Runtime(format!(
            "cannot connect to {uri} over {}: {e:#}",
            args.transport
        ))
    })?;

    let (mut passed, mut failed) = (0usize, 0usize);
    for case in cases {
        match run_case(channel.clone(), case).await {
            Ok(()) => {
                passed += 1;
                println!("{case} PASS");
            }
            Err(err) => {
                failed += 1;
                // One line per case, whatever the reason contains.
                let reason = err.to_string().replace('\r', "\\r").replace('\n', "\\n");
                println!("{case} FAIL {reason}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("interop-client").chain(argv.iter().copied()))
    }

    #[test]
    fn test_case_accepts_underscore_dash_and_commas() {
        let a = parse(&[
            "--host",
            "h",
            "--port",
            "1",
            "--test_case",
            "empty_unary,large_unary",
        ])
        .unwrap();
        assert_eq!(a.test_case, ["empty_unary", "large_unary"]);
        let a = parse(&["--host", "h", "--port", "1", "--test-case", "all"]).unwrap();
        assert_eq!(select_cases(&a.test_case).unwrap(), ALL_CASES);
        assert_eq!(a.transport, Transport::Auto);
    }

    #[test]
    fn unknown_case_is_named_in_the_error() {
        let err = select_cases(&["empty_unary".into(), "bogus".into()]).unwrap_err();
        assert!(err.starts_with("unknown test case `bogus`"), "{err}");
    }

    #[test]
    fn test_case_and_transport_are_validated_by_clap() {
        assert!(parse(&["--host", "h", "--port", "1"]).is_err());
        assert!(
            parse(&[
                "--host",
                "h",
                "--port",
                "1",
                "--transport",
                "h4",
                "--test_case",
                "all"
            ])
            .is_err()
        );
    }
}

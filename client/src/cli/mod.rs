//! The `zone-client` command line: arguments, dispatch, errors and exit codes.
//!
//! Exit codes: 0 success, 1 the RPC or the connection failed, 2 usage or input error (bad flags,
//! unreadable files, malformed change files). Errors print as `error: …` on stderr, gRPC statuses
//! as the code in words and the server's message (`error: not found: zone example.net.`).

pub mod changes;
mod commands;
pub mod connect;
pub mod output;
mod sync;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use commands::run;

/// Query, transfer, change and follow DNS zones over gRPC (HTTP/3 or HTTP/2).
#[derive(Debug, Parser)]
#[command(name = "zone-client", version)]
#[command(
    after_help = "Password: from the ZONE_PASSWORD environment variable, else prompted when \
    stdin is a terminal. Without --user no credentials are sent.\n\
    Exit codes: 0 ok, 1 RPC or connection failed, 2 usage or input error."
)]
pub struct Cli {
    /// Server address; several, comma-separated, or a name with several addresses, are
    /// balanced over (calls that never reached a dead server go to another).
    #[arg(long, global = true, value_name = "HOST:PORT[,HOST:PORT…]")]
    pub addr: Option<String>,
    /// Wire protocol: h3 (QUIC), h2 (TCP) or auto (h3 when available, else h2).
    #[arg(long, global = true, value_enum, default_value_t = grpc_h3::Transport::Auto)]
    pub transport: grpc_h3::Transport,
    /// PEM file of the CA that signed the server certificate (a dev server's <cert-dir>/ca.pem).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the host of --addr).
    #[arg(long, global = true, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Connect without TLS (h2c; only test servers accept this).
    #[arg(long, global = true)]
    pub plaintext: bool,
    /// User for Basic credentials; the password is read from ZONE_PASSWORD or a prompt.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[non_exhaustive]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the records of one name (optionally one type) as a table, and the zone serial.
    Get {
        /// Zone, e.g. example.com.
        zone: String,
        /// Owner name, e.g. www.example.com.
        name: String,
        /// Only records of this type (A, AAAA, MX, ...).
        #[arg(long = "type", value_name = "TYPE")]
        record_type: Option<String>,
    },
    /// Transfer a whole zone (AXFR-like) or the changes since a serial (IXFR-like).
    ///
    /// A full transfer is written as an RFC 1035 master file to --output; an incremental one
    /// prints each change batch and writes the changes in change-file form to --output.
    Transfer {
        /// Zone, e.g. example.com.
        zone: String,
        /// Only the changes after this serial (the server falls back to a full transfer when its
        /// history does not reach back that far).
        #[arg(long, value_name = "SERIAL")]
        since: Option<u32>,
        /// Records per streamed batch (0 = server default).
        #[arg(long, value_name = "N", default_value_t = 0)]
        batch_size: u32,
        /// Write the transferred zone (or changes) to this file.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Send a change file as a stream of atomic batches and print the resulting serial.
    #[command(after_long_help = changes::FORMAT_HELP)]
    Push {
        /// Change file (format: see the end of `zone-client push --help`).
        file: PathBuf,
        /// Zone of the batches before the first `zone` line.
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
    },
    /// Subscribe to zones like an edge node: print the snapshot and each update, ack each serial.
    ///
    /// Without --follow the command exits once caught up: from serial 0 after the snapshot; from
    /// a later serial when every zone has reached the serial it had on the server when the
    /// command started (learnt with GetRecord of the apex SOA). When that serial cannot be learnt
    /// (e.g. no right to call GetRecord), it exits after 500 ms without messages instead.
    Sync {
        /// Zones to follow.
        #[arg(required = true, value_name = "ZONE")]
        zones: Vec<String>,
        /// The last serial already applied (0 = none: start with a snapshot).
        #[arg(long, value_name = "SERIAL", default_value_t = 0)]
        from: u32,
        /// Keep printing updates until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
}

/// Everything that makes `zone-client` fail; [`CliError::exit_code`] gives the process exit code.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or unusable local input.
    #[error("{0}")]
    Usage(String),
    /// A change file failed to parse.
    #[error("{}", change_file_message(.path, .source))]
    ChangeFile {
        path: PathBuf,
        source: changes::ChangeFileError,
    },
    /// The connection could not be established.
    #[error("cannot connect to {addr} over {transport}: {source}")]
    Connect {
        addr: String,
        transport: grpc_h3::Transport,
        source: grpc_h3::Error,
    },
    /// The server answered with a non-OK status.
    #[error("{}", output::status_text(.0))]
    Rpc(tonic::Status),
    /// Writing the result (stdout or --output) failed.
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
}

/// `FILE:LINE: reason`, or `FILE: reason` when the error is not about one line.
fn change_file_message(path: &std::path::Path, err: &changes::ChangeFileError) -> String {
    match err {
        changes::ChangeFileError::Line { line, kind } => {
            format!("{}:{line}: {kind}", path.display())
        }
        other => format!("{}: {other}", path.display()),
    }
}

impl CliError {
    /// 1 when talking to the server failed, 2 for usage and input errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::ChangeFile { .. } => 2,
            CliError::Connect { .. } | CliError::Rpc(_) | CliError::Write { .. } => 1,
        }
    }

    /// True when stdout was closed by the reader (`zone-client … | head`): exit quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Rpc(status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from([
            "zone-client",
            "--addr",
            "h:1",
            "--transport",
            "h2",
            "get",
            "z.",
            "n.",
        ])
        .unwrap();
        let after = Cli::try_parse_from([
            "zone-client",
            "get",
            "z.",
            "n.",
            "--addr",
            "h:1",
            "--transport",
            "h2",
            "--type",
            "A",
        ])
        .unwrap();
        for cli in [&before, &after] {
            assert_eq!(cli.addr.as_deref(), Some("h:1"));
            assert_eq!(cli.transport, grpc_h3::Transport::H2);
        }
        assert!(matches!(
            after.command,
            Command::Get { record_type: Some(ref t), .. } if t == "A"
        ));
    }

    #[test]
    fn change_file_errors_print_file_and_line() {
        let err = CliError::ChangeFile {
            path: "x.changes".into(),
            source: changes::ChangeFileError::Line {
                line: 3,
                kind: changes::LineError::MissingTtl,
            },
        };
        assert_eq!(
            err.to_string(),
            "x.changes:3: record has no TTL: expected NAME TTL [CLASS] TYPE RDATA"
        );
        assert_eq!(err.exit_code(), 2);
        let empty = CliError::ChangeFile {
            path: "x.changes".into(),
            source: changes::ChangeFileError::Empty,
        };
        assert_eq!(empty.to_string(), "x.changes: no changes in file");
    }

    #[test]
    fn rpc_errors_exit_1_with_the_code_in_words() {
        let err = CliError::from(tonic::Status::not_found("zone example.net. not found"));
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "not found: zone example.net. not found");
    }
}

//! `zone-client`: query, transfer, push and follow DNS zones over gRPC (HTTP/3 or HTTP/2).
//!
//! See `zone-client --help` and the `zone_client::cli` module for the command-line contract.

use std::process::ExitCode;

use clap::Parser as _;
use zone_client::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr and are quiet unless RUST_LOG asks for more.
    zone_client::logging::init("warn");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::from(e.exit_code()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

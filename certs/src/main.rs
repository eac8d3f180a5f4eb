//! `dev-certs --out DIR`: writes (or reuses) a development CA and server/client certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate development certificates (CA, server and client leaves) into a directory, reusing a
/// complete existing set.
#[derive(Debug, Parser)]
#[command(name = "dev-certs", version)]
struct Args {
    /// Directory for ca.pem, ca.key, server.pem, server.key, client.pem, client.key.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match dev_certs::DevCerts::load_or_generate(&args.out) {
        Ok(_) => {
            println!(
                "certificates in {} (trust {})",
                args.out.display(),
                args.out.join(dev_certs::CA_CERT_FILE).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `zone-server`: serves `zone.v1.Zones` (plus `grpc.health.v1.Health` and server reflection) over
//! HTTP/3 and HTTP/2 with per-RPC credentials, and manages the users file.
//!
//! `serve` is the default subcommand: `zone-server --port 0` is `zone-server serve --port 0`.
//! Passwords never come from the command line: `user add` reads `ZONE_PASSWORD`, else one line
//! of stdin (prompting without echo when stdin is a terminal).

use std::ffi::OsString;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use grpc_h3::{Server, ServerTls, Wires};
use tonic::server::NamedService;
use zone_proto::zone::v1::zones_server::ZonesServer;
use zone_server::auth::{AuthLayer, MethodPattern, Users};
use zone_server::journal::{
    BasePolicy, JournalOptions, NatsOptions, NatsTail, RedbJournal, attach_nats, is_nats_url,
};
use zone_server::process::{error_chain, serve_announced};
use zone_server::zones::{ZoneStore, ZonesService, synthetic_zone, zones_server};

/// The example zones in `server/zones`, compiled in so the binary works from any directory.
const EMBEDDED_ZONES: &[(&str, &str)] = &[
    ("example.com.", include_str!("../../zones/example.com.zone")),
    ("example.org.", include_str!("../../zones/example.org.zone")),
    (
        "2.0.192.in-addr.arpa.",
        include_str!("../../zones/2.0.192.in-addr.arpa.zone"),
    ),
];

/// Origin of the `--synthetic` zone.
const SYNTHETIC_ORIGIN: &str = "synthetic.test.";
/// Fixed seed: every run serves the same synthetic zone, so clients can know its names.
const SYNTHETIC_SEED: u64 = 1;
/// Environment variable `user add` takes the password from.
const PASSWORD_ENV: &str = "ZONE_PASSWORD";

/// Serve DNS zones over gRPC (HTTP/3 and HTTP/2) and manage its users.
///
/// `serve` is the default: `zone-server --port N` serves.
#[derive(Debug, Parser)]
#[command(name = "zone-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve zone.v1.Zones, grpc.health.v1.Health and server reflection (the default).
    ///
    /// Prints one line `READY h3=ADDR h2=ADDR` (`off` for a transport not served) once
    /// listening, then serves until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Add, list or remove users of a users file.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Port for both UDP (HTTP/3) and TCP (HTTP/2); 0 picks a free one.
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Directory with ca.pem, server.pem and server.key (generated with dev-certs when missing).
    #[arg(long, value_name = "DIR", default_value = "target/dev-certs")]
    cert_dir: PathBuf,
    /// Users file (TOML); turns per-RPC authentication on. Health checks stay public; reflection
    /// needs the right `grpc.reflection.v1.ServerReflection/*`. Without it anyone may call anything.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Directory of `*.zone` master files to serve instead of the built-in example zones.
    #[arg(long, value_name = "DIR")]
    zones: Option<PathBuf>,
    /// Durable journal: every pushed batch is stored in it before it is acknowledged, and it is
    /// replayed on top of the zone files at start-up. A FILE is a redb journal (created when
    /// missing, fsync'd); `nats://HOST:PORT[,nats://HOST2:PORT...][?replicas=N]` is a NATS
    /// JetStream journal that several zone-servers share (a push to any of them reaches the
    /// subscribers of all). Refuses to start when a zone file changed since the journal was
    /// started on it.
    #[arg(long, value_name = "FILE|nats://HOST:PORT")]
    journal: Option<PathBuf>,
    /// With --journal: when a zone file changed since the journal was started, drop that zone's
    /// journaled changes and serve the file (serial raised above the journal's last one).
    #[arg(long, requires = "journal")]
    journal_rebase: bool,
    /// Wire protocols to serve [default: both; h2 with --plaintext].
    #[arg(long, value_enum)]
    transport: Option<Wires>,
    /// No TLS: plaintext HTTP/2 (h2c) only, for debugging; cannot be combined with --users.
    #[arg(long)]
    plaintext: bool,
    /// Also serve a synthetic zone `synthetic.test.` of N records (for benchmarks).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=100_000_000))]
    synthetic: Option<u64>,
    /// Serve Prometheus metrics (gRPC calls per method and wire, QUIC, journal, auth) at
    /// http://ADDR/metrics; off by default. The READY line then ends with ` metrics=ADDR`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password comes from $ZONE_PASSWORD, else one line of stdin.
    Add(UserAddArgs),
    /// List users and their rights (never their hashes).
    List(UsersFileArg),
    /// Remove a user.
    Remove(UserRemoveArgs),
}

#[derive(Debug, Args)]
struct UsersFileArg {
    /// The users file.
    #[arg(long, value_name = "FILE", default_value = "users.toml")]
    users: PathBuf,
}

#[derive(Debug, Args)]
struct UserAddArgs {
    /// User name (no `:`).
    name: String,
    /// Methods the user may call: `pkg.Service/Method`, `pkg.Service/*` or `*`.
    #[arg(long, value_name = "METHOD", required = true, num_args = 1..)]
    allow: Vec<String>,
    /// Zones the user may touch (default: every zone).
    #[arg(long = "zone", value_name = "ZONE", num_args = 1..)]
    zones: Vec<String>,
    /// Replace an existing user of that name.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    file: UsersFileArg,
}

#[derive(Debug, Args)]
struct UserRemoveArgs {
    /// User name.
    name: String,
    #[command(flatten)]
    file: UsersFileArg,
}

/// A failure and the exit code it ends the process with.
enum Failure {
    /// Contradictory or unsupported options (exit 2, like clap's usage errors).
    Usage(String),
    /// Anything else (exit 1).
    Run(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Run(err)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args_os().collect()));
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::User(cmd) => user(cmd).map_err(Failure::Run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(err)) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Inserts `serve` when the first argument is not a subcommand (or a top-level help/version flag).
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str());
    let explicit = matches!(
        first,
        Some("serve" | "user" | "help" | "-h" | "--help" | "-V" | "--version")
    );
    if !explicit {
        args.insert(1.min(args.len()), OsString::from("serve"));
    }
    args
}

/// Diagnostics go to stderr (stdout carries the READY line); `RUST_LOG` overrides `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Checks option combinations; returns the wires to serve.
fn check_serve_args(args: &ServeArgs) -> Result<Wires, String> {
    if args.plaintext && args.users.is_some() {
        return Err(
            "--plaintext cannot be combined with --users: credentials are refused on a \
             connection without TLS"
                .into(),
        );
    }
    match (args.plaintext, args.transport) {
        (false, None) => Ok(Wires::Both),
        (false, Some(w)) | (true, Some(w @ Wires::H2)) => Ok(w),
        (true, None) => Ok(Wires::H2),
        (true, Some(t)) => Err(format!(
            "--plaintext serves HTTP/2 only (HTTP/3 always uses TLS); drop --transport {} or use \
             --transport h2",
            t
        )),
    }
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let wires = check_serve_args(&args).map_err(Failure::Usage)?;
    let store = load_zones(&args)?;
    let auth = match &args.users {
        Some(path) => {
            let users = Users::load(path).map_err(anyhow::Error::from)?;
            if users.is_empty() {
                eprintln!(
                    "warning: {} has no users: every call except health checks will be refused",
                    path.display()
                );
            }
            Some(AuthLayer::new(users))
        }
        None => {
            eprintln!(
                "warning: no --users file: per-RPC authentication is off, anyone may call any method"
            );
            None
        }
    };
    let tls = if args.plaintext {
        None
    } else {
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
        Some(tls)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addr = SocketAddr::new(args.host, args.port);
    runtime.block_on(async {
        let metrics = match args.metrics {
            Some(addr) => {
                let bound = metrics_http::serve(addr).await?;
                zone_server::observe::describe();
                Some(bound)
            }
            None => None,
        };
        // Held while serving: it applies batches other servers append to a shared journal.
        let _tail = match &args.journal {
            Some(path) => attach_journal(&store, path, args.journal_rebase).await?,
            None => None,
        };
        run_server(addr, wires, tls, auth, store, metrics).await
    })?;
    Ok(())
}

/// Opens (or creates) the journal and replays it onto the loaded zones; reports per zone on
/// stderr. For a NATS journal, returns the tail that applies other servers' batches.
async fn attach_journal(
    store: &ZoneStore,
    path: &Path,
    rebase: bool,
) -> anyhow::Result<Option<NatsTail>> {
    let policy = if rebase {
        BasePolicy::Rebase
    } else {
        BasePolicy::Refuse
    };
    let options = JournalOptions::default().base_policy(policy);
    let name = path.display();
    let (report, tail) = match path.to_str().filter(|p| is_nats_url(p)) {
        Some(url) => {
            let (_journal, report, tail) = attach_nats(store, url, options, NatsOptions::default())
                .await
                .with_context(|| format!("cannot attach the NATS JetStream journal {url}"))?;
            (report, Some(tail))
        }
        None => {
            let journal = RedbJournal::open(path)?;
            let report = store
                .attach_journal(journal, options)
                .await
                .with_context(|| format!("cannot replay journal {name}"))?;
            (report, None)
        }
    };
    for zone in report {
        eprintln!("journal {name}: {zone}");
    }
    Ok(tail)
}

/// The built-in example zones or `--zones DIR`, plus the `--synthetic` zone.
fn load_zones(args: &ServeArgs) -> anyhow::Result<ZoneStore> {
    let store = ZoneStore::new();
    match &args.zones {
        Some(dir) => {
            let loaded = store
                .load_dir(dir)
                .with_context(|| format!("cannot load zones from {}", dir.display()))?;
            if loaded.is_empty() {
                eprintln!("warning: no *.zone files in {}", dir.display());
            }
        }
        None => {
            for (origin, text) in EMBEDDED_ZONES {
                store
                    .insert_zone_text(origin, text)
                    .with_context(|| format!("built-in zone {origin}"))?;
            }
        }
    }
    if let Some(n) = args.synthetic {
        let records = usize::try_from(n).context("--synthetic: too many records")?;
        let text = synthetic_zone(SYNTHETIC_ORIGIN, records, SYNTHETIC_SEED);
        store
            .insert_zone_text(SYNTHETIC_ORIGIN, &text)
            .with_context(|| format!("synthetic zone {SYNTHETIC_ORIGIN}"))?;
    }
    Ok(store)
}

async fn run_server(
    addr: SocketAddr,
    wires: Wires,
    tls: Option<ServerTls>,
    auth: Option<AuthLayer>,
    store: ZoneStore,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let zones_name = <ZonesServer<ZonesService> as NamedService>::NAME;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ZonesServer<ZonesService>>().await;
    // Advertise exactly the services served here (the descriptor set also holds grpc.testing).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(zone_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(zones_name)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()
        .context("cannot build the reflection service")?;

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    if let Some(auth) = auth {
        builder = builder.layer(auth);
    }
    let server = builder
        .wires(wires)
        .add_service(zones_server(store))
        .add_service(health_service)
        .add_service(reflection);
    serve_announced(server, addr, metrics).await
}

fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add(args) => user_add(args),
        UserCommand::List(args) => user_list(&args.users),
        UserCommand::Remove(args) => user_remove(&args.name, &args.file.users),
    }
}

fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let path = &args.file.users;
    let mut users = Users::load_or_empty(path)?;
    // Everything that can be checked is checked before asking for the password.
    for pattern in &args.allow {
        MethodPattern::parse(pattern)?;
    }
    if users.get(&args.name).is_some() && !args.force {
        bail!(
            "user `{}` already exists in {} (use --force to replace it)",
            args.name,
            path.display()
        );
    }
    let password = read_password(&args.name)?;
    let zones = (!args.zones.is_empty()).then_some(args.zones.as_slice());
    if args.force {
        users.remove(&args.name);
    }
    // Nothing is written unless the new entry is valid.
    users.add(&args.name, password.as_bytes(), &args.allow, zones)?;
    users.save(path)?;
    println!("added user `{}` to {}", args.name, path.display());
    Ok(())
}

/// The password from `ZONE_PASSWORD`, else from stdin: a prompt without echo (entered twice) on a
/// terminal, otherwise one line.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if let Some(value) = std::env::var_os(PASSWORD_ENV) {
        value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("cannot read the password")?;
        let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
    };
    if password.is_empty() {
        bail!("empty password (set {PASSWORD_ENV} or write the password to stdin)");
    }
    Ok(password)
}

fn user_list(path: &Path) -> anyhow::Result<()> {
    let users = Users::load(path)?;
    if users.is_empty() {
        println!("no users in {}", path.display());
        return Ok(());
    }
    let rows: Vec<[String; 3]> = users
        .iter()
        .map(|(name, user)| {
            let allow: Vec<&str> = user.allow().iter().map(MethodPattern::as_str).collect();
            let zones = user
                .zones()
                .map_or_else(|| "*".to_string(), |z| z.join(","));
            [name.to_string(), allow.join(","), zones]
        })
        .collect();
    let header = ["USER".to_string(), "ALLOW".to_string(), "ZONES".to_string()];
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        writeln!(out, "{:<w0$}  {:<w1$}  {}", row[0], row[1], row[2])?;
    }
    Ok(())
}

fn user_remove(name: &str, path: &Path) -> anyhow::Result<()> {
    let mut users = Users::load(path)?;
    if !users.remove(name) {
        bail!("no user `{name}` in {}", path.display());
    }
    users.save(path)?;
    println!("removed user `{name}` from {}", path.display());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("zone-server")
            .chain(argv.iter().copied())
            .map(OsString::from)
            .collect();
        Cli::try_parse_from(with_default_subcommand(args))
    }

    fn serve_args(argv: &[&str]) -> ServeArgs {
        match parse(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let args = serve_args(&["--port", "0"]);
        assert_eq!(args.port, 0);
        assert_eq!(args.cert_dir, PathBuf::from("target/dev-certs"));
        assert_eq!(check_serve_args(&args).unwrap(), Wires::Both);
        let args = serve_args(&["serve", "--port", "7", "--transport", "h3"]);
        assert_eq!(args.port, 7);
        assert_eq!(check_serve_args(&args).unwrap(), Wires::H3);
        assert!(parse(&[]).is_err(), "--port is required");
    }

    #[test]
    fn user_subcommands_parse() {
        let cli = parse(&["user", "add", "alice", "--allow", "zone.v1.Zones/*", "*"]).unwrap();
        match cli.command {
            Command::User(UserCommand::Add(a)) => {
                assert_eq!(a.name, "alice");
                assert_eq!(a.allow, ["zone.v1.Zones/*", "*"]);
                assert_eq!(a.file.users, PathBuf::from("users.toml"));
                assert!(a.zones.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["user", "add", "alice"]).is_err(),
            "--allow is required"
        );
    }

    #[test]
    fn contradictory_serve_options_are_usage_errors() {
        let args = serve_args(&["--port", "0", "--journal", "j.db", "--journal-rebase"]);
        assert!(args.journal_rebase);
        assert!(check_serve_args(&args).is_ok());
        let nats = serve_args(&["--port", "0", "--journal", "nats://127.0.0.1:4222"]);
        assert!(is_nats_url(nats.journal.unwrap().to_str().unwrap()));
        assert!(
            parse(&["--port", "0", "--journal-rebase"]).is_err(),
            "--journal-rebase needs --journal"
        );
        let err = check_serve_args(&serve_args(&[
            "--port",
            "0",
            "--plaintext",
            "--users",
            "u.toml",
        ]))
        .unwrap_err();
        assert!(err.contains("without TLS"), "{err}");
        let err = check_serve_args(&serve_args(&[
            "--port",
            "0",
            "--plaintext",
            "--transport",
            "h3",
        ]))
        .unwrap_err();
        assert!(err.contains("HTTP/2 only"), "{err}");
        let args = serve_args(&["--port", "0", "--plaintext"]);
        assert_eq!(check_serve_args(&args).unwrap(), Wires::H2);
    }

    #[test]
    fn synthetic_size_is_range_checked() {
        assert!(parse(&["--port", "0", "--synthetic", "1"]).is_err());
        assert_eq!(
            serve_args(&["--port", "0", "--synthetic", "1000"]).synthetic,
            Some(1000)
        );
    }

    #[test]
    fn built_in_zones_load_with_the_synthetic_one() {
        let args = serve_args(&["--port", "0", "--synthetic", "100"]);
        let store = load_zones(&args).unwrap();
        let names: Vec<String> = store.zones().into_iter().map(|z| z.name).collect();
        for origin in [
            "example.com.",
            "example.org.",
            "2.0.192.in-addr.arpa.",
            SYNTHETIC_ORIGIN,
        ] {
            assert!(
                names.iter().any(|n| n == origin),
                "{origin} missing from {names:?}"
            );
        }
        let synthetic = store.zone(SYNTHETIC_ORIGIN).unwrap();
        assert_eq!(synthetic.records, 100);
    }
}

//! The binaries' logging: to stderr, quiet unless `RUST_LOG` asks for more.

/// Added to every default filter. quinn-udp warns when a datagram meets an ICMP error pending on
/// its socket; grpc-h3's HTTP/3 client turns those on (`IP_RECVERR`) to find dead servers at
/// once, so the first datagram to a dead server would print a warning a CLI user cannot act on.
const QUIET: &str = "quinn_udp=error";

/// Logs to stderr at `default` (an `EnvFilter` directive list) unless `RUST_LOG` is set.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},{QUIET}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

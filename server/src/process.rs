//! Process plumbing shared by the server binaries: the READY line, shutdown signals, and
//! one-line error messages.

use std::io::Write as _;
use std::net::SocketAddr;

/// Prints `READY h3=ADDR h2=ADDR` (`off` for a wire not served), then ` metrics=ADDR` when
/// `--metrics` serves, and flushes, as scripts and tests wait for it.
pub fn print_ready(
    h3: Option<SocketAddr>,
    h2: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> std::io::Result<()> {
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "READY h3={} h2={}", show(h3), show(h2))?;
    if let Some(metrics) = metrics {
        write!(stdout, " metrics={metrics}")?;
    }
    writeln!(stdout)?;
    stdout.flush()
}

/// Binds `server` on `addr`, prints the READY line (with the `--metrics` address, if any), and
/// serves until Ctrl-C or SIGTERM, then drains: the life of every server binary after its
/// services are assembled.
pub async fn serve_announced(
    server: grpc_h3::Server,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let bound = server
        .bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    print_ready(bound.h3_addr(), bound.h2_addr(), metrics)
        .context("cannot write the READY line to stdout")?;
    bound
        .serve_with_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, only SIGTERM (or a kill) stops the server.
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

/// `outer: cause: root cause` on one line, skipping a cause whose text its parent already shows.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut parent = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parent.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        parent = text;
    }
    out
}

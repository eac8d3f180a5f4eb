//! `--addr` of zone-client and zone-edge: one server (`HOST:PORT`), several
//! (`HOST:PORT,HOST:PORT…`), or a DNS name whose every address is a server (a Kubernetes headless
//! service). Several servers share one balanced channel (`grpc_h3::Balance`): calls go to the
//! ready ones, and a call that never reached a dead server goes to another.

use std::net::IpAddr;

use grpc_h3::{Balance, Channel, Endpoint};

/// The `HOST:PORT` items of `--addr`, in order.
pub fn parse(addr: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = addr.split(',').map(|s| s.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err(format!(
            "--addr takes HOST:PORT[,HOST:PORT…] (got `{addr}`: an empty item)"
        ));
    }
    if let Some(url) = items.iter().find(|i| i.contains("://")) {
        return Err(format!("--addr takes HOST:PORT, not a URL (got `{url}`)"));
    }
    Ok(items)
}

/// Whether `HOST:PORT`'s host is an IP address (no name to resolve).
fn is_ip_literal(item: &str) -> bool {
    let host = item.rsplit_once(':').map_or(item, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

/// The channel for `--addr`'s servers, one endpoint each (same order as [`parse`]): a plain
/// channel for one IP address, a balanced one for several, and for one name a channel over
/// every address it resolves to, resolved again every 30 s.
pub fn channel(items: &[String], endpoints: Vec<Endpoint>) -> Channel {
    match (items, endpoints.as_slice()) {
        ([item], [endpoint]) if is_ip_literal(item) => endpoint.clone().connect_lazy(),
        ([_], [endpoint]) => Balance::new().dns(endpoint.clone()),
        _ => Balance::new().list(endpoints),
    }
}

/// [`channel`], connected: a configuration error or no reachable server is an error now.
pub async fn connect(
    items: &[String],
    endpoints: Vec<Endpoint>,
) -> Result<Channel, grpc_h3::Error> {
    if let ([item], [endpoint]) = (items, endpoints.as_slice())
        && is_ip_literal(item)
    {
        return endpoint.clone().connect().await;
    }
    let channel = channel(items, endpoints);
    channel.ready().await?;
    Ok(channel)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addr_lists_are_split_and_checked() {
        assert_eq!(parse("a:1").unwrap(), ["a:1"]);
        assert_eq!(parse("a:1, b:2").unwrap(), ["a:1", "b:2"]);
        assert!(parse("a:1,,b:2").unwrap_err().contains("empty item"));
        assert!(parse("a:1,").is_err());
        assert!(parse("https://a:1").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn ip_literals_need_no_resolution() {
        assert!(is_ip_literal("127.0.0.1:50051"));
        assert!(is_ip_literal("[::1]:50051"));
        assert!(!is_ip_literal("zones.svc.cluster.local:50051"));
        assert!(!is_ip_literal("localhost:1"));
    }
}

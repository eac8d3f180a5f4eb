//! `Server::bind` on port 0 with both transports takes an ephemeral UDP port and binds TCP on the
//! same number. The kernel picks the UDP port without looking at TCP, so on a busy host that number
//! is often taken on TCP (by some outgoing connection's local port): bind must pick another rather
//! than fail. Its own test binary, since it holds thousands of sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::fixture as common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use grpc_h3::{Server, ServerTls};

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_bind_on_port_zero_survives_tcp_ports_taken() {
    // Take about a third of the ephemeral range on TCP, as a loaded client host would: without
    // retrying, a third of the binds below would fail with EADDRINUSE.
    let (low, high) = ephemeral_range();
    let fd_budget = 6000usize;
    let mut held = Vec::new();
    for port in (low..=high).step_by(3) {
        if held.len() >= fd_budget {
            break;
        }
        if let Ok(l) = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            held.push(l);
        }
    }
    let span = usize::from(high - low) + 1;
    let taken = held.len() as f64 / span as f64;
    assert!(taken > 0.1, "could only take {} TCP ports", held.len());

    let certs = common::certs();
    for i in 0..40 {
        let bound = Server::builder()
            .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
            .wires(grpc_h3::Wires::Both)
            .add_service(tonic_health::server::health_reporter().1)
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "bind {i} with {:.0} % of TCP ports taken: {e}",
                    taken * 100.0
                )
            });
        let (h2, h3) = (bound.h2_addr().unwrap(), bound.h3_addr().unwrap());
        assert_eq!(
            h2.port(),
            h3.port(),
            "HTTP/2 and HTTP/3 share one port number"
        );
    }
}

#[tokio::test]
async fn a_named_port_taken_on_tcp_is_an_io_error_not_another_port() {
    let taken = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let addr = taken.local_addr().unwrap();
    let certs = common::certs();
    let err = Server::builder()
        .tls(ServerTls::from_pem(&certs.server_cert_pem, &certs.server_key_pem).unwrap())
        .wires(grpc_h3::Wires::Both)
        .add_service(tonic_health::server::health_reporter().1)
        .bind(addr)
        .await
        .expect_err("the port is taken on TCP");
    assert!(err.is_io(), "{err}");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
}

//! Why bulk HTTP/3 is no faster under heavy random loss: a raw quinn transfer through the lab
//! (no gRPC, no HTTP/3 framing) with the transport settings grpc-h3 uses, reading quinn's
//! `Connection::stats()` on the sender, next to `ss -ti` of an HTTP/2 stream's TCP socket.
//!
//! Variants change one thing at a time (controller, loss-detection thresholds, windows), so the
//! report can say which of them bounds the throughput.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlab::Lab;
use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{TransportConfig, VarInt};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// One variant of the transport configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub congestion: &'static str,
    /// quinn `packet_threshold` (RFC 9002 kPacketThreshold; default 3).
    pub packet_threshold: u32,
    /// quinn `time_threshold` (RFC 9002 kTimeThreshold; default 9/8).
    pub time_threshold: f32,
    /// Stream and connection receive windows in bytes.
    pub stream_window: u32,
    pub connection_window: u32,
}

/// grpc-h3's `QuicSettings::default()` and one-change variants of it.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "grpc-h3 default (Cubic)",
        congestion: "cubic",
        packet_threshold: 3,
        time_threshold: 9.0 / 8.0,
        stream_window: 2 * 1024 * 1024,
        connection_window: 16 * 1024 * 1024,
    },
    Variant {
        name: "NewReno",
        congestion: "newreno",
        packet_threshold: 3,
        time_threshold: 9.0 / 8.0,
        stream_window: 2 * 1024 * 1024,
        connection_window: 16 * 1024 * 1024,
    },
    Variant {
        name: "BBR",
        congestion: "bbr",
        packet_threshold: 3,
        time_threshold: 9.0 / 8.0,
        stream_window: 2 * 1024 * 1024,
        connection_window: 16 * 1024 * 1024,
    },
    Variant {
        name: "Cubic, loss thresholds 10 packets / 2 RTT",
        congestion: "cubic",
        packet_threshold: 10,
        time_threshold: 2.0,
        stream_window: 2 * 1024 * 1024,
        connection_window: 16 * 1024 * 1024,
    },
    Variant {
        name: "Cubic, windows ÷16 (128 KiB / 1 MiB)",
        congestion: "cubic",
        packet_threshold: 3,
        time_threshold: 9.0 / 8.0,
        stream_window: 128 * 1024,
        connection_window: 1024 * 1024,
    },
];

/// What the sender's quinn connection reported over one transfer.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub variant: Variant,
    pub mbit_s: f64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
    /// Mean and max of the congestion window sampled every 20 ms, bytes.
    pub cwnd_mean: f64,
    pub cwnd_max: u64,
    pub rtt_ms: f64,
    pub min_rtt_ms: f64,
    pub mtu: u16,
    /// ACK frames the sender received.
    pub acks_received: u64,
    pub error: Option<String>,
}

fn transport(v: &Variant) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(v.stream_window))
        .receive_window(VarInt::from_u32(v.connection_window))
        .send_window(u64::from(v.connection_window))
        .packet_threshold(v.packet_threshold)
        .time_threshold(v.time_threshold);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(65_527);
    t.mtu_discovery_config(Some(mtu));
    match v.congestion {
        "bbr" => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
        "newreno" => t.congestion_controller_factory(Arc::new(NewRenoConfig::default())),
        _ => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
    };
    Arc::new(t)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(certs: &dev_certs::DevCerts, v: &Variant) -> anyhow::Result<quinn::ServerConfig> {
    let chain =
        CertificateDer::pem_slice_iter(&certs.server_cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&certs.server_key_pem)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"probe".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(v));
    Ok(config)
}

fn client_config(certs: &dev_certs::DevCerts, v: &Variant) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&certs.ca_pem) {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"probe".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(v));
    Ok(config)
}

/// Sender in namespace b: accepts one connection, writes for `duration`, samples the stats.
async fn send(
    endpoint: quinn::Endpoint,
    v: Variant,
    duration: Duration,
) -> anyhow::Result<ProbeResult> {
    let incoming = tokio::time::timeout(Duration::from_secs(20), endpoint.accept())
        .await?
        .ok_or_else(|| anyhow::anyhow!("endpoint closed"))?;
    let conn = incoming.await?;
    let mut stream = conn.open_uni().await?;
    let chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut next_sample = started;
    let (mut cwnd_sum, mut cwnd_n, mut cwnd_max) = (0f64, 0u64, 0u64);
    let mut written = 0u64;
    // Bounded by `duration`; each write waits at most a flow-control/congestion stall.
    while started.elapsed() < duration {
        let w = tokio::time::timeout(Duration::from_millis(100), stream.write(&chunk)).await;
        if let Ok(n) = w {
            written += n? as u64;
        }
        if Instant::now() >= next_sample {
            let c = conn.stats().path.cwnd;
            cwnd_sum += c as f64;
            cwnd_n += 1;
            cwnd_max = cwnd_max.max(c);
            next_sample += Duration::from_millis(20);
        }
    }
    let stats = conn.stats();
    let _ = stream.reset(VarInt::from_u32(0));
    conn.close(VarInt::from_u32(0), b"done");
    let _ = written;
    Ok(ProbeResult {
        variant: v,
        mbit_s: 0.0,
        sent_packets: stats.path.sent_packets,
        lost_packets: stats.path.lost_packets,
        congestion_events: stats.path.congestion_events,
        cwnd_mean: if cwnd_n > 0 {
            cwnd_sum / cwnd_n as f64
        } else {
            0.0
        },
        cwnd_max,
        rtt_ms: stats.path.rtt.as_secs_f64() * 1e3,
        min_rtt_ms: stats.path.min_rtt.as_secs_f64() * 1e3,
        mtu: stats.path.current_mtu,
        acks_received: stats.frame_rx.acks,
        error: None,
    })
}

/// Receiver in namespace a: bytes read for `duration` (from the first byte).
async fn receive(
    addr: SocketAddr,
    config: quinn::ClientConfig,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut endpoint = quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into())?;
    endpoint.set_default_client_config(config);
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let mut stream = conn.accept_uni().await?;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut bytes = 0u64;
    let until = tokio::time::Instant::now() + duration + Duration::from_secs(2);
    // Bounded: ends at the stream's reset or `until`.
    while let Ok(Ok(Some(n))) = tokio::time::timeout_at(until, stream.read(&mut buf)).await {
        bytes += n as u64;
    }
    let secs = started
        .elapsed()
        .as_secs_f64()
        .min(duration.as_secs_f64())
        .max(1e-3);
    endpoint.close(VarInt::from_u32(0), b"done");
    Ok(bytes as f64 * 8.0 / secs / 1e6)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// One transfer of `v` through the lab as currently impaired.
pub fn probe(lab: &Lab, v: Variant, duration: Duration) -> ProbeResult {
    let failed = |e: String| ProbeResult {
        variant: v,
        mbit_s: 0.0,
        sent_packets: 0,
        lost_packets: 0,
        congestion_events: 0,
        cwnd_mean: 0.0,
        cwnd_max: 0,
        rtt_ms: 0.0,
        min_rtt_ms: 0.0,
        mtu: 0,
        acks_received: 0,
        error: Some(e),
    };
    let certs = match dev_certs::DevCerts::generate() {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    let (server, client) = match (server_config(&certs, &v), client_config(&certs, &v)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return failed(format!("{e:#}")),
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let ip = lab.addr_b();
    let sender = lab.spawn_in_b(move || -> Result<ProbeResult, String> {
        let rt = runtime()?;
        rt.block_on(async move {
            let endpoint = match quinn::Endpoint::server(server, (ip, 0).into())
                .and_then(|e| e.local_addr().map(|a| (e, a)))
            {
                Ok((e, a)) => {
                    let _ = addr_tx.send(Ok(a));
                    e
                }
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
            };
            let r = send(endpoint.clone(), v, duration)
                .await
                .map_err(|e| format!("{e:#}"));
            endpoint.wait_idle().await;
            r
        })
    });
    let sender = match sender {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let addr = match addr_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return failed(e),
        Err(e) => return failed(e.to_string()),
    };
    let receiver = lab.spawn_in_a(move || -> Result<f64, String> {
        runtime()?
            .block_on(receive(addr, client, duration))
            .map_err(|e| format!("{e:#}"))
    });
    let mbit = match receiver {
        Ok(t) => t
            .join()
            .map_err(|_| "receiver panicked".to_string())
            .and_then(|r| r),
        Err(e) => Err(e.to_string()),
    };
    let sent = sender
        .join()
        .map_err(|_| "sender panicked".to_string())
        .and_then(|r| r);
    match (sent, mbit) {
        (Ok(mut r), Ok(m)) => {
            r.mbit_s = m;
            r
        }
        (Err(e), _) | (_, Err(e)) => failed(e),
    }
}

/// `ss -tin` of the TCP sockets in namespace `ns` (the sender's view: cwnd, retransmits, RTT).
pub fn ss(ns: &str) -> String {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-tin", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss failed: {e}"))
}

/// The figures of `ss -ti` worth reporting from its info line (cwnd, rtt, retrans, …).
pub fn ss_summary(text: &str) -> Vec<String> {
    let keep = [
        "cubic",
        "bbr",
        "rtt:",
        "cwnd:",
        "ssthresh:",
        "retrans:",
        "lost:",
        "delivery_rate",
        "bytes_retrans:",
        "rcv_space:",
        "snd_wnd:",
        "reordering:",
    ];
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut lines = Vec::new();
    let mut current = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if keep.iter().any(|k| w.starts_with(k)) {
            let w = if *w == "delivery_rate" {
                format!("delivery_rate {}", words.get(i + 1).unwrap_or(&""))
            } else {
                (*w).to_string()
            };
            if (w == "cubic" || w == "bbr") && !current.is_empty() {
                lines.push(current.join(" "));
                current.clear();
            }
            current.push(w);
        }
    }
    if !current.is_empty() {
        lines.push(current.join(" "));
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ss_summary_keeps_the_congestion_figures_per_socket() {
        let text = "ESTAB 0 0 10.77.0.2:443 10.77.0.1:5000\n\t cubic wscale:7,7 rto:252 \
                    rtt:51.2/3.1 mss:1448 cwnd:7 ssthresh:5 bytes_sent:1000 retrans:0/31 \
                    delivery_rate 1.2Mbps lost:2\nESTAB 0 0 a b\n\t bbr rtt:50/1 cwnd:40";
        let s = ss_summary(text);
        assert_eq!(
            s,
            [
                "cubic rtt:51.2/3.1 cwnd:7 ssthresh:5 retrans:0/31 delivery_rate 1.2Mbps lost:2",
                "bbr rtt:50/1 cwnd:40"
            ]
        );
    }

    #[test]
    fn the_first_variant_is_grpc_h3s_default() {
        let d = grpc_h3::QuicSettings::default();
        assert_eq!(VARIANTS[0].stream_window, d.get_stream_receive_window());
        assert_eq!(VARIANTS[0].connection_window, d.get_receive_window());
        assert_eq!(d.get_congestion(), grpc_h3::CongestionControl::Cubic);
    }
}

//! A killed HTTP/3 server that comes back on the same port (same key) ends its predecessor's
//! connections with a stateless reset (RFC 9000 §10.3): the client's next call fails fast with
//! UNAVAILABLE and the one after reconnects, instead of every call running into its deadline
//! until the QUIC idle timeout (30 s) gives the dead connection up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grpc_h3::{Endpoint, Transport};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::zones_client::ZonesClient;

const BIN: &str = env!("CARGO_BIN_EXE_zone-server");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--host", "127.0.0.1", "--transport", "h3"])
        .args(["--port", &port.to_string(), "--cert-dir", "certs"])
        .args(["--synthetic", "10"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "no READY line: {line:?}");
    Server(child)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn call(client: &mut ZonesClient<grpc_h3::Channel>) -> Result<(), tonic::Status> {
    let query = pb::RecordQuery {
        zone: "synthetic.test.".into(),
        name: "synthetic.test.".into(),
        r#type: "SOA".into(),
    };
    client.get_record(query).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_h3_server_resets_the_old_connection_and_the_client_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut server = start(dir.path(), port);
    let ca = std::fs::read(dir.path().join("certs").join(dev_certs::CA_CERT_FILE)).unwrap();
    let channel = Endpoint::new(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .transport(Transport::H3)
        .ca_certificate_pem(&ca)
        .unwrap()
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let mut client = ZonesClient::new(channel);
    call(&mut client).await.unwrap();

    // SIGKILL: no CONNECTION_CLOSE reaches the client, its connection still looks alive.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    drop(server);
    let _server = start(dir.path(), port);
    let restarted = Instant::now();

    let mut failures = Vec::new();
    let recovered = loop {
        match call(&mut client).await {
            Ok(()) => break restarted.elapsed(),
            Err(status) => failures.push(status.code()),
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "no successful call 15 s after the restart; failures: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Without a stable reset key each call would wait out its 2 s deadline until the 30 s idle
    // timeout; with it the old connection is reset on first contact.
    assert!(
        !failures.contains(&tonic::Code::DeadlineExceeded),
        "calls hung on the dead connection: {failures:?}"
    );
    assert!(failures.len() <= 2, "failures: {failures:?}");
    assert!(
        recovered < Duration::from_secs(5),
        "recovered after {recovered:?}"
    );
}

//! Crash safety of the journal: the real `zone-server --journal` binary is SIGKILLed in the middle
//! of a stream of pushes, again and again. After each restart every batch the client saw
//! acknowledged is there, the batch in flight is there entirely or not at all, and nothing else:
//! the zone equals the replay of exactly those batches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use grpc_h3::{Endpoint, Transport};
use zone_proto::zone::v1 as pb;
use zone_proto::zone::v1::change::Op;
use zone_proto::zone::v1::zones_client::ZonesClient;

const BIN: &str = env!("CARGO_BIN_EXE_zone-server");
const ZONE: &str = "crash.test.";
const BASE_SERIAL: u32 = 1000;
const ITERATIONS: u64 = 10;
/// Records each batch creates: a partially applied batch would show as a partial group.
const GROUP: usize = 20;

fn zone_text() -> String {
    format!(
        "$ORIGIN crash.test.\n$TTL 300\n@ SOA ns1 hostmaster {BASE_SERIAL} 7200 900 1209600 300\n\
         @ NS ns1\nns1 A 192.0.2.53\n"
    )
}

/// Batch `i` creates group `i` and deletes one record of group `i - 1`.
fn batch(i: usize) -> pb::ChangeBatch {
    let record = |name: String, rdata: String| pb::Record {
        name,
        r#type: "A".into(),
        class: String::new(),
        ttl: 60,
        rdata,
    };
    let mut changes: Vec<pb::Change> = (0..GROUP)
        .map(|j| pb::Change {
            op: Op::Create.into(),
            record: Some(record(format!("g{i}-{j}"), format!("192.0.2.{j}"))),
            previous: None,
        })
        .collect();
    if i > 0 {
        changes.push(pb::Change {
            op: Op::Delete.into(),
            record: Some(record(format!("g{}-0", i - 1), "192.0.2.0".into())),
            previous: None,
        });
    }
    pb::ChangeBatch {
        zone: ZONE.into(),
        changes,
        expected_serial: None,
    }
}

/// The zone (without its SOA) after batches `0..n`.
fn model(n: usize) -> BTreeSet<String> {
    let mut lines: BTreeSet<String> = [
        "crash.test. NS ns1.crash.test.".to_string(),
        "ns1.crash.test. A 192.0.2.53".to_string(),
    ]
    .into();
    for i in 0..n {
        for j in 0..GROUP {
            lines.insert(format!("g{i}-{j}.crash.test. A 192.0.2.{j}"));
        }
        if i > 0 {
            lines.remove(&format!("g{}-0.crash.test. A 192.0.2.0", i - 1));
        }
    }
    lines
}

/// Starts the server on the journal; returns it with its (h2c) address.
fn start(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--port",
            "0",
            "--plaintext",
            "--zones",
            "zones",
            "--journal",
            "journal.redb",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    // READY comes after the replay; a hang fails the test through the iteration bound below.
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("h2="))
        .unwrap_or_else(|| panic!("no READY line: {line:?}"));
    (child, addr.parse().unwrap())
}

async fn client(addr: SocketAddr) -> ZonesClient<grpc_h3::Channel> {
    let channel = Endpoint::new(format!("http://{addr}"))
        .unwrap()
        .transport(Transport::H2)
        .connect()
        .await
        .unwrap();
    ZonesClient::new(channel)
}

/// The zone's serial and its records without the SOA.
async fn zone(client: &mut ZonesClient<grpc_h3::Channel>) -> (u32, BTreeSet<String>) {
    let request = pb::TransferRequest {
        zone: ZONE.into(),
        since_serial: None,
        batch_size: 0,
    };
    let mut stream = client.transfer_zone(request).await.unwrap().into_inner();
    let mut serial = 0;
    let mut lines = BTreeSet::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        serial = batch.serial;
        for r in batch.records {
            if r.r#type != "SOA" {
                lines.insert(format!("{} {} {}", r.name, r.r#type, r.rdata));
            }
        }
    }
    (serial, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_push_loses_no_acknowledged_batch_and_applies_no_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/crash.test.zone"), zone_text()).unwrap();

    // Batches known durable: acknowledged, or found applied after a restart.
    let mut durable = 0usize;
    let mut in_flight_seen = 0;
    for iteration in 0..=ITERATIONS {
        let started = Instant::now();
        let (mut child, addr) = start(dir.path());
        let mut zones = client(addr).await;
        let (serial, lines) = zone(&mut zones).await;
        let base = BASE_SERIAL + u32::try_from(durable).unwrap();
        // Acknowledged batches are all there; the one in flight at the kill may be too.
        if serial == base + 1 {
            durable += 1;
            in_flight_seen += 1;
        } else {
            assert_eq!(serial, base, "iteration {iteration}: serial");
        }
        assert_eq!(
            lines,
            model(durable),
            "iteration {iteration}: zone != replay of acknowledged batches"
        );
        if iteration == ITERATIONS {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }

        // Push one batch per call (each call acknowledges exactly its batch) until killed.
        let acked = Arc::new(Mutex::new(Vec::new()));
        let pusher = {
            let acked = Arc::clone(&acked);
            let mut zones = zones.clone();
            let first = durable;
            tokio::spawn(async move {
                for i in first.. {
                    let Ok(result) = zones.push_changes(futures::stream::iter([batch(i)])).await
                    else {
                        return;
                    };
                    acked.lock().unwrap().push(result.into_inner().serial);
                }
            })
        };
        // Kill at a different point of the stream each time (50..=410 ms).
        let delay = 50 + (iteration * 7919) % 361;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::timeout(Duration::from_secs(5), pusher)
            .await
            .expect("pusher did not notice the kill")
            .unwrap();
        let acked = acked.lock().unwrap().clone();
        let at = BASE_SERIAL + u32::try_from(durable).unwrap();
        let want: Vec<u32> = (1..=u32::try_from(acked.len()).unwrap())
            .map(|k| at + k)
            .collect();
        assert_eq!(acked, want, "acknowledged serials must be consecutive");
        durable += acked.len();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "iteration {iteration} took {:?}",
            started.elapsed()
        );
    }
    assert!(
        durable >= usize::try_from(ITERATIONS).unwrap(),
        "too few pushes to mean anything: {durable}"
    );
    eprintln!(
        "{durable} batches durable over {ITERATIONS} kills, {in_flight_seen} in-flight batches found applied"
    );
}

//! The impaired-network lab measured from the outside: UDP probes between its two namespaces see
//! the configured delay, loss and rate; namespaces are gone after the lab is dropped.
//!
//! Needs root and /dev/net/tun; each test prints why and passes vacuously when they are missing.
//! Traffic only flows between the lab's own namespaces (10.77.0.1 <-> 10.77.0.2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlab::{self, Impairment, Lab, LabStats};

/// The labs compete for two cores; measuring one at a time keeps the numbers honest.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn start(a_to_b: Impairment, b_to_a: Impairment) -> Option<Lab> {
    match Lab::start(a_to_b, b_to_a) {
        Ok(lab) => {
            println!("{}", lab.ready_line());
            Some(lab)
        }
        Err(e) if e.is_skip() => {
            println!("skipping netlab test: {e}");
            None
        }
        Err(e) => panic!("starting the lab: {e}"),
    }
}

/// Drops the lab and checks both of its namespaces are gone.
fn finish(lab: Lab) {
    let names = [lab.ns_a().to_owned(), lab.ns_b().to_owned()];
    drop(lab);
    let left = netlab::list_namespaces().unwrap();
    for n in &names {
        assert!(!left.contains(n), "namespace {n} left behind: {left:?}");
    }
    let ours = format!("-{}-", std::process::id());
    // Tests hold SERIAL, so no other lab of this process is running now.
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("gh3-") && n.contains(&ours)),
        "lab namespaces of this process left: {left:?}"
    );
}

/// UDP echo on `addr` inside namespace b until `stop` (or 25 s); returns datagrams echoed.
fn echo_in_b(lab: &Lab, addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = lab
        .spawn_in_b(move || {
            let sock = UdpSocket::bind(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(25);
            let mut buf = [0u8; 2048];
            let mut echoed = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    sock.send_to(&buf[..n], from).unwrap();
                    echoed += 1;
                }
            }
            echoed
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    h
}

/// Sends `n` numbered probes from namespace a to `to`, one per `gap`, and collects the echoes'
/// round-trip times (indexed by probe number; `None` = lost).
fn probe(lab: &Lab, to: SocketAddr, n: u32, gap: Duration) -> Vec<Option<Duration>> {
    let sock = lab
        .spawn_in_a(move || {
            let s = UdpSocket::bind((netlab::ADDR_A, 0)).unwrap();
            s.connect(to).unwrap();
            s
        })
        .unwrap()
        .join()
        .unwrap();
    let rx_sock = sock.try_clone().unwrap();
    rx_sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let base = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let done_rx = Arc::clone(&done);
    let receiver = std::thread::spawn(move || {
        let mut rtts = vec![None; n as usize];
        let deadline = Instant::now() + Duration::from_secs(25);
        let mut buf = [0u8; 2048];
        while !done_rx.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(len) = rx_sock.recv(&mut buf) {
                let now = base.elapsed();
                assert_eq!(len, 64);
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let sent = Duration::from_nanos(u64::from_be_bytes(buf[4..12].try_into().unwrap()));
                assert!(rtts[seq as usize].is_none(), "probe {seq} echoed twice");
                rtts[seq as usize] = Some(now - sent);
            }
        }
        rtts
    });
    let mut payload = [0u8; 64];
    for seq in 0..n {
        let due = gap * seq;
        if let Some(wait) = due.checked_sub(base.elapsed()) {
            std::thread::sleep(wait);
        }
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let sent = u64::try_from(base.elapsed().as_nanos()).unwrap();
        payload[4..12].copy_from_slice(&sent.to_be_bytes());
        sock.send(&payload).unwrap();
    }
    // Let the last echoes come home (RTT is at most a few hundred ms here).
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    receiver.join().unwrap()
}

#[test]
fn probes_measure_configured_delay_and_loss() {
    let _g = serial();
    let one_way = |seed| Impairment {
        delay: Duration::from_millis(25),
        loss: 0.05,
        seed,
        ..Impairment::default()
    };
    let Some(lab) = start(one_way(11), one_way(12)) else {
        return;
    };
    let echo_addr = SocketAddr::from((lab.addr_b(), 7000));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = echo_in_b(&lab, echo_addr, Arc::clone(&stop));

    let n = 2000u32;
    let rtts = probe(&lab, echo_addr, n, Duration::from_millis(1));
    stop.store(true, Ordering::Relaxed);
    let echoed = echo.join().unwrap();
    let stats: LabStats = lab.stats();
    println!("stats: {stats:?}");

    let mut got: Vec<Duration> = rtts.iter().flatten().copied().collect();
    got.sort();
    let lost = f64::from(n - u32::try_from(got.len()).unwrap()) / f64::from(n);
    let median = got[got.len() / 2];
    let p99 = got[got.len() * 99 / 100];
    println!(
        "RTT min {:?} median {median:?} p99 {p99:?} max {:?}; loss {:.2}% ({} of {n}) [expected 9.75%]",
        got[0],
        got[got.len() - 1],
        lost * 100.0,
        n as usize - got.len()
    );

    // Every probe crossed the router (nothing else does), in both directions' accounting.
    assert_eq!(stats.a_to_b.received, u64::from(n));
    assert_eq!(stats.a_to_b.forwarded_packets, echoed);
    assert_eq!(stats.b_to_a.received, echoed);
    assert_eq!(stats.b_to_a.forwarded_packets, got.len() as u64);
    assert_eq!(stats.a_to_b.errors + stats.b_to_a.errors, 0);
    assert_eq!(
        stats.a_to_b.dropped_queue + stats.a_to_b.dropped_overflow,
        0
    );

    // Delay: no echo can beat 2 x 25 ms; the median within +-20 % of 50 ms.
    assert!(got[0] >= Duration::from_millis(50), "min RTT {:?}", got[0]);
    let target = Duration::from_millis(50);
    assert!(
        median.abs_diff(target) <= target / 5,
        "median RTT {median:?}"
    );

    // Loss per direction 5 %: sigma = sqrt(0.05 * 0.95 / 2000) = 0.49 %, allow 5 sigma.
    let ab_loss = stats.a_to_b.dropped_loss as f64 / f64::from(n);
    assert!((ab_loss - 0.05).abs() < 0.0245, "a->b loss {ab_loss}");
    let ba_loss = stats.b_to_a.dropped_loss as f64 / echoed as f64;
    assert!((ba_loss - 0.05).abs() < 0.026, "b->a loss {ba_loss}");
    // Round trip 1 - 0.95^2 = 9.75 %: sigma 0.66 %, allow 5 sigma.
    assert!((lost - 0.0975).abs() < 0.033, "round-trip loss {lost}");
    finish(lab);
}

#[test]
fn rate_cap_limits_throughput() {
    let _g = serial();
    let cap = 20_000_000u64;
    let Some(lab) = start(
        Impairment {
            rate_bps: Some(cap),
            queue_packets: 100,
            seed: 1,
            ..Impairment::default()
        },
        Impairment::default(),
    ) else {
        return;
    };
    let sink_addr = SocketAddr::from((lab.addr_b(), 7001));
    let (ready_tx, ready_rx) = mpsc::channel();
    // Counts IP bytes (UDP payload + 28) and the arrival times of the first and last datagram.
    let sink = lab
        .spawn_in_b(move || {
            let sock = UdpSocket::bind(sink_addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut buf = [0u8; 2048];
            let (mut first, mut last, mut bytes, mut first_len) = (None, None, 0u64, 0u64);
            while Instant::now() < deadline {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let now = Instant::now();
                        let ip_len = n as u64 + 28;
                        if first.is_none() {
                            first = Some(now);
                            first_len = ip_len;
                        }
                        last = Some(now);
                        bytes += ip_len;
                    }
                    // Quiet for 300 ms after traffic started: the sender is done.
                    Err(_) if first.is_some() => break,
                    Err(_) => {}
                }
            }
            let span = last.unwrap() - first.unwrap();
            // Bits after the first datagram, over the time they took to arrive.
            ((bytes - first_len) * 8) as f64 / span.as_secs_f64()
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();

    // Offer 1.5 x the cap for 3 s: 1228-byte IP packets paced at 30 Mbit/s.
    let offered_bps = 30_000_000f64;
    let pps = offered_bps / (1228.0 * 8.0);
    let sender = lab
        .spawn_in_a(move || {
            let sock = UdpSocket::bind((netlab::ADDR_A, 0)).unwrap();
            sock.connect(sink_addr).unwrap();
            let payload = [7u8; 1200];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(3) {
                let due = (start.elapsed().as_secs_f64() * pps) as u64;
                while sent < due {
                    let _ = sock.send(&payload); // ENOBUFS under pressure is part of the test
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        })
        .unwrap();
    let sent = sender.join().unwrap();
    let measured = sink.join().unwrap();
    let stats = lab.stats();
    println!(
        "rate cap {:.1} Mbit/s: measured {:.2} Mbit/s ({:+.2} %), sent {sent} datagrams; a->b {:?}",
        cap as f64 / 1e6,
        measured / 1e6,
        (measured / cap as f64 - 1.0) * 100.0,
        stats.a_to_b
    );
    assert!(
        (measured - cap as f64).abs() <= cap as f64 * 0.2,
        "measured {measured} bit/s against a {cap} bit/s cap"
    );
    // The excess was dropped at the bottleneck's tail, not by loss or the router's own limits.
    assert!(stats.a_to_b.dropped_queue > sent / 5, "{:?}", stats.a_to_b);
    assert_eq!(stats.a_to_b.dropped_loss + stats.a_to_b.dropped_overflow, 0);
    finish(lab);
}

#[test]
fn live_changes_apply_and_devices_are_configured() {
    let _g = serial();
    let Some(lab) = start(Impairment::default(), Impairment::default()) else {
        return;
    };
    for ns in [lab.ns_a(), lab.ns_b()] {
        let out = Command::new("ip")
            .args(["-n", ns, "-d", "link", "show", netlab::TUN_NAME])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("mtu 1500"), "{text}");
        assert!(text.contains("qlen 5000"), "{text}");
        assert!(text.contains("tun type tun pi off"), "{text}");
    }
    let echo_addr = SocketAddr::from((lab.addr_b(), 7002));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = echo_in_b(&lab, echo_addr, Arc::clone(&stop));

    // A perfect link: every probe returns, fast.
    let rtts = probe(&lab, echo_addr, 200, Duration::from_micros(500));
    assert!(
        rtts.iter().all(Option::is_some),
        "lost probes on a perfect link"
    );
    let slowest = rtts.iter().flatten().max().unwrap();
    assert!(*slowest < Duration::from_millis(40), "slowest {slowest:?}");

    // Cut a->b: nothing returns, and the router says why.
    let cut = Impairment {
        loss: 1.0,
        ..Impairment::default()
    };
    lab.set(cut.clone(), Impairment::default()).unwrap();
    assert_eq!(lab.impairments().0, cut);
    let before = lab.stats();
    let rtts = probe(&lab, echo_addr, 100, Duration::from_micros(500));
    assert!(rtts.iter().all(Option::is_none));
    assert_eq!(
        lab.stats().a_to_b.dropped_loss - before.a_to_b.dropped_loss,
        100
    );

    // 10 ms each way, live.
    let slow = Impairment {
        delay: Duration::from_millis(10),
        ..Impairment::default()
    };
    lab.set(slow.clone(), slow).unwrap();
    let rtts = probe(&lab, echo_addr, 100, Duration::from_millis(1));
    assert!(rtts.iter().all(Option::is_some));
    assert!(
        rtts.iter()
            .flatten()
            .all(|r| *r >= Duration::from_millis(20))
    );

    assert!(matches!(
        lab.set(
            Impairment {
                loss: 2.0,
                ..Impairment::default()
            },
            Impairment::default()
        ),
        Err(netlab::LabError::InvalidImpairment(_))
    ));
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    finish(lab);
}

#[test]
fn tcp_crosses_the_lab_in_mtu_sized_segments() {
    use std::io::{Read, Write};
    let _g = serial();
    let link = |seed| Impairment {
        delay: Duration::from_millis(5),
        rate_bps: Some(50_000_000),
        queue_packets: 200,
        seed,
        ..Impairment::default()
    };
    let Some(lab) = start(link(1), link(2)) else {
        return;
    };
    // Offloads off: the kernel must hand the router MTU-sized packets, never GSO aggregates.
    if let Ok(out) = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.ns_a(),
            "ethtool",
            "-k",
            netlab::TUN_NAME,
        ])
        .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        for feature in ["tcp-segmentation-offload: off", "tx-checksumming: off"] {
            assert!(text.contains(feature), "{feature} expected in:\n{text}");
        }
        println!(
            "ethtool -k {}: TSO and checksum offload are off",
            netlab::TUN_NAME
        );
    }
    let addr = SocketAddr::from((lab.addr_b(), 7004));
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = lab
        .spawn_in_b(move || {
            let listener = std::net::TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let start = Instant::now();
            let timeout = Some(Duration::from_secs(10));
            conn.set_read_timeout(timeout).unwrap();
            let mut data = Vec::new();
            conn.read_to_end(&mut data).unwrap();
            (data, start.elapsed())
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let sent: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let to_send = sent.clone();
    lab.spawn_in_a(move || {
        let timeout = Duration::from_secs(5);
        let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout).unwrap();
        conn.set_write_timeout(Some(timeout)).unwrap();
        conn.write_all(&to_send).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    let (received, took) = server.join().unwrap();
    let stats = lab.stats();
    println!(
        "TCP 2 MB a->b received in {took:?} = {:.1} Mbit/s (50 Mbit/s cap, 10 ms RTT); a->b {:?}",
        16.0 / took.as_secs_f64(),
        stats.a_to_b
    );
    assert!(
        received == sent,
        "TCP stream corrupted or short ({} bytes)",
        received.len()
    );
    let average = stats.a_to_b.forwarded_bytes / stats.a_to_b.forwarded_packets.max(1);
    assert!(
        average <= 1500,
        "average packet {average} B > MTU: GSO leaked through"
    );
    // 2 MB cannot cross a 50 Mbit/s bottleneck in less than 0.32 s (less the first window).
    assert!(took >= Duration::from_millis(250), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    finish(lab);
}

/// The TCP congestion controller of sockets made in namespace `a` and accepted in `b`.
fn tcp_controllers(lab: &Lab, port: u16) -> (String, String) {
    let addr = SocketAddr::from((lab.addr_b(), port));
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = lab
        .spawn_in_b(move || {
            let listener = std::net::TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let (conn, _) = listener.accept().unwrap();
            rustix::net::sockopt::tcp_congestion(&conn).unwrap()
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let client = lab
        .spawn_in_a(move || {
            let conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            rustix::net::sockopt::tcp_congestion(&conn).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
    (client, server.join().unwrap())
}

#[test]
fn tcp_congestion_is_set_per_namespace_and_used_by_new_sockets() {
    let _g = serial();
    let Some(lab) = start(Impairment::default(), Impairment::default()) else {
        return;
    };
    let host_key = "/proc/sys/net/ipv4/tcp_congestion_control";
    let host = std::fs::read_to_string(host_key).unwrap();
    let available =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap();
    // reno is always built in; cubic almost always; bbr where the module exists.
    let names: Vec<&str> = ["reno", "cubic", "bbr"]
        .into_iter()
        .filter(|n| available.split_whitespace().any(|a| a == *n))
        .collect();
    assert!(names.len() >= 2, "available: {available}");
    for (i, name) in names.iter().enumerate() {
        lab.set_tcp_congestion(name).unwrap();
        let read = lab.tcp_congestion().unwrap();
        assert_eq!(read, (name.to_string(), name.to_string()));
        // Cross-check with iproute2: the route to the peer carries the controller.
        for (ns, peer) in [(lab.ns_a(), lab.addr_b()), (lab.ns_b(), lab.addr_a())] {
            let out = Command::new("ip")
                .args(["-n", ns, "route", "show", &format!("{peer}/32")])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&format!("congctl {name}")), "{ns}: {text}");
        }
        let (client, server) = tcp_controllers(&lab, 7100 + i as u16);
        println!("{name}: client socket {client}, accepted socket {server}");
        assert_eq!((client.as_str(), server.as_str()), (*name, *name));
    }
    // The host's own default is untouched.
    assert_eq!(std::fs::read_to_string(host_key).unwrap(), host);
    for bad in ["no-such-cc", "", "../../x", "cubic\nreno"] {
        match lab.set_tcp_congestion(bad) {
            Err(netlab::LabError::TcpCongestion { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A refused name leaves the last controller in force.
    let last = names.last().unwrap().to_string();
    assert_eq!(lab.tcp_congestion().unwrap(), (last.clone(), last));
    finish(lab);
}

#[test]
fn namespaces_are_removed_when_the_user_panics() {
    let _g = serial();
    let names = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&names);
    let outcome = std::panic::catch_unwind(move || {
        let Some(lab) = start(Impairment::default(), Impairment::default()) else {
            return;
        };
        *seen.lock().unwrap() = Some([lab.ns_a().to_owned(), lab.ns_b().to_owned()]);
        panic!("deliberate panic with the lab running");
    });
    let Some(names) = names.lock().unwrap().take() else {
        return; // skipped
    };
    assert!(outcome.is_err());
    let left = netlab::list_namespaces().unwrap();
    for n in &names {
        assert!(!left.contains(n), "{n} survived the panic: {left:?}");
    }
}

#[test]
fn start_sweeps_namespaces_of_dead_processes() {
    let _g = serial();
    // A pid that existed a moment ago and has exited: its namespaces are stale.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("gh3-a-{dead}-0");
    let made = Command::new("ip")
        .args(["netns", "add", &stale])
        .output()
        .unwrap();
    if !made.status.success() {
        let why = String::from_utf8_lossy(&made.stderr);
        println!("skipping netlab sweep test: cannot create namespaces here: {why}");
        return;
    }
    let Some(lab) = start(Impairment::default(), Impairment::default()) else {
        let _ = Command::new("ip").args(["netns", "del", &stale]).output();
        return;
    };
    let left = netlab::list_namespaces().unwrap();
    let _ = Command::new("ip").args(["netns", "del", &stale]).output();
    assert!(!left.contains(&stale), "stale {stale} survived: {left:?}");
    assert!(left.iter().any(|n| n == lab.ns_a()));
    finish(lab);
}

/// Not a correctness test: the ceiling of the router (unpaced UDP blast a -> b for 3 s).
/// `cargo test -p netlab --release --test lab -- --ignored --nocapture max_throughput`
#[test]
#[ignore = "measurement; run on demand"]
fn max_throughput() {
    let _g = serial();
    let Some(lab) = start(Impairment::default(), Impairment::default()) else {
        return;
    };
    let sink_addr = SocketAddr::from((lab.addr_b(), 7003));
    let (ready_tx, ready_rx) = mpsc::channel();
    let sink = lab
        .spawn_in_b(move || {
            let sock = sink_socket(sink_addr);
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(15);
            let (mut first, mut last, mut bytes) = (None, None, 0u64);
            while Instant::now() < deadline {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = Some(now);
                        bytes += n as u64 + 28;
                    }
                    Err(_) if first.is_some() => break,
                    Err(_) => {}
                }
            }
            (bytes, last.unwrap() - first.unwrap())
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let sender = lab
        .spawn_in_a(move || {
            let sock = UdpSocket::bind((netlab::ADDR_A, 0)).unwrap();
            sock.connect(sink_addr).unwrap();
            let payload = [7u8; 1200];
            let start = Instant::now();
            let (mut sent, mut failed) = (0u64, 0u64);
            while start.elapsed() < Duration::from_secs(3) {
                for _ in 0..64 {
                    match sock.send(&payload) {
                        Ok(_) => sent += 1,
                        Err(_) => failed += 1,
                    }
                }
            }
            (sent, failed, start.elapsed())
        })
        .unwrap();
    let (sent, failed, took) = sender.join().unwrap();
    let (bytes, span) = sink.join().unwrap();
    let stats = lab.stats();
    let mbps = bytes as f64 * 8.0 / span.as_secs_f64() / 1e6;
    println!(
        "blast: offered {sent} x 1228 B in {took:?} ({:.0} Mbit/s; {failed} sends refused); \
         delivered {mbps:.0} Mbit/s over {span:?}; a->b {:?}",
        sent as f64 * 1228.0 * 8.0 / took.as_secs_f64() / 1e6,
        stats.a_to_b
    );
    assert!(bytes > 0 && stats.a_to_b.forwarded_packets > 0);
    finish(lab);
}

/// A sink socket with a 300 ms read timeout.
fn sink_socket(addr: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

#[test]
fn scheduled_partition_drops_probes_then_heals() {
    let _g = serial();
    let Some(lab) = start(Impairment::default(), Impairment::default()) else {
        return;
    };
    let echo_addr = SocketAddr::from((lab.addr_b(), 7005));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = echo_in_b(&lab, echo_addr, Arc::clone(&stop));
    // Probes every 5 ms for 1.5 s; both directions cut from 0.5 s to 1.0 s.
    let schedule = netlab::Schedule::partition(
        &Impairment::default(),
        Duration::from_millis(500),
        Duration::from_millis(500),
    );
    assert_eq!(
        schedule.windows(0.5),
        [(Duration::from_millis(500), Duration::from_millis(1000))]
    );
    let player = lab.play(schedule).unwrap();
    let rtts = probe(&lab, echo_addr, 300, Duration::from_millis(5));
    let applied = player.finish(Duration::from_secs(2));
    assert_eq!(applied.len(), 3, "every step applied: {applied:?}");
    assert!(applied[1] >= Duration::from_millis(500) && applied[1] < Duration::from_millis(600));
    // The probe started just after the player; allow 100 ms either side of each edge for the
    // thread start-up and scheduling.
    let seq = |ms: u64| (ms / 5) as usize;
    let before = &rtts[..seq(400)];
    let during = &rtts[seq(600)..seq(900)];
    let after = &rtts[seq(1100)..];
    assert!(before.iter().all(Option::is_some), "lost before the cut");
    assert!(
        during.iter().all(Option::is_none),
        "probes crossed the partition"
    );
    assert!(after.iter().all(Option::is_some), "lost after the heal");
    // Back to a perfect link both ways.
    assert_eq!(
        lab.impairments(),
        (Impairment::default(), Impairment::default())
    );
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    finish(lab);
}

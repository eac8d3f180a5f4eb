//! A clean 1500-byte path: two namespaces joined by a veth pair, as two hosts on one Ethernet
//! segment whose NICs offload segmentation (TSO for TCP, UDP GSO for QUIC) and coalesce on
//! receive (GRO). No impairment and no userspace router, so the path costs what the two stacks
//! cost at Ethernet's MTU, unlike loopback's 64 KiB datagrams.
//!
//! veth passes a GSO packet to its peer unsegmented (TSO and `tx-udp-segmentation` are on by
//! default), and a UDP socket with UDP_GRO (quinn-udp sets it) receives such a packet as one
//! batch — what a NIC's segmentation and the receiver's GRO amount to for the host's CPU. GRO is
//! switched on as well (with `ethtool`, when installed) so packets sent one by one are coalesced
//! as a NIC driver's NAPI would.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use super::LabError;
use super::ns::{self, Netns};

/// Address of namespace `a` on its veth (/24).
pub const VETH_ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// Address of namespace `b` on its veth (/24).
pub const VETH_ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// Name of the veth device inside each namespace.
pub const VETH_NAME: &str = "gh3veth";
/// Ethernet's MTU.
pub const VETH_MTU: u16 = 1500;

/// Distinguishes several links of one process (parallel tests).
static NEXT_LINK: AtomicU32 = AtomicU32::new(0);

/// A veth pair between namespaces `gh3-a-<pid>-v<n>` and `gh3-b-<pid>-v<n>`; dropping it deletes
/// both (and with them the pair).
#[derive(Debug)]
pub struct VethLink {
    a: Netns,
    b: Netns,
    gro: bool,
}

impl VethLink {
    /// Creates the namespaces and the veth pair, MTU [`VETH_MTU`], offloads on. Sweeps stale lab
    /// namespaces first. Needs root.
    pub fn start() -> Result<Self, LabError> {
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(LabError::NotRoot {
                euid: euid.as_raw(),
            });
        }
        ns::sweep_stale()?;
        let id = format!(
            "{}-v{}",
            std::process::id(),
            NEXT_LINK.fetch_add(1, Ordering::Relaxed)
        );
        let a = Netns::create(format!("{}a-{id}", ns::PREFIX))?;
        let b = Netns::create(format!("{}b-{id}", ns::PREFIX))?;
        a.ip(&[
            "link",
            "add",
            VETH_NAME,
            "type",
            "veth",
            "peer",
            "name",
            VETH_NAME,
            "netns",
            b.name(),
        ])
        .map_err(|e| match e {
            LabError::Command { command, detail } => LabError::Unsupported {
                reason: format!("`{command}` failed (no veth driver?): {detail}"),
            },
            other => other,
        })?;
        let mtu = VETH_MTU.to_string();
        let mut gro = true;
        for (ns, local) in [(&a, VETH_ADDR_A), (&b, VETH_ADDR_B)] {
            ns.ip(&["addr", "add", &format!("{local}/24"), "dev", VETH_NAME])?;
            ns.ip(&["link", "set", VETH_NAME, "mtu", &mtu, "up"])?;
            gro &= enable_gro(ns);
        }
        Ok(Self { a, b, gro })
    }

    /// Address of namespace `a`.
    pub fn addr_a(&self) -> Ipv4Addr {
        VETH_ADDR_A
    }

    /// Address of namespace `b`.
    pub fn addr_b(&self) -> Ipv4Addr {
        VETH_ADDR_B
    }

    /// Whether GRO is on at both ends (`ethtool` was there to switch it on).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Runs `f` on a new OS thread that has entered namespace `a`. Sockets belong to the
    /// namespace of the thread that creates them: `f` builds its own runtime.
    pub fn spawn_in_a<F, T>(&self, f: F) -> Result<JoinHandle<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.a.spawn("veth-in-a".into(), f)
    }

    /// Runs `f` on a new OS thread that has entered namespace `b`; see [`VethLink::spawn_in_a`].
    pub fn spawn_in_b<F, T>(&self, f: F) -> Result<JoinHandle<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.b.spawn("veth-in-b".into(), f)
    }

    /// One line for logs: the namespaces, addresses, MTU and offloads.
    pub fn describe(&self) -> String {
        format!(
            "veth a={}/{} b={}/{} mtu {VETH_MTU}, TSO and UDP GSO on, GRO {}",
            self.a.name(),
            VETH_ADDR_A,
            self.b.name(),
            VETH_ADDR_B,
            if self.gro { "on" } else { "off (no ethtool)" }
        )
    }
}

/// `ethtool -K <veth> gro on` inside `ns`; false when ethtool is missing or refuses.
fn enable_gro(ns: &Netns) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ethtool",
            "-K",
            VETH_NAME,
            "gro",
            "on",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A TCP connection across the link carries data, and the route's MTU is Ethernet's: the
    /// path really is 1500 bytes, not loopback's 64 KiB.
    #[test]
    fn the_link_carries_tcp_over_an_ethernet_mtu() {
        let link = match VethLink::start() {
            Ok(l) => l,
            Err(e) if e.is_skip() => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let server = link
            .spawn_in_b(move || {
                let listener = std::net::TcpListener::bind((VETH_ADDR_B, 0)).unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut conn, &mut buf).unwrap();
                buf.len()
            })
            .unwrap();
        let addr = rx.recv().unwrap();
        let client = link
            .spawn_in_a(move || {
                let mut conn = std::net::TcpStream::connect(addr).unwrap();
                std::io::Write::write_all(&mut conn, &vec![7u8; 1 << 20]).unwrap();
                drop(conn);
                let udp = std::net::UdpSocket::bind((VETH_ADDR_A, 0)).unwrap();
                udp.connect(addr).unwrap();
                rustix::net::sockopt::ip_mtu(&udp).unwrap()
            })
            .unwrap();
        let mtu = client.join().unwrap();
        assert_eq!(server.join().unwrap(), 1 << 20);
        assert_eq!(mtu, u32::from(VETH_MTU));
    }
}

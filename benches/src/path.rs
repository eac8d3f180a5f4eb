//! The network path a run's calls travel. Deployments carry 1500-byte packets; loopback carries
//! 64 KiB ones, where QUIC's per-packet costs (user-space encryption and framing of every
//! datagram) nearly vanish. So every scenario that talks to the shared servers runs over both,
//! the 1500-byte path first.

use std::fmt;

/// Where a run's clients and servers talk.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, clap::ValueEnum,
)]
pub enum NetPath {
    /// A veth pair between two network namespaces, MTU 1500, with the offloads a NIC gives
    /// (TSO for TCP, UDP GSO and GRO for QUIC); servers in one namespace, clients in the other.
    #[serde(rename = "mtu1500")]
    #[value(name = "mtu1500")]
    Mtu1500,
    /// 127.0.0.1 in this process's namespace: MTU 65536.
    #[serde(rename = "loopback")]
    #[value(name = "loopback")]
    Loopback,
}

impl NetPath {
    /// Every path, in run and report order.
    pub const ALL: [NetPath; 2] = [NetPath::Mtu1500, NetPath::Loopback];

    /// Short label for JSON, file names and progress.
    pub fn label(self) -> &'static str {
        match self {
            NetPath::Mtu1500 => "mtu1500",
            NetPath::Loopback => "loopback",
        }
    }

    /// Section title of the report.
    pub fn title(self) -> &'static str {
        match self {
            NetPath::Mtu1500 => "MTU 1500 (veth between two namespaces)",
            NetPath::Loopback => "Loopback (MTU 65536)",
        }
    }

    /// What the figures of this path depend on, for the report.
    pub fn depends_on(self) -> &'static str {
        match self {
            NetPath::Mtu1500 => {
                "Servers run in one network namespace and clients in another (separate tokio \
                 runtimes, the same process and 2 CPUs), joined by a veth pair with MTU 1500: \
                 QUIC datagrams are at most 1452 bytes, TCP segments 1448, and the kernel \
                 passes TSO and UDP GSO batches across unsegmented (GRO on), as a NIC's offloads \
                 would. No delay, no loss."
            }
            NetPath::Loopback => {
                "Client and servers share one tokio runtime on 127.0.0.1, whose MTU is 65536: \
                 grpc-h3's client and server use it (QuicSettings::loopback_mtu; 64 KiB client \
                 datagrams, the server searches up to 16 KiB), so a 64 KiB message is a handful \
                 of packets; tonic-h3 keeps quinn's 1452-byte bound, and HTTP/2 segments are \
                 up to 64 KiB. No path between two hosts looks like this."
            }
        }
    }
}

impl fmt::Display for NetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

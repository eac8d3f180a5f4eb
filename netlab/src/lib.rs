//! An impaired-network lab: two network namespaces joined by a userspace TUN router
//! that applies per-direction delay, jitter, loss, a rate cap and a bounded queue; and
//! [`VethLink`], the same two namespaces joined by a clean 1500-byte veth pair.
//!
//! The kernel here has no `netem` qdisc, so the impairments live in this process: namespace `a`
//! (address [`ADDR_A`]) and namespace `b` ([`ADDR_B`]) each hold a TUN device `gh3tun` whose
//! only route to the peer is the TUN; two threads per direction read packets from one device,
//! run them through a seeded link model and write them into the other device when due.
//!
//! Needs root (namespaces, TUN); [`Lab::start`] returns [`LabError::NotRoot`] or
//! [`LabError::Unsupported`] otherwise so callers can skip ([`LabError::is_skip`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use netlab::{Impairment, Lab};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let link = Impairment { delay: Duration::from_millis(25), loss: 0.01, ..Impairment::default() };
//! let lab = Lab::start(link.clone(), link)?;
//! println!("{}", lab.ready_line());
//! let server_addr = (lab.addr_b(), 4433);
//! let server = lab.spawn_in_b(move || {
//!     // Build the runtime *inside*: sockets belong to the namespace of the thread creating them.
//!     let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
//!     // ... serve on `server_addr` ...
//! })?;
//! # let _ = (server, server_addr); Ok(()) }
//! ```

mod impair;
mod ns;
mod router;
mod schedule;
mod veth;

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use tun_rs::{DeviceBuilder, SyncDevice};

pub use impair::Impairment;
pub use ns::{cleanup_all, list as list_namespaces};
pub use schedule::{Player, Schedule, Step};
pub use veth::{VETH_ADDR_A, VETH_ADDR_B, VETH_MTU, VethLink};

use ns::Netns;
use router::Router;

/// Address of namespace `a` (on its TUN, /32).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Address of namespace `b` (on its TUN, /32).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Name of the TUN device inside each namespace.
pub const TUN_NAME: &str = "gh3tun";
/// MTU of both TUN devices (QUIC sends 1200–1452-byte datagrams).
pub const MTU: u16 = 1500;
/// Transmit queue length of both TUN devices, so bursts queue in the kernel instead of dropping.
pub const TX_QUEUE_LEN: u32 = 5000;

/// Why the lab could not start or be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Namespaces and TUN devices need root.
    #[error(
        "the network lab needs root (network namespaces, /dev/net/tun); effective uid is {euid}"
    )]
    NotRoot {
        /// The effective uid the process runs with.
        euid: u32,
    },
    /// This machine lacks something the lab needs.
    #[error("the network lab is unsupported here: {reason}")]
    Unsupported {
        /// What is missing, in words.
        reason: String,
    },
    /// An [`Impairment`] with values no link can have.
    #[error("invalid impairment: {0}")]
    InvalidImpairment(String),
    /// An `ip` command failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its standard error.
        detail: String,
    },
    /// A TCP congestion controller the lab could not put in force.
    #[error("TCP congestion control {name:?}: {reason}")]
    TcpCongestion {
        /// The controller asked for.
        name: String,
        /// Why it is not in force (not available, or a namespace reads back another).
        reason: String,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    /// True when the environment cannot host the lab (not root, no TUN, …): skip, don't fail.
    pub fn is_skip(&self) -> bool {
        matches!(self, Self::NotRoot { .. } | Self::Unsupported { .. })
    }
}

/// Counters of one direction since the lab started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Packets read from the sending side's TUN.
    pub received: u64,
    /// Packets written into the receiving side's TUN.
    pub forwarded_packets: u64,
    /// IP bytes of those packets.
    pub forwarded_bytes: u64,
    /// Dropped by the random-loss draw.
    pub dropped_loss: u64,
    /// Dropped at the tail of the full bottleneck buffer.
    pub dropped_queue: u64,
    /// Dropped because the delay line was full (the router's own limit, not an impairment).
    pub dropped_overflow: u64,
    /// Read or write errors on the TUN devices.
    pub errors: u64,
}

impl DirectionStats {
    /// All drops, whatever the cause.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_overflow
    }
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LabStats {
    /// Packets from namespace `a` to `b`.
    pub a_to_b: DirectionStats,
    /// Packets from namespace `b` to `a`.
    pub b_to_a: DirectionStats,
}

/// A running lab. Dropping it stops the router and deletes both namespaces (also during a
/// panic's unwinding); namespaces of processes that died without that are swept by the next
/// [`Lab::start`], and [`cleanup_all`] serves exit paths that skip destructors.
pub struct Lab {
    // Field order is drop order: the router (and its TUN fds) goes before the namespaces.
    router: Router,
    a: Netns,
    b: Netns,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("ns_a", &self.a.name())
            .field("ns_b", &self.b.name())
            .field("a_to_b", &self.router.a_to_b.config())
            .field("b_to_a", &self.router.b_to_a.config())
            .finish()
    }
}

/// Packets a [`Lab`]'s link model dropped at random (the loss draw, not the queue), both
/// directions together; see [`Lab::loss_counter`].
#[derive(Clone)]
pub struct LossCounter {
    a_to_b: Arc<router::Direction>,
    b_to_a: Arc<router::Direction>,
}

impl fmt::Debug for LossCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossCounter")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LossCounter {
    /// Random-loss drops so far, both directions.
    pub fn dropped(&self) -> u64 {
        self.a_to_b.stats().dropped_loss + self.b_to_a.stats().dropped_loss
    }
}

/// The per-namespace sysctl of the default TCP congestion controller, under /proc/sys.
const TCP_CONGESTION_KEY: &str = "net/ipv4/tcp_congestion_control";
/// The controllers the kernel has (global).
const AVAILABLE_KEY: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

/// Distinguishes several labs of one process (parallel tests).
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Creates namespaces `gh3-a-<pid>-<n>` and `gh3-b-<pid>-<n>` with their TUN devices and
    /// starts forwarding with the given impairments. Sweeps stale lab namespaces first.
    pub fn start(a_to_b: Impairment, b_to_a: Impairment) -> Result<Self, LabError> {
        a_to_b.validate()?;
        b_to_a.validate()?;
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(LabError::NotRoot {
                euid: euid.as_raw(),
            });
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(LabError::Unsupported {
                reason: "/dev/net/tun does not exist (no TUN driver)".into(),
            });
        }
        ns::sweep_stale()?;

        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let a = Netns::create(format!("{}a-{id}", ns::PREFIX))?;
        let b = Netns::create(format!("{}b-{id}", ns::PREFIX))?;
        let dev_a = Arc::new(setup_side(&a, ADDR_A, ADDR_B)?);
        let dev_b = Arc::new(setup_side(&b, ADDR_B, ADDR_A)?);
        let router = Router::start(dev_a, dev_b, a_to_b, b_to_a)?;
        Ok(Self { router, a, b })
    }

    /// Address of namespace `a`.
    pub fn addr_a(&self) -> Ipv4Addr {
        ADDR_A
    }

    /// Address of namespace `b`.
    pub fn addr_b(&self) -> Ipv4Addr {
        ADDR_B
    }

    /// Name of namespace `a` (for `ip netns exec`).
    pub fn ns_a(&self) -> &str {
        self.a.name()
    }

    /// Name of namespace `b` (for `ip netns exec`).
    pub fn ns_b(&self) -> &str {
        self.b.name()
    }

    /// Runs `f` on a new OS thread that has entered namespace `a`.
    ///
    /// Sockets belong to the namespace of the thread that creates them, so `f` must build its
    /// own tokio runtime (threads that runtime spawns inherit the namespace); a runtime built
    /// elsewhere would open its sockets outside the lab.
    pub fn spawn_in_a<F, T>(&self, f: F) -> Result<JoinHandle<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.a.spawn("netlab-in-a".into(), f)
    }

    /// Runs `f` on a new OS thread that has entered namespace `b`; see [`Lab::spawn_in_a`].
    pub fn spawn_in_b<F, T>(&self, f: F) -> Result<JoinHandle<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.b.spawn("netlab-in-b".into(), f)
    }

    /// Changes both directions' impairments live; packets already accepted keep their schedule.
    pub fn set(&self, a_to_b: Impairment, b_to_a: Impairment) -> Result<(), LabError> {
        a_to_b.validate()?;
        b_to_a.validate()?;
        self.router.a_to_b.set(a_to_b);
        self.router.b_to_a.set(b_to_a);
        Ok(())
    }

    /// Plays `schedule` on a thread: each step switches both directions at its offset from now
    /// (as [`Lab::set`] does). Keep the [`Player`] alive while the schedule should run.
    pub fn play(&self, schedule: Schedule) -> Result<Player, LabError> {
        Player::start(
            schedule,
            Arc::clone(&self.router.a_to_b),
            Arc::clone(&self.router.b_to_a),
        )
    }

    /// Makes TCP between the namespaces use congestion controller `name` (both directions) and
    /// verifies it reads back from each namespace.
    ///
    /// New namespaces inherit the host's `net.ipv4.tcp_congestion_control`, and outside the
    /// initial namespace the kernel only lets that sysctl name a controller of the host's
    /// `tcp_allowed_congestion_control` (EPERM otherwise). So the lab sets the `congctl` metric
    /// of each namespace's route to its peer instead: it overrides the namespace default for
    /// connections made and accepted over that route, and changes nothing outside the lab.
    /// Applies to TCP connections set up afterwards, not to open ones.
    pub fn set_tcp_congestion(&self, name: &str) -> Result<(), LabError> {
        let fail = |reason: String| LabError::TcpCongestion {
            name: name.to_owned(),
            reason,
        };
        // TCP_CA_NAME_MAX is 16 with the NUL; anything else could not be a controller's name.
        let plausible = !name.is_empty()
            && name.len() < 16
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !plausible {
            return Err(fail("not a congestion controller's name".into()));
        }
        for (ns, local, peer) in [(&self.a, ADDR_A, ADDR_B), (&self.b, ADDR_B, ADDR_A)] {
            let (local_ip, peer_s) = (local.to_string(), format!("{peer}/32"));
            let args = [
                "route", "replace", &peer_s, "dev", TUN_NAME, "src", &local_ip, "congctl", name,
            ];
            ns.ip(&args).map_err(|e| match e {
                LabError::Command { detail, .. } => {
                    let available = std::fs::read_to_string(AVAILABLE_KEY).unwrap_or_default();
                    fail(format!("{detail} (available: {})", available.trim()))
                }
                other => other,
            })?;
        }
        let (a, b) = self.tcp_congestion()?;
        if a != name || b != name {
            return Err(fail(format!("the namespaces read back a={a}, b={b}")));
        }
        Ok(())
    }

    /// The congestion controller TCP between the namespaces uses, as `(a, b)`: the `congctl` of
    /// each namespace's route to its peer, else that namespace's default sysctl.
    pub fn tcp_congestion(&self) -> Result<(String, String), LabError> {
        let read = |ns: &Netns, peer: Ipv4Addr| -> Result<String, LabError> {
            let route = ns.ip(&["route", "show", &format!("{peer}/32")])?;
            let mut words = route.split_whitespace();
            match words.find(|w| *w == "congctl").and(words.next()) {
                // `congctl lock NAME` when locked.
                Some("lock") => Ok(words.next().unwrap_or_default().to_owned()),
                Some(name) => Ok(name.to_owned()),
                None => ns.sysctl_read(TCP_CONGESTION_KEY),
            }
        };
        Ok((read(&self.a, ADDR_B)?, read(&self.b, ADDR_A)?))
    }

    /// The impairments in force, `(a_to_b, b_to_a)`.
    pub fn impairments(&self) -> (Impairment, Impairment) {
        (self.router.a_to_b.config(), self.router.b_to_a.config())
    }

    /// Counters of both directions.
    pub fn stats(&self) -> LabStats {
        LabStats {
            a_to_b: self.router.a_to_b.stats(),
            b_to_a: self.router.b_to_a.stats(),
        }
    }

    /// A reader of the packets the link model has dropped at random so far, both directions
    /// together, that other threads can keep (a measurement that must see enough loss events to
    /// be stable polls it).
    pub fn loss_counter(&self) -> LossCounter {
        LossCounter {
            a_to_b: Arc::clone(&self.router.a_to_b),
            b_to_a: Arc::clone(&self.router.b_to_a),
        }
    }

    /// One line for logs and for scripts waiting on the lab: starts with `netlab READY`.
    pub fn ready_line(&self) -> String {
        let (ab, ba) = self.impairments();
        format!(
            "netlab READY a={}/{} b={}/{} a->b: {ab} | b->a: {ba}",
            self.ns_a(),
            ADDR_A,
            self.ns_b(),
            ADDR_B
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Threads first, so nothing touches the TUNs while the namespaces go.
        self.router.stop();
    }
}

/// Creates and configures the TUN device of one side, addressed `local`/32 with a route to `peer`.
fn setup_side(ns: &Netns, local: Ipv4Addr, peer: Ipv4Addr) -> Result<SyncDevice, LabError> {
    let dev = ns
        .run_in(|| {
            // No IPv6 in the lab: router solicitations and MLD would otherwise cross the router
            // and consume draws of the seeded RNG. Best effort: the files are absent without IPv6.
            for conf in ["all", "default"] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
            }
            // tun-rs resets the device's offload mask (TUNSETOFFLOAD 0): no GSO/TSO packets.
            DeviceBuilder::new()
                .name(TUN_NAME)
                .mtu(MTU)
                .tx_queue_len(TX_QUEUE_LEN)
                .build_sync()
        })?
        .map_err(|e| match e.raw_os_error() {
            // EPERM, ENOENT, ENODEV: no usable TUN driver here.
            Some(1 | 2 | 19) => LabError::Unsupported {
                reason: format!("cannot create a TUN device: {e}"),
            },
            _ => LabError::Io {
                context: format!("creating TUN {TUN_NAME} in {}", ns.name()),
                source: e,
            },
        })?;
    dev.set_nonblocking(true).map_err(|e| LabError::Io {
        context: "making the TUN non-blocking".into(),
        source: e,
    })?;
    let (local_s, peer_s) = (format!("{local}/32"), format!("{peer}/32"));
    let local_ip = local.to_string();
    ns.ip(&["addr", "add", &local_s, "dev", TUN_NAME])?;
    ns.ip(&["link", "set", TUN_NAME, "up"])?;
    ns.ip(&["route", "add", &peer_s, "dev", TUN_NAME, "src", &local_ip])?;
    Ok(dev)
}

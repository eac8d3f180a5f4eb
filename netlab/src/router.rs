//! The forwarding threads: per direction, a reader that pulls packets off one TUN device and asks
//! the [`LinkModel`] for their fate, and a writer that releases them into the other TUN on time.

use std::io::ErrorKind;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tun_rs::{InterruptEvent, SyncDevice};

use super::impair::{Impairment, LinkModel, Verdict};
use super::{DirectionStats, LabError};

/// Packets held in one direction's delay line at most (~100 ms at 800 Mbit/s is ~8 k packets).
const DELAY_LINE_PACKETS: usize = 65_536;
/// Longest a writer sleeps before re-checking the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Reader buffer: larger than any packet a 1500-MTU TUN without offloads hands out.
const READ_BUF: usize = 65_536;

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_overflow: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One direction's shared state: its model and its counters.
#[derive(Debug)]
pub(crate) struct Direction {
    model: Mutex<LinkModel>,
    counters: Counters,
}

impl Direction {
    fn new(cfg: Impairment) -> Self {
        Self {
            model: Mutex::new(LinkModel::new(cfg)),
            counters: Counters::default(),
        }
    }

    pub(crate) fn set(&self, cfg: Impairment) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reconfigure(cfg);
    }

    pub(crate) fn config(&self) -> Impairment {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config()
            .clone()
    }

    pub(crate) fn stats(&self) -> DirectionStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirectionStats {
            received: get(&c.received),
            forwarded_packets: get(&c.forwarded_packets),
            forwarded_bytes: get(&c.forwarded_bytes),
            dropped_loss: get(&c.dropped_loss),
            dropped_queue: get(&c.dropped_queue),
            dropped_overflow: get(&c.dropped_overflow),
            errors: get(&c.errors),
        }
    }
}

/// The running router; [`Router::stop`] (or drop) ends and joins its threads.
pub(crate) struct Router {
    pub(crate) a_to_b: Arc<Direction>,
    pub(crate) b_to_a: Arc<Direction>,
    stop: Arc<AtomicBool>,
    events: Vec<Arc<InterruptEvent>>,
    threads: Vec<JoinHandle<()>>,
}

impl Router {
    /// Starts forwarding between `dev_a` and `dev_b`, which must be non-blocking.
    pub(crate) fn start(
        dev_a: Arc<SyncDevice>,
        dev_b: Arc<SyncDevice>,
        a_to_b: Impairment,
        b_to_a: Impairment,
    ) -> Result<Self, LabError> {
        let mut router = Self {
            a_to_b: Arc::new(Direction::new(a_to_b)),
            b_to_a: Arc::new(Direction::new(b_to_a)),
            stop: Arc::new(AtomicBool::new(false)),
            events: Vec::new(),
            threads: Vec::new(),
        };
        // On error `router` drops here and joins whatever already started.
        router.spawn_direction("ab", &dev_a, &dev_b, Arc::clone(&router.a_to_b))?;
        router.spawn_direction("ba", &dev_b, &dev_a, Arc::clone(&router.b_to_a))?;
        Ok(router)
    }

    fn spawn_direction(
        &mut self,
        tag: &str,
        from: &Arc<SyncDevice>,
        to: &Arc<SyncDevice>,
        dir: Arc<Direction>,
    ) -> Result<(), LabError> {
        let io_err = |context: &str| {
            let context = context.to_owned();
            move |source| LabError::Io { context, source }
        };
        let event = Arc::new(InterruptEvent::new().map_err(io_err("creating a stop event"))?);
        self.events.push(Arc::clone(&event));
        let (tx, rx) = sync_channel(DELAY_LINE_PACKETS);

        let (from, reader_dir, stop) = (Arc::clone(from), Arc::clone(&dir), Arc::clone(&self.stop));
        self.threads.push(
            std::thread::Builder::new()
                .name(format!("netlab-rd-{tag}"))
                .spawn(move || read_loop(&from, &event, &reader_dir, &tx, &stop))
                .map_err(io_err("spawning a router thread"))?,
        );
        let (to, stop) = (Arc::clone(to), Arc::clone(&self.stop));
        self.threads.push(
            std::thread::Builder::new()
                .name(format!("netlab-wr-{tag}"))
                .spawn(move || write_loop(&to, &dir, &rx, &stop))
                .map_err(io_err("spawning a router thread"))?,
        );
        Ok(())
    }

    /// Stops and joins all threads; packets still in flight are discarded.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for e in &self.events {
            let _ = e.trigger();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("a_to_b", &self.a_to_b)
            .field("b_to_a", &self.b_to_a)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop();
    }
}

type Packet = (Instant, Vec<u8>);

fn read_loop(
    dev: &SyncDevice,
    event: &InterruptEvent,
    dir: &Direction,
    tx: &SyncSender<Packet>,
    stop: &AtomicBool,
) {
    let c = &dir.counters;
    let mut buf = vec![0u8; READ_BUF];
    // Runs for the lab's lifetime; ends when `stop` is set (the event wakes a blocked wait).
    while !stop.load(Ordering::Relaxed) {
        let n = match dev.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Only poll when the queue is empty, so a busy link costs one syscall per packet.
                match dev.wait_readable_intr(event) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        bump(&c.errors);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                bump(&c.errors);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        bump(&c.received);
        let now = Instant::now();
        let verdict = dir
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(now, n);
        match verdict {
            Verdict::Lost => bump(&c.dropped_loss),
            Verdict::QueueFull => bump(&c.dropped_queue),
            Verdict::Deliver(at) => match tx.try_send((at, buf[..n].to_vec())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => bump(&c.dropped_overflow),
                Err(TrySendError::Disconnected(_)) => return,
            },
        }
    }
}

fn write_loop(dev: &SyncDevice, dir: &Direction, rx: &Receiver<Packet>, stop: &AtomicBool) {
    // Sleep-until-release precision: the default 50 µs timer slack would blur sub-ms pacing.
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1_000));
    let c = &dir.counters;
    while !stop.load(Ordering::Relaxed) {
        let (at, pkt) = match rx.recv_timeout(STOP_POLL) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Bounded: `at` is finite and the stop flag is re-checked at least every STOP_POLL.
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(STOP_POLL));
        }
        match dev.send(&pkt) {
            Ok(_) => {
                bump(&c.forwarded_packets);
                c.forwarded_bytes
                    .fetch_add(pkt.len() as u64, Ordering::Relaxed);
            }
            Err(_) => bump(&c.errors),
        }
    }
}

//! The per-direction link model: random loss, a rate-capped drop-tail bottleneck, then a delay line
//! with jitter — pure logic driven by the caller's clock so it is testable without root.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::LabError;

/// What one direction of the lab's link does to packets.
///
/// Order of application per packet: random loss, then the rate-capped bottleneck (drop-tail when
/// `queue_packets` packets are already waiting), then the one-way delay plus jitter. Packets are
/// never reordered: jitter that would overtake an earlier packet is clamped to its release time.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Each packet's delay is `delay` ± a uniform draw in `[-jitter, +jitter]` (never below zero).
    /// As packets keep their order, back-to-back packets share the later of their release times,
    /// so under dense traffic the mean delay drifts from `delay` towards `delay + jitter`.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a packet is dropped on arrival.
    pub loss: f64,
    /// Bottleneck rate in bits per second of IP packet bytes; `None` = no cap.
    pub rate_bps: Option<u64>,
    /// Packets the bottleneck buffers while serialising (drop-tail beyond); used only with a rate cap.
    pub queue_packets: usize,
    /// Seed of this direction's RNG, so a run's losses and jitter are reproducible.
    pub seed: u64,
}

impl Default for Impairment {
    /// A perfect link; a 1000-packet buffer (the Linux `txqueuelen` and netem `limit` default).
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue_packets: 1000,
            seed: 0,
        }
    }
}

impl Impairment {
    /// Checks the values a link model can honour.
    pub fn validate(&self) -> Result<(), LabError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(LabError::InvalidImpairment(format!(
                "loss must be within [0, 1], got {}",
                self.loss
            )));
        }
        if self.rate_bps == Some(0) {
            return Err(LabError::InvalidImpairment("rate_bps must be > 0".into()));
        }
        if self.queue_packets == 0 {
            return Err(LabError::InvalidImpairment(
                "queue_packets must be >= 1".into(),
            ));
        }
        if i64::try_from(self.delay.saturating_add(self.jitter).as_nanos()).is_err() {
            return Err(LabError::InvalidImpairment(
                "delay + jitter is too large".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay={:?} jitter={:?} loss={:.2}% rate=",
            self.delay,
            self.jitter,
            self.loss * 100.0
        )?;
        match self.rate_bps {
            // Precision loss is irrelevant for a human-readable rate.
            #[allow(clippy::cast_precision_loss)]
            Some(bps) => write!(f, "{:.3}Mbit/s", bps as f64 / 1e6)?,
            None => f.write_str("unlimited")?,
        }
        write!(f, " queue={} seed={}", self.queue_packets, self.seed)
    }
}

/// The fate of one offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand the packet to the far side at this instant.
    Deliver(Instant),
    /// Dropped by the random-loss draw.
    Lost,
    /// Dropped because the bottleneck buffer was full (drop-tail).
    QueueFull,
}

/// State of one direction: configuration, RNG, bottleneck backlog and the last release time.
#[derive(Debug)]
pub(crate) struct LinkModel {
    cfg: Impairment,
    rng: StdRng,
    /// Departure instants (end of serialisation) of packets still in the bottleneck, oldest first.
    backlog: VecDeque<Instant>,
    /// When the bottleneck finishes serialising everything accepted so far.
    busy_until: Option<Instant>,
    /// Release instant of the previous delivered packet, to keep FIFO order under jitter.
    last_release: Option<Instant>,
}

impl LinkModel {
    /// A model for `cfg` (assumed validated).
    pub(crate) fn new(cfg: Impairment) -> Self {
        Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            backlog: VecDeque::new(),
            busy_until: None,
            last_release: None,
        }
    }

    /// The current configuration.
    pub(crate) fn config(&self) -> &Impairment {
        &self.cfg
    }

    /// Switches to `cfg` live: the RNG is reseeded, packets already accepted keep their schedule.
    pub(crate) fn reconfigure(&mut self, cfg: Impairment) {
        self.rng = StdRng::seed_from_u64(cfg.seed);
        if cfg.rate_bps.is_none() {
            self.backlog.clear();
            self.busy_until = None;
        }
        self.cfg = cfg;
    }

    /// Decides what happens to a packet of `len` bytes arriving at `now`.
    pub(crate) fn offer(&mut self, now: Instant, len: usize) -> Verdict {
        // Both draws happen for every packet so one seed gives one sequence whatever the verdicts.
        let lost = self.rng.random::<f64>() < self.cfg.loss;
        let jitter_ns = i64::try_from(self.cfg.jitter.as_nanos()).unwrap_or(i64::MAX);
        let offset_ns = self.rng.random_range(-jitter_ns..=jitter_ns);
        if lost {
            return Verdict::Lost;
        }

        let departs = match self.cfg.rate_bps {
            None => now,
            Some(bps) => {
                while self.backlog.front().is_some_and(|&d| d <= now) {
                    self.backlog.pop_front();
                }
                if self.backlog.len() >= self.cfg.queue_packets {
                    return Verdict::QueueFull;
                }
                let start = self.busy_until.map_or(now, |b| b.max(now));
                let departs = start + serialisation_time(len, bps);
                self.busy_until = Some(departs);
                self.backlog.push_back(departs);
                departs
            }
        };

        let delay_ns = i64::try_from(self.cfg.delay.as_nanos()).unwrap_or(i64::MAX);
        let total_ns = delay_ns.saturating_add(offset_ns).max(0);
        let mut release = departs + Duration::from_nanos(total_ns.unsigned_abs());
        if let Some(last) = self.last_release {
            release = release.max(last);
        }
        self.last_release = Some(release);
        Verdict::Deliver(release)
    }
}

/// Time to clock `len` bytes onto a link of `bps` bits per second (rounded up to whole ns).
fn serialisation_time(len: usize, bps: u64) -> Duration {
    let bits = u128::try_from(len).unwrap_or(u128::MAX).saturating_mul(8);
    let ns = bits.saturating_mul(1_000_000_000).div_ceil(u128::from(bps));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn perfect_link_delivers_at_arrival() {
        let mut m = LinkModel::new(Impairment::default());
        let t0 = Instant::now();
        for i in 0..100 {
            let now = t0 + ms(i);
            assert_eq!(m.offer(now, 1200), Verdict::Deliver(now));
        }
    }

    #[test]
    fn fixed_delay_is_added() {
        let mut m = LinkModel::new(Impairment {
            delay: ms(25),
            ..Impairment::default()
        });
        let t0 = Instant::now();
        assert_eq!(m.offer(t0, 100), Verdict::Deliver(t0 + ms(25)));
        assert_eq!(m.offer(t0 + ms(3), 100), Verdict::Deliver(t0 + ms(28)));
    }

    fn verdicts(cfg: &Impairment, n: u64) -> Vec<Verdict> {
        let mut m = LinkModel::new(cfg.clone());
        let t0 = Instant::now();
        (0..n)
            .map(|i| m.offer(t0 + Duration::from_micros(i * 100), 1200))
            .collect()
    }

    #[test]
    fn loss_rate_matches_binomial_and_is_reproducible() {
        let cfg = Impairment {
            loss: 0.05,
            seed: 7,
            ..Impairment::default()
        };
        let n = 20_000u64;
        let a = verdicts(&cfg, n);
        let lost = a.iter().filter(|v| **v == Verdict::Lost).count();
        // mean 1000, sigma ~30.8: allow 5 sigma.
        assert!((846..=1154).contains(&lost), "lost {lost} of {n}");

        let lost_seq =
            |v: &[Verdict]| -> Vec<bool> { v.iter().map(|x| *x == Verdict::Lost).collect() };
        let b = verdicts(&cfg, n);
        assert_eq!(lost_seq(&a), lost_seq(&b), "same seed, same losses");
        let c = verdicts(&Impairment { seed: 8, ..cfg }, n);
        assert_ne!(lost_seq(&a), lost_seq(&c), "another seed, other losses");
    }

    #[test]
    fn full_and_zero_loss() {
        let t0 = Instant::now();
        let mut all = LinkModel::new(Impairment {
            loss: 1.0,
            ..Impairment::default()
        });
        assert!((0..1000).all(|_| all.offer(t0, 64) == Verdict::Lost));
        let mut none = LinkModel::new(Impairment::default());
        assert!((0..1000).all(|_| matches!(none.offer(t0, 64), Verdict::Deliver(_))));
    }

    #[test]
    fn rate_cap_serialises_and_drops_tail() {
        // 1250 B at 10 Mbit/s = 1 ms per packet; buffer of 3 packets.
        let mut m = LinkModel::new(Impairment {
            rate_bps: Some(10_000_000),
            queue_packets: 3,
            delay: ms(10),
            ..Impairment::default()
        });
        let t0 = Instant::now();
        assert_eq!(m.offer(t0, 1250), Verdict::Deliver(t0 + ms(11)));
        assert_eq!(m.offer(t0, 1250), Verdict::Deliver(t0 + ms(12)));
        assert_eq!(m.offer(t0, 1250), Verdict::Deliver(t0 + ms(13)));
        assert_eq!(m.offer(t0, 1250), Verdict::QueueFull);
        assert_eq!(
            m.offer(t0 + Duration::from_micros(500), 1250),
            Verdict::QueueFull
        );
        // The first packet has left the bottleneck at t0+1ms: one slot frees up.
        assert_eq!(m.offer(t0 + ms(1), 1250), Verdict::Deliver(t0 + ms(14)));
        assert_eq!(m.offer(t0 + ms(1), 1250), Verdict::QueueFull);
        // Idle link: a late packet starts serialising on arrival.
        assert_eq!(m.offer(t0 + ms(100), 1250), Verdict::Deliver(t0 + ms(111)));
    }

    #[test]
    fn rate_cap_long_run_throughput() {
        // Offer 2x the cap for one simulated second; what is delivered by t=1s must be the cap.
        let bps = 20_000_000u64;
        let mut m = LinkModel::new(Impairment {
            rate_bps: Some(bps),
            queue_packets: 50,
            ..Impairment::default()
        });
        let t0 = Instant::now();
        let len = 1228usize;
        let interval = serialisation_time(len, bps) / 2;
        let (mut delivered_bytes, mut dropped) = (0u64, 0u32);
        let mut now = t0;
        while now < t0 + Duration::from_secs(1) {
            match m.offer(now, len) {
                Verdict::Deliver(at) if at <= t0 + Duration::from_secs(1) => {
                    delivered_bytes += len as u64;
                }
                Verdict::Deliver(_) => {}
                Verdict::QueueFull => dropped += 1,
                Verdict::Lost => unreachable!("no loss configured"),
            }
            now += interval;
        }
        let got = delivered_bytes * 8;
        assert!(got.abs_diff(bps) <= bps / 100, "delivered {got} bit/s");
        assert!(
            dropped > 1000,
            "excess must be dropped at the tail, got {dropped}"
        );
    }

    #[test]
    fn jitter_stays_in_band_and_never_reorders() {
        let cfg = Impairment {
            delay: ms(20),
            jitter: ms(5),
            seed: 3,
            ..Impairment::default()
        };
        // Sparse packets (spacing > 2 x jitter): the full uniform spread shows, centred on delay.
        let mut m = LinkModel::new(cfg.clone());
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..2000u64 {
            let now = t0 + ms(i * 20);
            let Verdict::Deliver(at) = m.offer(now, 1200) else {
                panic!("no loss configured")
            };
            let d = at - now;
            assert!(d >= ms(15) && d <= ms(25), "packet {i} delay {d:?}");
            delays.push(d);
        }
        let min = delays.iter().min().copied().unwrap();
        let max = delays.iter().max().copied().unwrap();
        assert!(
            max - min > Duration::from_micros(9800),
            "spread only {:?}",
            max - min
        );
        let mean = delays.iter().sum::<Duration>() / 2000;
        // Uniform on +-5 ms: sigma of the mean ~65 us.
        assert!(
            mean.abs_diff(ms(20)) < Duration::from_micros(400),
            "mean {mean:?}"
        );

        // Dense packets: jitter must not reorder, and the band still holds.
        let mut m = LinkModel::new(cfg);
        let mut prev = t0;
        for i in 0..5000u64 {
            let now = t0 + Duration::from_micros(i * 50);
            let Verdict::Deliver(at) = m.offer(now, 1200) else {
                panic!("no loss configured")
            };
            assert!(at >= prev, "packet {i} released before its predecessor");
            assert!(at - now >= ms(15) && at - now <= ms(25));
            prev = at;
        }
    }

    #[test]
    fn reconfigure_applies_live() {
        let mut m = LinkModel::new(Impairment::default());
        let t0 = Instant::now();
        assert_eq!(m.offer(t0, 100), Verdict::Deliver(t0));
        m.reconfigure(Impairment {
            loss: 1.0,
            ..Impairment::default()
        });
        assert_eq!(m.offer(t0 + ms(1), 100), Verdict::Lost);
        m.reconfigure(Impairment {
            delay: ms(50),
            ..Impairment::default()
        });
        assert_eq!(m.offer(t0 + ms(2), 100), Verdict::Deliver(t0 + ms(52)));
        assert_eq!(m.config().delay, ms(50));
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(Impairment::default().validate().is_ok());
        for bad in [
            Impairment {
                loss: -0.1,
                ..Impairment::default()
            },
            Impairment {
                loss: 1.5,
                ..Impairment::default()
            },
            Impairment {
                loss: f64::NAN,
                ..Impairment::default()
            },
            Impairment {
                rate_bps: Some(0),
                ..Impairment::default()
            },
            Impairment {
                queue_packets: 0,
                ..Impairment::default()
            },
            Impairment {
                delay: Duration::MAX,
                ..Impairment::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(LabError::InvalidImpairment(_))),
                "{bad:?} accepted"
            );
        }
    }
}

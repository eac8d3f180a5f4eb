//! Timed impairment changes: a thread that applies a list of per-direction settings at given
//! offsets, so faults (a partition, loss bursts) happen on a timeline while traffic runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::LabError;
use super::impair::Impairment;
use super::router::Direction;

/// Longest the player sleeps before re-checking its stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);

/// One change of a [`Schedule`]: at `at` after the start, both directions switch to these.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from [`Player`]'s start.
    pub at: Duration,
    /// Packets from namespace `a` to `b`.
    pub a_to_b: Impairment,
    /// Packets from namespace `b` to `a`.
    pub b_to_a: Impairment,
}

/// Steps in time order (validated when played).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    /// The changes; [`Schedule::push`] keeps them sorted by `at`.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Adds a change of both directions to `link` at `at`.
    pub fn push(&mut self, at: Duration, a_to_b: Impairment, b_to_a: Impairment) -> &mut Self {
        let i = self.steps.partition_point(|s| s.at <= at);
        self.steps.insert(i, Step { at, a_to_b, b_to_a });
        self
    }

    /// `base` both ways, a partition (every packet dropped, both ways) from `from` for `length`,
    /// then `base` again.
    pub fn partition(base: &Impairment, from: Duration, length: Duration) -> Schedule {
        let cut = Impairment {
            loss: 1.0,
            ..base.clone()
        };
        let mut s = Schedule::default();
        s.push(Duration::ZERO, base.clone(), base.clone())
            .push(from, cut.clone(), cut)
            .push(from + length, base.clone(), base.clone());
        s
    }

    /// `base` both ways, and every `period` from `first` a burst of `loss` (both ways) for
    /// `length`, until `total`.
    pub fn loss_bursts(
        base: &Impairment,
        loss: f64,
        first: Duration,
        length: Duration,
        period: Duration,
        total: Duration,
    ) -> Schedule {
        let burst = Impairment {
            loss,
            ..base.clone()
        };
        let mut s = Schedule::default();
        s.push(Duration::ZERO, base.clone(), base.clone());
        let mut at = first;
        // Bounded: `period` is checked non-zero, `total` finite.
        while !period.is_zero() && at < total {
            s.push(at, burst.clone(), burst.clone());
            s.push((at + length).min(total), base.clone(), base.clone());
            at += period;
        }
        s
    }

    /// The windows `[start, end)` in which any direction drops more than `loss_above`.
    pub fn windows(&self, loss_above: f64) -> Vec<(Duration, Duration)> {
        let mut out = Vec::new();
        let mut open: Option<Duration> = None;
        for s in &self.steps {
            let bad = s.a_to_b.loss > loss_above || s.b_to_a.loss > loss_above;
            match (bad, open) {
                (true, None) => open = Some(s.at),
                (false, Some(from)) => {
                    out.push((from, s.at));
                    open = None;
                }
                _ => {}
            }
        }
        if let (Some(from), Some(last)) = (open, self.steps.last()) {
            out.push((from, last.at));
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<(), LabError> {
        for s in &self.steps {
            s.a_to_b.validate()?;
            s.b_to_a.validate()?;
        }
        Ok(())
    }
}

/// A schedule being played; dropping it (or [`Player::finish`]) stops the thread. Changes
/// already applied stay in force.
#[derive(Debug)]
pub struct Player {
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Duration>>>,
}

impl Player {
    pub(crate) fn start(
        schedule: Schedule,
        a_to_b: Arc<Direction>,
        b_to_a: Arc<Direction>,
    ) -> Result<Player, LabError> {
        schedule.validate()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("netlab-schedule".into())
            .spawn(move || {
                let mut applied = Vec::with_capacity(schedule.steps.len());
                for step in schedule.steps {
                    let due = started + step.at;
                    // Bounded: `due` is finite and the flag is re-read every STOP_POLL.
                    loop {
                        if flag.load(Ordering::Relaxed) {
                            return applied;
                        }
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        std::thread::sleep((due - now).min(STOP_POLL));
                    }
                    a_to_b.set(step.a_to_b);
                    b_to_a.set(step.b_to_a);
                    applied.push(started.elapsed());
                }
                applied
            })
            .map_err(|source| LabError::Io {
                context: "spawning the schedule thread".into(),
                source,
            })?;
        Ok(Player {
            started,
            stop,
            thread: Some(thread),
        })
    }

    /// When the schedule's offsets count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits until every step is applied (or `limit` passed, then stops the rest); returns when
    /// each applied step took effect, as offsets from [`Player::started`].
    pub fn finish(mut self, limit: Duration) -> Vec<Duration> {
        let deadline = Instant::now() + limit;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(STOP_POLL);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn partition_has_one_window_and_ends_healed() {
        let base = Impairment {
            delay: Duration::from_millis(10),
            ..Impairment::default()
        };
        let p = Schedule::partition(&base, s(2), s(3));
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.windows(0.5), [(s(2), s(5))]);
        assert_eq!(p.steps[1].a_to_b.loss, 1.0);
        assert_eq!(p.steps[1].b_to_a.delay, Duration::from_millis(10));
        assert_eq!(p.steps[2].a_to_b, base);
    }

    #[test]
    fn bursts_repeat_until_total() {
        let b = Schedule::loss_bursts(&Impairment::default(), 0.3, s(1), s(2), s(5), s(12));
        assert_eq!(b.windows(0.0), [(s(1), s(3)), (s(6), s(8)), (s(11), s(12))]);
        assert!(b.steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(b.steps.last().unwrap().a_to_b.loss, 0.0);
        // A zero period makes no bursts instead of looping.
        let none = Schedule::loss_bursts(
            &Impairment::default(),
            0.3,
            s(1),
            s(2),
            Duration::ZERO,
            s(9),
        );
        assert!(none.windows(0.0).is_empty());
    }
}

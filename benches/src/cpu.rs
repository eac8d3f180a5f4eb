//! Process CPU time from `getrusage(RUSAGE_SELF)` (POSIX): clients and servers share this process,
//! so a delta is the CPU cost of both ends of a case together.

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

/// User + system CPU time of the process so far (zero if the call fails, which POSIX only allows
/// for an invalid `who`).
pub fn process_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => to_duration(usage.user_time()) + to_duration(usage.system_time()),
        Err(_) => Duration::ZERO,
    }
}

fn to_duration(t: TimeVal) -> Duration {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// Measures the CPU time spent between `start` and [`CpuMeter::elapsed`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    start: Duration,
}

impl CpuMeter {
    pub fn start() -> Self {
        CpuMeter {
            start: process_cpu(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        process_cpu().saturating_sub(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up_as_cpu_time() {
        let meter = CpuMeter::start();
        // Spin until 20 ms of CPU show up (getrusage has tick granularity on some kernels); the
        // wall-clock cap is generous because other tests and builds may share the CPUs.
        let cap = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while meter.elapsed() < Duration::from_millis(20) && std::time::Instant::now() < cap {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        assert!(
            meter.elapsed() >= Duration::from_millis(20),
            "{:?}",
            meter.elapsed()
        );
    }
}

//! The time-bounded proptest runner shared by the property tests of every crate: `PROPTEST_CASES` sets the cases of the
//! parser properties, `PROPTEST_MAX_SECS` bounds a long run (`scripts/fuzz.sh`), and every run
//! prints a `PROPS name: N of M cases run, K failures` line that the script counts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// `var` as a case count, else `default`.
pub fn cases_from(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runner config; regressions are kept as explicit tests rather than files.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The config of parser properties: `PROPTEST_CASES`, 256 by default (CI).
pub fn parser_config() -> Config {
    config(cases_from("PROPTEST_CASES", 256))
}

/// Runs `test` over `strategy`, panics with the minimal failing input, and reports how many cases
/// ran. `PROPTEST_MAX_SECS` bounds a long run: the run stops at the first case past it (unless a
/// failure is being shrunk) and reports how far it got.
pub fn check<S: Strategy>(
    name: &str,
    config: Config,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = config.cases;
    let budget = std::env::var("PROPTEST_MAX_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let ran = AtomicUsize::new(0);
    let failing = AtomicBool::new(false);
    // Past the budget a case is rejected, and the first reject ends the run (rejects are not
    // shrunk, unlike failures).
    let config = Config {
        max_global_rejects: 0,
        ..config
    };
    let result = TestRunner::new(config).run(&strategy, |value| {
        if !failing.load(Ordering::Relaxed) && budget.is_some_and(|b| started.elapsed() > b) {
            return Err(TestCaseError::reject("PROPTEST_MAX_SECS reached"));
        }
        ran.fetch_add(1, Ordering::Relaxed);
        let result = test(value);
        if result.is_err() {
            failing.store(true, Ordering::Relaxed);
        }
        result
    });
    let ran = ran.into_inner();
    match result {
        Ok(()) => eprintln!("PROPS {name}: {ran} of {cases} cases run, 0 failures"),
        Err(TestError::Abort(_)) if !failing.load(Ordering::Relaxed) => {
            eprintln!("PROPS {name}: {ran} of {cases} cases run (time budget), 0 failures")
        }
        Err(e) => panic!("PROPS {name}: FAILED after {ran} cases: {e}"),
    }
}

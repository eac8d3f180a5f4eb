//! Summaries of repeated measurements (median and spread) and of latency distributions.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Median and spread of one metric over the measured repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartile (linear interpolation between samples).
    pub q1: f64,
    pub q3: f64,
}

impl Summary {
    /// The summary of `values`, ignoring non-finite ones; `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            median: quantile(&v, 0.5),
            min: v[0],
            max: v[v.len() - 1],
            q1: quantile(&v, 0.25),
            q3: quantile(&v, 0.75),
        })
    }

    /// Half the min–max range relative to the median, in percent (0 for a zero median).
    pub fn spread_pct(&self) -> f64 {
        if self.median.abs() > f64::EPSILON {
            (self.max - self.min) / 2.0 / self.median.abs() * 100.0
        } else {
            0.0
        }
    }
}

/// Quantile `q` of sorted, non-empty `sorted`, interpolating linearly between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// `a / b` when both are finite and `b` is not zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (a.is_finite() && b.is_finite() && b != 0.0 && r.is_finite()).then_some(r)
}

/// A ratio of two wires' figures: the ratio of their medians, and the range of the ratios of
/// their paired repetitions (repetition i of one over repetition i of the other, measured in the
/// same round, minutes apart from the other rounds: a slow phase of the machine slows both sides of
/// a pair alike).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// Median of `a` over median of `b`.
    pub value: f64,
    /// Smallest and largest paired ratio; equal to `value` when there are no pairs.
    pub lo: f64,
    pub hi: f64,
    /// Number of paired repetitions.
    pub pairs: usize,
}

impl Ratio {
    /// The ratio of medians `a / b` with the range of the paired ratios `a_samples[i] /
    /// b_samples[i]` (pairs with a missing or non-finite side are skipped).
    pub fn of(
        a: f64,
        b: f64,
        a_samples: &[Option<f64>],
        b_samples: &[Option<f64>],
    ) -> Option<Ratio> {
        let paired: Vec<f64> = a_samples
            .iter()
            .zip(b_samples)
            .filter_map(|(x, y)| ratio((*x)?, (*y)?))
            .collect();
        Some(Ratio::with_pairs(ratio(a, b)?, &paired))
    }

    /// `value` with the range of already computed per-repetition ratios `paired` (non-finite
    /// ones ignored).
    pub fn with_pairs(value: f64, paired: &[f64]) -> Ratio {
        let finite: Vec<f64> = paired.iter().copied().filter(|r| r.is_finite()).collect();
        let (lo, hi) = finite
            .iter()
            .fold(None, |acc: Option<(f64, f64)>, &r| {
                Some(acc.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r))))
            })
            .unwrap_or((value, value));
        Ratio {
            value,
            lo,
            hi,
            pairs: finite.len(),
        }
    }

    /// `0.76 (0.61–0.92)`, or just the value without pairs.
    pub fn text(&self) -> String {
        if self.pairs > 1 {
            format!("{:.2} ({:.2}–{:.2})", self.value, self.lo, self.hi)
        } else {
            format!("{:.2}", self.value)
        }
    }
}

/// A latency distribution (all measured repetitions merged), in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyDist {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// (latency µs, fraction of calls at or below it), for CDF plots.
    pub cdf: Vec<(f64, f64)>,
}

/// Quantiles sampled for CDF plots: every percent, then the tail.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    (0..100)
        .map(|i| f64::from(i) / 100.0)
        .chain([0.995, 0.999, 0.9995, 0.9999, 1.0])
}

impl LatencyDist {
    /// The distribution of a histogram of nanoseconds; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<LatencyDist> {
        if h.is_empty() {
            return None;
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Some(LatencyDist {
            count: h.len(),
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1_000.0,
            cdf: cdf_quantiles().map(|q| (us(q), q)).collect(),
        })
    }
}

/// The 95 % bootstrap interval of `quantile(a) / quantile(b)` where each side's quantile is taken
/// over all its repetitions' values pooled (as the reports' pooled p99 is). Resampling is
/// stratified: each resample draws every repetition's own number of values from that
/// repetition, so the repetitions keep their weight. This is the sampling interval of the pooled
/// figure itself, where the range of per-repetition ratios is that of a noisier figure (a p99 of
/// 200 calls is their second-slowest, one loss event more or less). Fixed seed: the same data
/// gives the same interval. `None` when a side has no values.
pub fn bootstrap_quantile_ratio(
    a: &[Vec<u64>],
    b: &[Vec<u64>],
    q: f64,
    resamples: usize,
) -> Option<[f64; 2]> {
    if a.iter().all(Vec::is_empty) || b.iter().all(Vec::is_empty) || resamples == 0 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_b007);
    let mut pooled = Vec::new();
    let mut resampled_quantile = |reps: &[Vec<u64>], rng: &mut fastrand::Rng| {
        pooled.clear();
        for rep in reps.iter().filter(|r| !r.is_empty()) {
            pooled.extend((0..rep.len()).map(|_| rep[rng.usize(..rep.len())]));
        }
        pooled_quantile(&mut pooled, q)
    };
    let mut ratios: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let x = resampled_quantile(a, &mut rng);
            let y = resampled_quantile(b, &mut rng);
            ratio(x, y)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some([quantile(&ratios, 0.025), quantile(&ratios, 0.975)])
}

/// Quantile `q` of non-empty `values` as hdrhistogram reports one: the smallest value with at
/// least `q` of all values at or below it.
pub fn pooled_quantile(values: &mut [u64], q: f64) -> f64 {
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, v, _) = values.select_nth_unstable(rank - 1);
    *v as f64
}

/// Every recorded value of `h`, each as often as it was recorded (at the histogram's precision).
pub fn histogram_values(h: &Histogram<u64>) -> Vec<u64> {
    h.iter_recorded()
        .flat_map(|v| std::iter::repeat_n(v.value_iterated_to(), v.count_at_value() as usize))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// `reps` repetitions of `calls` latencies (µs): most at 50 ms, `slow_pct` % of them (none
    /// in repetition 0 when `lucky_first`) spread over `slow`.
    fn latencies(
        seed: u64,
        reps: usize,
        calls: usize,
        slow_pct: usize,
        slow: std::ops::Range<u64>,
        lucky_first: bool,
    ) -> Vec<Vec<u64>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..reps)
            .map(|rep| {
                (0..calls)
                    .map(|_| {
                        let slow_call = rng.usize(..100) < slow_pct && !(lucky_first && rep == 0);
                        if slow_call {
                            rng.u64(slow.clone())
                        } else {
                            rng.u64(50_000..52_000)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn pooled_quantile_matches_the_histograms() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for rep in latencies(1, 5, 200, 3, 300_000..400_000, false) {
            for v in rep {
                h.record(v).unwrap();
            }
        }
        let mut values = histogram_values(&h);
        assert_eq!(values.len() as u64, h.len());
        for q in [0.5, 0.9, 0.99] {
            assert_eq!(
                pooled_quantile(&mut values, q),
                h.value_at_quantile(q) as f64
            );
        }
    }

    #[test]
    fn bootstrap_interval_brackets_the_pooled_ratio() {
        // h3-like: a lost packet costs ~110 ms; h2-like: 300-400 ms, and one repetition saw no
        // loss at all (its own p99 is 52 ms: that repetition's ratio alone is ~2).
        let a = latencies(2, 5, 200, 3, 105_000..115_000, false);
        let b = latencies(3, 5, 200, 3, 300_000..400_000, true);
        let [lo, hi] = bootstrap_quantile_ratio(&a, &b, 0.99, 2000).unwrap();
        let pooled = |reps: &[Vec<u64>]| pooled_quantile(&mut reps.concat(), 0.99);
        let value = pooled(&a) / pooled(&b);
        assert!(lo <= value && value <= hi, "{lo} {value} {hi}");
        assert!(hi < 0.45 && lo > 0.2, "{lo}..{hi}");
        // Fixed seed: the same data, the same interval.
        assert_eq!(bootstrap_quantile_ratio(&a, &b, 0.99, 2000), Some([lo, hi]));
        // The same distribution on both sides: the interval holds 1.
        let c = latencies(4, 5, 200, 3, 300_000..400_000, false);
        let [lo, hi] = bootstrap_quantile_ratio(&c, &b, 0.99, 2000).unwrap();
        assert!(lo < 1.0 && 1.0 < hi, "{lo}..{hi}");
        assert_eq!(bootstrap_quantile_ratio(&a, &[], 0.99, 100), None);
    }

    #[test]
    fn median_and_quartiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!(s.median, 2.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert_eq!((s.q1, s.q3), (1.75, 3.25));
        assert!((s.spread_pct() - 60.0).abs() < 1e-9);
    }

    #[test]
    fn odd_count_median_is_the_middle_sample_and_nan_is_ignored() {
        let s = Summary::of(&[10.0, f64::NAN, 30.0, 20.0]).unwrap();
        assert_eq!((s.n, s.median), (3, 20.0));
        assert!(Summary::of(&[f64::INFINITY]).is_none());
    }

    #[test]
    fn ratio_refuses_zero_and_non_finite() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn latency_quantiles_come_from_the_histogram() {
        let mut h = crate::load::latency_histogram().unwrap();
        for us in 1..=1000u64 {
            h.record(us * 1_000).unwrap();
        }
        let d = LatencyDist::of(&h).unwrap();
        assert_eq!(d.count, 1000);
        assert!((d.p50_us - 500.0).abs() < 1.0, "{}", d.p50_us);
        assert!((d.p99_us - 990.0).abs() < 1.5, "{}", d.p99_us);
        assert!(
            d.cdf
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
        assert_eq!(d.cdf.last().unwrap().1, 1.0);
        assert!(LatencyDist::of(&crate::load::latency_histogram().unwrap()).is_none());
    }

    #[test]
    fn ratios_carry_the_range_of_their_paired_repetitions() {
        let a = [Some(2.0), Some(3.0), None, Some(8.0)];
        let b = [Some(4.0), Some(3.0), Some(1.0), Some(4.0)];
        let r = Ratio::of(3.0, 4.0, &a, &b).unwrap();
        assert_eq!((r.value, r.lo, r.hi, r.pairs), (0.75, 0.5, 2.0, 3));
        assert_eq!(r.text(), "0.75 (0.50–2.00)");
        let lone = Ratio::of(1.0, 2.0, &[], &[]).unwrap();
        assert_eq!((lone.lo, lone.hi, lone.pairs), (0.5, 0.5, 0));
        assert_eq!(lone.text(), "0.50");
        assert!(Ratio::of(1.0, 0.0, &a, &b).is_none());
    }
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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

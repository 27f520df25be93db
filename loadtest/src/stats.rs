//! Latency histograms and what a report says about them.
//!
//! Latencies are recorded in microseconds into `hdrhistogram` (3 significant digits, up to
//! a minute), one histogram per task, merged at the end, so the hot path takes no lock.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency a histogram holds: anything longer is recorded as this.
const LATENCY_MAX_US: u64 = 60_000_000;

/// The quantiles a summary keeps for the latency chart: the body, then the tail nine by nine,
/// then the maximum (1.0).
pub const CHART_QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0];

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    #[expect(
        clippy::expect_used,
        reason = "constant bounds that hdrhistogram accepts: low >= 1, high >= 2 * low, 3 digits"
    )]
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid constant bounds"))
    }

    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.clamp(1, LATENCY_MAX_US));
    }

    #[cfg(test)]
    pub fn merge(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The summary a report carries.
    pub fn summary(&self, name: &str) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary {
                name: name.to_owned(),
                count: 0,
                ..LatencySummary::default()
            };
        }
        LatencySummary {
            name: name.to_owned(),
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
            percentiles: CHART_QUANTILES
                .iter()
                .map(|&quantile| Percentile {
                    quantile,
                    // The maximum as recorded, the same number as `max_ms`, rather than the
                    // top of its histogram bucket.
                    ms: ms(if quantile >= 1.0 {
                        self.0.max()
                    } else {
                        self.0.value_at_quantile(quantile)
                    }),
                })
                .collect(),
        }
    }
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub name: String,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The latency at each of [`CHART_QUANTILES`], for the chart; empty for an empty
    /// histogram and in reports written before it existed.
    #[serde(default)]
    pub percentiles: Vec<Percentile>,
}

/// One point of a latency distribution: `quantile` in 0..=1 (1 is the maximum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    pub quantile: f64,
    pub ms: f64,
}

/// Events per second over an interval (0 for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// The median of some numbers (the mean of the middle two for an even count); `None` when
/// there are none or one is not a number.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// A task's latencies, kept locally and added to a shared histogram in batches, so that a
/// thousand tasks share one histogram without taking its lock per sample.
pub struct Recorder {
    local: Vec<Duration>,
    shared: std::sync::Arc<std::sync::Mutex<Latencies>>,
}

/// Samples a [`Recorder`] keeps before it adds them to the shared histogram.
const RECORDER_BATCH_MAX: usize = 256;

impl Recorder {
    pub fn new(shared: &std::sync::Arc<std::sync::Mutex<Latencies>>) -> Self {
        Recorder {
            local: Vec::with_capacity(RECORDER_BATCH_MAX),
            shared: std::sync::Arc::clone(shared),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.local.push(latency);
        if self.local.len() >= RECORDER_BATCH_MAX {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.local.is_empty() {
            return;
        }
        // A poisoned lock means another task panicked mid-record; its histogram is still
        // usable for counting, so keep recording.
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for latency in self.local.drain(..) {
            shared.record(latency);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A shared histogram, for [`Recorder`]s.
pub fn shared() -> std::sync::Arc<std::sync::Mutex<Latencies>> {
    std::sync::Arc::new(std::sync::Mutex::new(Latencies::new()))
}

/// The summary of a shared histogram.
pub fn summary_of(
    shared: &std::sync::Arc<std::sync::Mutex<Latencies>>,
    name: &str,
) -> LatencySummary {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .summary(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn within(actual: f64, expected: f64) -> bool {
        // hdrhistogram with 3 significant digits: within 0.1 %.
        (actual - expected).abs() <= expected * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut latencies = Latencies::new();
        for us in 1..=10_000u64 {
            latencies.record(Duration::from_micros(us));
        }
        let s = latencies.summary("ack");
        assert_eq!(s.count, 10_000);
        assert!(within(s.p50_ms, 5.0), "{s:?}");
        assert!(within(s.p99_ms, 9.9), "{s:?}");
        assert!(within(s.p999_ms, 9.99), "{s:?}");
        assert!(within(s.max_ms, 10.0), "{s:?}");
        assert!(within(s.mean_ms, 5.0005), "{s:?}");
        let quantiles: Vec<f64> = s.percentiles.iter().map(|p| p.quantile).collect();
        assert_eq!(quantiles, CHART_QUANTILES);
        for p in &s.percentiles {
            assert!(within(p.ms, p.quantile * 10.0), "{p:?}");
        }
        assert_eq!(s.percentiles.last().map(|p| p.ms), Some(s.max_ms));
    }

    #[test]
    fn merged_histograms_count_everything_once() {
        let (mut a, mut b) = (Latencies::new(), Latencies::new());
        for _ in 0..990 {
            a.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            b.record(Duration::from_millis(100));
        }
        a.merge(&b);
        let s = a.summary("x");
        assert_eq!(s.count, 1000);
        assert!(within(s.p50_ms, 1.0), "{s:?}");
        assert!(within(s.p99_ms, 1.0), "{s:?}");
        assert!(within(s.p999_ms, 100.0), "{s:?}");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut latencies = Latencies::new();
        latencies.record(Duration::ZERO);
        latencies.record(Duration::from_secs(3600));
        let s = latencies.summary("x");
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 59_900.0, "{s:?}");
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeroes() {
        let s = Latencies::new().summary("none");
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, 0.0);
        assert!(s.percentiles.is_empty());
    }

    #[test]
    fn a_summary_from_before_percentiles_still_parses() {
        let old = r#"{"name":"ack","count":3,"mean_ms":1.0,"p50_ms":1.0,"p99_ms":2.0,
            "p999_ms":2.0,"max_ms":2.5}"#;
        let s: LatencySummary = serde_json::from_str(old).unwrap();
        assert_eq!(s.max_ms, 2.5);
        assert!(s.percentiles.is_empty());
    }

    #[test]
    fn rates_and_medians() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }
}

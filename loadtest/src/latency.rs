//! Latency histograms (HdrHistogram, microseconds): a total one and one per
//! second of schedule for the plot. Subscriber tasks on several threads
//! record into shards, each behind its own mutex, and lock once per socket
//! read rather than once per event.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Highest latency we keep apart from "very late": one hour, in µs.
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Three significant digits for the reported percentiles.
const TOTAL_SIGNIFICANT_DIGITS: u8 = 3;
/// Two digits are plenty for a plotted line and keep each per-second histogram small.
const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

pub fn new_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, significant_digits)
        .expect("valid histogram bounds")
}

/// Latencies of one shard of subscribers.
pub struct LatencyShard {
    pub total: Histogram<u64>,
    /// Keyed by the unix second the event was scheduled in.
    pub per_second: BTreeMap<u64, Histogram<u64>>,
    /// When the latest recorded event arrived; 0 before the first.
    pub last_arrival_unix_nanos: u64,
}

impl LatencyShard {
    fn new() -> Self {
        Self {
            total: new_histogram(TOTAL_SIGNIFICANT_DIGITS),
            per_second: BTreeMap::new(),
            last_arrival_unix_nanos: 0,
        }
    }

    /// Records one event scheduled at one time and arrived at another.
    pub fn record(&mut self, scheduled_unix_nanos: u64, arrived_unix_nanos: u64) {
        let latency_nanos = arrived_unix_nanos.saturating_sub(scheduled_unix_nanos);
        let micros = (latency_nanos / 1_000).clamp(1, HIGHEST_MICROS);
        self.total.saturating_record(micros);
        self.per_second
            .entry(scheduled_unix_nanos / 1_000_000_000)
            .or_insert_with(|| new_histogram(TIMELINE_SIGNIFICANT_DIGITS))
            .saturating_record(micros);
        self.last_arrival_unix_nanos = self.last_arrival_unix_nanos.max(arrived_unix_nanos);
    }
}

pub struct LatencyRecorder {
    shards: Vec<Mutex<LatencyShard>>,
}

impl LatencyRecorder {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(LatencyShard::new()))
                .collect(),
        }
    }

    /// The shard for a subscriber; subscribers spread evenly over shards.
    pub fn shard(&self, subscriber: usize) -> MutexGuard<'_, LatencyShard> {
        self.shards[subscriber % self.shards.len()]
            .lock()
            .expect("latency shard poisoned")
    }

    /// Merges the shards into dumps for the coordinator.
    pub fn dump(&self) -> LatencyDump {
        let mut merged = LatencyShard::new();
        for shard in &self.shards {
            let shard = shard.lock().expect("latency shard poisoned");
            merged.total.add(&shard.total).expect("same bounds");
            merged.last_arrival_unix_nanos = merged
                .last_arrival_unix_nanos
                .max(shard.last_arrival_unix_nanos);
            for (second, histogram) in &shard.per_second {
                merged
                    .per_second
                    .entry(*second)
                    .or_insert_with(|| new_histogram(TIMELINE_SIGNIFICANT_DIGITS))
                    .add(histogram)
                    .expect("same bounds");
            }
        }
        LatencyDump {
            total: HistogramDump::from(&merged.total),
            per_second: merged
                .per_second
                .iter()
                .map(|(second, histogram)| (*second, HistogramDump::from(histogram)))
                .collect(),
            last_arrival_unix_nanos: (merged.last_arrival_unix_nanos > 0)
                .then_some(merged.last_arrival_unix_nanos),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyDump {
    pub total: HistogramDump,
    pub per_second: Vec<(u64, HistogramDump)>,
    pub last_arrival_unix_nanos: Option<u64>,
}

/// A histogram as `(value, count)` pairs: small, and plain JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramDump {
    pub significant_digits: u8,
    pub counts: Vec<(u64, u64)>,
}

impl From<&Histogram<u64>> for HistogramDump {
    fn from(histogram: &Histogram<u64>) -> Self {
        Self {
            significant_digits: histogram.sigfig(),
            counts: histogram
                .iter_recorded()
                .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
                .collect(),
        }
    }
}

impl HistogramDump {
    /// Adds the dump's counts to `histogram`.
    pub fn add_to(&self, histogram: &mut Histogram<u64>) {
        for &(value, count) in &self.counts {
            histogram.saturating_record_n(value, count);
        }
    }

    #[cfg(test)]
    pub fn to_histogram(&self) -> Histogram<u64> {
        let digits = if self.significant_digits == 0 {
            TOTAL_SIGNIFICANT_DIGITS
        } else {
            self.significant_digits
        };
        let mut histogram = new_histogram(digits);
        self.add_to(&mut histogram);
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_dump() {
        let recorder = LatencyRecorder::new(4);
        let second = 1_700_000_000u64 * 1_000_000_000;
        for subscriber in 0..8 {
            recorder
                .shard(subscriber)
                .record(second, second + 2_000_000);
        }
        let next_second = second + 1_000_000_000;
        recorder
            .shard(0)
            .record(next_second, next_second + 50_000_000);
        let dump = recorder.dump();
        let total = dump.total.to_histogram();
        assert_eq!(total.len(), 9);
        assert_eq!(
            total.value_at_quantile(0.5),
            total.highest_equivalent(2_000)
        );
        assert_eq!(total.max(), total.highest_equivalent(50_000));
        assert_eq!(dump.per_second.len(), 2);
        assert_eq!(dump.per_second[0].0, 1_700_000_000);
        assert_eq!(dump.per_second[1].1.to_histogram().len(), 1);
        assert_eq!(dump.last_arrival_unix_nanos, Some(next_second + 50_000_000));
    }

    #[test]
    fn dumps_round_trip() {
        let mut histogram = new_histogram(3);
        for micros in [1, 10, 100, 1_000, 123_456] {
            histogram.record_n(micros, 3).unwrap();
        }
        let back = HistogramDump::from(&histogram).to_histogram();
        assert_eq!(back.len(), 15);
        assert_eq!(back.max(), histogram.max());
        assert_eq!(
            back.value_at_quantile(0.5),
            histogram.value_at_quantile(0.5)
        );
    }
}

//! Write metrics: counters and timings the write path records on every append. Recording
//! is a few additions on a plain struct the store owns: no lock, no allocation, and the
//! latency percentiles come from a fixed-size histogram, so memory does not grow with the
//! number of writes.

use std::time::Duration;

use serde::Serialize;

/// Write latencies in nanoseconds, log-linear: values below 32 ns have a bucket each, and
/// every power of two above is split into 16 buckets. Any bucket's width is at most 1/16 of
/// its lower bound, so a percentile read from the middle of a bucket is within about 3 % of
/// the true value, over the whole `u64` range.
pub struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets 0..32 hold one value each; then 16 per power of two, from 2^5 up to 2^63.
const BUCKETS: usize = (2 * SUB) as usize + (63 - SUB_BITS as usize) * SUB as usize;

impl Histogram {
    const fn new() -> Histogram {
        Histogram { counts: [0; BUCKETS], total: 0 }
    }

    fn bucket(nanos: u64) -> usize {
        if nanos < 2 * SUB {
            return nanos as usize;
        }
        let power = 63 - nanos.leading_zeros(); // >= SUB_BITS + 1
        let sub = (nanos >> (power - SUB_BITS)) - SUB;
        ((power - SUB_BITS) as u64 * SUB + SUB + sub) as usize
    }

    /// The lowest value of a bucket and its width.
    fn bounds(bucket: usize) -> (u64, u64) {
        let b = bucket as u64;
        if b < 2 * SUB {
            return (b, 1);
        }
        let shift = (b - SUB) / SUB;
        let sub = (b - SUB) % SUB;
        ((SUB + sub) << shift, 1 << shift)
    }

    fn record(&mut self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Histogram::bucket(nanos)] += 1;
        self.total += 1;
    }

    /// The value below which `fraction` of the samples fall, in nanoseconds (the middle of its
    /// bucket); 0 before any sample.
    fn percentile(&self, fraction: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((fraction * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = Histogram::bounds(bucket);
                return low as f64 + (width - 1) as f64 / 2.0;
            }
        }
        0.0
    }
}

/// What the write path has done since the store was opened.
pub struct Metrics {
    writes_total: u64,
    batch_writes_total: u64,
    batch_events_total: u64,
    /// The last `store` (a single write); bulk writes have their own figures.
    last_write: Duration,
    last_batch: Duration,
    last_batch_size: u64,
    errors_total: u64,
    latency: Histogram,
}

/// How a write was asked for: one `store`, or one `storeBulk` of any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Single,
    Batch,
}

/// What the store reads back from SQLite for `getMetrics()`.
pub struct SqliteReport {
    pub journal_mode: String,
    pub synchronous: &'static str,
    pub event_count: i64,
}

/// `getMetrics()`, as the spec lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    pub writes_total: u64,
    pub batch_writes_total: u64,
    pub batch_events_total: u64,
    pub last_write_ms: f64,
    pub last_batch_ms: f64,
    pub last_batch_size: u64,
    pub avg_batch_size: f64,
    pub last_batch_throughput_eps: f64,
    pub errors_total: u64,
    pub write_latency_ms: Percentiles,
    pub journal_mode: String,
    pub synchronous: &'static str,
    pub event_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl MetricsSnapshot {
    /// JSON text for JavaScript to parse once. Serializing numbers and strings cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn ms(nanos: f64) -> f64 {
    nanos / 1e6
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            writes_total: 0,
            batch_writes_total: 0,
            batch_events_total: 0,
            last_write: Duration::ZERO,
            last_batch: Duration::ZERO,
            last_batch_size: 0,
            errors_total: 0,
            latency: Histogram::new(),
        }
    }
}

impl Metrics {
    /// A write that stored `events` events in `took`; one latency sample per write.
    pub fn record_write(&mut self, kind: WriteKind, events: usize, took: Duration) {
        let events = events as u64;
        self.writes_total += events;
        match kind {
            WriteKind::Single => self.last_write = took,
            WriteKind::Batch => {
                self.batch_writes_total += 1;
                self.batch_events_total += events;
                self.last_batch = took;
                self.last_batch_size = events;
            }
        }
        self.latency.record(took);
    }

    /// A write that stored nothing.
    pub fn record_error(&mut self) {
        self.errors_total += 1;
    }

    pub fn snapshot(&self, db: SqliteReport) -> MetricsSnapshot {
        let batch_secs = self.last_batch.as_secs_f64();
        MetricsSnapshot {
            writes_total: self.writes_total,
            batch_writes_total: self.batch_writes_total,
            batch_events_total: self.batch_events_total,
            last_write_ms: ms(self.last_write.as_nanos() as f64),
            last_batch_ms: ms(self.last_batch.as_nanos() as f64),
            last_batch_size: self.last_batch_size,
            avg_batch_size: if self.batch_writes_total == 0 {
                0.0
            } else {
                self.batch_events_total as f64 / self.batch_writes_total as f64
            },
            last_batch_throughput_eps: if batch_secs > 0.0 { self.last_batch_size as f64 / batch_secs } else { 0.0 },
            errors_total: self.errors_total,
            write_latency_ms: Percentiles {
                p50: ms(self.latency.percentile(0.50)),
                p95: ms(self.latency.percentile(0.95)),
                p99: ms(self.latency.percentile(0.99)),
            },
            journal_mode: db.journal_mode,
            synchronous: db.synchronous,
            event_count: db.event_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> SqliteReport {
        SqliteReport { journal_mode: "WAL".into(), synchronous: "NORMAL", event_count: 0 }
    }

    #[test]
    fn buckets_cover_every_value_in_order_and_without_gaps() {
        let mut previous = (0, 1);
        for bucket in 1..BUCKETS {
            let (low, width) = Histogram::bounds(bucket);
            assert_eq!(low, previous.0 + previous.1, "bucket {bucket} starts where {} ends", bucket - 1);
            assert_eq!(Histogram::bucket(low), bucket);
            assert_eq!(Histogram::bucket(low + (width - 1)), bucket);
            assert!(width == 1 || width * SUB <= low, "bucket {bucket} is too wide");
            previous = (low, width);
        }
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        for (fraction, truth) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.percentile(fraction);
            assert!((got - truth).abs() / truth < 0.04, "p{fraction}: {got} vs {truth}");
        }
        assert_eq!(Histogram::new().percentile(0.5), 0.0);
    }

    #[test]
    fn the_histogram_does_not_grow_with_the_writes() {
        let size = std::mem::size_of::<Metrics>();
        assert!(size < 8 * 1024, "{size} bytes");
        let mut m = Metrics::default();
        for i in 0..1_000_000u64 {
            m.record_write(WriteKind::Single, 1, Duration::from_nanos(20_000 + i % 1000));
        }
        let snap = m.snapshot(db());
        assert_eq!(snap.writes_total, 1_000_000);
        assert!((0.0195..0.0215).contains(&snap.write_latency_ms.p50), "{}", snap.write_latency_ms.p50);
    }

    #[test]
    fn counters_follow_a_known_sequence_of_writes() {
        let mut m = Metrics::default();
        m.record_write(WriteKind::Single, 1, Duration::from_micros(30));
        m.record_write(WriteKind::Batch, 5, Duration::from_millis(2));
        m.record_write(WriteKind::Single, 1, Duration::from_micros(40));
        m.record_write(WriteKind::Batch, 2, Duration::from_millis(1));
        m.record_error();
        let s = m.snapshot(db());
        assert_eq!((s.writes_total, s.batch_writes_total, s.batch_events_total), (9, 2, 7));
        assert_eq!((s.last_write_ms, s.last_batch_ms, s.last_batch_size), (0.04, 1.0, 2));
        assert_eq!((s.avg_batch_size, s.errors_total), (3.5, 1));
        assert!((s.last_batch_throughput_eps - 2000.0).abs() < 1e-6);
        let p = &s.write_latency_ms;
        assert!(p.p50 >= 0.039 && p.p50 <= 0.041 && p.p99 > 1.9, "{p:?}");
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["writeLatencyMs"]["p95"], p.p95);
        assert_eq!(json["journalMode"], "WAL");
    }

    #[test]
    fn before_any_write_everything_is_zero() {
        let s = Metrics::default().snapshot(db());
        assert_eq!((s.writes_total, s.avg_batch_size, s.last_batch_throughput_eps), (0, 0.0, 0.0));
        assert_eq!(s.write_latency_ms, Percentiles { p50: 0.0, p95: 0.0, p99: 0.0 });
    }
}

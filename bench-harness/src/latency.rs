//! Latency recording: one HdrHistogram per shard, merged into a shared one at the end.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// Highest latency tracked: 60 s in ns.
const MAX_NS: u64 = 60_000_000_000;

/// An empty latency histogram: 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("static bounds are valid")
}

/// Records latencies on one shard and adds them to a shared histogram when published.
#[derive(Debug)]
pub struct Recorder {
    local: Histogram<u64>,
    shared: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    /// A shared histogram to merge into.
    pub fn shared() -> Arc<Mutex<Histogram<u64>>> {
        Arc::new(Mutex::new(new_histogram()))
    }

    /// A shard-local recorder publishing into `shared`.
    pub fn new(shared: Arc<Mutex<Histogram<u64>>>) -> Self {
        Recorder {
            local: new_histogram(),
            shared,
        }
    }

    /// Records one latency in ns (clamped to the tracked range).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.local.saturating_record(ns.max(1));
    }

    /// Adds the local histogram to the shared one and resets it.
    pub fn publish(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .add(&self.local)
            .expect("histograms share their bounds");
        self.local.reset();
    }
}

/// Percentiles of a latency histogram, in ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl LatencySummary {
    /// Summarizes a shared histogram.
    pub fn of(h: &Arc<Mutex<Histogram<u64>>>) -> Self {
        Self::from_histogram(&h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Summarizes a histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Formats ns as a short human duration.
pub fn fmt_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

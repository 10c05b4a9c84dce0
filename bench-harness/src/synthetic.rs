//! The synthetic workload: 40-byte records with a key, an intended emission time and
//! payload, sent through a key-hash exchange to a sink.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rill_runtime::rkyv;
use rill_runtime::{
    Config, Dataflow, Failure, JobReport, OpResult, Partitioning, Runtime, Sink, Source,
    SourceOutput, SourceStatus,
};

use crate::latency::{LatencySummary, Recorder};

/// A 40-byte record: key, intended emission time (ns since the run's epoch), payload.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq)]
#[rkyv(crate = rkyv)]
pub struct Event {
    /// Key, uniform over the key space.
    pub key: u64,
    /// When the event was meant to be emitted, in ns since the run started.
    pub intended_ns: u64,
    /// Payload.
    pub a: u64,
    /// Payload.
    pub b: u64,
    /// Payload.
    pub c: u64,
}

/// One synthetic run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Events in total, over all shards.
    pub events: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Target rate in events/s over all shards; `None` runs unthrottled.
    pub rate: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The runtime's report.
    pub report: JobReport,
    /// Events per second from the first to the last shard finishing.
    pub throughput: f64,
    /// Latency from intended emission to the sink, if measured (open loop only).
    pub latency: Option<LatencySummary>,
    /// How far behind its schedule the slowest source ended (open loop only).
    pub behind: Duration,
}

#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Generates this shard's events (numbers `shard, shard + shards, ...`), unthrottled or on
/// an open-loop schedule: event `i` is due at `epoch + i / rate`.
#[derive(Debug)]
pub struct EventSource {
    next: u64,
    step: u64,
    end: u64,
    keys: u64,
    /// The run's start: set by the first source to poll, so that executor start-up does
    /// not count as latency.
    epoch: Arc<OnceLock<Instant>>,
    ns_per_event: Option<f64>,
    behind: Arc<Mutex<Duration>>,
}

impl Source<Event> for EventSource {
    fn poll(&mut self, out: &mut SourceOutput<Event>, max: usize) -> Result<SourceStatus, Failure> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        if self.next >= self.end {
            if let Some(ns) = self.ns_per_event {
                let last_due = Duration::from_nanos((self.end as f64 * ns) as u64);
                let late = epoch.elapsed().saturating_sub(last_due);
                let mut b = self.behind.lock().unwrap_or_else(|e| e.into_inner());
                *b = (*b).max(late);
            }
            return Ok(SourceStatus::Done);
        }
        let due_until = match self.ns_per_event {
            None => u64::MAX,
            Some(ns) => (epoch.elapsed().as_nanos() as f64 / ns) as u64 + 1,
        };
        let mut emitted = 0;
        while emitted < max && self.next < self.end && self.next < due_until {
            let n = self.next;
            let intended_ns = self.ns_per_event.map_or(0, |ns| (n as f64 * ns) as u64);
            out.give(Event {
                key: mix(n) % self.keys,
                intended_ns,
                a: n,
                b: n ^ 0x5555,
                c: 0,
            });
            self.next += self.step;
            emitted += 1;
        }
        Ok(if emitted == 0 {
            SourceStatus::Idle
        } else {
            SourceStatus::Emitted
        })
    }
}

struct LatencySink {
    epoch: Arc<OnceLock<Instant>>,
    recorder: Recorder,
}

impl Sink<Event> for LatencySink {
    fn on_batch(&mut self, batch: &mut Vec<Event>) -> OpResult {
        // Records exist only after a source set the epoch.
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = epoch.elapsed().as_nanos() as u64;
        for e in batch.drain(..) {
            self.recorder.record(now.saturating_sub(e.intended_ns));
        }
        Ok(())
    }
    fn on_end(&mut self) -> OpResult {
        self.recorder.publish();
        Ok(())
    }
}

/// Runs `workload` through one key-hash exchange on `config`'s shards.
pub fn run_exchange(config: Config, workload: &Workload) -> rill_runtime::Result<RunResult> {
    let shards = config.shard_count();
    let mut config = config;
    if workload.rate.is_some() {
        // Open loop: never park, so a due event is picked up at once.
        config = config.spin_before_park(Duration::from_secs(3600));
    }
    let runtime = Runtime::new(config)?;
    let epoch: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let behind = Arc::new(Mutex::new(Duration::ZERO));
    let histogram = Recorder::shared();
    let per_shard_rate = workload.rate.map(|r| r as f64 / shards as f64);
    let mut df = Dataflow::new();
    let (events, keys, b) = (workload.events, workload.keys.max(1), behind.clone());
    let e = epoch.clone();
    let stream = df
        .source("events", move |s| EventSource {
            next: s.index as u64,
            step: s.shards as u64,
            end: events,
            keys,
            epoch: e.clone(),
            // Shard i emits events i, i + n, ...: event k is due at k / rate overall.
            ns_per_event: per_shard_rate.map(|r| 1e9 / (r * s.shards as f64)),
            behind: b.clone(),
        })
        .exchange(Partitioning::by_key(|e: &Event| e.key));
    if workload.rate.is_some() {
        let h = histogram.clone();
        stream.sink("latency sink", move |_| LatencySink {
            epoch: epoch.clone(),
            recorder: Recorder::new(h.clone()),
        });
    } else {
        stream.discard("sink");
    }
    let report = runtime.run(df)?;
    let throughput = workload.events as f64 / report.elapsed.as_secs_f64();
    let latency = workload.rate.map(|_| LatencySummary::of(&histogram));
    let behind = *behind.lock().unwrap_or_else(|e| e.into_inner());
    Ok(RunResult {
        report,
        throughput,
        latency,
        behind,
    })
}

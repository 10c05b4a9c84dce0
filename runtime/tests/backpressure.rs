//! Credit-based backpressure: with a deliberately slow sink, producers are held back, the
//! records in flight stay bounded, nothing is lost or duplicated, and the channels report
//! the time they spent without credit — readable while the job runs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_runtime::{Config, Dataflow, OpResult, Partitioning, Runtime, Sink};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHARDS: usize = 2;
const CREDITS: usize = 2;
const BATCH: usize = 64;
const PER_SHARD: u64 = 20_000;

struct SlowSink {
    emitted: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    max_gap: Arc<AtomicU64>,
    seen: Vec<u64>,
    all: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Sink<u64> for SlowSink {
    fn on_batch(&mut self, batch: &mut Vec<u64>) -> OpResult {
        std::thread::sleep(Duration::from_micros(300));
        let consumed = self
            .consumed
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        let gap = self.emitted.load(Ordering::SeqCst).saturating_sub(consumed);
        self.max_gap.fetch_max(gap, Ordering::SeqCst);
        self.seen.append(batch);
        Ok(())
    }
    fn on_end(&mut self) -> OpResult {
        self.all.lock().unwrap().append(&mut self.seen);
        Ok(())
    }
}

#[test]
fn a_slow_sink_slows_the_sources_and_bounds_memory() {
    let emitted = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let max_gap = Arc::new(AtomicU64::new(0));
    let all = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut df = Dataflow::new();
    let e = emitted.clone();
    let (c, g, a) = (consumed.clone(), max_gap.clone(), all.clone());
    let e_sink = emitted.clone();
    df.iter_source("gen", move |s| {
        let e = e.clone();
        let base = s.index as u64 * PER_SHARD;
        (base..base + PER_SHARD).inspect(move |_| {
            e.fetch_add(1, Ordering::SeqCst);
        })
    })
    .exchange(Partitioning::by_key(|n: &u64| *n))
    .sink("slow", move |_| SlowSink {
        emitted: e_sink.clone(),
        consumed: c.clone(),
        max_gap: g.clone(),
        seen: Vec::new(),
        all: a.clone(),
    });
    let rt = Runtime::new(
        Config::default()
            .shards(SHARDS)
            .pin(false)
            .credits(CREDITS)
            .batch_records(BATCH)
            .batch_bytes(1 << 20),
    )
    .unwrap();
    let job = rt.spawn(df).unwrap();
    // Live counters are readable while the job runs.
    let mut live_batches = 0;
    while !job.is_finished() {
        live_batches = live_batches.max(job.channel_stats().iter().map(|c| c.batches).sum());
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = job.join().expect("job succeeds");
    assert!(live_batches > 0, "no live progress was visible");

    let mut got = all.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, (0..SHARDS as u64 * PER_SHARD).collect::<Vec<_>>());

    // Records emitted but not yet consumed are bounded by what credits allow: per channel
    // `credits` batches in flight plus one being filled and one queued behind it, plus one
    // source batch staged per shard.
    let bound = (SHARDS * SHARDS * (CREDITS + 2) * BATCH + SHARDS * BATCH) as u64;
    let gap = max_gap.load(Ordering::SeqCst);
    eprintln!(
        "max records in flight {gap}, bound {bound}, backpressured {:?}",
        report
            .channels
            .iter()
            .map(|c| c.backpressured)
            .sum::<Duration>()
    );
    assert!(gap <= bound, "{gap} records in flight, bound {bound}");
    let backpressured: Duration = report.channels.iter().map(|c| c.backpressured).sum();
    assert!(
        backpressured > Duration::ZERO,
        "producers never ran out of credit"
    );
    let sent: u64 = report.channels.iter().map(|c| c.records).sum();
    assert_eq!(sent, SHARDS as u64 * PER_SHARD);
}

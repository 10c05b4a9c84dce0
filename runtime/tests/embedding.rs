//! A host program feeding a running job through input handles, reading it through
//! subscriptions, and stopping or cancelling it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{map, runtime, Rec};
use rill_runtime::input::TrySendError;
use rill_runtime::subscription::{Event, TryRecvError};
use rill_runtime::{
    Dataflow, Failure, JobEnd, Partitioning, Source, SourceOutput, SourceStatus, Timestamp,
    MAX_WATERMARK,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Many host threads send through clones of one keyed input; every record arrives once,
/// and one thread's records of one key arrive in the order it sent them.
#[test]
fn many_producers_keep_each_keys_order() {
    let mut df = Dataflow::new();
    let (input, handle) = df.keyed_input("requests", |r: &Rec| r.key);
    let mut out = input.subscribe("out", 64);
    let job = runtime(3).spawn(df).unwrap();
    let producers: Vec<_> = (0..4u32)
        .map(|src| {
            let h = handle.clone();
            std::thread::spawn(move || {
                for seq in 0..5_000u64 {
                    h.send(Rec {
                        src,
                        seq,
                        key: seq % 17,
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    drop(handle);
    let got: Vec<Rec> = out.by_ref().collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    let report = job.join().unwrap();
    assert_eq!(got.len(), 20_000);
    let mut last: std::collections::HashMap<(u32, u64), u64> = Default::default();
    for r in &got {
        if let Some(prev) = last.insert((r.src, r.key), r.seq) {
            assert!(
                prev < r.seq,
                "{r:?} after seq {prev} of the same producer and key"
            );
        }
    }
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 20_000, "every record once");
    assert_eq!(report.end, JobEnd::Finished);
    assert_eq!(out.watermark(), MAX_WATERMARK, "the stream ended");
    // Keyed: every record went to the shard that owns its key.
    assert_eq!(report.operator("requests").unwrap().total(), 20_000);
}

/// A keyed input places records like a key-hash exchange: an operator behind it sees
/// only its own shard's keys.
#[test]
fn keyed_input_places_records_on_their_keys_shard() {
    let mut df = Dataflow::new();
    let (input, handle) = df.keyed_input("requests", |r: &Rec| r.key);
    let placed = input.unary("where", |ctx| {
        let shard = ctx.info();
        common::MapOp(move |r: Rec| {
            (
                rill_runtime::shard_of_key(&r.key, shard.shards),
                shard.index,
            )
        })
    });
    let mut out = placed.subscribe("out", 1024);
    let job = runtime(3).spawn(df).unwrap();
    for seq in 0..3_000 {
        handle
            .send(Rec {
                src: 0,
                seq,
                key: seq * 31,
            })
            .unwrap();
    }
    drop(handle);
    let got: Vec<(usize, usize)> = out.by_ref().collect();
    job.join().unwrap();
    assert_eq!(got.len(), 3_000);
    assert!(
        got.iter().all(|(owner, on)| owner == on),
        "a record off its key's shard"
    );
}

/// Backpressure reaches the host: while nothing reads the subscription, the job stalls,
/// `try_send` hands records back and `send` blocks; reading lets everything through.
#[test]
fn a_stalled_job_blocks_send_and_refuses_try_send() {
    let mut df = Dataflow::new();
    let (input, handle) = df.input::<u64>("numbers");
    let mut out = input.subscribe("out", 8);
    let job = runtime(1).spawn(df).unwrap();
    // Fill the job: the subscription's queue, the sink's backlog, the input's queue.
    // The job provably stalls once the sink took more than the subscription holds (its
    // backlog then blocks the source, in the same callback that counted the records) and
    // the input's queue is full: nothing can move until the host reads.
    const QUEUE: u64 = 4 * 1024; // credits x batch records
    let mut accepted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match handle.try_send(accepted) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(r)) => {
                let emitted = job.metrics().operator("numbers").unwrap().total();
                if emitted > 8 && emitted + QUEUE == accepted {
                    break r;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TrySendError::Closed(_)) => panic!("the job ended"),
        }
        assert!(Instant::now() < deadline, "never refused: no backpressure");
    };
    assert_eq!(refused, accepted, "the refused record is handed back");
    assert!(matches!(
        handle.try_send(refused),
        Err(TrySendError::Full(_))
    ));
    // Bounded: the input queue plus one source batch in the sink's backlog and the
    // subscription's 8.
    assert!(accepted <= QUEUE + 1024 + 8, "{accepted} records accepted");
    let sent = Arc::new(AtomicBool::new(false));
    let blocked = {
        let (h, sent) = (handle.clone(), sent.clone());
        std::thread::spawn(move || {
            h.send(u64::MAX).unwrap();
            sent.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !sent.load(Ordering::SeqCst),
        "send returned while the job was stalled"
    );
    // Read: the job moves again and the blocked send completes.
    let mut got = Vec::new();
    while got.len() < accepted as usize + 1 {
        got.push(out.recv().expect("the job is running"));
    }
    blocked.join().unwrap();
    assert!(sent.load(Ordering::SeqCst));
    drop(handle);
    assert_eq!(out.recv(), None);
    job.join().unwrap();
    got.sort();
    let mut expected: Vec<u64> = (0..accepted).collect();
    expected.push(u64::MAX);
    assert_eq!(got, expected);
}

/// `send_async` on a futures executor, and `recv_async` on another.
#[test]
fn async_send_and_receive_on_a_plain_executor() {
    let mut df = Dataflow::new();
    let (input, handle) = df.input::<u64>("numbers");
    let mut out = map(&input, "double", |n: u64| n * 2).subscribe("out", 16);
    let job = runtime(2).spawn(df).unwrap();
    let sender = std::thread::spawn(move || {
        futures_executor::block_on(async move {
            for n in 0..2_000u64 {
                handle.send_async(n).await.unwrap();
            }
        })
    });
    let got = futures_executor::block_on(async {
        let mut got = Vec::new();
        while let Some(n) = out.recv_async().await {
            got.push(n);
        }
        got
    });
    sender.join().unwrap();
    job.join().unwrap();
    let mut got = got;
    got.sort();
    assert_eq!(got, (0..2_000).map(|n| n * 2).collect::<Vec<u64>>());
}

/// Records sent before the job starts wait for it; the input ends only when the last
/// clone closes.
#[test]
fn the_input_ends_when_every_handle_is_closed() {
    let mut df = Dataflow::new();
    let (input, handle) = df.input::<u64>("numbers");
    let mut out = input.subscribe("out", 1024);
    let early = {
        let h = handle.clone();
        std::thread::spawn(move || h.send(7).unwrap())
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(!handle.is_started());
    let job = runtime(2).spawn(df).unwrap();
    early.join().unwrap();
    let other = handle.clone();
    handle.close();
    other.send(8).unwrap();
    let mut got = vec![out.recv().unwrap(), out.recv().unwrap()];
    got.sort();
    assert_eq!(got, vec![7, 8]);
    assert_eq!(
        out.try_recv(),
        Err(TryRecvError::Empty),
        "one handle is still open"
    );
    assert!(!job.is_finished());
    drop(other);
    assert_eq!(out.recv(), None);
    assert!(out.is_ended());
    job.join().unwrap();
}

/// The input's watermark is the minimum over its open handles; the subscription shows it
/// once the records before it were read.
#[test]
fn watermarks_from_handles_reach_the_subscription() {
    let mut df = Dataflow::new();
    let (input, a) = df.input::<u64>("times");
    let mut out = input
        .exchange(Partitioning::by_key(|t: &u64| *t))
        .subscribe("out", 1024);
    let job = runtime(2).spawn(df).unwrap();
    let b = a.clone();
    for t in 0..100 {
        a.send(t).unwrap();
    }
    a.advance_watermark(100).unwrap();
    b.send(150).unwrap();
    b.advance_watermark(50).unwrap();
    // Min over the two handles: 50.
    let mut got = Vec::new();
    let mut read_until = |wm: Timestamp, got: &mut Vec<u64>| loop {
        match out.recv_event().expect("the stream goes on") {
            Event::Record(t) => got.push(t),
            Event::Watermark(w) if w >= wm => return w,
            Event::Watermark(_) => {}
        }
    };
    assert_eq!(read_until(50, &mut got), 50);
    b.advance_watermark(200).unwrap();
    assert_eq!(
        read_until(100, &mut got),
        100,
        "a's watermark holds the input back"
    );
    assert_eq!(out.watermark(), 100);
    // Every record below the watermark was read before it moved there.
    let mut below: Vec<u64> = got.iter().copied().filter(|&t| t < 100).collect();
    below.sort();
    assert_eq!(below, (0..100).collect::<Vec<_>>());
    drop(a);
    drop(b);
    got.extend(out.by_ref());
    assert_eq!(got.len(), 101);
    assert_eq!(out.watermark(), MAX_WATERMARK);
    job.join().unwrap();
}

/// A source that never ends: `n` counts from 0.
struct Counter {
    next: u64,
    emitted: Arc<AtomicU64>,
}

impl Source<u64> for Counter {
    fn poll(&mut self, out: &mut SourceOutput<u64>, max: usize) -> Result<SourceStatus, Failure> {
        for _ in 0..max {
            out.give(self.next);
            self.next += 1;
        }
        self.emitted.fetch_add(max as u64, Ordering::Relaxed);
        Ok(SourceStatus::Emitted)
    }
}

fn counting_job(
    emitted: &Arc<AtomicU64>,
    capacity: usize,
) -> (
    Dataflow,
    rill_runtime::Subscription<u64>,
    rill_runtime::Collected<u64>,
) {
    let mut df = Dataflow::new();
    let e = emitted.clone();
    let numbers = df
        .source("numbers", move |_| Counter {
            next: 0,
            emitted: e.clone(),
        })
        .exchange(Partitioning::Rebalance);
    let sub = numbers.subscribe("out", capacity);
    let collected = numbers.collect("collected");
    (df, sub, collected)
}

/// A slow reader slows the job down and loses nothing: what it reads equals what a
/// collecting sink on the same stream got.
#[test]
fn a_slow_reader_loses_nothing() {
    let emitted = Arc::new(AtomicU64::new(0));
    let (df, mut sub, collected) = counting_job(&emitted, 4);
    let job = runtime(2).spawn(df).unwrap();
    let mut got = Vec::new();
    for _ in 0..3_000 {
        got.push(sub.recv().unwrap());
        if got.len() % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let controller = job.controller();
    controller.stop();
    got.extend(sub.by_ref());
    let report = job.join().unwrap();
    assert_eq!(report.end, JobEnd::Finished);
    let mut all = collected.take();
    all.sort();
    got.sort();
    assert_eq!(
        got, all,
        "the subscription got what the collecting sink got"
    );
    assert_eq!(report.operator("out").unwrap().dropped_total(), 0);
    // Bounded: the source was held back by the reader.
    let source = report.operator("numbers").unwrap().total();
    assert_eq!(source, got.len() as u64);
    assert!(
        source < 3_000 + 64 * 1024,
        "{source} records emitted: no backpressure"
    );
}

/// Stopping drains: every record a source emitted reaches the sinks, and the job ends.
#[test]
fn stop_drains_and_loses_nothing() {
    let emitted = Arc::new(AtomicU64::new(0));
    let (df, sub, collected) = counting_job(&emitted, 1 << 20);
    drop(sub);
    let job = runtime(2).spawn(df).unwrap();
    while emitted.load(Ordering::Relaxed) < 200_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = job.stop().unwrap();
    assert_eq!(report.end, JobEnd::Finished);
    let source = report.operator("numbers").unwrap().total();
    assert!(source >= 200_000);
    assert_eq!(collected.take().len() as u64, source);
    // The dropped subscription's sink discarded (and counted) what reached it.
    let out = report.operator("out").unwrap();
    assert_eq!(out.total(), source);
    assert_eq!(out.dropped_total(), source);
}

/// Cancelling ends a job at once, even one whose sink is stalled.
#[test]
fn cancel_ends_promptly() {
    let emitted = Arc::new(AtomicU64::new(0));
    let (df, sub, _collected) = counting_job(&emitted, 4);
    let job = runtime(2).spawn(df).unwrap();
    while emitted.load(Ordering::Relaxed) < 1_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    let report = job.cancel().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(report.end, JobEnd::Cancelled);
    // The subscription ends (its sinks are gone), with what it had.
    let mut sub = sub;
    let mut n = 0;
    while sub.recv().is_some() {
        n += 1;
    }
    assert!(n <= 4);
}

/// Stopping a job fed by an input processes what was already sent, then refuses more.
#[test]
fn stop_processes_what_the_input_took_then_refuses() {
    let mut df = Dataflow::new();
    let (input, handle) = df.input::<u64>("numbers");
    let collected = input.collect("out");
    let job = runtime(2).spawn(df).unwrap();
    for n in 0..10_000 {
        handle.send(n).unwrap();
    }
    let report = job.stop().unwrap();
    assert_eq!(report.operator("out").unwrap().total(), 10_000);
    assert_eq!(collected.take().len(), 10_000);
    assert!(handle.is_closed());
    assert_eq!(
        handle.send(1).unwrap_err().0,
        1,
        "the record is handed back"
    );
}

/// A dataflow dropped without running does not leave a sender waiting.
#[test]
fn a_dropped_dataflow_closes_its_inputs() {
    let mut df = Dataflow::new();
    let (_, handle) = df.input::<u64>("numbers");
    drop(df);
    assert_eq!(handle.send(5).unwrap_err().0, 5);
    assert!(matches!(handle.try_send(6), Err(TrySendError::Closed(6))));
}

/// The job's numbers while it runs: records per operator and shard, input watermarks,
/// channel counters, checkpoints.
#[test]
fn metrics_show_a_running_job() {
    let dir = std::env::temp_dir().join(format!("rill-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpointing = rill_runtime::checkpoint::Checkpointing::new(&dir).interval(None);
    let config = rill_runtime::Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing);
    let mut df = Dataflow::new();
    let (input, handle) = df.input::<u64>("times");
    let mut out = input
        .exchange(Partitioning::by_key(|t: &u64| *t))
        .subscribe("out", 4096);
    let job = rill_runtime::Runtime::new(config)
        .unwrap()
        .spawn(df)
        .unwrap();
    for t in 0..1_000 {
        handle.send(t).unwrap();
    }
    handle.advance_watermark(500).unwrap();
    let before = job.metrics();
    assert_eq!(before.end, JobEnd::Running);
    for _ in 0..1_000 {
        out.recv().unwrap();
    }
    job.checkpoint_now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = job.metrics();
        let sink = m.operator("out").unwrap();
        let done = sink.total() == 1_000
            && sink.watermarks.iter().all(|&w| w == 500)
            && m.checkpoints
                .as_ref()
                .is_some_and(|c| !c.completed.is_empty());
        if done {
            break m;
        }
        assert!(Instant::now() < deadline, "{m:?}");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(m.operator("times").unwrap().total(), 1_000);
    assert_eq!(m.operator("times").unwrap().watermarks, vec![500, 500]);
    let crossed: u64 = m.channels.iter().map(|c| c.records).sum();
    assert_eq!(crossed, 1_000);
    assert!(before.operator("out").unwrap().total() <= 1_000);
    drop(handle);
    let report = job.join().unwrap();
    assert_eq!(report.end, JobEnd::Finished);
    assert_eq!(
        report.operator("out").unwrap().watermarks,
        vec![MAX_WATERMARK; 2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dropping a subscription whose sink waits for room does not hang the job: the sink
/// discards (and counts) from then on, and the job stops normally.
#[test]
fn dropping_a_full_subscription_does_not_hang_the_job() {
    let emitted = Arc::new(AtomicU64::new(0));
    let (df, mut sub, collected) = counting_job(&emitted, 4);
    let job = runtime(2).spawn(df).unwrap();
    for _ in 0..10 {
        sub.recv().unwrap();
    }
    // The job is held back by the full subscription.
    let held = emitted.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        emitted.load(Ordering::Relaxed) < held + 64 * 1024,
        "not held back"
    );
    drop(sub);
    // It runs again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while emitted.load(Ordering::Relaxed) < held + 200_000 {
        assert!(
            Instant::now() < deadline,
            "the job stayed stalled after the drop"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = job.stop().unwrap();
    let out = report.operator("out").unwrap();
    assert_eq!(out.total(), collected.take().len() as u64);
    assert!(out.dropped_total() > 200_000 - 64 * 1024);
    // Every record the sink took was read (10), left in the dropped queue (at most its
    // capacity, 4) or counted as dropped.
    let unaccounted = out.total() - out.dropped_total() - 10;
    assert!(
        unaccounted <= 4,
        "{unaccounted} records neither read nor counted"
    );
}

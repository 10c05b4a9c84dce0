//! The runtime owns progress: an operator that overrides `on_watermark` without
//! forwarding anything cannot stall its consumers, and an operator that emits records
//! older than its input watermark holds its output watermark back explicitly.

mod common;

use std::sync::{Arc, Mutex};

use common::runtime;
use rill_runtime::{
    Dataflow, Failure, OpResult, Operator, OperatorState, Output, Partitioning, Source,
    SourceOutput, SourceStatus, Stream, Timestamp, MAX_WATERMARK, MIN_WATERMARK,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Emits the event times `0..end` in order, each batch followed by a watermark one past
/// the last time emitted.
struct Times {
    next: i64,
    end: i64,
}

impl Source<i64> for Times {
    fn poll(&mut self, out: &mut SourceOutput<i64>, max: usize) -> Result<SourceStatus, Failure> {
        if self.next == self.end {
            return Ok(SourceStatus::Done);
        }
        let stop = (self.next + max.min(50) as i64).min(self.end);
        for t in self.next..stop {
            out.give(t);
        }
        self.next = stop;
        out.watermark(stop)?;
        Ok(SourceStatus::Emitted)
    }
}

/// What a consumer saw: records that arrived behind the watermark, the watermarks, the
/// records, and whether the stream ended.
#[derive(Default, Debug)]
struct Seen {
    late: Vec<(i64, Timestamp)>,
    watermarks: Vec<Timestamp>,
    records: Vec<i64>,
    ended: bool,
}

struct Recorder {
    watermark: Timestamp,
    seen: Arc<Mutex<Seen>>,
}

impl Operator<i64> for Recorder {
    type Out = Output<i64>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;
    fn on_batch(&mut self, batch: &mut Vec<i64>, _out: &mut Output<i64>) -> OpResult {
        let mut seen = self.seen.lock().unwrap();
        for t in batch.drain(..) {
            if t < self.watermark {
                seen.late.push((t, self.watermark));
            }
            seen.records.push(t);
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<i64>) -> OpResult {
        assert!(watermark > self.watermark, "watermarks only move forward");
        self.watermark = watermark;
        self.seen.lock().unwrap().watermarks.push(watermark);
        Ok(())
    }
    fn on_end(&mut self, _out: &mut Output<i64>) -> OpResult {
        self.seen.lock().unwrap().ended = true;
        Ok(())
    }
}

/// Overrides every progress callback and forwards nothing itself.
struct Forgetful;

impl Operator<i64> for Forgetful {
    type Out = Output<i64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<i64>, out: &mut Output<i64>) -> OpResult {
        out.give_vec(batch);
        Ok(())
    }
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Output<i64>) -> OpResult {
        Ok(())
    }
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Output<i64>) -> OpResult {
        Ok(())
    }
    fn on_end(&mut self, _out: &mut Output<i64>) -> OpResult {
        Ok(())
    }
}

/// Emits each record `delay` later in event time than it could: a record waits until the
/// input watermark passes its time plus `delay`. With `hold`, the output watermark is held
/// at the oldest waiting record, so nothing it emits is late downstream.
struct Delay {
    delay: i64,
    hold: bool,
    waiting: std::collections::VecDeque<i64>,
}

impl Delay {
    fn update_hold(&self, out: &mut Output<i64>) {
        if !self.hold {
            return;
        }
        match self.waiting.front() {
            Some(&oldest) => out.hold_watermark(oldest),
            None => out.release_watermark(),
        }
    }
}

impl Operator<i64> for Delay {
    type Out = Output<i64>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;
    fn on_batch(&mut self, batch: &mut Vec<i64>, out: &mut Output<i64>) -> OpResult {
        self.waiting.extend(batch.drain(..));
        self.update_hold(out);
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<i64>) -> OpResult {
        while let Some(&t) = self.waiting.front() {
            if t.saturating_add(self.delay) >= watermark {
                break;
            }
            out.give(t);
            self.waiting.pop_front();
        }
        self.update_hold(out);
        Ok(())
    }
    fn on_end(&mut self, out: &mut Output<i64>) -> OpResult {
        for t in self.waiting.drain(..) {
            out.give(t);
        }
        Ok(())
    }
}

fn run(shards: usize, end: i64, middle: impl FnOnce(&Stream<i64>) -> Stream<i64>) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut df = Dataflow::new();
    let source = df.source("times", move |_| Times { next: 0, end });
    let shaped = middle(&source);
    let target = seen.clone();
    shaped
        .exchange(Partitioning::Rebalance)
        .unary("recorder", move |_| Recorder {
            watermark: MIN_WATERMARK,
            seen: target.clone(),
        })
        .discard("sink");
    runtime(shards).run(df).expect("job runs");
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

#[test]
fn an_operator_that_forwards_nothing_cannot_stall_the_job() {
    let seen = run(2, 2_000, |s| s.unary("forgetful", |_| Forgetful));
    assert!(seen.ended, "the end of the stream went on");
    assert_eq!(seen.watermarks.last(), Some(&MAX_WATERMARK));
    // The source's watermarks went on too, not just the final one.
    assert!(seen.watermarks.len() > 2, "{:?}", seen.watermarks);
    assert_eq!(seen.records.len(), 2 * 2_000);
    assert!(seen.late.is_empty());
}

#[test]
fn a_watermark_hold_keeps_delayed_records_on_time() {
    let seen = run(2, 2_000, |s| {
        s.unary("delay", |_| Delay {
            delay: 100,
            hold: true,
            waiting: Default::default(),
        })
    });
    assert!(
        seen.late.is_empty(),
        "late records: {:?}",
        &seen.late[..seen.late.len().min(5)]
    );
    assert_eq!(seen.records.len(), 2 * 2_000);
    assert!(seen.ended);
    // The watermark still advanced while records waited, and reached the end.
    assert!(seen.watermarks.len() > 2, "{:?}", seen.watermarks);
    assert_eq!(seen.watermarks.last(), Some(&MAX_WATERMARK));
}

#[test]
fn without_the_hold_the_same_records_are_late() {
    // The control for the test above: the check it relies on does see late records.
    let seen = run(1, 2_000, |s| {
        s.unary("delay", |_| Delay {
            delay: 100,
            hold: false,
            waiting: Default::default(),
        })
    });
    assert!(!seen.late.is_empty());
    assert_eq!(seen.records.len(), 2_000);
}

//! Pushing batches along chained (forward) edges.
//!
//! Operators on one shard that are connected by forward edges call each other directly:
//! the upstream operator hands a `Vec` of records to the downstream one's [`Push`]
//! implementation, with no queue in between. Progress (watermarks, idleness, end of
//! stream) travels the same way, in order with the data.

use crate::error::{Failure, OpResult};
use crate::progress::Progress;
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// The receiving side of a chained edge: the runtime's own plumbing (operator inputs,
/// exchange senders). Operators never see it: they write to an [`Output`].
pub(crate) trait Push<T> {
    /// Takes every record out of `batch` (leaving it empty, its capacity kept for reuse).
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult;
    /// Delivers a progress message.
    fn progress(&mut self, progress: Progress) -> OpResult;
}

/// An operator's output: records given to it are staged and pushed in batches to every
/// consumer of the stream (cloned for all but the last).
///
/// Progress is the runtime's: after an operator's callback returns, the runtime forwards
/// the operator's input watermark, processing time, barriers and end of stream on every
/// output, in order behind the records the callback emitted. An operator that will still
/// emit records older than its input watermark (say, results it computes later) holds the
/// output's watermark back with [`Output::hold_watermark`] and lets it go with
/// [`Output::release_watermark`]; the output's watermark is then the minimum of the input
/// watermark and the hold.
pub struct Output<T> {
    consumers: Vec<Box<dyn Push<T>>>,
    staging: Vec<T>,
    scratch: Vec<T>,
    batch_records: usize,
    error: Option<Failure>,
    given: u64,
    /// Where the records pushed downstream so far are published (the node's live
    /// records-out counter), once per pushed batch.
    published: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    clock: WatermarkClock,
}

impl<T> std::fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("consumers", &self.consumers.len())
            .field("staged", &self.staging.len())
            .field("given", &self.given)
            .field("watermark", &self.clock)
            .finish()
    }
}

/// The watermark an output forwards: the input watermark, held back by the operator's hold.
#[derive(Debug, Clone, Copy)]
struct WatermarkClock {
    /// The latest input watermark the runtime handed to this output.
    input: Timestamp,
    /// The operator's hold, if any.
    hold: Option<Timestamp>,
    /// The watermark forwarded last.
    forwarded: Timestamp,
    /// The input is idle (and, with a hold, the idleness is not forwarded yet).
    input_idle: bool,
    /// The last progress forwarded was `Idle`: the next watermark goes out even if it
    /// did not move (downstream marks the input active again on it).
    forwarded_idle: bool,
}

impl WatermarkClock {
    const fn new() -> Self {
        WatermarkClock {
            input: MIN_WATERMARK,
            hold: None,
            forwarded: MIN_WATERMARK,
            input_idle: false,
            forwarded_idle: false,
        }
    }

    /// The watermark the output may forward now.
    fn target(&self) -> Timestamp {
        self.input
            .min(self.hold.unwrap_or(MAX_WATERMARK))
            .max(self.forwarded)
    }
}

impl<T: Clone> Output<T> {
    pub(crate) fn new(consumers: Vec<Box<dyn Push<T>>>, batch_records: usize) -> Self {
        Output {
            consumers,
            staging: Vec::with_capacity(batch_records),
            scratch: Vec::new(),
            batch_records,
            error: None,
            given: 0,
            published: None,
            clock: WatermarkClock::new(),
        }
    }

    /// Publishes the records pushed downstream to `cell` from now on.
    pub(crate) fn publish_given(&mut self, cell: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.published = Some(cell);
    }

    #[inline]
    fn publish(&self) {
        if let Some(cell) = &self.published {
            cell.store(self.given, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Emits one record. It is pushed downstream when the staged batch is full or the
    /// operator's callback returns.
    #[inline]
    pub fn give(&mut self, record: T) {
        self.staging.push(record);
        if self.staging.len() >= self.batch_records {
            self.flush_or_remember();
        }
    }

    /// Emits every record of `records`, leaving it empty. Hands the vector on without
    /// copying when nothing is staged.
    pub fn give_vec(&mut self, records: &mut Vec<T>) {
        if records.is_empty() {
            return;
        }
        if !self.staging.is_empty() {
            self.flush_or_remember();
        }
        self.given += records.len() as u64;
        self.publish();
        if let Err(e) = self.push_to_consumers(records) {
            self.error.get_or_insert(e);
        }
        records.clear();
    }

    /// Records emitted so far.
    pub fn given(&self) -> u64 {
        self.given + self.staging.len() as u64
    }

    /// True if nothing consumes this output (records given to it are dropped).
    pub fn is_unconsumed(&self) -> bool {
        self.consumers.is_empty()
    }

    fn flush_or_remember(&mut self) {
        if let Err(e) = self.flush() {
            self.error.get_or_insert(e);
        }
    }

    /// Pushes the staged records downstream now, and reports any failure met while
    /// pushing earlier.
    pub fn flush(&mut self) -> OpResult {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.staging.is_empty() {
            return Ok(());
        }
        self.given += self.staging.len() as u64;
        self.publish();
        let mut staged = std::mem::take(&mut self.staging);
        let result = self.push_to_consumers(&mut staged);
        staged.clear();
        self.staging = staged;
        result
    }

    fn push_to_consumers(&mut self, records: &mut Vec<T>) -> OpResult {
        let Some((last, rest)) = self.consumers.split_last_mut() else {
            records.clear();
            return Ok(());
        };
        for consumer in rest {
            self.scratch.extend_from_slice(records);
            consumer.push(&mut self.scratch)?;
            self.scratch.clear();
        }
        last.push(records)
    }

    /// Holds this output's watermark at `watermark` (at most): until the hold is released
    /// or moved, downstream operators see no watermark above it, so records the operator
    /// emits at or after `watermark` later are not late. A hold below the watermark already
    /// forwarded holds it where it is (watermarks never go back). Setting a hold replaces
    /// the previous one; at the end of the stream every hold is released.
    pub fn hold_watermark(&mut self, watermark: Timestamp) {
        self.clock.hold = Some(watermark);
    }

    /// Releases the hold: the output's watermark catches up with the input watermark once
    /// the current callback returns.
    pub fn release_watermark(&mut self) {
        self.clock.hold = None;
    }

    /// The current hold, if any.
    pub fn watermark_hold(&self) -> Option<Timestamp> {
        self.clock.hold
    }

    /// The watermark this output forwarded last.
    pub fn watermark(&self) -> Timestamp {
        self.clock.forwarded
    }

    /// Flushes staged records, then sends `progress` to every consumer as it is.
    pub(crate) fn send(&mut self, progress: Progress) -> OpResult {
        self.flush()?;
        match progress {
            Progress::Watermark(w) => {
                self.clock.forwarded = self.clock.forwarded.max(w);
                self.clock.forwarded_idle = false;
            }
            Progress::Idle => self.clock.forwarded_idle = true,
            _ => {}
        }
        for consumer in &mut self.consumers {
            consumer.progress(progress)?;
        }
        Ok(())
    }

    /// Forwards the input's `progress` after the operator's callback, applying the hold.
    pub(crate) fn forward(&mut self, progress: Progress) -> OpResult {
        match progress {
            Progress::Watermark(w) => {
                self.clock.input = self.clock.input.max(w);
                self.clock.input_idle = false;
                self.settle()
            }
            Progress::Idle => {
                self.clock.input_idle = true;
                self.settle()
            }
            Progress::End => {
                self.clock.hold = None;
                self.clock.input = MAX_WATERMARK;
                self.clock.input_idle = false;
                self.settle()?;
                self.send(Progress::End)
            }
            Progress::ProcessingTime(_) | Progress::Barrier(_) => self.send(progress),
        }
    }

    /// Flushes, and forwards the watermark (or idleness) the hold now allows.
    pub(crate) fn settle(&mut self) -> OpResult {
        self.flush()?;
        let c = self.clock;
        let target = c.target();
        // An idle input holds nothing back, unless the operator holds the watermark: then
        // the output stays active, since the operator may still emit at its hold.
        let idle = c.input_idle && c.hold.is_none();
        if target > c.forwarded || (c.forwarded_idle && !idle) {
            self.send(Progress::Watermark(target))?;
        }
        if idle && !self.clock.forwarded_idle {
            self.send(Progress::Idle)?;
        }
        Ok(())
    }
}

/// The output of a source, or of an operator that generates watermarks (see
/// `rill_operators::watermark`): an [`Output`] that may also emit watermarks and idleness.
/// Ordinary operators cannot: their watermark is the runtime's to forward.
#[derive(Debug)]
pub struct SourceOutput<T> {
    out: Output<T>,
}

impl<T: Clone> SourceOutput<T> {
    pub(crate) fn new(out: Output<T>) -> Self {
        SourceOutput { out }
    }

    /// Emits one record (see [`Output::give`]).
    #[inline]
    pub fn give(&mut self, record: T) {
        self.out.give(record)
    }

    /// Emits every record of `records`, leaving it empty (see [`Output::give_vec`]).
    pub fn give_vec(&mut self, records: &mut Vec<T>) {
        self.out.give_vec(records)
    }

    /// Records emitted so far.
    pub fn given(&self) -> u64 {
        self.out.given()
    }

    /// Pushes the staged records downstream now.
    pub fn flush(&mut self) -> OpResult {
        self.out.flush()
    }

    /// Claims that no record with an event time below `watermark` follows: flushes staged
    /// records, then sends the watermark downstream. A watermark that does not move forward
    /// is not sent again, except to end idleness.
    pub fn watermark(&mut self, watermark: Timestamp) -> OpResult {
        let c = self.out.clock;
        if watermark > c.forwarded || c.forwarded_idle {
            self.out
                .send(Progress::Watermark(watermark.max(c.forwarded)))?;
        }
        Ok(())
    }

    /// The watermark sent last.
    pub fn current_watermark(&self) -> Timestamp {
        self.out.clock.forwarded
    }

    /// Marks the stream idle: it has no data for now and must not hold back the watermark
    /// downstream. The next [`SourceOutput::watermark`] (or record batch followed by one)
    /// makes it active again.
    pub fn idle(&mut self) -> OpResult {
        if !self.out.clock.forwarded_idle {
            self.out.send(Progress::Idle)?;
        }
        Ok(())
    }

    /// Moves processing time to `now` (milliseconds): for sources that drive a manual
    /// clock (see [`crate::clock`]), as a replay does.
    pub fn processing_time(&mut self, now: Timestamp) -> OpResult {
        self.out.send(Progress::ProcessingTime(now))
    }

    pub(crate) fn inner(&mut self) -> &mut Output<T> {
        &mut self.out
    }
}

mod sealed {
    use crate::error::OpResult;
    use crate::progress::Progress;

    /// How the runtime forwards an operator's input progress on its outputs: before the
    /// operator's callback (`before`) and after it returned (`after`). Not implementable
    /// outside the runtime, so that no operator forges or loses progress.
    pub trait Forward {
        fn before(&mut self, _progress: Progress) -> OpResult {
            Ok(())
        }
        fn after(&mut self, progress: Progress) -> OpResult;
        /// After any callback: flush, and forward what a changed hold now allows.
        fn settle(&mut self) -> OpResult;
    }
}

pub(crate) use sealed::Forward;

/// The set of outputs an operator writes to: one [`Output`], a tuple of two (a main and a
/// side output), a [`SourceOutput`] (a watermark generator), or none (a sink).
pub trait Outputs: sealed::Forward {
    /// Flushes every output.
    fn flush_all(&mut self) -> OpResult;
}

impl<T: Clone> sealed::Forward for Output<T> {
    fn after(&mut self, progress: Progress) -> OpResult {
        self.forward(progress)
    }
    fn settle(&mut self) -> OpResult {
        Output::settle(self)
    }
}

impl<T: Clone> Outputs for Output<T> {
    fn flush_all(&mut self) -> OpResult {
        self.flush()
    }
}

impl<A: Clone, B: Clone> sealed::Forward for (Output<A>, Output<B>) {
    fn after(&mut self, progress: Progress) -> OpResult {
        self.0.forward(progress)?;
        self.1.forward(progress)
    }
    fn settle(&mut self) -> OpResult {
        self.0.settle()?;
        self.1.settle()
    }
}

impl<A: Clone, B: Clone> Outputs for (Output<A>, Output<B>) {
    fn flush_all(&mut self) -> OpResult {
        self.0.flush()?;
        self.1.flush()
    }
}

/// A watermark generator replaces its input's watermarks with its own: of the input's, only
/// the final one (the end of the stream) goes on. Processing time goes on before the
/// generator's callback, so that idleness it detects at that time follows it.
impl<T: Clone> sealed::Forward for SourceOutput<T> {
    fn before(&mut self, progress: Progress) -> OpResult {
        match progress {
            Progress::ProcessingTime(_) => self.out.send(progress),
            _ => Ok(()),
        }
    }
    fn after(&mut self, progress: Progress) -> OpResult {
        match progress {
            Progress::Watermark(MAX_WATERMARK) => self.watermark(MAX_WATERMARK),
            Progress::Watermark(_) | Progress::ProcessingTime(_) => self.out.flush(),
            Progress::Idle | Progress::Barrier(_) => self.out.send(progress),
            Progress::End => {
                self.watermark(MAX_WATERMARK)?;
                self.out.send(Progress::End)
            }
        }
    }
    fn settle(&mut self) -> OpResult {
        self.out.flush()
    }
}

impl<T: Clone> Outputs for SourceOutput<T> {
    fn flush_all(&mut self) -> OpResult {
        self.out.flush()
    }
}

impl sealed::Forward for () {
    fn after(&mut self, _progress: Progress) -> OpResult {
        Ok(())
    }
    fn settle(&mut self) -> OpResult {
        Ok(())
    }
}

impl Outputs for () {
    fn flush_all(&mut self) -> OpResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Recorder(Rc<RefCell<Vec<String>>>);
    impl Push<u32> for Recorder {
        fn push(&mut self, batch: &mut Vec<u32>) -> OpResult {
            self.0.borrow_mut().push(format!("{batch:?}"));
            batch.clear();
            Ok(())
        }
        fn progress(&mut self, p: Progress) -> OpResult {
            self.0.borrow_mut().push(format!("{p:?}"));
            Ok(())
        }
    }

    #[test]
    fn stages_in_batches_and_tees_in_order() {
        let a = Rc::new(RefCell::new(Vec::new()));
        let b = Rc::new(RefCell::new(Vec::new()));
        let mut out = Output::new(
            vec![Box::new(Recorder(a.clone())), Box::new(Recorder(b.clone()))],
            2,
        );
        out.give(1);
        out.give(2);
        out.give(3);
        out.forward(Progress::Watermark(7)).unwrap();
        let expect = vec!["[1, 2]", "[3]", "Watermark(7)"];
        assert_eq!(*a.borrow(), expect);
        assert_eq!(*b.borrow(), expect);
        assert_eq!(out.given(), 3);
    }
}

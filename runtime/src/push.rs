//! Pushing batches along chained (forward) edges.
//!
//! Operators on one shard that are connected by forward edges call each other directly:
//! the upstream operator hands a `Vec` of records to the downstream one's [`Push`]
//! implementation, with no queue in between. Progress (watermarks, idleness, end of
//! stream) travels the same way, in order with the data.

use crate::error::{Failure, OpResult};
use crate::time::Timestamp;

/// A progress message, sent in order with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No more records with an event time below this will follow. Also marks the input as
    /// active again if it was idle.
    Watermark(Timestamp),
    /// The input has no data for now and must not hold back the watermark.
    Idle,
    /// The input has ended; a `Watermark(MAX_WATERMARK)` precedes it.
    End,
    /// Processing time advanced to this many milliseconds (see [`crate::clock`]); due
    /// processing-time timers fire.
    ProcessingTime(Timestamp),
    /// Checkpoint barrier `n` (see [`crate::checkpoint`]): everything before it belongs to
    /// checkpoint `n`. Operators snapshot when it arrived on all their inputs.
    Barrier(u64),
}

/// The receiving side of a chained edge.
pub trait Push<T> {
    /// Takes every record out of `batch` (leaving it empty, its capacity kept for reuse).
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult;
    /// Delivers a progress message.
    fn progress(&mut self, progress: Progress) -> OpResult;
    /// Restores the operator behind this input from a checkpoint, before any record
    /// arrives. Does nothing by default.
    fn restore(&mut self, _state: &crate::checkpoint::StateReader) -> OpResult {
        Ok(())
    }
}

/// An operator's output: records given to it are staged and pushed in batches to every
/// consumer of the stream (cloned for all but the last).
pub struct Output<T> {
    consumers: Vec<Box<dyn Push<T>>>,
    staging: Vec<T>,
    scratch: Vec<T>,
    batch_records: usize,
    error: Option<Failure>,
    given: u64,
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

    /// Flushes staged records, then sends `progress` to every consumer.
    pub fn progress(&mut self, progress: Progress) -> OpResult {
        self.flush()?;
        for consumer in &mut self.consumers {
            consumer.progress(progress)?;
        }
        Ok(())
    }

    /// Flushes staged records, then sends a watermark downstream.
    pub fn watermark(&mut self, watermark: Timestamp) -> OpResult {
        self.progress(Progress::Watermark(watermark))
    }
}

/// The set of outputs an operator writes to: one [`Output`], a tuple of two (a main and a
/// side output), or none (a sink).
pub trait Outputs {
    /// Flushes every output.
    fn flush_all(&mut self) -> OpResult;
    /// Sends `progress` to every output.
    fn progress_all(&mut self, progress: Progress) -> OpResult;
}

impl<T: Clone> Outputs for Output<T> {
    fn flush_all(&mut self) -> OpResult {
        self.flush()
    }
    fn progress_all(&mut self, progress: Progress) -> OpResult {
        self.progress(progress)
    }
}

impl<A: Clone, B: Clone> Outputs for (Output<A>, Output<B>) {
    fn flush_all(&mut self) -> OpResult {
        self.0.flush()?;
        self.1.flush()
    }
    fn progress_all(&mut self, progress: Progress) -> OpResult {
        self.0.progress(progress)?;
        self.1.progress(progress)
    }
}

impl Outputs for () {
    fn flush_all(&mut self) -> OpResult {
        Ok(())
    }
    fn progress_all(&mut self, _progress: Progress) -> OpResult {
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
        out.watermark(7).unwrap();
        let expect = vec!["[1, 2]", "[3]", "Watermark(7)"];
        assert_eq!(*a.borrow(), expect);
        assert_eq!(*b.borrow(), expect);
        assert_eq!(out.given(), 3);
    }
}

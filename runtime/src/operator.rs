//! The operator interfaces: what a parallel operator instance does with a batch, a
//! watermark and the end of its input.
//!
//! One instance of each operator runs on every shard and owns its state there (it need not
//! be `Send`). The runtime calls it with batches in arrival order; the instance writes its
//! results to its [`Outputs`]. Defaults forward watermarks unchanged and do nothing at the
//! end, which suits stateless transformations.

use std::cell::RefCell;
use std::rc::Rc;

use std::collections::VecDeque;

use crate::checkpoint::{local, StateReader, StateWriter};
use crate::error::OpResult;
use crate::progress::Frontier;
use crate::push::{Outputs, Progress, Push};
use crate::time::Timestamp;

/// A one-input operator instance.
pub trait Operator<I> {
    /// Where the operator writes: an [`Output`](crate::Output), a pair, or `()` for a sink.
    type Out: Outputs;

    /// Processes a batch. Records left in `batch` afterwards are discarded.
    fn on_batch(&mut self, batch: &mut Vec<I>, out: &mut Self::Out) -> OpResult;

    /// The input watermark advanced to `watermark`. Forwards it by default.
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        out.progress_all(Progress::Watermark(watermark))
    }

    /// Processing time advanced to `now` (see [`crate::clock`]): fire due processing-time
    /// timers. Forwards it by default.
    fn on_processing_time(&mut self, now: Timestamp, out: &mut Self::Out) -> OpResult {
        out.progress_all(Progress::ProcessingTime(now))
    }

    /// The input ended (after the final watermark). Anything still held can be emitted.
    fn on_end(&mut self, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }

    /// Checkpoint `checkpoint`'s barrier arrived: write the operator's state (keyed state
    /// per key, with [`StateWriter::put_keyed`]; anything else per split). The default
    /// writes nothing, which is right for stateless operators only: a stateful operator
    /// that does not support checkpoints must return an error here.
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }

    /// Restores the state written by [`Operator::snapshot`]: on a restore onto a different
    /// shard count the entries come from several shards of the earlier run, each key's
    /// on the shard that now owns it.
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
}

/// Runs an operator's snapshot and hands the state to the shard's checkpoint.
fn take_snapshot(checkpoint: u64, snapshot: impl FnOnce(&mut StateWriter) -> OpResult) -> OpResult {
    let mut state = StateWriter::default();
    snapshot(&mut state)?;
    if let Some(node) = crate::shard::instrument::current_node() {
        local::submit(node, checkpoint, state);
    }
    Ok(())
}

/// A two-input operator instance (e.g. a join or a connected co-process function).
pub trait BinaryOperator<A, B> {
    /// Where the operator writes.
    type Out: Outputs;
    /// Processes a batch from the first input.
    fn on_left(&mut self, batch: &mut Vec<A>, out: &mut Self::Out) -> OpResult;
    /// Processes a batch from the second input.
    fn on_right(&mut self, batch: &mut Vec<B>, out: &mut Self::Out) -> OpResult;
    /// The combined watermark (minimum of both active inputs) advanced.
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        out.progress_all(Progress::Watermark(watermark))
    }
    /// The combined processing time (minimum of the inputs not ended) advanced.
    fn on_processing_time(&mut self, now: Timestamp, out: &mut Self::Out) -> OpResult {
        out.progress_all(Progress::ProcessingTime(now))
    }
    /// Both inputs ended.
    fn on_end(&mut self, _out: &mut Self::Out) -> OpResult {
        Ok(())
    }
    /// Writes the operator's state at a barrier (see [`Operator::snapshot`]).
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }
    /// Restores it (see [`Operator::restore`]).
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
}

/// Calls a one-input operator: the `Push` the upstream sees.
pub(crate) struct UnaryInput<Op: Operator<I>, I> {
    op: Op,
    out: Op::Out,
    _in: std::marker::PhantomData<fn(I)>,
}

impl<Op: Operator<I>, I> UnaryInput<Op, I> {
    pub(crate) fn new(op: Op, out: Op::Out) -> Self {
        UnaryInput {
            op,
            out,
            _in: std::marker::PhantomData,
        }
    }
}

impl<Op: Operator<I>, I> Push<I> for UnaryInput<Op, I> {
    fn push(&mut self, batch: &mut Vec<I>) -> OpResult {
        let result = self.op.on_batch(batch, &mut self.out);
        batch.clear();
        result?;
        self.out.flush_all()
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        match progress {
            Progress::Watermark(w) => {
                self.op.on_watermark(w, &mut self.out)?;
                self.out.flush_all()
            }
            Progress::Idle => self.out.progress_all(Progress::Idle),
            Progress::ProcessingTime(t) => {
                self.op.on_processing_time(t, &mut self.out)?;
                self.out.flush_all()
            }
            Progress::End => {
                self.op.on_end(&mut self.out)?;
                self.out.progress_all(Progress::End)
            }
            Progress::Barrier(id) => {
                let op = &mut self.op;
                take_snapshot(id, |w| op.snapshot(id, w))?;
                self.out.progress_all(Progress::Barrier(id))
            }
        }
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.op.restore(state)
    }
}

/// What an input that delivered a barrier sends while exactly-once alignment holds it back.
enum Held<A, B> {
    Left(Vec<A>),
    Right(Vec<B>),
    Progress(usize, Progress),
}

/// The state two input handles of a binary operator share.
pub(crate) struct BinaryState<Op: BinaryOperator<A, B>, A, B> {
    op: Op,
    out: Op::Out,
    frontier: Frontier,
    aligned: bool,
    held: VecDeque<Held<A, B>>,
    _in: std::marker::PhantomData<fn(A, B)>,
}

impl<Op: BinaryOperator<A, B>, A, B> BinaryState<Op, A, B> {
    pub(crate) fn new(op: Op, out: Op::Out) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(BinaryState {
            op,
            out,
            frontier: Frontier::new(2),
            aligned: local::aligned(),
            held: VecDeque::new(),
            _in: std::marker::PhantomData,
        }))
    }

    fn left(&mut self, batch: &mut Vec<A>) -> OpResult {
        if self.aligned && self.frontier.holds(0) {
            self.held.push_back(Held::Left(std::mem::take(batch)));
            return Ok(());
        }
        let result = self.op.on_left(batch, &mut self.out);
        batch.clear();
        result?;
        self.out.flush_all()
    }

    fn right(&mut self, batch: &mut Vec<B>) -> OpResult {
        if self.aligned && self.frontier.holds(1) {
            self.held.push_back(Held::Right(std::mem::take(batch)));
            return Ok(());
        }
        let result = self.op.on_right(batch, &mut self.out);
        batch.clear();
        result?;
        self.out.flush_all()
    }

    fn progress(&mut self, input: usize, progress: Progress) -> OpResult {
        if self.aligned && self.frontier.holds(input) {
            self.held.push_back(Held::Progress(input, progress));
            return Ok(());
        }
        let was_aligning = self.frontier.aligning();
        self.update(input, progress)?;
        if self.aligned {
            local::track_alignment(was_aligning, &self.frontier, progress);
        }
        if was_aligning && !self.frontier.aligning() {
            // Replay what alignment held back, in arrival order.
            while let Some(h) = self.held.pop_front() {
                match h {
                    Held::Left(mut b) => self.left(&mut b)?,
                    Held::Right(mut b) => self.right(&mut b)?,
                    Held::Progress(i, p) => self.progress(i, p)?,
                }
            }
        }
        Ok(())
    }

    fn update(&mut self, input: usize, progress: Progress) -> OpResult {
        let BinaryState {
            op, out, frontier, ..
        } = self;
        frontier.update(input, progress, |p| match p {
            Progress::Watermark(w) => {
                op.on_watermark(w, out)?;
                out.flush_all()
            }
            Progress::Idle => out.progress_all(Progress::Idle),
            Progress::ProcessingTime(t) => {
                op.on_processing_time(t, out)?;
                out.flush_all()
            }
            Progress::End => {
                op.on_end(out)?;
                out.progress_all(Progress::End)
            }
            Progress::Barrier(id) => {
                take_snapshot(id, |w| op.snapshot(id, w))?;
                out.progress_all(Progress::Barrier(id))
            }
        })
    }
}

/// The first input of a binary operator.
pub(crate) struct LeftInput<Op: BinaryOperator<A, B>, A, B>(pub Rc<RefCell<BinaryState<Op, A, B>>>);
/// The second input of a binary operator.
pub(crate) struct RightInput<Op: BinaryOperator<A, B>, A, B>(
    pub Rc<RefCell<BinaryState<Op, A, B>>>,
);

impl<Op: BinaryOperator<A, B>, A, B> Push<A> for LeftInput<Op, A, B> {
    fn push(&mut self, batch: &mut Vec<A>) -> OpResult {
        self.0.borrow_mut().left(batch)
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(0, progress)
    }
    fn restore(&mut self, state: &StateReader) -> OpResult {
        // Both inputs share one operator: the left input restores it.
        self.0.borrow_mut().op.restore(state)
    }
}

impl<Op: BinaryOperator<A, B>, A, B> Push<B> for RightInput<Op, A, B> {
    fn push(&mut self, batch: &mut Vec<B>) -> OpResult {
        self.0.borrow_mut().right(batch)
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(1, progress)
    }
}

/// The state the inputs of a union share: one output and the frontier of all inputs.
pub(crate) struct UnionState<T: Clone> {
    pub(crate) out: crate::push::Output<T>,
    pub(crate) frontier: Frontier,
    pub(crate) aligned: bool,
    /// What inputs held back by alignment sent: (input, records or progress).
    pub(crate) held: VecDeque<(usize, Result<Vec<T>, Progress>)>,
}

impl<T: Clone> UnionState<T> {
    pub(crate) fn new(out: crate::push::Output<T>, inputs: usize) -> Self {
        UnionState {
            out,
            frontier: Frontier::new(inputs),
            aligned: local::aligned(),
            held: VecDeque::new(),
        }
    }

    fn push(&mut self, input: usize, batch: &mut Vec<T>) -> OpResult {
        if self.aligned && self.frontier.holds(input) {
            self.held.push_back((input, Ok(std::mem::take(batch))));
            return Ok(());
        }
        self.out.give_vec(batch);
        self.out.flush()
    }

    fn progress(&mut self, input: usize, progress: Progress) -> OpResult {
        if self.aligned && self.frontier.holds(input) {
            self.held.push_back((input, Err(progress)));
            return Ok(());
        }
        let was_aligning = self.frontier.aligning();
        let UnionState { out, frontier, .. } = self;
        frontier.update(input, progress, |p| out.progress(p))?;
        if self.aligned {
            local::track_alignment(was_aligning, &self.frontier, progress);
        }
        if was_aligning && !self.frontier.aligning() {
            while let Some((i, item)) = self.held.pop_front() {
                match item {
                    Ok(mut batch) => self.push(i, &mut batch)?,
                    Err(p) => self.progress(i, p)?,
                }
            }
        }
        Ok(())
    }
}

/// One input of a union.
pub(crate) struct UnionInput<T: Clone> {
    pub(crate) state: Rc<RefCell<UnionState<T>>>,
    pub(crate) input: usize,
}

impl<T: Clone> Push<T> for UnionInput<T> {
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        self.state.borrow_mut().push(self.input, batch)
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.state.borrow_mut().progress(self.input, progress)
    }
}

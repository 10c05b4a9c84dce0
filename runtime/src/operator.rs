//! The operator interfaces: what a parallel operator instance does with a batch, a
//! watermark and the end of its input.
//!
//! One instance of each operator runs on every shard and owns its state there (it need not
//! be `Send`). The runtime calls it with batches in arrival order; the instance writes its
//! results to its [`Outputs`]. Defaults forward watermarks unchanged and do nothing at the
//! end, which suits stateless transformations.

use std::cell::RefCell;
use std::rc::Rc;

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
        }
    }
}

/// The state two input handles of a binary operator share.
pub(crate) struct BinaryState<Op: BinaryOperator<A, B>, A, B> {
    op: Op,
    out: Op::Out,
    frontier: Frontier,
    _in: std::marker::PhantomData<fn(A, B)>,
}

impl<Op: BinaryOperator<A, B>, A, B> BinaryState<Op, A, B> {
    pub(crate) fn new(op: Op, out: Op::Out) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(BinaryState {
            op,
            out,
            frontier: Frontier::new(2),
            _in: std::marker::PhantomData,
        }))
    }

    fn progress(&mut self, input: usize, progress: Progress) -> OpResult {
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
        let mut s = self.0.borrow_mut();
        let BinaryState { op, out, .. } = &mut *s;
        let result = op.on_left(batch, out);
        batch.clear();
        result?;
        out.flush_all()
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(0, progress)
    }
}

impl<Op: BinaryOperator<A, B>, A, B> Push<B> for RightInput<Op, A, B> {
    fn push(&mut self, batch: &mut Vec<B>) -> OpResult {
        let mut s = self.0.borrow_mut();
        let BinaryState { op, out, .. } = &mut *s;
        let result = op.on_right(batch, out);
        batch.clear();
        result?;
        out.flush_all()
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(1, progress)
    }
}

/// The state the inputs of a union share: one output and the frontier of all inputs.
pub(crate) struct UnionState<T: Clone> {
    pub(crate) out: crate::push::Output<T>,
    pub(crate) frontier: Frontier,
}

/// One input of a union.
pub(crate) struct UnionInput<T: Clone> {
    pub(crate) state: Rc<RefCell<UnionState<T>>>,
    pub(crate) input: usize,
}

impl<T: Clone> Push<T> for UnionInput<T> {
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        let mut s = self.state.borrow_mut();
        s.out.give_vec(batch);
        s.out.flush()
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        let mut s = self.state.borrow_mut();
        let UnionState { out, frontier } = &mut *s;
        frontier.update(self.input, progress, |p| out.progress(p))
    }
}

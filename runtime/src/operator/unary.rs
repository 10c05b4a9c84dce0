//! The runtime's side of a one-input operator: the [`Push`] its upstream calls. It runs the
//! operator's callbacks and then forwards the input's progress on the operator's outputs.

use super::{take_snapshot, Operator};
use crate::error::OpResult;
use crate::progress::Progress;
use crate::push::{Forward, Push};

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
        self.out.settle()
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        deliver(&mut self.op, &mut self.out, progress)
    }
}

/// Runs the callback `progress` calls for, between the outputs' forwarding steps.
pub(crate) fn deliver<I, Op: Operator<I>>(
    op: &mut Op,
    out: &mut Op::Out,
    progress: Progress,
) -> OpResult {
    out.before(progress)?;
    match progress {
        Progress::Watermark(w) => op.on_watermark(w, out)?,
        Progress::ProcessingTime(t) => op.on_processing_time(t, out)?,
        Progress::End => op.on_end(out)?,
        Progress::Barrier(id) => take_snapshot(id, |w| op.snapshot(id, w))?,
        Progress::Idle => {}
    }
    out.after(progress)
}

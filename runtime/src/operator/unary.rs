//! The runtime's side of a one-input operator: the [`Push`] its upstream calls. It runs the
//! operator's callbacks and then forwards the input's progress on the operator's outputs.

use super::{take_snapshot, Operator, Snapshots};
use crate::error::OpResult;
use crate::progress::Progress;
use crate::push::{Forward, Push};

/// Calls a one-input operator: the `Push` the upstream sees.
pub(crate) struct UnaryInput<Op: Operator<I>, I> {
    op: Op,
    out: Op::Out,
    snapshots: Option<Snapshots>,
    _in: std::marker::PhantomData<fn(I)>,
}

impl<Op: Operator<I>, I> UnaryInput<Op, I> {
    pub(crate) fn new(op: Op, out: Op::Out, snapshots: Option<Snapshots>) -> Self {
        UnaryInput {
            op,
            out,
            snapshots,
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

    /// Runs the callback `progress` calls for, between the outputs' forwarding steps.
    fn progress(&mut self, progress: Progress) -> OpResult {
        let UnaryInput {
            op, out, snapshots, ..
        } = self;
        out.before(progress)?;
        match progress {
            Progress::Watermark(w) => op.on_watermark(w, out)?,
            Progress::ProcessingTime(t) => op.on_processing_time(t, out)?,
            Progress::End => op.on_end(out)?,
            Progress::Barrier(id) => {
                op.on_barrier(id, out)?;
                take_snapshot(snapshots.as_ref(), id, |w| op.snapshot(id, w))?
            }
            Progress::Idle => op.on_idle(out)?,
        }
        out.after(progress)
    }
}

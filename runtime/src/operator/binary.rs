//! The runtime's side of a two-input operator: both inputs share one instance and one
//! frontier; under exactly-once, an input that delivered the barrier being aligned is held
//! back (its batches and progress buffered) until the other input delivered it too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::{take_snapshot, BinaryOperator, Snapshots};
use crate::checkpoint::StateReader;
use crate::error::OpResult;
use crate::progress::{Frontier, Progress};
use crate::push::{Forward, Push};

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
    snapshots: Option<Snapshots>,
    aligned: bool,
    held: VecDeque<Held<A, B>>,
    _in: std::marker::PhantomData<fn(A, B)>,
}

impl<Op: BinaryOperator<A, B>, A, B> BinaryState<Op, A, B> {
    pub(crate) fn new(op: Op, out: Op::Out, snapshots: Option<Snapshots>) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(BinaryState {
            op,
            out,
            frontier: Frontier::new(2),
            aligned: snapshots.as_ref().is_some_and(Snapshots::aligned),
            snapshots,
            held: VecDeque::new(),
            _in: std::marker::PhantomData,
        }))
    }

    /// Restores the shared operator (through the left input, once).
    pub(crate) fn restore(&mut self, state: &StateReader) -> OpResult {
        self.op.restore(state)
    }

    fn left(&mut self, batch: &mut Vec<A>) -> OpResult {
        if self.aligned && self.frontier.holds(0) {
            self.held.push_back(Held::Left(std::mem::take(batch)));
            return Ok(());
        }
        let result = self.op.on_left(batch, &mut self.out);
        batch.clear();
        result?;
        self.out.settle()
    }

    fn right(&mut self, batch: &mut Vec<B>) -> OpResult {
        if self.aligned && self.frontier.holds(1) {
            self.held.push_back(Held::Right(std::mem::take(batch)));
            return Ok(());
        }
        let result = self.op.on_right(batch, &mut self.out);
        batch.clear();
        result?;
        self.out.settle()
    }

    fn progress(&mut self, input: usize, progress: Progress) -> OpResult {
        if self.aligned && self.frontier.holds(input) {
            self.held.push_back(Held::Progress(input, progress));
            return Ok(());
        }
        let was_aligning = self.frontier.aligning();
        self.update(input, progress)?;
        if let Some(s) = self.snapshots.as_ref().filter(|_| self.aligned) {
            s.checkpoint
                .track_alignment(was_aligning, &self.frontier, progress);
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
            op,
            out,
            frontier,
            snapshots,
            ..
        } = self;
        frontier.update(input, progress, |p| {
            out.before(p)?;
            match p {
                Progress::Watermark(w) => op.on_watermark(w, out)?,
                Progress::ProcessingTime(t) => op.on_processing_time(t, out)?,
                Progress::End => op.on_end(out)?,
                Progress::Barrier(id) => {
                    take_snapshot(snapshots.as_ref(), id, |w| op.snapshot(id, w))?
                }
                Progress::Idle => {}
            }
            out.after(p)
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
}

impl<Op: BinaryOperator<A, B>, A, B> Push<B> for RightInput<Op, A, B> {
    fn push(&mut self, batch: &mut Vec<B>) -> OpResult {
        self.0.borrow_mut().right(batch)
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(1, progress)
    }
}

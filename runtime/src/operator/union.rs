//! The runtime's side of a union: several inputs merged into one output, whose progress is
//! the combination of the inputs' (see [`Frontier`]). Under exactly-once an input that
//! delivered the barrier being aligned is held back until every input delivered it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use crate::checkpoint::ShardCheckpoint;
use crate::error::OpResult;
use crate::progress::{Frontier, Progress};
use crate::push::{Output, Push};

/// The state the inputs of a union share: one output and the frontier of all inputs.
pub(crate) struct UnionState<T: Clone> {
    pub(crate) out: Output<T>,
    pub(crate) frontier: Frontier,
    /// Exactly-once: the shard's checkpoint, which aligns barriers (none otherwise).
    pub(crate) aligned: Option<Rc<ShardCheckpoint>>,
    /// What inputs held back by alignment sent: (input, records or progress).
    pub(crate) held: VecDeque<(usize, Result<Vec<T>, Progress>)>,
}

impl<T: Clone> UnionState<T> {
    pub(crate) fn new(
        out: Output<T>,
        inputs: usize,
        checkpoint: Option<Rc<ShardCheckpoint>>,
    ) -> Self {
        UnionState {
            out,
            frontier: Frontier::new(inputs),
            aligned: checkpoint.filter(|c| c.aligned()),
            held: VecDeque::new(),
        }
    }

    fn push(&mut self, input: usize, batch: &mut Vec<T>) -> OpResult {
        if self.aligned.is_some() && self.frontier.holds(input) {
            self.held.push_back((input, Ok(std::mem::take(batch))));
            return Ok(());
        }
        self.out.give_vec(batch);
        self.out.flush()
    }

    fn progress(&mut self, input: usize, progress: Progress) -> OpResult {
        if self.aligned.is_some() && self.frontier.holds(input) {
            self.held.push_back((input, Err(progress)));
            return Ok(());
        }
        let was_aligning = self.frontier.aligning();
        let UnionState { out, frontier, .. } = self;
        frontier.update(input, progress, |p| out.send(p))?;
        if let Some(c) = &self.aligned {
            c.track_alignment(was_aligning, &self.frontier, progress);
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

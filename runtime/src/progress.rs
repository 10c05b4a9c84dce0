//! Combining progress from several inputs.
//!
//! An operator's input watermark is the minimum over its inputs that are neither idle nor
//! ended; it only ever moves forward. When every input is idle the operator is idle; when
//! every input has ended, it sees the final watermark and then the end of its input.
//! Processing time combines the same way, as the minimum over the inputs that have not
//! ended (an idle input still moves processing time).
//!
//! Checkpoint barriers combine by alignment: barrier `n` goes on once every input that has
//! not ended delivered it. Until then [`Frontier::holds`] tells which inputs already
//! delivered it (an exactly-once operator holds those back).

use crate::error::OpResult;
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputState {
    Active(Timestamp),
    Idle(Timestamp),
    Ended,
}

/// Tracks the progress of `n` inputs and derives the combined progress.
#[derive(Debug, Clone)]
pub struct Frontier {
    inputs: Vec<InputState>,
    clocks: Vec<Timestamp>,
    watermark: Timestamp,
    processing_time: Timestamp,
    idle: bool,
    ended: bool,
    /// The barrier being aligned (0: none), and which inputs delivered it.
    barrier: u64,
    barrier_seen: Vec<bool>,
    /// The last barrier passed on.
    last_barrier: u64,
}

impl Frontier {
    /// A frontier over `inputs` inputs, all active at the minimum watermark.
    pub fn new(inputs: usize) -> Self {
        Frontier {
            inputs: vec![InputState::Active(MIN_WATERMARK); inputs],
            clocks: vec![MIN_WATERMARK; inputs],
            watermark: MIN_WATERMARK,
            processing_time: MIN_WATERMARK,
            idle: false,
            ended: inputs == 0,
            barrier: 0,
            barrier_seen: vec![false; inputs],
            last_barrier: 0,
        }
    }

    /// True if input `i` delivered the barrier being aligned while others have not yet:
    /// under exactly-once its records must wait.
    pub fn holds(&self, i: usize) -> bool {
        self.barrier != 0 && self.barrier_seen[i]
    }

    /// True while a barrier is being aligned.
    pub fn aligning(&self) -> bool {
        self.barrier != 0
    }

    /// The last barrier passed on (0: none).
    pub fn last_barrier(&self) -> u64 {
        self.last_barrier
    }

    /// Passes the barrier on once every input that has not ended delivered it.
    fn complete_barrier(&mut self, emit: &mut impl FnMut(Progress) -> OpResult) -> OpResult {
        if self.barrier == 0 {
            return Ok(());
        }
        let all = self
            .inputs
            .iter()
            .zip(&self.barrier_seen)
            .all(|(s, seen)| *seen || *s == InputState::Ended);
        if !all {
            return Ok(());
        }
        let id = std::mem::replace(&mut self.barrier, 0);
        self.barrier_seen.iter_mut().for_each(|s| *s = false);
        self.last_barrier = id;
        emit(Progress::Barrier(id))
    }

    /// The combined watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The combined processing time (`MIN_WATERMARK` before any input reported one).
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// True once every input has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True if input `i` has ended.
    pub fn input_ended(&self, i: usize) -> bool {
        self.inputs[i] == InputState::Ended
    }

    /// Applies `progress` from input `input`, and calls `emit` with each resulting change
    /// of the combined progress, in order.
    pub fn update(
        &mut self,
        input: usize,
        progress: Progress,
        mut emit: impl FnMut(Progress) -> OpResult,
    ) -> OpResult {
        if let Progress::ProcessingTime(t) = progress {
            self.clocks[input] = self.clocks[input].max(t);
            return self.advance_clock(&mut emit);
        }
        if let Progress::Barrier(id) = progress {
            if id <= self.last_barrier {
                return Ok(());
            }
            if self.ended {
                // Every input ended: a barrier that still comes (sources send barriers
                // after their end, so that finished operators take part in checkpoints)
                // passes at once.
                self.last_barrier = id;
                return emit(Progress::Barrier(id));
            }
            if self.inputs[input] == InputState::Ended {
                return Ok(());
            }
            self.barrier = self.barrier.max(id);
            self.barrier_seen[input] = true;
            return self.complete_barrier(&mut emit);
        }
        let state = &mut self.inputs[input];
        let was_ended = *state == InputState::Ended;
        *state = match (*state, progress) {
            (InputState::Ended, _) => InputState::Ended,
            (_, Progress::End | Progress::ProcessingTime(_) | Progress::Barrier(_)) => {
                InputState::Ended
            }
            (InputState::Active(w) | InputState::Idle(w), Progress::Watermark(n)) => {
                InputState::Active(w.max(n))
            }
            (InputState::Active(w) | InputState::Idle(w), Progress::Idle) => InputState::Idle(w),
        };
        if self.ended {
            return Ok(());
        }
        if !was_ended && self.inputs[input] == InputState::Ended {
            // An input that ended no longer holds a barrier back.
            self.complete_barrier(&mut emit)?;
        }
        if self.inputs.iter().all(|s| *s == InputState::Ended) {
            if self.watermark < MAX_WATERMARK {
                self.watermark = MAX_WATERMARK;
                emit(Progress::Watermark(MAX_WATERMARK))?;
            }
            self.ended = true;
            return emit(Progress::End);
        }
        if !was_ended && self.inputs[input] == InputState::Ended {
            self.advance_clock(&mut emit)?;
        }
        let min_active = self
            .inputs
            .iter()
            .filter_map(|s| match s {
                InputState::Active(w) => Some(*w),
                InputState::Ended => Some(MAX_WATERMARK),
                InputState::Idle(_) => None,
            })
            .min();
        let any_active = self
            .inputs
            .iter()
            .any(|s| matches!(s, InputState::Active(_)));
        match min_active.filter(|_| any_active) {
            None => {
                if !self.idle {
                    self.idle = true;
                    emit(Progress::Idle)?;
                }
            }
            Some(w) => {
                let woke = std::mem::replace(&mut self.idle, false);
                if w > self.watermark {
                    self.watermark = w;
                    emit(Progress::Watermark(w))?;
                } else if woke {
                    emit(Progress::Watermark(self.watermark))?;
                }
            }
        }
        Ok(())
    }

    /// Emits the combined processing time if it moved forward.
    fn advance_clock(&mut self, emit: &mut impl FnMut(Progress) -> OpResult) -> OpResult {
        if self.ended {
            return Ok(());
        }
        let min = self
            .inputs
            .iter()
            .zip(&self.clocks)
            .filter(|(s, _)| **s != InputState::Ended)
            .map(|(_, t)| *t)
            .min();
        match min {
            Some(t) if t > self.processing_time => {
                self.processing_time = t;
                emit(Progress::ProcessingTime(t))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut Frontier, i: usize, p: Progress) -> Vec<Progress> {
        let mut out = Vec::new();
        f.update(i, p, |q| {
            out.push(q);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn minimum_over_active_inputs() {
        let mut f = Frontier::new(2);
        assert_eq!(run(&mut f, 0, Progress::Watermark(10)), vec![]);
        assert_eq!(
            run(&mut f, 1, Progress::Watermark(5)),
            vec![Progress::Watermark(5)]
        );
        assert_eq!(
            run(&mut f, 1, Progress::Watermark(20)),
            vec![Progress::Watermark(10)]
        );
        // Watermarks never go back.
        assert_eq!(run(&mut f, 0, Progress::Watermark(3)), vec![]);
    }

    #[test]
    fn idle_inputs_do_not_hold_back() {
        let mut f = Frontier::new(2);
        run(&mut f, 0, Progress::Watermark(10));
        assert_eq!(
            run(&mut f, 1, Progress::Idle),
            vec![Progress::Watermark(10)]
        );
        assert_eq!(run(&mut f, 0, Progress::Idle), vec![Progress::Idle]);
        assert_eq!(
            run(&mut f, 1, Progress::Watermark(4)),
            vec![Progress::Watermark(10)]
        );
    }

    #[test]
    fn processing_time_is_the_minimum_over_inputs_not_ended() {
        let mut f = Frontier::new(2);
        assert_eq!(run(&mut f, 0, Progress::ProcessingTime(10)), vec![]);
        assert_eq!(
            run(&mut f, 1, Progress::ProcessingTime(7)),
            vec![Progress::ProcessingTime(7)]
        );
        // An idle input still moves processing time.
        run(&mut f, 1, Progress::Idle);
        assert_eq!(
            run(&mut f, 1, Progress::ProcessingTime(12)),
            vec![Progress::ProcessingTime(10)]
        );
        // Once input 0 ends, input 1 alone decides (and it is idle).
        assert_eq!(
            run(&mut f, 0, Progress::End),
            vec![Progress::ProcessingTime(12), Progress::Idle]
        );
        assert_eq!(run(&mut f, 1, Progress::ProcessingTime(11)), vec![]);
        assert_eq!(f.processing_time(), 12);
    }

    #[test]
    fn barriers_align_over_inputs_not_ended() {
        let mut f = Frontier::new(3);
        assert_eq!(run(&mut f, 0, Progress::Barrier(1)), vec![]);
        assert!(f.holds(0) && !f.holds(1));
        assert_eq!(run(&mut f, 1, Progress::Barrier(1)), vec![]);
        // Input 2 ends: it no longer holds the barrier back.
        assert_eq!(run(&mut f, 2, Progress::End), vec![Progress::Barrier(1)]);
        assert!(!f.aligning() && !f.holds(0));
        // A repeated or late barrier is ignored.
        assert_eq!(run(&mut f, 0, Progress::Barrier(1)), vec![]);
        assert_eq!(run(&mut f, 0, Progress::Barrier(2)), vec![]);
        assert_eq!(
            run(&mut f, 1, Progress::Barrier(2)),
            vec![Progress::Barrier(2)]
        );
        // Once every input ended, a late barrier passes at once, once.
        run(&mut f, 0, Progress::End);
        run(&mut f, 1, Progress::End);
        assert_eq!(
            run(&mut f, 1, Progress::Barrier(3)),
            vec![Progress::Barrier(3)]
        );
        assert_eq!(run(&mut f, 0, Progress::Barrier(3)), vec![]);
    }

    #[test]
    fn end_after_all_inputs_end() {
        let mut f = Frontier::new(2);
        run(&mut f, 0, Progress::Watermark(1));
        assert_eq!(run(&mut f, 0, Progress::End), vec![]);
        assert_eq!(
            run(&mut f, 1, Progress::End),
            vec![Progress::Watermark(MAX_WATERMARK), Progress::End]
        );
        assert!(f.is_ended());
        assert_eq!(run(&mut f, 1, Progress::End), vec![]);
    }
}

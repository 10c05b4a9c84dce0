//! Combining progress from several inputs.
//!
//! An operator's input watermark is the minimum over its inputs that are neither idle nor
//! ended; it only ever moves forward. When every input is idle the operator is idle; when
//! every input has ended, it sees the final watermark and then the end of its input.

use crate::error::OpResult;
use crate::push::Progress;
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

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
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

impl Frontier {
    /// A frontier over `inputs` inputs, all active at the minimum watermark.
    pub fn new(inputs: usize) -> Self {
        Frontier {
            inputs: vec![InputState::Active(MIN_WATERMARK); inputs],
            watermark: MIN_WATERMARK,
            idle: false,
            ended: inputs == 0,
        }
    }

    /// The combined watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
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
        let state = &mut self.inputs[input];
        *state = match (*state, progress) {
            (InputState::Ended, _) => InputState::Ended,
            (_, Progress::End) => InputState::Ended,
            (InputState::Active(w) | InputState::Idle(w), Progress::Watermark(n)) => {
                InputState::Active(w.max(n))
            }
            (InputState::Active(w) | InputState::Idle(w), Progress::Idle) => InputState::Idle(w),
        };
        if self.ended {
            return Ok(());
        }
        if self.inputs.iter().all(|s| *s == InputState::Ended) {
            if self.watermark < MAX_WATERMARK {
                self.watermark = MAX_WATERMARK;
                emit(Progress::Watermark(MAX_WATERMARK))?;
            }
            self.ended = true;
            return emit(Progress::End);
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

//! [`TimerQueue`]: timers by time, the one timer service of the built-in operators and of
//! a user's [`Timers`](super::Timers).
//!
//! A queue is not checkpointed: what a timer is for is (the operator's state says which
//! windows are open, which keys wait), so a restore sets the timers again from the state.
//! Timers are not cancelled in the queue: an operator skips one that has nothing left to do
//! when it comes due.

use std::collections::BTreeMap;

use crate::time::Timestamp;

/// Timers by time, each for an item `T` (a key, a key and its window): set in any order,
/// popped in time order.
#[derive(Debug, Clone)]
pub struct TimerQueue<T> {
    by_time: BTreeMap<Timestamp, Vec<T>>,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            by_time: BTreeMap::new(),
        }
    }
}

impl<T> TimerQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a timer at `time` for `item` (an item may have several, also at one time).
    #[inline]
    pub fn set(&mut self, time: Timestamp, item: T) {
        self.by_time.entry(time).or_default().push(item);
    }

    /// Removes and returns the earliest time's timers if that time is at or before
    /// `upto`, in the order they were set.
    pub fn pop_due(&mut self, upto: Timestamp) -> Option<(Timestamp, Vec<T>)> {
        let entry = self.by_time.first_entry()?;
        (*entry.key() <= upto).then(|| entry.remove_entry())
    }

    /// Removes and returns one timer of the earliest time if that time is at or before
    /// `upto` (of one time, the last set first).
    pub fn pop_one_due(&mut self, upto: Timestamp) -> Option<(Timestamp, T)> {
        loop {
            let mut entry = self.by_time.first_entry()?;
            let time = *entry.key();
            if time > upto {
                return None;
            }
            match entry.get_mut().pop() {
                Some(item) => {
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                    return Some((time, item));
                }
                None => {
                    entry.remove();
                }
            }
        }
    }

    /// Every timer in time order.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, &T)> {
        (self.by_time.iter()).flat_map(|(&t, items)| items.iter().map(move |i| (t, i)))
    }

    /// The earliest time with a timer.
    pub fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    /// True if no timer is set.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::state::timer_queue::TimerQueue;

    #[test]
    fn timers_come_due_in_time_order() {
        let mut q = TimerQueue::new();
        q.set(30, 'c');
        q.set(10, 'a');
        q.set(20, 'b');
        q.set(10, 'd');
        assert_eq!(q.next_time(), Some(10));
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(10), Some((10, vec!['a', 'd'])));
        assert_eq!(q.pop_one_due(25), Some((20, 'b')));
        assert_eq!(q.pop_one_due(25), None);
        assert_eq!(q.iter().collect::<Vec<_>>(), [(30, &'c')]);
        assert_eq!(q.pop_one_due(i64::MAX), Some((30, 'c')));
        assert!(q.is_empty());
    }
}

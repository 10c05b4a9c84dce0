//! [`Timers`]: event- or processing-time timers per key, checkpointed by the runtime.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::Hash;
use std::rc::Rc;

use super::codec::Registered;
use super::table::{KeyedState, SharedKeyedState};
use super::timer_queue::TimerQueue;
use crate::checkpoint::{StateReader, StateWriter};
use crate::data::StateData;
use crate::error::OpResult;
use crate::time::Timestamp;

/// Timers per key, checkpointed by the runtime (from
/// [`ShardContext::timers`](crate::ShardContext::timers)): a key has at most one timer per
/// time. The operator decides their time domain, firing them from its watermark
/// (event time) or processing-time callback with [`Timers::pop_due`].
pub struct Timers<K>(pub(crate) Rc<TimerTable<K>>);

pub(crate) struct TimerTable<K> {
    /// Every key's timers: what checkpoints hold.
    pub(super) times: SharedKeyedState<K, BTreeSet<Timestamp>>,
    /// The same timers by time (set again on restore; may hold deleted ones, skipped).
    pub(super) queue: RefCell<TimerQueue<K>>,
}

impl<K> std::fmt::Debug for Timers<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Timers")
            .field(&self.0.times.borrow())
            .finish()
    }
}

impl<K: StateData + Hash + Eq> Registered for TimerTable<K> {
    fn snapshot(self: Rc<Self>, state: &mut StateWriter) -> OpResult {
        KeyedState::snapshot_shared(&self.times, state)
    }
    fn restore(&self, state: &StateReader) -> OpResult {
        let mut times = self.times.borrow_mut();
        times.restore(state)?;
        let mut queue = self.queue.borrow_mut();
        for (key, set) in times.iter() {
            for &t in set {
                queue.set(t, key.clone());
            }
        }
        Ok(())
    }
}

impl<K: Clone + Hash + Eq> Timers<K> {
    /// Sets a timer for `key` at `time` (no effect if it is already set).
    pub fn set(&self, key: K, time: Timestamp) {
        let mut times = self.0.times.borrow_mut();
        if times
            .get_or_insert_with(key.clone(), BTreeSet::new)
            .insert(time)
        {
            self.0.queue.borrow_mut().set(time, key);
        }
    }

    /// Deletes `key`'s timer at `time`; true if it was set.
    pub fn delete(&self, key: &K, time: Timestamp) -> bool {
        let mut times = self.0.times.borrow_mut();
        let Some(set) = times.get_mut(key) else {
            return false;
        };
        let removed = set.remove(&time);
        if set.is_empty() {
            times.remove(key);
        }
        removed
    }

    /// Removes and returns the earliest timer at or before `upto`, with its key.
    pub fn pop_due(&self, upto: Timestamp) -> Option<(Timestamp, K)> {
        loop {
            let (time, key) = self.0.queue.borrow_mut().pop_one_due(upto)?;
            // Deleted timers stay in the queue; only a timer still set fires.
            if self.delete(&key, time) {
                return Some((time, key));
            }
        }
    }

    /// The earliest timer set, if any.
    pub fn next(&self) -> Option<Timestamp> {
        let times = self.0.times.borrow();
        self.0
            .queue
            .borrow()
            .iter()
            .find(|(t, k)| times.get(k).is_some_and(|s| s.contains(t)))
            .map(|(t, _)| t)
    }

    /// Number of keys with a timer.
    pub fn keys(&self) -> usize {
        self.0.times.borrow().len()
    }
}

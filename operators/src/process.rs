//! Keyed process functions: per-key state and timers, for what the built-in operators do
//! not cover (Flink's `KeyedProcessFunction`).

use std::hash::Hash;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{table_codec, Codec, OperatorClock, SharedKeyedState, TimerQueue};
use rill_runtime::{
    Data, OpResult, Operator, OperatorState, Output, ShardInfo, StateData, Stream, Timestamp,
};

use crate::key_by::{KeyFn, KeyedStream};

/// A keyed process function over records `T` with key `K`.
///
/// For every record the function gets its key's state (created with `Default`) and a
/// context to emit records and to set event-time timers (fired when the watermark reaches
/// them) and processing-time timers (fired when processing time does). A timer is set at
/// most once per key and time. Timers fire in time order, before the watermark or
/// processing time moves on downstream; at the end of the input every event-time timer
/// fires (the final watermark is +infinity).
///
/// ```
/// use rill_operators::prelude::*;
/// use rill_operators::{ProcessContext, ProcessFunction};
/// use rill_runtime::{Config, Dataflow, Runtime, Timestamp};
///
/// /// Emits a key's count 100 ms (event time) after its first record.
/// struct CountThenFlush;
/// impl ProcessFunction<u32, (u32, i64)> for CountThenFlush {
///     type State = u64;
///     type Out = (u32, u64);
///     fn process(&mut self, r: (u32, i64), cx: &mut ProcessContext<'_, u32, u64, (u32, u64)>) {
///         if *cx.state() == 0 {
///             cx.set_event_timer(r.1 + 100);
///         }
///         *cx.state() += 1;
///     }
///     fn on_timer(&mut self, _t: Timestamp, cx: &mut ProcessContext<'_, u32, u64, (u32, u64)>) {
///         let n = *cx.state();
///         cx.emit((*cx.key(), n));
///         cx.clear_state();
///     }
/// }
///
/// let mut df = Dataflow::new();
/// let out = df
///     .vec_source("in", vec![(1u32, 0i64), (1, 50), (2, 10), (1, 500)])
///     .key_by(|r: &(u32, i64)| r.0)
///     .process("count", |_| CountThenFlush)
///     .collect("out");
/// Runtime::new(Config::default().shards(2).pin(false)).unwrap().run(df).unwrap();
/// let mut got = out.take();
/// got.sort();
/// // No watermark before the final one: every record is in before the timers fire.
/// assert_eq!(got, vec![(1, 3), (2, 1)]);
/// ```
pub trait ProcessFunction<K, T>: 'static {
    /// Per-key state.
    type State: Default + 'static;
    /// Emitted records.
    type Out: Data;
    /// Handles a record of the context's key.
    fn process(&mut self, record: T, cx: &mut ProcessContext<'_, K, Self::State, Self::Out>);
    /// A timer of the context's key fired at `time`.
    fn on_timer(&mut self, time: Timestamp, cx: &mut ProcessContext<'_, K, Self::State, Self::Out>);
}

/// What a process function sees for one key.
pub struct ProcessContext<'a, K, S, O> {
    key: &'a K,
    slot: &'a mut KeySlot<S>,
    out: &'a mut Output<O>,
    queues: &'a mut Queues<K>,
    watermark: Timestamp,
    now: Timestamp,
}

impl<K: std::fmt::Debug, S, O> std::fmt::Debug for ProcessContext<'_, K, S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessContext")
            .field("key", self.key)
            .field("has_state", &self.slot.0.is_some())
            .field("watermark", &self.watermark)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// One key's part of the operator's state, and of a checkpoint: its state, its
/// event-time timers and its processing-time timers.
pub(crate) type KeySlot<S> = (Option<S>, Vec<Timestamp>, Vec<Timestamp>);

/// Every key's timers by time: event time, processing time. (A key's own timers, in its
/// slot, are what checkpoints hold; these are rebuilt on a restore.)
struct Queues<K> {
    event: TimerQueue<K>,
    processing: TimerQueue<K>,
}

impl<K: Clone> Queues<K> {
    fn add<S>(&mut self, slot: &mut KeySlot<S>, processing: bool, time: Timestamp, key: &K) {
        let (times, queue) = if processing {
            (&mut slot.2, &mut self.processing)
        } else {
            (&mut slot.1, &mut self.event)
        };
        if !times.contains(&time) {
            times.push(time);
            queue.set(time, key.clone());
        }
    }
}

impl<K: Clone + Hash + Eq, S: Default, O: Clone> ProcessContext<'_, K, S, O> {
    /// The key.
    pub fn key(&self) -> &K {
        self.key
    }
    /// The key's state (created on first use).
    pub fn state(&mut self) -> &mut S {
        self.slot.0.get_or_insert_with(S::default)
    }
    /// Drops the key's state.
    pub fn clear_state(&mut self) {
        self.slot.0 = None;
    }
    /// Emits a record.
    pub fn emit(&mut self, record: O) {
        self.out.give(record);
    }
    /// The current input watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }
    /// The current processing time.
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// Calls `on_timer` once the watermark reaches `time`.
    pub fn set_event_timer(&mut self, time: Timestamp) {
        self.queues.add(self.slot, false, time, self.key);
    }
    /// Calls `on_timer` once processing time reaches `time`.
    pub fn set_processing_timer(&mut self, time: Timestamp) {
        self.queues.add(self.slot, true, time, self.key);
    }
}

struct ProcessOp<T, K, F: ProcessFunction<K, T>> {
    f: F,
    key: KeyFn<T, K>,
    /// Shared with the checkpoint being collected after its barrier (copy-on-write).
    keys: SharedKeyedState<K, KeySlot<F::State>>,
    queues: Queues<K>,
    clock: OperatorClock,
    codec: Codec<K, KeySlot<F::State>>,
}

impl<T, K, F> ProcessOp<T, K, F>
where
    K: Clone + Hash + Eq + 'static,
    F: ProcessFunction<K, T>,
{
    fn call(
        &mut self,
        key: &K,
        out: &mut Output<F::Out>,
        body: impl FnOnce(&mut F, &mut ProcessContext<'_, K, F::State, F::Out>),
    ) {
        let mut keys = self.keys.borrow_mut();
        let slot = keys.get_or_insert_with(key.clone(), || (None, Vec::new(), Vec::new()));
        let mut cx = ProcessContext {
            key,
            slot,
            out,
            queues: &mut self.queues,
            watermark: self.clock.watermark,
            now: self.clock.now,
        };
        body(&mut self.f, &mut cx);
        if cx.slot.0.is_none() && cx.slot.1.is_empty() && cx.slot.2.is_empty() {
            keys.remove(key);
        }
    }

    fn fire(&mut self, processing: bool, upto: Timestamp, out: &mut Output<F::Out>) {
        loop {
            let queue = if processing {
                &mut self.queues.processing
            } else {
                &mut self.queues.event
            };
            let Some((time, due)) = queue.pop_due(upto) else {
                return;
            };
            for key in due {
                if let Some(slot) = self.keys.borrow_mut().get_mut(&key) {
                    let times = if processing { &mut slot.2 } else { &mut slot.1 };
                    times.retain(|&t| t != time);
                }
                self.call(&key, out, |f, cx| f.on_timer(time, cx));
            }
        }
    }
}

impl<T, K, F> Operator<T> for ProcessOp<T, K, F>
where
    K: Clone + Hash + Eq + 'static,
    F: ProcessFunction<K, T>,
{
    /// The operator's clock (every shard restores it), and the keys' table: every key's
    /// state and timers ([`KeySlot`]), incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.clock.snapshot(state)?;
        let codec = &self.codec;
        codec.write(&self.keys, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.clock.restore(state)?;
        let codec = &self.codec;
        let mut keys = self.keys.borrow_mut();
        codec.read(&mut keys, state)?;
        for (key, (_, event, processing)) in keys.iter() {
            for &t in event {
                self.queues.event.set(t, key.clone());
            }
            for &t in processing {
                self.queues.processing.set(t, key.clone());
            }
        }
        Ok(())
    }

    type Out = Output<F::Out>;
    const STATE: OperatorState = OperatorState::Checkpointed;

    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<F::Out>) -> OpResult {
        for record in batch.drain(..) {
            let key = (self.key)(&record);
            self.call(&key, out, |f, cx| f.process(record, cx));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<F::Out>) -> OpResult {
        self.clock.watermark = self.clock.watermark.max(watermark);
        self.fire(false, self.clock.watermark, out);
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<F::Out>) -> OpResult {
        self.clock.now = self.clock.now.max(now);
        self.fire(true, self.clock.now, out);
        Ok(())
    }
}

impl<T: Data, K: Data + Hash + Eq> KeyedStream<T, K> {
    /// Runs a keyed process function; `make` builds one instance per shard. Its per-key
    /// state and timers take part in checkpoints (state types must be rkyv-serializable,
    /// checked at compile time) and are restored onto any shard count by key group.
    /// [`ProcessFunction`] shows a function with state and timers; a stateless one:
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::{ProcessContext, ProcessFunction};
    /// use rill_runtime::Timestamp;
    ///
    /// /// Emits a key's records from the second one on (drops each key's first record).
    /// struct SkipFirst;
    /// impl ProcessFunction<u32, u32> for SkipFirst {
    ///     type State = bool;
    ///     type Out = u32;
    ///     fn process(&mut self, r: u32, cx: &mut ProcessContext<'_, u32, bool, u32>) {
    ///         if std::mem::replace(cx.state(), true) {
    ///             cx.emit(r);
    ///         }
    ///     }
    ///     fn on_timer(&mut self, _: Timestamp, _: &mut ProcessContext<'_, u32, bool, u32>) {}
    /// }
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("numbers", (0..6u32).collect())
    ///         .key_by(|x: &u32| x % 2)
    ///         .process("skip first", |_shard| SkipFirst)
    ///         .collect("out")
    /// });
    /// assert_eq!(out.take().len(), 4);
    /// ```
    pub fn process<F, M>(&self, name: &str, make: M) -> Stream<F::Out>
    where
        F: ProcessFunction<K, T>,
        F::State: Clone,
        M: Fn(ShardInfo) -> F + Send + Sync + 'static,
        K: StateData,
        F::State: StateData,
    {
        let codec: Codec<K, KeySlot<F::State>> = table_codec("keys", 2);

        let key = self.key_fn();
        self.stream().unary(name, move |shard| ProcessOp {
            f: make(shard.info()),
            key: key.clone(),
            keys: shard.keyed_state().into_shared(),
            queues: Queues {
                event: TimerQueue::new(),
                processing: TimerQueue::new(),
            },
            clock: OperatorClock::default(),
            codec: codec.clone(),
        })
    }
}

//! Keyed process functions: per-key state and timers, for what the built-in operators do
//! not cover (Flink's `KeyedProcessFunction`).

use std::collections::BTreeMap;
use std::hash::Hash;

use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{
    hash_key, Data, ExchangeData, Failure, OpResult, Operator, Output, ShardInfo, StateData,
    Stream, Timestamp, MIN_WATERMARK,
};
use rustc_hash::{FxHashMap, FxHashSet};

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
    state: &'a mut Option<S>,
    out: &'a mut Output<O>,
    timers: &'a mut Timers<K>,
    watermark: Timestamp,
    now: Timestamp,
}

impl<K: std::fmt::Debug, S, O> std::fmt::Debug for ProcessContext<'_, K, S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessContext")
            .field("key", self.key)
            .field("has_state", &self.state.is_some())
            .field("watermark", &self.watermark)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

struct Timers<K> {
    event: BTreeMap<Timestamp, Vec<K>>,
    processing: BTreeMap<Timestamp, Vec<K>>,
    set: FxHashSet<(bool, Timestamp, K)>,
}

impl<K: Clone + Hash + Eq> Timers<K> {
    fn add(&mut self, processing: bool, time: Timestamp, key: &K) {
        if self.set.insert((processing, time, key.clone())) {
            let queue = if processing {
                &mut self.processing
            } else {
                &mut self.event
            };
            queue.entry(time).or_default().push(key.clone());
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
        self.state.get_or_insert_with(S::default)
    }
    /// Drops the key's state.
    pub fn clear_state(&mut self) {
        *self.state = None;
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
        self.timers.add(false, time, self.key);
    }
    /// Calls `on_timer` once processing time reaches `time`.
    pub fn set_processing_timer(&mut self, time: Timestamp) {
        self.timers.add(true, time, self.key);
    }
}

/// One key's part of a checkpoint: (the operator's watermark, key, state, event-time
/// timers, processing-time timers).
pub(crate) type KeyRecord<K, S> = (Timestamp, K, Option<S>, Vec<Timestamp>, Vec<Timestamp>);

/// Writes and reads keys' records (behind a trait object, so that only the constructor,
/// not the operator, carries the serialization bounds).
trait StateCodec<K, S> {
    fn write(
        &self,
        watermark: Timestamp,
        keys: &FxHashMap<K, S>,
        timers: &FxHashSet<(bool, Timestamp, K)>,
        state: &mut StateWriter,
    ) -> OpResult;
    fn read(&self, state: &StateReader) -> Result<Vec<KeyRecord<K, S>>, Failure>;
}

struct RkyvCodec;

impl<K, S> StateCodec<K, S> for RkyvCodec
where
    K: Clone + Hash + Eq,
    S: Clone,
    (u32, KeyRecord<K, S>): ExchangeData,
{
    fn write(
        &self,
        watermark: Timestamp,
        keys: &FxHashMap<K, S>,
        timer_set: &FxHashSet<(bool, Timestamp, K)>,
        state: &mut StateWriter,
    ) -> OpResult {
        let mut timers: FxHashMap<&K, (Vec<Timestamp>, Vec<Timestamp>)> = FxHashMap::default();
        for (processing, time, key) in timer_set {
            let t = timers.entry(key).or_default();
            if *processing {
                t.1.push(*time);
            } else {
                t.0.push(*time);
            }
        }
        let mut records = Vec::with_capacity(keys.len() + timers.len());
        for (key, s) in keys {
            let (event, processing) = timers.remove(key).unwrap_or_default();
            records.push((
                hash_key(key),
                (watermark, key.clone(), Some(s.clone()), event, processing),
            ));
        }
        for (key, (event, processing)) in timers {
            records.push((
                hash_key(key),
                (watermark, key.clone(), None, event, processing),
            ));
        }
        state.section("keys", 1).put_keyed_all(records)
    }
    fn read(&self, state: &StateReader) -> Result<Vec<KeyRecord<K, S>>, Failure> {
        state.section("keys", 1)?.keyed_values()
    }
}

type Codec<K, S> = Arc<dyn StateCodec<K, S> + Send + Sync>;

struct ProcessOp<T, K, F: ProcessFunction<K, T>> {
    f: F,
    key: KeyFn<T, K>,
    state: FxHashMap<K, F::State>,
    timers: Timers<K>,
    watermark: Timestamp,
    now: Timestamp,
    codec: Codec<K, F::State>,
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
        let mut state = self.state.remove(key);
        let mut cx = ProcessContext {
            key,
            state: &mut state,
            out,
            timers: &mut self.timers,
            watermark: self.watermark,
            now: self.now,
        };
        body(&mut self.f, &mut cx);
        if let Some(s) = state {
            self.state.insert(key.clone(), s);
        }
    }

    fn fire(&mut self, processing: bool, upto: Timestamp, out: &mut Output<F::Out>) {
        loop {
            let queue = if processing {
                &mut self.timers.processing
            } else {
                &mut self.timers.event
            };
            let Some(entry) = queue.first_entry() else {
                return;
            };
            if *entry.key() > upto {
                return;
            }
            let time = *entry.key();
            for key in entry.remove() {
                self.timers.set.remove(&(processing, time, key.clone()));
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
    /// Every key's state and timers, keyed by the key (see [`KeyRecord`]).
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        let codec = &self.codec;
        codec.write(self.watermark, &self.state, &self.timers.set, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let codec = &self.codec;
        let mut watermark: Option<Timestamp> = None;
        for (w, key, s, event, processing) in codec.read(state)? {
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
            for t in event {
                self.timers.add(false, t, &key);
            }
            for t in processing {
                self.timers.add(true, t, &key);
            }
            if let Some(s) = s {
                self.state.insert(key, s);
            }
        }
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        Ok(())
    }

    type Out = Output<F::Out>;

    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<F::Out>) -> OpResult {
        for record in batch.drain(..) {
            let key = (self.key)(&record);
            self.call(&key, out, |f, cx| f.process(record, cx));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<F::Out>) -> OpResult {
        self.watermark = self.watermark.max(watermark);
        self.fire(false, self.watermark, out);
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<F::Out>) -> OpResult {
        self.now = self.now.max(now);
        self.fire(true, self.now, out);
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
        let codec: Codec<K, F::State> = Arc::new(RkyvCodec);

        let key = self.key_fn();
        self.stream().unary(name, move |shard| ProcessOp {
            f: make(shard.info()),
            key: key.clone(),
            state: FxHashMap::default(),
            timers: Timers {
                event: BTreeMap::new(),
                processing: BTreeMap::new(),
                set: FxHashSet::default(),
            },
            watermark: MIN_WATERMARK,
            now: MIN_WATERMARK,
            codec: codec.clone(),
        })
    }
}

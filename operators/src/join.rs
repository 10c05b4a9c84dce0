//! Joins of two keyed streams in event time.
//!
//! Both inputs are partitioned by the same key, so matching records meet on one shard.
//! - [`KeyedStream::window_join`]: every pair of records with equal keys that fall in the
//!   same window (tumbling or sliding) is joined when the watermark passes the window's
//!   end; the window's records are then dropped. Records for windows already past their
//!   end are dropped (as Flink does).
//! - [`KeyedStream::interval_join`]: a left record at `t` joins every right record with an
//!   equal key and a time in `[t + lower, t + upper]`, as soon as both are in. Records are
//!   kept only while a match may still arrive: a left record until the watermark passes
//!   `t + upper`, a right record until it passes `t - lower`. Records behind the watermark
//!   are dropped.
//!
//! Dropped records are counted in the job report (the join's
//! [`OperatorReport::dropped`](rill_runtime::OperatorReport::dropped)).
//!
//! The operator's output watermark is its input watermark (the minimum of both inputs).

use std::hash::Hash;
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::state::{
    table_codec, Codec, OperatorClock, SharedKeyedState, TimerQueue, Update,
};
use rill_runtime::{
    BinaryOperator, Data, DroppedRecords, OpResult, OperatorState, Output, StateData, Stream,
    Timestamp,
};

use crate::key_by::{KeyFn, KeyedStream};
use crate::window::{Window, Windows};

type TsFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
type WindowJoinFn<K, A, B, O> = Arc<dyn Fn(&K, &Window, &A, &B) -> O + Send + Sync>;
type IntervalJoinFn<K, A, B, O> = Arc<dyn Fn(&K, &A, &B) -> O + Send + Sync>;

/// A key's open windows, each with both sides' records: what a window join keeps per key
/// and writes to checkpoints.
pub(crate) type WindowSides<A, B> = Vec<(Window, Vec<A>, Vec<B>)>;

/// A key's records of one side of an interval join, each with its time.
pub(crate) type Timed<T> = Vec<(Timestamp, T)>;

/// How a join reads its inputs' records: each side's key and event time.
struct JoinInputs<A, B, K> {
    key_a: KeyFn<A, K>,
    key_b: KeyFn<B, K>,
    ts_a: TsFn<A>,
    ts_b: TsFn<B>,
}

impl<A, B, K> Clone for JoinInputs<A, B, K> {
    fn clone(&self) -> Self {
        JoinInputs {
            key_a: self.key_a.clone(),
            key_b: self.key_b.clone(),
            ts_a: self.ts_a.clone(),
            ts_b: self.ts_b.clone(),
        }
    }
}

impl<A, B, K> JoinInputs<A, B, K> {
    /// Reads `left`'s and `right`'s keys, and their times with `time_a` and `time_b`.
    fn new(
        left: &KeyedStream<A, K>,
        right: &KeyedStream<B, K>,
        time_a: impl Fn(&A) -> Timestamp + Send + Sync + 'static,
        time_b: impl Fn(&B) -> Timestamp + Send + Sync + 'static,
    ) -> Self
    where
        A: Data,
        B: Data,
        K: Data + Hash + Eq,
    {
        JoinInputs {
            key_a: left.key_fn(),
            key_b: right.key_fn(),
            ts_a: Arc::new(time_a),
            ts_b: Arc::new(time_b),
        }
    }

    /// A left record's key and event time.
    #[inline]
    fn left(&self, a: &A) -> (K, Timestamp) {
        ((self.key_a)(a), (self.ts_a)(a))
    }

    /// A right record's key and event time.
    #[inline]
    fn right(&self, b: &B) -> (K, Timestamp) {
        ((self.key_b)(b), (self.ts_b)(b))
    }
}

struct WindowJoin<A, B, K, O> {
    inputs: JoinInputs<A, B, K>,
    windows: Windows,
    join: WindowJoinFn<K, A, B, O>,
    /// Per key, its windows' records from both sides (shared with the checkpoint being
    /// collected after its barrier: copy-on-write).
    state: SharedKeyedState<K, WindowSides<A, B>>,
    /// Per window end, the keys with a window ending there (set again on a restore).
    ends: TimerQueue<K>,
    /// The input watermark (restored per shard: see [`OperatorClock::restore`]).
    clock: OperatorClock,
    scratch: Vec<Window>,
    codec: Codec<K, WindowSides<A, B>>,
    /// Records that fell in no open window.
    dropped: DroppedRecords,
}

impl<A: Clone, B: Clone, K: Clone + Hash + Eq, O> WindowJoin<A, B, K, O> {
    fn insert(&mut self, key: K, t: Timestamp, mut put: impl FnMut(&mut Vec<A>, &mut Vec<B>)) {
        self.scratch.clear();
        self.windows.assign(t, &mut self.scratch);
        if self.scratch.iter().all(|w| w.end <= self.clock.watermark) {
            self.dropped.add(1);
            return;
        }
        let mut state = self.state.borrow_mut();
        for &w in &self.scratch {
            if w.end <= self.clock.watermark {
                continue;
            }
            let sides = state.get_or_insert_with(key.clone(), Vec::new);
            let i = match sides.iter().position(|s| s.0 == w) {
                Some(i) => i,
                None => {
                    sides.push((w, Vec::new(), Vec::new()));
                    self.ends.set(w.end, key.clone());
                    sides.len() - 1
                }
            };
            let (_, a, b) = &mut sides[i];
            put(a, b);
        }
    }
}

impl<A: Clone + 'static, B: Clone + 'static, K: Clone + Hash + Eq + 'static, O: Data>
    BinaryOperator<A, B> for WindowJoin<A, B, K, O>
{
    /// The clock, and per key its windows' records, incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.clock.snapshot(state)?;
        self.codec.write(&self.state, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.clock.restore(state)?;
        let mut table = self.state.borrow_mut();
        self.codec.read(&mut table, state)?;
        for (k, sides) in table.iter() {
            for (w, _, _) in sides {
                self.ends.set(w.end, k.clone());
            }
        }
        Ok(())
    }

    type Out = Output<O>;
    const STATE: OperatorState = OperatorState::Checkpointed;

    fn on_left(&mut self, batch: &mut Vec<A>, _out: &mut Output<O>) -> OpResult {
        for a in batch.drain(..) {
            let (k, t) = self.inputs.left(&a);
            self.insert(k, t, |left, _| left.push(a.clone()));
        }
        Ok(())
    }

    fn on_right(&mut self, batch: &mut Vec<B>, _out: &mut Output<O>) -> OpResult {
        for b in batch.drain(..) {
            let (k, t) = self.inputs.right(&b);
            self.insert(k, t, |_, right| right.push(b.clone()));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> OpResult {
        self.clock.watermark = self.clock.watermark.max(watermark);
        let mut state = self.state.borrow_mut();
        while let Some((end, due)) = self.ends.pop_due(self.clock.watermark) {
            for k in due {
                let Some(sides) = state.get_mut(&k) else {
                    continue;
                };
                let mut due = Vec::new();
                sides.retain_mut(|(w, left, right)| {
                    if w.end == end {
                        due.push((*w, std::mem::take(left), std::mem::take(right)));
                        false
                    } else {
                        true
                    }
                });
                if sides.is_empty() {
                    state.remove(&k);
                }
                for (w, left, right) in due {
                    for a in &left {
                        for b in &right {
                            out.give((self.join)(&k, &w, a, b));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

struct IntervalJoin<A, B, K, O> {
    inputs: JoinInputs<A, B, K>,
    lower: i64,
    upper: i64,
    join: IntervalJoinFn<K, A, B, O>,
    /// Both sides' records per key (shared with the checkpoint being collected after its
    /// barrier: copy-on-write).
    left: SharedKeyedState<K, Timed<A>>,
    right: SharedKeyedState<K, Timed<B>>,
    /// The input watermark (restored per shard: see [`OperatorClock::restore`]).
    clock: OperatorClock,
    codec_left: Codec<K, Timed<A>>,
    codec_right: Codec<K, Timed<B>>,
    /// Records behind the watermark.
    dropped: DroppedRecords,
}

/// True if some of one key's side's records can match no later record (time `t` with
/// `horizon(t) < watermark`).
fn expires<T>(records: &Timed<T>, horizon: impl Fn(Timestamp) -> Timestamp, w: Timestamp) -> bool {
    records.iter().any(|(t, _)| horizon(*t) < w)
}

/// Drops the records of one key's side that no later record can match (time `t` with
/// `horizon(t) < watermark`).
fn expire<T>(
    records: &mut Timed<T>,
    horizon: impl Fn(Timestamp) -> Timestamp,
    w: Timestamp,
) -> Update {
    let before = records.len();
    records.retain(|(t, _)| horizon(*t) >= w);
    match records.len() {
        0 => Update::Remove,
        n if n == before => Update::Keep,
        _ => Update::Changed,
    }
}

impl<A: Clone + 'static, B: Clone + 'static, K: Clone + Hash + Eq + 'static, O: Data>
    BinaryOperator<A, B> for IntervalJoin<A, B, K, O>
{
    /// The clock, and per key both sides' records, incrementally.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.clock.snapshot(state)?;
        self.codec_left.write(&self.left, state)?;
        self.codec_right.write(&self.right, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.clock.restore(state)?;
        self.codec_left.read(&mut self.left.borrow_mut(), state)?;
        self.codec_right.read(&mut self.right.borrow_mut(), state)
    }

    type Out = Output<O>;
    const STATE: OperatorState = OperatorState::Checkpointed;

    fn on_left(&mut self, batch: &mut Vec<A>, out: &mut Output<O>) -> OpResult {
        let (mut left, right) = (self.left.borrow_mut(), self.right.borrow());
        for a in batch.drain(..) {
            let (k, t) = self.inputs.left(&a);
            if t < self.clock.watermark {
                self.dropped.add(1);
                continue;
            }
            let (lo, hi) = (t.saturating_add(self.lower), t.saturating_add(self.upper));
            for (tb, b) in right.get(&k).into_iter().flatten() {
                if (lo..=hi).contains(tb) {
                    out.give((self.join)(&k, &a, b));
                }
            }
            left.get_or_insert_with(k, Vec::new).push((t, a));
        }
        Ok(())
    }

    fn on_right(&mut self, batch: &mut Vec<B>, out: &mut Output<O>) -> OpResult {
        let (left, mut right) = (self.left.borrow(), self.right.borrow_mut());
        for b in batch.drain(..) {
            let (k, t) = self.inputs.right(&b);
            if t < self.clock.watermark {
                self.dropped.add(1);
                continue;
            }
            for (ta, a) in left.get(&k).into_iter().flatten() {
                let (lo, hi) = (ta.saturating_add(self.lower), ta.saturating_add(self.upper));
                if (lo..=hi).contains(&t) {
                    out.give((self.join)(&k, a, &b));
                }
            }
            right.get_or_insert_with(k, Vec::new).push((t, b));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<O>) -> OpResult {
        self.clock.watermark = self.clock.watermark.max(watermark);
        let (w, lower, upper) = (self.clock.watermark, self.lower, self.upper);
        // Only keys with records to drop are visited (and, during a checkpoint's
        // collection, copied first).
        let (after, before) = (
            |t: Timestamp| t.saturating_add(upper),
            |t: Timestamp| t.saturating_sub(lower),
        );
        self.left
            .borrow_mut()
            .update_each_where(|_, v| expires(v, after, w), |_, v| expire(v, after, w));
        self.right
            .borrow_mut()
            .update_each_where(|_, v| expires(v, before, w), |_, v| expire(v, before, w));
        Ok(())
    }
}

impl<A: Data, K: Data + Hash + Eq> KeyedStream<A, K> {
    /// Joins records of equal keys in the same window (tumbling or sliding) of event time.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // (ad, event time in ms): clicks on an ad in the same second as one of its views.
    /// type E = (u32, i64);
    /// let out = run_on_two_shards(|df| {
    ///     let views = df.vec_source("views", vec![(1, 100), (2, 200)]);
    ///     let clicks = df.vec_source("clicks", vec![(1, 900), (1, 1100), (2, 300)]);
    ///     let (views, clicks) = (views.key_by(|v: &E| v.0), clicks.key_by(|c: &E| c.0));
    ///     let second = Windows::tumbling(1000);
    ///     views
    ///         .window_join(&clicks, "join", second, |v| v.1, |c| c.1, |ad, _window, v, c| {
    ///             (*ad, v.1, c.1)
    ///         })
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(1, 100, 900), (2, 200, 300)]);
    /// ```
    pub fn window_join<B, O: Data>(
        &self,
        other: &KeyedStream<B, K>,
        name: &str,
        windows: Windows,
        time_a: impl Fn(&A) -> Timestamp + Send + Sync + 'static,
        time_b: impl Fn(&B) -> Timestamp + Send + Sync + 'static,
        join: impl Fn(&K, &Window, &A, &B) -> O + Send + Sync + 'static,
    ) -> Stream<O>
    where
        K: StateData,
        A: StateData,
        B: StateData,
    {
        if windows.is_merging() || windows.is_count() {
            self.stream().invalid(
                name,
                "window_join takes tumbling, sliding or global windows, not sessions or counts",
            );
        } else if let Err(e) = windows.validate() {
            self.stream().invalid(name, e.to_string());
        }
        let inputs = JoinInputs::new(self, other, time_a, time_b);
        let join: WindowJoinFn<K, A, B, O> = Arc::new(join);
        let codec: Codec<K, WindowSides<A, B>> = table_codec("window join", 2);
        self.stream()
            .binary(other.stream(), name, move |shard| WindowJoin {
                inputs: inputs.clone(),
                windows,
                join: join.clone(),
                state: shard.keyed_state().into_shared(),
                ends: TimerQueue::new(),
                clock: OperatorClock::default(),
                scratch: Vec::new(),
                codec: codec.clone(),
                dropped: shard.dropped_records(),
            })
    }

    /// Joins a left record at `t` with every right record of its key in
    /// `[t + lower, t + upper]` (inclusive, in ms).
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// // (order, event time in ms): shipments within 100 ms after their order.
    /// type E = (u32, i64);
    /// let out = run_on_two_shards(|df| {
    ///     let orders = df.vec_source("orders", vec![(1, 0), (2, 50)]).key_by(|o: &E| o.0);
    ///     let shipped = df.vec_source("shipped", vec![(1, 80), (2, 400)]).key_by(|s: &E| s.0);
    ///     orders
    ///         .interval_join(&shipped, "join", 0, 100, |o| o.1, |s| s.1, |id, o, s| {
    ///             (*id, s.1 - o.1)
    ///         })
    ///         .collect("out")
    /// });
    /// assert_eq!(out.take(), [(1, 80)]); // order 2 shipped 350 ms late
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn interval_join<B, O: Data>(
        &self,
        other: &KeyedStream<B, K>,
        name: &str,
        lower: i64,
        upper: i64,
        time_a: impl Fn(&A) -> Timestamp + Send + Sync + 'static,
        time_b: impl Fn(&B) -> Timestamp + Send + Sync + 'static,
        join: impl Fn(&K, &A, &B) -> O + Send + Sync + 'static,
    ) -> Stream<O>
    where
        K: StateData,
        A: StateData,
        B: StateData,
    {
        if lower > upper {
            self.stream().invalid(
                name,
                format!("interval_join needs lower <= upper (got {lower} > {upper})"),
            );
        }
        let codec_left: Codec<K, Timed<A>> = table_codec("interval join left", 1);
        let codec_right: Codec<K, Timed<B>> = table_codec("interval join right", 1);
        let inputs = JoinInputs::new(self, other, time_a, time_b);
        let join: IntervalJoinFn<K, A, B, O> = Arc::new(join);
        self.stream()
            .binary(other.stream(), name, move |shard| IntervalJoin {
                inputs: inputs.clone(),
                lower,
                upper,
                join: join.clone(),
                left: shard.keyed_state().into_shared(),
                right: shard.keyed_state().into_shared(),
                clock: OperatorClock::default(),
                codec_left: codec_left.clone(),
                codec_right: codec_right.clone(),
                dropped: shard.dropped_records(),
            })
    }
}

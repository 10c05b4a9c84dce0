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
//! The operator's output watermark is its input watermark (the minimum of both inputs).

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{
    hash_key, BinaryOperator, Data, OpResult, Output, StateData, Stream, Timestamp,
};
use rustc_hash::FxHashMap;

use crate::key_by::{KeyFn, KeyedStream};
use crate::window::{Window, Windows};
use crate::{Codec, RkyvRecords};

type TsFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;
type WindowJoinFn<K, A, B, O> = Arc<dyn Fn(&K, &Window, &A, &B) -> O + Send + Sync>;
type IntervalJoinFn<K, A, B, O> = Arc<dyn Fn(&K, &A, &B) -> O + Send + Sync>;
/// One window's records of one key, from both sides.
type WindowSides<K, A, B> = FxHashMap<(K, Window), (Vec<A>, Vec<B>)>;

struct WindowJoin<A, B, K, O> {
    key_a: KeyFn<A, K>,
    key_b: KeyFn<B, K>,
    ts_a: TsFn<A>,
    ts_b: TsFn<B>,
    windows: Windows,
    join: WindowJoinFn<K, A, B, O>,
    /// Per window end: per key, both sides' records.
    state: BTreeMap<Timestamp, WindowSides<K, A, B>>,
    watermark: Timestamp,
    scratch: Vec<Window>,
    codec: Codec<WindowJoinRecord<K, A, B>>,
}

/// A window join's checkpoint record: (watermark, key, window, left records, right
/// records).
pub(crate) type WindowJoinRecord<K, A, B> = (Timestamp, K, Window, Vec<A>, Vec<B>);

/// An interval join's checkpoint record: (watermark, key, left records, right records),
/// each record with its time.
pub(crate) type IntervalJoinRecord<K, A, B> =
    (Timestamp, K, Vec<(Timestamp, A)>, Vec<(Timestamp, B)>);

impl<A: Clone, B: Clone, K: Clone + Hash + Eq, O> WindowJoin<A, B, K, O> {
    fn insert(&mut self, key: K, t: Timestamp, mut put: impl FnMut(&mut (Vec<A>, Vec<B>))) {
        self.scratch.clear();
        self.windows.assign(t, &mut self.scratch);
        for &w in &self.scratch {
            if w.end <= self.watermark {
                continue;
            }
            let slot = self
                .state
                .entry(w.end)
                .or_default()
                .entry((key.clone(), w))
                .or_default();
            put(slot);
        }
    }
}

impl<A, B, K, O> BinaryOperator<A, B> for WindowJoin<A, B, K, O>
where
    A: Clone + 'static,
    B: Clone + 'static,
    K: Clone + Hash + Eq + 'static,
    O: Data,
{
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        let codec = &self.codec;
        let w = self.watermark;
        let records = self
            .state
            .values()
            .flat_map(|sides| sides.iter())
            .map(|((k, win), (a, b))| (hash_key(k), (w, k.clone(), *win, a.clone(), b.clone())))
            .collect();
        codec.write(records, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let codec = &self.codec;
        let mut watermark: Option<Timestamp> = None;
        for (w, k, win, a, b) in codec.read(state)? {
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
            let slot = self
                .state
                .entry(win.end)
                .or_default()
                .entry((k, win))
                .or_default();
            slot.0.extend(a);
            slot.1.extend(b);
        }
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        Ok(())
    }

    type Out = Output<O>;

    fn on_left(&mut self, batch: &mut Vec<A>, _out: &mut Output<O>) -> OpResult {
        for a in batch.drain(..) {
            let (k, t) = ((self.key_a)(&a), (self.ts_a)(&a));
            self.insert(k, t, |slot| slot.0.push(a.clone()));
        }
        Ok(())
    }

    fn on_right(&mut self, batch: &mut Vec<B>, _out: &mut Output<O>) -> OpResult {
        for b in batch.drain(..) {
            let (k, t) = ((self.key_b)(&b), (self.ts_b)(&b));
            self.insert(k, t, |slot| slot.1.push(b.clone()));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<O>) -> OpResult {
        self.watermark = self.watermark.max(watermark);
        while let Some(entry) = self.state.first_entry() {
            if *entry.key() > self.watermark {
                break;
            }
            for ((k, w), (left, right)) in entry.remove() {
                for a in &left {
                    for b in &right {
                        out.give((self.join)(&k, &w, a, b));
                    }
                }
            }
        }
        Ok(())
    }
}

struct IntervalJoin<A, B, K, O> {
    key_a: KeyFn<A, K>,
    key_b: KeyFn<B, K>,
    ts_a: TsFn<A>,
    ts_b: TsFn<B>,
    lower: i64,
    upper: i64,
    join: IntervalJoinFn<K, A, B, O>,
    left: FxHashMap<K, Vec<(Timestamp, A)>>,
    right: FxHashMap<K, Vec<(Timestamp, B)>>,
    watermark: Timestamp,
    codec: Codec<IntervalJoinRecord<K, A, B>>,
}

impl<A, B, K, O> BinaryOperator<A, B> for IntervalJoin<A, B, K, O>
where
    A: Clone + 'static,
    B: Clone + 'static,
    K: Clone + Hash + Eq + 'static,
    O: Data,
{
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        let codec = &self.codec;
        let w = self.watermark;
        let mut records: Vec<(u64, IntervalJoinRecord<K, A, B>)> = Vec::new();
        for (k, a) in &self.left {
            let b = self.right.get(k).cloned().unwrap_or_default();
            records.push((hash_key(k), (w, k.clone(), a.clone(), b)));
        }
        for (k, b) in &self.right {
            if !self.left.contains_key(k) {
                records.push((hash_key(k), (w, k.clone(), Vec::new(), b.clone())));
            }
        }
        codec.write(records, state)
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let codec = &self.codec;
        let mut watermark: Option<Timestamp> = None;
        for (w, k, a, b) in codec.read(state)? {
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
            if !a.is_empty() {
                self.left.entry(k.clone()).or_default().extend(a);
            }
            if !b.is_empty() {
                self.right.entry(k).or_default().extend(b);
            }
        }
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        Ok(())
    }

    type Out = Output<O>;

    fn on_left(&mut self, batch: &mut Vec<A>, out: &mut Output<O>) -> OpResult {
        for a in batch.drain(..) {
            let (k, t) = ((self.key_a)(&a), (self.ts_a)(&a));
            if t < self.watermark {
                continue;
            }
            let (lo, hi) = (t.saturating_add(self.lower), t.saturating_add(self.upper));
            for (tb, b) in self.right.get(&k).into_iter().flatten() {
                if (lo..=hi).contains(tb) {
                    out.give((self.join)(&k, &a, b));
                }
            }
            self.left.entry(k).or_default().push((t, a));
        }
        Ok(())
    }

    fn on_right(&mut self, batch: &mut Vec<B>, out: &mut Output<O>) -> OpResult {
        for b in batch.drain(..) {
            let (k, t) = ((self.key_b)(&b), (self.ts_b)(&b));
            if t < self.watermark {
                continue;
            }
            for (ta, a) in self.left.get(&k).into_iter().flatten() {
                let (lo, hi) = (ta.saturating_add(self.lower), ta.saturating_add(self.upper));
                if (lo..=hi).contains(&t) {
                    out.give((self.join)(&k, a, &b));
                }
            }
            self.right.entry(k).or_default().push((t, b));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<O>) -> OpResult {
        self.watermark = self.watermark.max(watermark);
        let (w, lower, upper) = (self.watermark, self.lower, self.upper);
        self.left.retain(|_, v| {
            v.retain(|(t, _)| t.saturating_add(upper) >= w);
            !v.is_empty()
        });
        self.right.retain(|_, v| {
            v.retain(|(t, _)| t.saturating_sub(lower) >= w);
            !v.is_empty()
        });
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
        let codec: Codec<WindowJoinRecord<K, A, B>> = Arc::new(RkyvRecords("window join"));
        let (key_a, key_b) = (self.key_fn(), other.key_fn());
        let (ts_a, ts_b): (TsFn<A>, TsFn<B>) = (Arc::new(time_a), Arc::new(time_b));
        let join: WindowJoinFn<K, A, B, O> = Arc::new(join);
        self.stream()
            .binary(other.stream(), name, move |_| WindowJoin {
                key_a: key_a.clone(),
                key_b: key_b.clone(),
                ts_a: ts_a.clone(),
                ts_b: ts_b.clone(),
                windows,
                join: join.clone(),
                state: BTreeMap::new(),
                watermark: Timestamp::MIN,
                scratch: Vec::new(),
                codec: codec.clone(),
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
        let codec: Codec<IntervalJoinRecord<K, A, B>> = Arc::new(RkyvRecords("interval join"));
        let (key_a, key_b) = (self.key_fn(), other.key_fn());
        let (ts_a, ts_b): (TsFn<A>, TsFn<B>) = (Arc::new(time_a), Arc::new(time_b));
        let join: IntervalJoinFn<K, A, B, O> = Arc::new(join);
        self.stream()
            .binary(other.stream(), name, move |_| IntervalJoin {
                key_a: key_a.clone(),
                key_b: key_b.clone(),
                ts_a: ts_a.clone(),
                ts_b: ts_b.clone(),
                lower,
                upper,
                join: join.clone(),
                left: FxHashMap::default(),
                right: FxHashMap::default(),
                watermark: Timestamp::MIN,
                codec: codec.clone(),
            })
    }
}

//! Window functions: what a pane's value is.
//!
//! An [`Aggregate`] folds a window's records into an accumulator one at a time
//! (incremental aggregation), merges accumulators when session windows merge, and turns
//! an accumulator into the pane's value. Built-ins: [`Sum`], [`Count`], [`Min`], [`Max`].
//! [`Collect`] keeps every record and hands them, with the key and window, to a function
//! (full-window processing, Flink's `ProcessWindowFunction`).
//!
//! The built-ins are generic over the value they aggregate:
//!
//! - [`Sum`] adds any [`Summable`] value: every primitive integer (wrapping on overflow, in
//!   debug and release builds alike, so a sum never panics) and `f32`/`f64` (plain
//!   addition). Implement [`Summable`] for your own numeric type.
//! - [`Min`] and [`Max`] take any `Ord + Clone` value (numbers, strings, tuples) and give
//!   `Option<V>`: `None` for an empty pane. There is no identity to fall back on for a
//!   general ordered type (Beam's generic `Min.naturalOrder()` gives null there too).
//! - [`Count`] gives a `u64`, the type of the rolling
//!   [`KeyedStream::count`](crate::KeyedStream::count) too.
//!
//! An empty pane (the on-time pane of a window whose records all went out in earlier
//! discarding panes) carries the value of an empty accumulator: 0 for a sum or a count,
//! `None` for a minimum or maximum.

use std::marker::PhantomData;
use std::sync::Arc;

use super::pane::Window;
use crate::summable::Summable;

/// An incremental window aggregate over records `T` with key `K`.
pub trait Aggregate<T, K>: Clone + 'static {
    /// The running state of one window.
    type Acc: Clone + 'static;
    /// A pane's value.
    type Out: Clone + 'static;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds a record.
    fn add(&self, acc: &mut Self::Acc, record: &T);
    /// Merges `other` into `acc` (session windows).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The value of a pane.
    fn result(&self, key: &K, window: &Window, acc: &Self::Acc) -> Self::Out;

    /// The value of a pane whose accumulator the window no longer needs (its last pane,
    /// or a discarding one), taking the accumulator: [`Aggregate::result`] by default. An
    /// aggregate whose value is made of its accumulator's parts (a `String`, a `Vec`)
    /// moves them here instead of cloning them: a window's firing then touches neither
    /// their memory nor the allocator, which is most of the cost of closing a window of
    /// many keys (docs/windows.md, "Window latency at close").
    #[inline]
    fn finish(&self, key: &K, window: &Window, acc: Self::Acc) -> Self::Out {
        self.result(key, window, &acc)
    }

    /// True if a keyed window aggregation may aggregate on each shard before the key
    /// exchange and send partial accumulators instead of records (pre-aggregation, Beam's
    /// combiner lifting; see docs/windows.md for the specs it applies to). An aggregate
    /// opts in by setting it: its accumulators then cross shards (they are rkyv-serializable
    /// like every accumulator the window operators keep), and [`Aggregate::merge`] must
    /// give the accumulator of the records of both, in any order. The built-ins [`Sum`],
    /// [`Count`], [`Min`], [`Max`] and [`MaxBy`](crate::window::MaxBy) opt in; [`Collect`]
    /// does not (its accumulator is the records). Off by default.
    ///
    /// ```
    /// use rill_operators::window::{Aggregate, Window};
    ///
    /// /// The mean of the values, merged from (count, total) pairs.
    /// #[derive(Clone)]
    /// struct Mean;
    /// impl Aggregate<(u32, f64), u32> for Mean {
    ///     type Acc = (u64, f64);
    ///     type Out = f64;
    ///     const PRE_AGGREGATE: bool = true;
    ///     fn create(&self) -> (u64, f64) {
    ///         (0, 0.0)
    ///     }
    ///     fn add(&self, acc: &mut (u64, f64), record: &(u32, f64)) {
    ///         *acc = (acc.0 + 1, acc.1 + record.1);
    ///     }
    ///     fn merge(&self, acc: &mut (u64, f64), other: (u64, f64)) {
    ///         *acc = (acc.0 + other.0, acc.1 + other.1);
    ///     }
    ///     fn result(&self, _: &u32, _: &Window, acc: &(u64, f64)) -> f64 {
    ///         acc.1 / acc.0.max(1) as f64
    ///     }
    /// }
    /// assert!(<Mean as Aggregate<(u32, f64), u32>>::PRE_AGGREGATE);
    /// ```
    const PRE_AGGREGATE: bool = false;
}

/// A value extractor shared by the built-in aggregates.
type ValueFn<T, V> = Arc<dyn Fn(&T) -> V + Send + Sync>;

/// The sum of `value(record)`, for any [`Summable`] value (integers wrap on overflow).
///
/// ```
/// # use rill_operators::doc_support::run_on_two_shards;
/// use rill_operators::prelude::*;
/// use rill_operators::window::Sum;
///
/// // (meter, kWh, event time in ms): energy per meter per second, as f64.
/// type Reading = (u32, f64, i64);
/// let out = run_on_two_shards(|df| {
///     df.vec_source("readings", vec![(1, 0.5, 100), (1, 0.25, 900), (1, 2.0, 1000)])
///         .key_by(|r: &Reading| r.0)
///         .window(WindowSpec::event_time(Windows::tumbling(1000), |r: &Reading| r.2))
///         .aggregate("energy", Sum::new(|r: &Reading| r.1))
///         .map("row", |p| (p.window.start, p.value))
///         .collect("out")
/// });
/// let mut got = out.take();
/// got.sort_by_key(|r| r.0);
/// assert_eq!(got, [(0, 0.75), (1000, 2.0)]);
/// ```
pub struct Sum<T, V> {
    value: ValueFn<T, V>,
}

impl<T, V> Sum<T, V> {
    /// Sums `value(record)`.
    pub fn new(value: impl Fn(&T) -> V + Send + Sync + 'static) -> Self {
        Sum {
            value: Arc::new(value),
        }
    }
}

impl<T, V> std::fmt::Debug for Sum<T, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sum").finish_non_exhaustive()
    }
}

impl<T, V> Clone for Sum<T, V> {
    fn clone(&self) -> Self {
        Sum {
            value: self.value.clone(),
        }
    }
}

impl<T: 'static, K, V: Summable> Aggregate<T, K> for Sum<T, V> {
    type Acc = V;
    type Out = V;
    const PRE_AGGREGATE: bool = true;
    fn create(&self) -> V {
        V::ZERO
    }
    #[inline]
    fn add(&self, acc: &mut V, record: &T) {
        *acc = acc.add((self.value)(record));
    }
    fn merge(&self, acc: &mut V, other: V) {
        *acc = acc.add(other);
    }
    fn result(&self, _: &K, _: &Window, acc: &V) -> V {
        *acc
    }
}

macro_rules! extremum_aggregate {
    ($(#[$doc:meta])* $name:ident, $keep:ident) => {
        $(#[$doc])*
        pub struct $name<T, V> {
            value: ValueFn<T, V>,
        }

        impl<T, V> $name<T, V> {
            /// Aggregates `value(record)`.
            pub fn new(value: impl Fn(&T) -> V + Send + Sync + 'static) -> Self {
                $name { value: Arc::new(value) }
            }
        }

        impl<T, V> std::fmt::Debug for $name<T, V> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<T, V> Clone for $name<T, V> {
            fn clone(&self) -> Self {
                $name { value: self.value.clone() }
            }
        }

        impl<T: 'static, K, V: Ord + Clone + 'static> Aggregate<T, K> for $name<T, V> {
            type Acc = Option<V>;
            type Out = Option<V>;
            const PRE_AGGREGATE: bool = true;
            fn create(&self) -> Option<V> {
                None
            }
            #[inline]
            fn add(&self, acc: &mut Option<V>, record: &T) {
                let v = (self.value)(record);
                *acc = Some(match acc.take() {
                    Some(a) => Ord::$keep(a, v),
                    None => v,
                });
            }
            fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
                *acc = match (acc.take(), other) {
                    (Some(a), Some(b)) => Some(Ord::$keep(a, b)),
                    (a, b) => a.or(b),
                };
            }
            fn result(&self, _: &K, _: &Window, acc: &Option<V>) -> Option<V> {
                acc.clone()
            }
        }
    };
}

extremum_aggregate!(
    /// The minimum of `value(record)`, for any `Ord + Clone` value; `None` for an empty
    /// pane (see the example of [`Max`]).
    Min,
    min
);
extremum_aggregate!(
    /// The maximum of `value(record)`, for any `Ord + Clone` value; `None` for an empty
    /// pane.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::{Max, Min};
    ///
    /// // (page, visitor, event time in ms): the alphabetically first and last visitor.
    /// type Visit = (u32, String, i64);
    /// let (first, last) = run_on_two_shards(|df| {
    ///     let visits = vec![(1, "kim".to_string(), 10), (1, "ada".into(), 20), (1, "lee".into(), 30)];
    ///     let windowed = df
    ///         .vec_source("visits", visits)
    ///         .key_by(|v: &Visit| v.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(1000), |v: &Visit| v.2));
    ///     let first = windowed.aggregate("first", Min::new(|v: &Visit| v.1.clone()));
    ///     let last = windowed.aggregate("last", Max::new(|v: &Visit| v.1.clone()));
    ///     (first.map("v", |p| p.value).collect("first"), last.map("v", |p| p.value).collect("last"))
    /// });
    /// assert_eq!(first.take(), [Some("ada".to_string())]);
    /// assert_eq!(last.take(), [Some("lee".to_string())]);
    /// ```
    Max,
    max
);

/// The number of records, as a `u64` (the type of the rolling
/// [`KeyedStream::count`](crate::KeyedStream::count) too).
pub struct Count<T>(PhantomData<fn(&T)>);

impl<T> Count<T> {
    /// Counts records.
    pub fn new() -> Self {
        Count(PhantomData)
    }
}

impl<T> Default for Count<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Count<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Count")
    }
}

impl<T> Clone for Count<T> {
    fn clone(&self) -> Self {
        Count(PhantomData)
    }
}

impl<T: 'static, K> Aggregate<T, K> for Count<T> {
    type Acc = u64;
    type Out = u64;
    const PRE_AGGREGATE: bool = true;
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, _: &K, _: &Window, acc: &u64) -> u64 {
        *acc
    }
}

/// A full-window function.
type ProcessFn<T, K, O> = Arc<dyn Fn(&K, &Window, &[T]) -> O + Send + Sync>;

/// Full-window processing: keeps the pane's records and calls `f(key, window, records)`.
pub struct Collect<T, K, O> {
    f: ProcessFn<T, K, O>,
}

impl<T, K, O> Collect<T, K, O> {
    /// Calls `f` with every record of a pane.
    pub fn new(f: impl Fn(&K, &Window, &[T]) -> O + Send + Sync + 'static) -> Self {
        Collect { f: Arc::new(f) }
    }
}

impl<T, K, O> std::fmt::Debug for Collect<T, K, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collect").finish_non_exhaustive()
    }
}

impl<T, K, O> Clone for Collect<T, K, O> {
    fn clone(&self) -> Self {
        Collect { f: self.f.clone() }
    }
}

impl<T: Clone + 'static, K: 'static, O: Clone + 'static> Aggregate<T, K> for Collect<T, K, O> {
    type Acc = Vec<T>;
    type Out = O;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, record: &T) {
        acc.push(record.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, mut other: Vec<T>) {
        acc.append(&mut other);
    }
    fn result(&self, key: &K, window: &Window, acc: &Vec<T>) -> O {
        (self.f)(key, window, acc)
    }
}

/// A windowed stream's `min` and `max` methods (keyed or not: the pane type `$pane` and
/// the bounds say which), written once for both and both streams.
macro_rules! extremum_methods {
    ($pane:ty, [$($bound:tt)*], ) => {};
    ($pane:ty, [$($bound:tt)*], $(#[$doc:meta])* $name:ident: $agg:ident; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name<V>(
            &self,
            name: &str,
            value: impl Fn(&T) -> V + Send + Sync + 'static,
        ) -> Stream<$pane>
        where
            $($bound)*
        {
            self.aggregate(name, $agg::new(value))
        }
        extremum_methods!($pane, [$($bound)*], $($rest)*);
    };
}
pub(crate) use extremum_methods;

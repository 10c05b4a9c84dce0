//! Window functions: what a pane's value is.
//!
//! An [`Aggregate`] folds a window's records into an accumulator one at a time
//! (incremental aggregation), merges accumulators when session windows merge, and turns
//! an accumulator into the pane's value. Built-ins: [`Sum`], [`Count`], [`Min`], [`Max`].
//! [`Collect`] keeps every record and hands them, with the key and window, to a function
//! (full-window processing, Flink's `ProcessWindowFunction`).
//!
//! An empty pane (the on-time pane of a window whose records all went out in earlier
//! discarding panes) carries the value of an empty accumulator: the identity of the
//! aggregate, e.g. 0 for a sum or a count, `i64::MAX` for a minimum (as in Beam).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::window::Window;

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
}

/// A value extractor shared by the built-in aggregates.
type ValueFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

macro_rules! fold_aggregate {
    ($(#[$doc:meta])* $name:ident, $identity:expr, $fold:expr) => {
        $(#[$doc])*
        pub struct $name<T> {
            value: ValueFn<T>,
        }

        impl<T> $name<T> {
            /// Aggregates `value(record)`.
            pub fn new(value: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
                $name { value: Arc::new(value) }
            }
        }

        impl<T> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name { value: self.value.clone() }
            }
        }

        impl<T: 'static, K> Aggregate<T, K> for $name<T> {
            type Acc = i64;
            type Out = i64;
            fn create(&self) -> i64 {
                $identity
            }
            #[inline]
            fn add(&self, acc: &mut i64, record: &T) {
                *acc = $fold(*acc, (self.value)(record));
            }
            fn merge(&self, acc: &mut i64, other: i64) {
                *acc = $fold(*acc, other);
            }
            fn result(&self, _: &K, _: &Window, acc: &i64) -> i64 {
                *acc
            }
        }
    };
}

fold_aggregate!(
    /// The sum of an `i64` value (wrapping on overflow).
    Sum,
    0,
    i64::wrapping_add
);
fold_aggregate!(
    /// The minimum of an `i64` value (`i64::MAX` when empty).
    Min,
    i64::MAX,
    i64::min
);
fold_aggregate!(
    /// The maximum of an `i64` value (`i64::MIN` when empty).
    Max,
    i64::MIN,
    i64::max
);

/// The number of records.
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
    type Acc = i64;
    type Out = i64;
    fn create(&self) -> i64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut i64, _: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn result(&self, _: &K, _: &Window, acc: &i64) -> i64 {
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

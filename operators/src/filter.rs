//! `filter`: keeps the records a predicate accepts.

use rill_runtime::{Data, OpResult, Operator, OperatorState, Output, Stream};

/// Drops records.
pub trait Filter<T> {
    /// Keeps the records for which `keep` returns true.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("numbers", (1..=6).collect())
    ///         .filter("even", |x: &i32| x % 2 == 0)
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [2, 4, 6]);
    /// ```
    fn filter<F>(&self, name: &str, keep: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static;
}

struct FilterOp<F>(F);

impl<T: Data, F: Fn(&T) -> bool> Operator<T> for FilterOp<F> {
    type Out = Output<T>;
    const STATE: OperatorState = OperatorState::Stateless;
    #[inline]
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<T>) -> OpResult {
        batch.retain(|r| (self.0)(r));
        out.give_vec(batch);
        Ok(())
    }
}

impl<T: Data> Filter<T> for Stream<T> {
    fn filter<F>(&self, name: &str, keep: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.unary(name, move |_| FilterOp(keep.clone()))
    }
}

//! `map`: one output record per input record.

use rill_runtime::{Data, OpResult, Operator, OperatorState, Output, Stream};

/// Transforms every record.
pub trait Map<T> {
    /// Applies `f` to every record.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("numbers", vec![1, 2, 3]).map("double", |x: i32| x * 2).collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [2, 4, 6]);
    /// ```
    fn map<U: Data, F>(&self, name: &str, f: F) -> Stream<U>
    where
        F: Fn(T) -> U + Clone + Send + Sync + 'static;
}

struct MapOp<F>(F);

impl<T, U: Data, F: Fn(T) -> U> Operator<T> for MapOp<F> {
    type Out = Output<U>;
    const STATE: OperatorState = OperatorState::Stateless;
    #[inline]
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<U>) -> OpResult {
        for r in batch.drain(..) {
            out.give((self.0)(r));
        }
        Ok(())
    }
}

impl<T: Data> Map<T> for Stream<T> {
    fn map<U: Data, F>(&self, name: &str, f: F) -> Stream<U>
    where
        F: Fn(T) -> U + Clone + Send + Sync + 'static,
    {
        self.unary(name, move |_| MapOp(f.clone()))
    }
}

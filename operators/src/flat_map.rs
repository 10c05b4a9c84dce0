//! `flat_map`: any number of output records per input record.

use rill_runtime::{Data, OpResult, Operator, OperatorState, Output, Stream};

/// Expands every record into zero or more records.
pub trait FlatMap<T> {
    /// Emits every item of `f(record)`.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    ///
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("lines", vec!["a b", "c"])
    ///         .flat_map("words", |line: &str| {
    ///             line.split(' ').map(String::from).collect::<Vec<_>>()
    ///         })
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, ["a", "b", "c"]);
    /// ```
    fn flat_map<U: Data, I, F>(&self, name: &str, f: F) -> Stream<U>
    where
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Clone + Send + Sync + 'static;
}

struct FlatMapOp<F>(F);

impl<T, U: Data, I: IntoIterator<Item = U>, F: Fn(T) -> I> Operator<T> for FlatMapOp<F> {
    type Out = Output<U>;
    const STATE: OperatorState = OperatorState::Stateless;
    #[inline]
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<U>) -> OpResult {
        for r in batch.drain(..) {
            for u in (self.0)(r) {
                out.give(u);
            }
        }
        Ok(())
    }
}

impl<T: Data> FlatMap<T> for Stream<T> {
    fn flat_map<U: Data, I, F>(&self, name: &str, f: F) -> Stream<U>
    where
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Clone + Send + Sync + 'static,
    {
        self.unary(name, move |_| FlatMapOp(f.clone()))
    }
}

//! `inspect`: looks at records without changing them.

use rill_runtime::{Data, OpResult, Operator, OperatorState, Output, ShardInfo, Stream};

/// Observes records as they pass.
pub trait Inspect<T> {
    /// Calls `f` with the shard and every record, then passes the records on.
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use rill_operators::prelude::*;
    ///
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = seen.clone();
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("numbers", vec![1, 2, 3])
    ///         .inspect("count", move |_shard, _x: &i32| {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         })
    ///         .collect("out")
    /// });
    /// assert_eq!(seen.load(Ordering::Relaxed), 3);
    /// assert_eq!(out.take().len(), 3);
    /// ```
    fn inspect<F>(&self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(ShardInfo, &T) + Clone + Send + Sync + 'static;
}

struct InspectOp<F> {
    f: F,
    shard: ShardInfo,
}

impl<T: Data, F: Fn(ShardInfo, &T)> Operator<T> for InspectOp<F> {
    type Out = Output<T>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<T>) -> OpResult {
        for r in batch.iter() {
            (self.f)(self.shard, r);
        }
        out.give_vec(batch);
        Ok(())
    }
}

impl<T: Data> Inspect<T> for Stream<T> {
    fn inspect<F>(&self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(ShardInfo, &T) + Clone + Send + Sync + 'static,
    {
        self.unary(name, move |shard| InspectOp {
            f: f.clone(),
            shard: shard.info(),
        })
    }
}

//! `filter`: keeps the records a predicate accepts.

use rill_runtime::{Data, OpResult, Operator, Output, Stream};

/// Drops records.
pub trait Filter<T> {
    /// Keeps the records for which `keep` returns true.
    fn filter<F>(&self, name: &str, keep: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static;
}

struct FilterOp<F>(F);

impl<T: Data, F: Fn(&T) -> bool> Operator<T> for FilterOp<F> {
    type Out = Output<T>;
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

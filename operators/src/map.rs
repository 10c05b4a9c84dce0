//! `map`: one output record per input record.

use rill_runtime::{Data, OpResult, Operator, Output, Stream};

/// Transforms every record.
pub trait Map<T> {
    /// Applies `f` to every record.
    fn map<U: Data, F>(&self, name: &str, f: F) -> Stream<U>
    where
        F: Fn(T) -> U + Clone + Send + Sync + 'static;
}

struct MapOp<F>(F);

impl<T, U: Data, F: Fn(T) -> U> Operator<T> for MapOp<F> {
    type Out = Output<U>;
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

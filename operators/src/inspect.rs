//! `inspect`: looks at records without changing them.

use rill_runtime::{Data, OpResult, Operator, Output, ShardInfo, Stream};

/// Observes records as they pass.
pub trait Inspect<T> {
    /// Calls `f` with the shard and every record, then passes the records on.
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
            shard,
        })
    }
}

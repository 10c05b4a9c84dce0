//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use rill_runtime::{Config, Data, OpResult, Operator, OperatorState, Output, Runtime, Stream};

/// A record that remembers where and in which order it was produced.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
pub struct Rec {
    pub src: u32,
    pub seq: u64,
    pub key: u64,
}

/// `per_shard` records on every shard, keys cycling through `keys`.
pub fn records(shard: usize, per_shard: u64, keys: u64) -> impl Iterator<Item = Rec> {
    (0..per_shard).map(move |seq| Rec {
        src: shard as u32,
        seq,
        key: (seq * 7919 + shard as u64 * 104_729) % keys,
    })
}

pub fn runtime(shards: usize) -> Runtime {
    Runtime::new(Config::default().shards(shards).pin(false)).expect("runtime starts")
}

pub fn runtime_with(config: Config) -> Runtime {
    Runtime::new(config).expect("runtime starts")
}

/// A map operator built from the runtime's interface alone.
pub struct MapOp<F>(pub F);

impl<T, U: Data, F: FnMut(T) -> U> Operator<T> for MapOp<F> {
    type Out = Output<U>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Output<U>) -> OpResult {
        for r in batch.drain(..) {
            out.give((self.0)(r));
        }
        Ok(())
    }
}

pub fn map<T: Data, U: Data>(
    s: &Stream<T>,
    name: &str,
    f: impl Fn(T) -> U + Clone + Send + Sync + 'static,
) -> Stream<U> {
    s.unary(name, move |_| MapOp(f.clone()))
}

/// Copies the directory tree `from` to `to` (replaced).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

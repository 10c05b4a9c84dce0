//! Graph shapes beyond a straight line: union of several streams, a two-input operator,
//! and an operator with a side output — each across exchanges, on 1 and 3 shards.

mod common;

use std::collections::BTreeMap;

use common::{map, runtime};
use rill_runtime::{
    BinaryOperator, Dataflow, OpResult, Operator, OperatorState, Output, Partitioning, Timestamp,
    MAX_WATERMARK,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[test]
fn union_merges_streams_and_ends_once_all_end() {
    for shards in [1, 3] {
        let mut df = Dataflow::new();
        let a = df.vec_source("a", (0u64..1000).collect());
        let b = df.vec_source("b", (1000u64..1500).collect());
        let c = df
            .iter_source("c", |s| {
                (0..if s.index == 0 { 10u64 } else { 0 }).map(|n| n + 5000)
            })
            .exchange(Partitioning::Rebalance);
        let out = a
            .union(&[b.exchange(Partitioning::by_key(|n: &u64| *n)), c])
            .collect("out");
        let report = runtime(shards).run(df).expect("job succeeds");
        let mut got = out.take();
        got.sort();
        let mut expect: Vec<u64> = (0..1500).chain(5000..5010).collect();
        expect.sort();
        assert_eq!(got, expect);
        assert_eq!(report.operator("union").unwrap().total(), 1510);
    }
}

/// Joins counts per key from two inputs once both have ended.
#[derive(Default)]
struct CountBoth {
    left: BTreeMap<u64, u64>,
    right: BTreeMap<u64, u64>,
    watermark: Timestamp,
}

impl BinaryOperator<u64, (u64, String)> for CountBoth {
    type Out = Output<(u64, u64, u64)>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;
    fn on_left(&mut self, batch: &mut Vec<u64>, _out: &mut Self::Out) -> OpResult {
        for k in batch.drain(..) {
            *self.left.entry(k).or_default() += 1;
        }
        Ok(())
    }
    fn on_right(&mut self, batch: &mut Vec<(u64, String)>, _out: &mut Self::Out) -> OpResult {
        for (k, _) in batch.drain(..) {
            *self.right.entry(k).or_default() += 1;
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Self::Out) -> OpResult {
        self.watermark = watermark;
        Ok(())
    }
    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        assert_eq!(self.watermark, MAX_WATERMARK);
        let keys: std::collections::BTreeSet<u64> =
            self.left.keys().chain(self.right.keys()).copied().collect();
        for k in keys {
            out.give((
                k,
                self.left.get(&k).copied().unwrap_or(0),
                self.right.get(&k).copied().unwrap_or(0),
            ));
        }
        Ok(())
    }
}

#[test]
fn a_two_input_operator_sees_both_inputs_partitioned_alike() {
    for shards in [1, 3] {
        let mut df = Dataflow::new();
        let left = df
            .vec_source("left", (0u64..3000).map(|n| n % 50).collect())
            .exchange(Partitioning::by_key(|k: &u64| *k));
        let right = df
            .vec_source(
                "right",
                (0u64..700).map(|n| (n % 70, format!("r{n}"))).collect(),
            )
            .exchange(Partitioning::by_key(|r: &(u64, String)| r.0));
        let out = left
            .binary(&right, "count both", |_| CountBoth::default())
            .collect("out");
        runtime(shards).run(df).expect("job succeeds");
        let mut got = out.take();
        got.sort();
        let expect: Vec<(u64, u64, u64)> = (0..70)
            .map(|k| (k, if k < 50 { 60 } else { 0 }, 10))
            .collect();
        assert_eq!(got, expect);
    }
}

struct SplitEvenOdd;

impl Operator<u64> for SplitEvenOdd {
    type Out = (Output<u64>, Output<String>);
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> OpResult {
        for n in batch.drain(..) {
            if n % 2 == 0 {
                out.0.give(n);
            } else {
                out.1.give(format!("odd {n}"));
            }
        }
        Ok(())
    }
}

#[test]
fn a_side_output_carries_its_own_type() {
    for shards in [1, 3] {
        let mut df = Dataflow::new();
        let (even, odd) = df
            .vec_source("n", (0u64..1000).collect())
            .exchange(Partitioning::Rebalance)
            .unary_split("split", |_| SplitEvenOdd);
        let even_out = map(&even, "half", |n: u64| n / 2).collect("even");
        let odd_out = odd.exchange(Partitioning::Broadcast).collect("odd");
        let report = runtime(shards).run(df).expect("job succeeds");
        let mut halves = even_out.take();
        halves.sort();
        assert_eq!(halves, (0..500).collect::<Vec<u64>>());
        assert_eq!(odd_out.take().len(), 500 * shards);
        assert_eq!(report.operator("split").unwrap().total(), 1000);
    }
}

/// A fallible factory that fails on one shard fails the job's start with an error naming
/// the operator, the shard and the factory's message (a sink and a source alike).
#[test]
fn a_factory_that_fails_names_its_operator_and_shard() {
    use rill_runtime::{Error, Failure, IterSource, OpResult, Sink};

    struct Discard;
    impl Sink<u64> for Discard {
        fn on_batch(&mut self, batch: &mut Vec<u64>) -> OpResult {
            batch.clear();
            Ok(())
        }
    }
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0u64..100).collect())
        .try_sink("broker", |shard| match shard.index {
            1 => Err(Failure::new("broker unreachable")),
            _ => Ok(Discard),
        });
    let err = runtime(2).run(df).expect_err("the sink cannot be built");
    assert!(
        matches!(&err, Error::OperatorBuild { operator, shard: 1, message, .. }
            if operator == "broker" && message == "broker unreachable"),
        "{err}"
    );

    let mut df = Dataflow::new();
    df.try_source("topic", |shard| match shard.index {
        0 => Err(Failure::new("no such topic")),
        _ => Ok(IterSource::new(0u64..10, shard.info())),
    })
    .discard("out");
    let err = runtime(2).run(df).expect_err("the source cannot be built");
    assert_eq!(
        err.to_string(),
        "operator 'topic' could not be built on shard 0: no such topic"
    );
}

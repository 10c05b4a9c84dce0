//! The same dataflow gives the same results on 1, 2 and 4 shards, checked against a plain
//! sequential computation (the oracle), for random inputs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_runtime::{Config, Dataflow, Partitioning, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime(shards: usize) -> Runtime {
    Runtime::new(
        Config::default()
            .shards(shards)
            .pin(false)
            .batch_records(16),
    )
    .expect("runtime starts")
}

/// Word count: the final (largest) rolling count of every word, and every rolling update.
fn word_count(lines: &[String], shards: usize) -> (BTreeMap<String, u64>, usize) {
    let mut df = Dataflow::new();
    let out = df
        .vec_source("lines", lines.to_vec())
        .flat_map("split", |l: String| {
            l.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .filter("non-empty", |w: &String| !w.is_empty())
        .key_by(|w: &String| w.clone())
        .count("count")
        .collect("out");
    runtime(shards).run(df).expect("job succeeds");
    let updates = out.take();
    let mut finals = BTreeMap::new();
    for (w, c) in &updates {
        let e = finals.entry(w.clone()).or_insert(0);
        *e = (*e).max(*c);
    }
    (finals, updates.len())
}

fn oracle(lines: &[String]) -> (BTreeMap<String, u64>, usize) {
    let mut counts = BTreeMap::new();
    let mut updates = 0;
    for l in lines {
        for w in l.split_whitespace() {
            *counts.entry(w.to_lowercase()).or_insert(0) += 1;
            updates += 1;
        }
    }
    (counts, updates)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn word_count_matches_oracle_on_any_shard_count(
        lines in prop::collection::vec("[a-eA-E ]{0,30}", 0..200)
    ) {
        let expect = oracle(&lines);
        for shards in [1, 2, 4] {
            prop_assert_eq!(word_count(&lines, shards), expect.clone());
        }
    }

    #[test]
    fn rolling_sum_min_max_match_oracle(
        values in prop::collection::vec((0u8..20, -1000i64..1000), 0..500)
    ) {
        let mut sums: BTreeMap<u8, i64> = BTreeMap::new();
        let mut mins: BTreeMap<u8, i64> = BTreeMap::new();
        let mut maxs: BTreeMap<u8, i64> = BTreeMap::new();
        for &(k, v) in &values {
            *sums.entry(k).or_insert(0) += v;
            let m = mins.entry(k).or_insert(v);
            *m = (*m).min(v);
            let m = maxs.entry(k).or_insert(v);
            *m = (*m).max(v);
        }
        for shards in [1, 3] {
            let mut df = Dataflow::new();
            let keyed = df.vec_source("values", values.clone()).key_by(|r: &(u8, i64)| r.0);
            let sum = keyed.sum("sum", |r: &(u8, i64)| r.1).collect("sum-out");
            let min = keyed.min("min", |r: &(u8, i64)| r.1).collect("min-out");
            let max = keyed.max("max", |r: &(u8, i64)| r.1).collect("max-out");
            runtime(shards).run(df).expect("job succeeds");
            // A key's updates are emitted in order on the key's one shard, so its last
            // update is the aggregate over all its records.
            let finals = |c: &rill_runtime::Collected<(u8, i64)>| -> BTreeMap<u8, i64> {
                c.take_per_shard().into_iter().flatten().collect()
            };
            prop_assert_eq!(finals(&sum), sums.clone());
            prop_assert_eq!(finals(&min), mins.clone());
            prop_assert_eq!(finals(&max), maxs.clone());
        }
    }
}

#[test]
fn exchanges_compose_with_operators() {
    // map -> rebalance -> filter -> broadcast -> inspect: every shard sees every kept record.
    let shards = 3;
    let mut df = Dataflow::new();
    let out = df
        .vec_source("n", (0u32..3000).collect())
        .map("square", |n: u32| n as u64 * n as u64)
        .exchange(Partitioning::Rebalance)
        .filter("even", |n: &u64| n % 2 == 0)
        .exchange(Partitioning::Broadcast)
        .inspect("look", |s, n: &u64| assert!(s.index < 3 && n % 2 == 0))
        .collect("out");
    let report = runtime(shards).run(df).expect("job succeeds");
    let per_shard = out.take_per_shard();
    assert_eq!(per_shard.len(), shards);
    for mut got in per_shard {
        got.sort();
        let expect: Vec<u64> = (0u64..3000).map(|n| n * n).filter(|n| n % 2 == 0).collect();
        assert_eq!(got, expect);
    }
    assert_eq!(report.operator("square").unwrap().total(), 3000);
    assert_eq!(report.operator("even").unwrap().total(), 3000);
    assert_eq!(report.operator("look").unwrap().total(), 1500 * 3);
}

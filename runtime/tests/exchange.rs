//! Exchange strategies on 1, 2 and 4 shards: where records go, that nothing is lost or
//! duplicated, and that order is kept per channel.

mod common;

use std::collections::HashMap;

use common::{records, runtime, Rec};
use rill_runtime::{shard_of_key, Dataflow, Partitioning};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PER_SHARD: u64 = 5_000;

fn run(shards: usize, partitioning: Partitioning<Rec>) -> Vec<Vec<Rec>> {
    let mut df = Dataflow::new();
    let out = df
        .iter_source("gen", |s| records(s.index, PER_SHARD, 1_000))
        .exchange(partitioning)
        .collect("out");
    runtime(shards).run(df).expect("job succeeds");
    let mut per_shard = out.take_per_shard();
    per_shard.resize_with(shards, Vec::new);
    per_shard
}

fn all_input(shards: usize) -> Vec<Rec> {
    let mut v: Vec<Rec> = (0..shards)
        .flat_map(|s| records(s, PER_SHARD, 1_000))
        .collect();
    v.sort();
    v
}

/// Within what one consumer got, the records of each producer are in production order.
fn assert_order_per_channel(received: &[Rec]) {
    let mut last: HashMap<u32, u64> = HashMap::new();
    for r in received {
        if let Some(prev) = last.insert(r.src, r.seq) {
            assert!(
                prev < r.seq,
                "record {r:?} arrived after seq {prev} of its producer"
            );
        }
    }
}

#[test]
fn key_hash_places_every_key_on_its_shard() {
    for shards in [1, 2, 4] {
        let got = run(shards, Partitioning::by_key(|r: &Rec| r.key));
        for (shard, recs) in got.iter().enumerate() {
            assert_order_per_channel(recs);
            for r in recs {
                assert_eq!(
                    shard_of_key(&r.key, shards),
                    shard,
                    "{r:?} on shard {shard}"
                );
            }
        }
        let mut all: Vec<Rec> = got.into_iter().flatten().collect();
        all.sort();
        assert_eq!(
            all,
            all_input(shards),
            "{shards} shards: lost or duplicated records"
        );
    }
}

#[test]
fn broadcast_gives_every_shard_every_record() {
    for shards in [1, 2, 4] {
        let got = run(shards, Partitioning::Broadcast);
        for recs in got {
            assert_order_per_channel(&recs);
            let mut recs = recs;
            recs.sort();
            assert_eq!(recs, all_input(shards));
        }
    }
}

#[test]
fn rebalance_spreads_evenly() {
    for shards in [1, 2, 4] {
        let got = run(shards, Partitioning::Rebalance);
        for recs in &got {
            assert_order_per_channel(recs);
            // Each producer sends round robin: every consumer gets PER_SHARD / shards
            // records (rounded either way) from each producer.
            let expect = PER_SHARD as usize;
            assert!(
                recs.len().abs_diff(expect) <= shards,
                "{} records on a shard, expected about {expect}",
                recs.len()
            );
        }
        let mut all: Vec<Rec> = got.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, all_input(shards));
    }
}

#[test]
fn forward_keeps_records_on_their_shard_in_order() {
    for shards in [1, 2, 4] {
        let got = run(shards, Partitioning::Forward);
        for (shard, recs) in got.iter().enumerate() {
            let expect: Vec<Rec> = records(shard, PER_SHARD, 1_000).collect();
            assert_eq!(recs, &expect);
        }
    }
}

#[test]
fn key_placement_is_the_same_across_runs() {
    let a = run(4, Partitioning::by_key(|r: &Rec| r.key));
    let b = run(4, Partitioning::by_key(|r: &Rec| r.key));
    let keys = |v: &Vec<Vec<Rec>>| -> Vec<Vec<u64>> {
        v.iter()
            .map(|recs| {
                let mut k: Vec<u64> = recs.iter().map(|r| r.key).collect();
                k.sort();
                k.dedup();
                k
            })
            .collect()
    };
    assert_eq!(keys(&a), keys(&b));
}

#[test]
fn chained_exchanges_and_empty_inputs_terminate() {
    for shards in [1, 2, 4] {
        // Only shard 0 has data; the others end at once.
        let mut df = Dataflow::new();
        let out = df
            .iter_source("gen", |s| {
                records(s.index, if s.index == 0 { 100 } else { 0 }, 10)
            })
            .exchange(Partitioning::by_key(|r: &Rec| r.key))
            .exchange(Partitioning::Rebalance)
            .exchange(Partitioning::Broadcast)
            .collect("out");
        let report = runtime(shards).run(df).expect("job succeeds");
        assert_eq!(out.take().len(), 100 * shards);
        assert_eq!(report.operator("gen").unwrap().total(), 100);

        // No data anywhere.
        let mut df = Dataflow::new();
        let out = df
            .iter_source("gen", |s| records(s.index, 0, 10))
            .exchange(Partitioning::by_key(|r: &Rec| r.key))
            .collect("out");
        let report = runtime(shards).run(df).expect("job succeeds");
        assert!(out.take().is_empty());
        assert_eq!(report.operator("out").unwrap().records, vec![0; shards]);
    }
}

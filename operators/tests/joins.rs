//! Window join and interval join against a brute-force reference over random inputs, on
//! 1 and 3 shards; and a keyed process function with event-time timers.

use proptest::prelude::*;
use rill_operators::prelude::*;
use rill_runtime::{Config, Dataflow, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (key, event time, id)
type R = (u8, i64, u32);

fn inputs() -> impl Strategy<Value = (Vec<R>, Vec<R>)> {
    let side = prop::collection::vec((0u8..4, 0i64..60, any::<u32>()), 0..40);
    (side.clone(), side)
}

fn run_join(left: &[R], right: &[R], shards: usize, interval: bool) -> Vec<(u32, u32)> {
    let mut df = Dataflow::new();
    let l = df.vec_source("left", left.to_vec()).key_by(|r: &R| r.0);
    let r = df.vec_source("right", right.to_vec()).key_by(|r: &R| r.0);
    let joined = if interval {
        l.interval_join(
            &r,
            "join",
            -3,
            5,
            |a: &R| a.1,
            |b: &R| b.1,
            |_, a, b| (a.2, b.2),
        )
    } else {
        l.window_join(
            &r,
            "join",
            Windows::tumbling(10),
            |a: &R| a.1,
            |b: &R| b.1,
            |_, _, a, b| (a.2, b.2),
        )
    };
    let out = joined.collect("out");
    Runtime::new(Config::default().shards(shards).pin(false))
        .unwrap()
        .run(df)
        .unwrap();
    let mut got = out.take();
    got.sort();
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn joins_match_brute_force((left, right) in inputs(), shards in 1usize..4) {
        let mut window = Vec::new();
        let mut interval = Vec::new();
        for a in &left {
            for b in &right {
                if a.0 == b.0 && a.1.div_euclid(10) == b.1.div_euclid(10) {
                    window.push((a.2, b.2));
                }
                if a.0 == b.0 && (a.1 - 3..=a.1 + 5).contains(&b.1) {
                    interval.push((a.2, b.2));
                }
            }
        }
        window.sort();
        interval.sort();
        prop_assert_eq!(run_join(&left, &right, shards, false), window);
        prop_assert_eq!(run_join(&left, &right, shards, true), interval);
    }
}

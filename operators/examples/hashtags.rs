//! The seed documents' hashtag count: extract hashtags from posts, key by tag, count per
//! tag. Posts are generated deterministically on every shard.
//!
//! `cargo run --release -p rill-operators --example hashtags [-- POSTS]`

use std::collections::HashMap;

use rill_operators::prelude::*;
use rill_runtime::{Config, Dataflow, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TAGS: &[&str] = &[
    "rust",
    "streaming",
    "flink",
    "beam",
    "dataflow",
    "latency",
    "throughput",
    "watermark",
];

/// A deterministic post: a few words and one to three hashtags drawn from `TAGS` with a
/// skew towards the first ones.
fn post(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tags = 1 + next() % 3;
    let mut s = format!("post {n} says hello");
    for _ in 0..tags {
        let r = next() % 64;
        let idx = (r * r / 512) as usize % TAGS.len();
        s.push_str(" #");
        s.push_str(TAGS[idx]);
    }
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let posts: u64 = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("POSTS must be a number: {e}"))?,
        None => 2_000_000,
    };
    let mut df = Dataflow::new();
    let counts = df
        .iter_source("posts", move |s| {
            (s.index as u64..posts).step_by(s.shards).map(post)
        })
        .flat_map("extract hashtags", |p: String| {
            p.split_whitespace()
                .filter_map(|w| w.strip_prefix('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .key_by(|tag: &String| tag.clone())
        .count("count per tag")
        .collect("counts");

    let runtime = Runtime::new(Config::default().pin(false))?;
    let report = runtime.run(df)?;

    let mut totals: HashMap<String, u64> = HashMap::new();
    for (tag, count) in counts.take() {
        let t = totals.entry(tag).or_default();
        *t = (*t).max(count);
    }
    let mut rows: Vec<_> = totals.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("{:<12} {:>10}", "hashtag", "count");
    for (tag, count) in rows {
        println!("#{tag:<11} {count:>10}");
    }
    println!("\n{report}");
    Ok(())
}

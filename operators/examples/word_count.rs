//! Word count embedded in a program: split lines into words, key by word, count.
//!
//! `cargo run --release -p rill-operators --example word_count [-- FILE]` counts the words
//! of FILE (or of a built-in text) on every core and prints the ten most frequent.

use std::collections::HashMap;

use rill_operators::prelude::*;
use rill_runtime::{Config, Dataflow, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEXT: &str = "the quick brown fox jumps over the lazy dog
a stream is an unbounded sequence of records and the dataflow runs forever
the watermark tells the window when the input is complete";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = match std::env::args().nth(1) {
        Some(path) => {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => TEXT.repeat(10_000),
    };
    let lines: Vec<String> = text.lines().map(str::to_string).collect();

    let mut df = Dataflow::new();
    let counts = df
        .vec_source("lines", lines)
        .flat_map("split", |line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .key_by(|w: &String| w.clone())
        .count("count")
        .collect("counts");

    let runtime = Runtime::new(Config::default().pin(false))?;
    let report = runtime.run(df)?;

    let mut totals: HashMap<String, u64> = HashMap::new();
    for (word, count) in counts.take() {
        let t = totals.entry(word).or_default();
        *t = (*t).max(count);
    }
    let mut top: Vec<(String, u64)> = totals.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in top.iter().take(10) {
        println!("{count:>10}  {word}");
    }
    println!("\n{report}");
    Ok(())
}

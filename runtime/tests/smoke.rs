use rill_runtime::{Config, Dataflow, Partitioning, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[test]
fn smoke() {
    let mut df = Dataflow::new();
    let out = df
        .vec_source("numbers", (0u64..100_000).collect())
        .exchange(Partitioning::by_key(|n: &u64| *n))
        .collect("out");
    let rt = Runtime::new(Config::default().shards(2).pin(false)).unwrap();
    let report = rt.run(df).unwrap();
    println!("{report}");
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (0..100_000).collect::<Vec<_>>());
}

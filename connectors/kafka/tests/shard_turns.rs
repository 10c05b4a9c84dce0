//! The Kafka sinks never stop their shard: with the broker cut off, the producer's queue
//! full and (exactly once) a commit that cannot finish, another chain on the same shard
//! still answers at once; once the broker is back the sink's source goes on.
//!
//! (Before: the sinks looped on `poll(10 ms)` while the queue was full and committed on
//! the shard, so the other chain waited for the broker too.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_kafka::admin::ensure_topic;
use rill_kafka::testing::{free_port, Proxy, TestBroker};
use rill_kafka::{kafka_sink, KafkaSinkConfig};
use rill_operators::Inspect;
use rill_runtime::checkpoint::{find_latest, Checkpointing};
use rill_runtime::subscription::TryRecvError;
use rill_runtime::{Config, Dataflow, Runtime};

/// Waits for `done` at most `limit` (a bounded wait, not a synchronisation: it fails the
/// test instead of hanging).
fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn the_shard_turns_while_the_broker_is_away(exactly_once: bool) {
    let port = free_port();
    let proxy = Proxy::new(port);
    let _broker = TestBroker::start_advertising(port, proxy.port());
    proxy.restore();
    let b = format!("127.0.0.1:{}", proxy.port());
    let topic = format!("turns-{exactly_once}");
    assert_eq!(ensure_topic(&b, &topic, 1).unwrap(), 1);
    let dir = std::env::temp_dir().join(format!(
        "rill-kafka-turns-{exactly_once}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);

    let mut df = Dataflow::new();
    // Chain 1: numbers without end into the Kafka sink, whose queue holds 100 records.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let numbers = df
        .iter_source("numbers", |_| 0u64..)
        .inspect("count", move |_, _: &u64| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
    let mut config = KafkaSinkConfig::new(b.clone(), topic.clone())
        .property("queue.buffering.max.messages", "100")
        .property("message.timeout.ms", "60000")
        .property("transaction.timeout.ms", "60000");
    if exactly_once {
        config = config.exactly_once(format!("turns-{}", std::process::id()));
    }
    kafka_sink(&numbers, "out", config, |v: &u64, buf: &mut Vec<u8>| {
        buf.extend_from_slice(v.to_string().as_bytes())
    })
    .unwrap();
    // Chain 2, on the same (only) shard: a host's input echoed back to it.
    let (input, handle) = df.input::<u64>("echo-in");
    let mut echo = input.subscribe("echo-out", 16);

    let job = Runtime::new(
        Config::default()
            .shards(1)
            .pin(false)
            .checkpointing(Checkpointing::new(&dir).interval(Some(Duration::from_millis(50)))),
    )
    .unwrap()
    .spawn(df)
    .unwrap();
    let latest = || find_latest(&dir).checkpoint().unwrap_or(0);
    within(Duration::from_secs(30), "records and a checkpoint", || {
        seen.load(Ordering::Relaxed) > 1_000 && latest() >= 2
    });

    proxy.cut();
    // Round trips through the other chain for 3 s while the broker is away: the queue
    // fills at once, and checkpoints go on completing (exactly once: their commits hang).
    let start = Instant::now();
    let mut trips = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        handle.send(trips).unwrap();
        let mut got = None;
        within(
            Duration::from_secs(1),
            "the other chain of the shard answers",
            || match echo.try_recv() {
                Ok(v) => {
                    got = Some(v);
                    true
                }
                Err(TryRecvError::Empty) => false,
                Err(e) => panic!("{e:?}"),
            },
        );
        assert_eq!(got, Some(trips));
        trips += 1;
    }
    // The sink held its source back (backpressure, not a sleep): few records came in the
    // last second of the outage.
    let before = seen.load(Ordering::Relaxed);
    let mut more = 0;
    for _ in 0..50 {
        handle.send(trips).unwrap();
        within(Duration::from_secs(1), "the echo", || {
            echo.try_recv().is_ok()
        });
        trips += 1;
        more = seen.load(Ordering::Relaxed) - before;
    }
    assert!(
        more <= 2_048,
        "{more} records went to a sink whose queue is full"
    );

    proxy.restore();
    within(Duration::from_secs(60), "the sink's source goes on", || {
        seen.load(Ordering::Relaxed) > before + 10_000
    });
    let _ = job.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_at_least_once_sink_does_not_stop_its_shard_when_the_broker_is_away() {
    the_shard_turns_while_the_broker_is_away(false);
}

#[test]
fn the_exactly_once_sink_does_not_stop_its_shard_when_the_broker_is_away() {
    the_shard_turns_while_the_broker_is_away(true);
}

//! The at-least-once sink against Apache Kafka: at a barrier it does not wait for the
//! broker, it keeps what the broker has not acknowledged in the checkpoint, and a
//! restored job sends that again (nothing is lost when the broker never saw it).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_kafka::admin::{ensure_topic, read_topic, TopicWriter};
use rill_kafka::testing::{free_port, Proxy, TestBroker};
use rill_kafka::{kafka_sink, kafka_source, KafkaRecord, KafkaSinkConfig, KafkaSourceConfig};
use rill_operators::Inspect;
use rill_runtime::checkpoint::{find_latest, Checkpointing};
use rill_runtime::{Config, Dataflow, Runtime};

fn parse(r: &KafkaRecord<'_>) -> Result<u64, String> {
    let text = std::str::from_utf8(r.payload.unwrap_or_default()).map_err(|e| e.to_string())?;
    text.parse::<u64>().map_err(|e| format!("{text:?}: {e}"))
}

/// The job: the source (everything fetched at once), slowed down to `pace` per record, to
/// the sink.
fn job(brokers: &str, seen: Arc<AtomicU64>, pace: Duration) -> Dataflow {
    let mut df = Dataflow::new();
    let config = KafkaSourceConfig::new(brokers.to_string(), &["unacked-in"])
        .until_end(true)
        .broker_timeout(Duration::from_secs(60))
        .event_time(|v: &u64| *v as i64);
    let source = kafka_source(&mut df, "in", config, parse).unwrap();
    let records = source.records.inspect("count", move |_, _: &u64| {
        seen.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pace);
    });
    kafka_sink(
        &records,
        "out",
        KafkaSinkConfig::new(brokers.to_string(), "unacked-out")
            .property("message.timeout.ms", "60000"),
        |v: &u64, buf: &mut Vec<u8>| buf.extend_from_slice(v.to_string().as_bytes()),
    )
    .unwrap();
    df
}

#[test]
fn records_unacknowledged_at_a_barrier_are_sent_again_after_a_restore() {
    let port = free_port();
    let proxy = Proxy::new(port);
    let _broker = TestBroker::start_advertising(port, proxy.port());
    proxy.restore();
    let b = format!("127.0.0.1:{}", proxy.port());
    // The first run is slow (100 us a record: 5 s per shard for all of them), so that it
    // is still running when it is cancelled however loaded the machine; the restored run
    // goes at full speed.
    let n = 100_000u64;
    assert_eq!(ensure_topic(&b, "unacked-in", 2).unwrap(), 2);
    assert_eq!(ensure_topic(&b, "unacked-out", 2).unwrap(), 2);
    let w = TopicWriter::new(&b, "unacked-in").unwrap();
    for i in 0..n {
        w.send((i % 2) as i32, None, i.to_string().as_bytes())
            .unwrap();
    }
    w.flush().unwrap();
    let dir = std::env::temp_dir().join(format!("rill-kafka-unacked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpoints = || {
        Config::default()
            .shards(2)
            .pin(false)
            .checkpointing(Checkpointing::new(&dir).interval(Some(Duration::from_millis(50))))
    };
    let seen = Arc::new(AtomicU64::new(0));
    let handle = Runtime::new(checkpoints())
        .unwrap()
        .spawn(job(&b, seen.clone(), Duration::from_micros(100)))
        .unwrap();
    let start = Instant::now();
    while seen.load(Ordering::Relaxed) < 500 {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The broker goes away: the source goes on from what it fetched, the sink's records
    // stay unacknowledged, and checkpoints still complete (no barrier waits for them).
    proxy.cut();
    let cut_at = seen.load(Ordering::Relaxed);
    let latest = || find_latest(&dir).checkpoint().unwrap_or(0);
    let before = latest();
    let start = Instant::now();
    while latest() < before + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no checkpoint completed while the broker was away"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let processed = seen.load(Ordering::Relaxed);
    assert!(
        processed > cut_at,
        "nothing was processed while the broker was away"
    );
    assert!(processed < n, "everything was processed before the cancel");
    // A crash: the job's producers go away with what they hold.
    let _ = handle.cancel();
    proxy.restore();
    Runtime::new(checkpoints())
        .unwrap()
        .run(job(&b, Arc::new(AtomicU64::new(0)), Duration::ZERO))
        .unwrap();
    let written: BTreeSet<u64> = read_topic(&b, "unacked-out")
        .unwrap()
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
        .collect();
    let missing: Vec<u64> = (0..n).filter(|i| !written.contains(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "missing (the first 10): {missing:?}; {cut_at} processed at the cut, {processed} at \
         the cancel"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

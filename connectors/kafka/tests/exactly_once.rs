//! Kafka transactions against Apache Kafka (the broker the tests share): a zombie
//! producer is fenced and its records never reach a `read_committed` reader, the epoch
//! marker commits with its transaction, and a job with the exactly-once sink and
//! checkpoints writes every record once.

use std::time::Duration;

use rill_kafka::admin::{ensure_topic, TopicWriter};
use rill_kafka::testing::{read_text_sorted, TestBroker};
use rill_kafka::{
    kafka_sink, kafka_source, KafkaRecord, KafkaSinkConfig, KafkaSourceConfig, Marker,
    TransactionalProducer,
};
use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::{Config, Dataflow, Runtime};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_zombie_is_fenced_and_only_committed_records_are_read() {
    let b = TestBroker::shared().brokers();
    assert_eq!(ensure_topic(&b, "fenced", 2).unwrap(), 2);
    let zombie = TransactionalProducer::new(&b, "fenced", "job-a-0", &[], TIMEOUT).unwrap();
    assert_eq!(zombie.committed_marker().unwrap(), None);
    zombie.begin().unwrap();
    zombie.send(Some(0), b"zombie").unwrap();
    zombie.flush().unwrap();
    // The restarted job's producer with the same id fences the zombie and aborts its
    // open transaction.
    let fresh = TransactionalProducer::new(&b, "fenced", "job-a-0", &[], TIMEOUT).unwrap();
    let e = zombie
        .mark(Marker {
            epoch: 1,
            last: None,
        })
        .and_then(|()| zombie.commit())
        .unwrap_err();
    let cause = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(cause.to_lowercase().contains("fenced"), "{e}: {cause}");
    // An aborted transaction is not read either.
    fresh.begin().unwrap();
    fresh.send(Some(1), b"aborted").unwrap();
    fresh.abort().unwrap();
    fresh.begin().unwrap();
    fresh.send(Some(0), b"one").unwrap();
    fresh.send(Some(1), b"two").unwrap();
    fresh
        .mark(Marker {
            epoch: 7,
            last: None,
        })
        .unwrap();
    fresh.commit().unwrap();
    assert_eq!(read_text_sorted(&b, "fenced"), ["one", "two"]);
    assert_eq!(
        fresh.committed_marker().unwrap(),
        Some(Marker {
            epoch: 7,
            last: None
        })
    );
    // Another id's marker is its own.
    let other = TransactionalProducer::new(&b, "fenced", "job-b-0", &[], TIMEOUT).unwrap();
    assert_eq!(other.committed_marker().unwrap(), None);
}

fn parse(r: &KafkaRecord<'_>) -> Result<u64, String> {
    let text = std::str::from_utf8(r.payload.unwrap_or_default()).map_err(|e| e.to_string())?;
    text.parse::<u64>().map_err(|e| format!("{text:?}: {e}"))
}

#[test]
fn a_job_with_checkpoints_writes_every_record_once() {
    let b = TestBroker::shared().brokers();
    let n = 20_000u64;
    assert_eq!(ensure_topic(&b, "eos-in", 3).unwrap(), 3);
    assert_eq!(ensure_topic(&b, "eos-out", 2).unwrap(), 2);
    let w = TopicWriter::with_properties(&b, "eos-in", &[("batch.num.messages", "200")]).unwrap();
    for i in 0..n {
        w.send((i % 3) as i32, None, i.to_string().as_bytes())
            .unwrap();
    }
    w.flush().unwrap();
    let dir = std::env::temp_dir().join(format!("rill-kafka-eos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut df = Dataflow::new();
    let config = KafkaSourceConfig::new(b.clone(), &["eos-in"])
        .until_end(true)
        .property("max.partition.fetch.bytes", "2000")
        .event_time(|v: &u64| *v as i64);
    let source = kafka_source(&mut df, "in", config, parse).unwrap();
    kafka_sink(
        &source.records,
        "out",
        KafkaSinkConfig::new(b.clone(), "eos-out").exactly_once("eos-test"),
        |v: &u64, buf: &mut Vec<u8>| buf.extend_from_slice(v.to_string().as_bytes()),
    )
    .unwrap();
    let checkpoints = Checkpointing::new(&dir).interval(Some(Duration::from_millis(20)));
    let report = Runtime::new(
        Config::default()
            .shards(2)
            .pin(false)
            .checkpointing(checkpoints),
    )
    .unwrap()
    .run(df)
    .unwrap();
    let completed = report.checkpoints.as_ref().map_or(0, |c| c.completed.len());
    assert!(completed >= 3, "{completed} checkpoints completed");
    let mut got: Vec<u64> = read_text_sorted(&b, "eos-out")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_broker_going_away_during_a_transaction_loses_and_repeats_nothing() {
    use rill_kafka::testing::{free_port, Proxy};
    use rill_operators::Inspect;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    let port = free_port();
    let proxy = Proxy::new(port);
    let _broker = TestBroker::start_advertising(port, proxy.port());
    proxy.restore();
    let b = format!("127.0.0.1:{}", proxy.port());
    let n = 20_000u64;
    assert_eq!(ensure_topic(&b, "away-in", 2).unwrap(), 2);
    assert_eq!(ensure_topic(&b, "away-out", 2).unwrap(), 2);
    let w = TopicWriter::with_properties(&b, "away-in", &[("batch.num.messages", "500")]).unwrap();
    for i in 0..n {
        w.send((i % 2) as i32, None, i.to_string().as_bytes())
            .unwrap();
    }
    w.flush().unwrap();
    let dir = std::env::temp_dir().join(format!("rill-kafka-eos-away-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut df = Dataflow::new();
    // Small fetches: the job reads (and writes) all through the outage.
    let config = KafkaSourceConfig::new(b.clone(), &["away-in"])
        .until_end(true)
        .broker_timeout(Duration::from_secs(30))
        .property("fetch.max.bytes", "1000")
        .property("message.max.bytes", "1000")
        .property("max.partition.fetch.bytes", "200")
        .property("queued.min.messages", "20")
        .property("reconnect.backoff.max.ms", "200")
        .event_time(|v: &u64| *v as i64);
    let source = kafka_source(&mut df, "in", config, parse).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let records = source.records.inspect("count", move |_, _: &u64| {
        counter.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(50));
    });
    kafka_sink(
        &records,
        "out",
        KafkaSinkConfig::new(b.clone(), "away-out")
            .exactly_once("away-test")
            .property("reconnect.backoff.max.ms", "200"),
        |v: &u64, buf: &mut Vec<u8>| buf.extend_from_slice(v.to_string().as_bytes()),
    )
    .unwrap();
    let checkpoints = Checkpointing::new(&dir).interval(Some(Duration::from_millis(50)));
    let handle = Runtime::new(
        Config::default()
            .shards(2)
            .pin(false)
            .checkpointing(checkpoints),
    )
    .unwrap()
    .spawn(df)
    .unwrap();
    let start = Instant::now();
    while seen.load(Ordering::Relaxed) < 2_000 {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.cut();
    std::thread::sleep(Duration::from_secs(3));
    let during = seen.load(Ordering::Relaxed);
    assert!(during < n, "the whole topic was read before the outage");
    proxy.restore();
    let report = handle.join().unwrap();
    let completed = report.checkpoints.as_ref().map_or(0, |c| c.completed.len());
    assert!(completed >= 3, "{completed} checkpoints completed");
    let mut got: Vec<u64> = read_text_sorted(&b, "away-out")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "{during} read before the restore"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

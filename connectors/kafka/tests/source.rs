//! The Kafka source against Apache Kafka (on loopback, started by the tests: one shared
//! broker, and a broker of their own behind a proxy for the tests that cut it): bounded
//! reads, undecodable records, start positions, and the broker going away and coming back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_kafka::admin::{ensure_topic, TopicWriter};
use rill_kafka::testing::{free_port, Proxy, TestBroker};
use rill_kafka::{kafka_source, KafkaRecord, KafkaSourceConfig};
use rill_operators::Inspect;
use rill_runtime::{Config, Dataflow, Runtime};

fn parse(r: &KafkaRecord<'_>) -> Result<u64, String> {
    let text = std::str::from_utf8(r.payload.unwrap_or_default()).map_err(|e| e.to_string())?;
    text.parse::<u64>().map_err(|e| format!("{text:?}: {e}"))
}

/// Writes `0..n` as decimal text, `i` to partition `i % partitions`; `bad` positions get
/// a value that does not parse instead.
fn fill(brokers: &str, topic: &str, partitions: usize, n: u64, bad: &[u64]) {
    fill_in_batches(brokers, topic, partitions, n, bad, 10_000);
}

/// [`fill`] in record batches of at most `batch` records (a fetch returns at least one
/// whole batch, whatever its size).
fn fill_in_batches(brokers: &str, topic: &str, partitions: usize, n: u64, bad: &[u64], batch: u64) {
    assert_eq!(
        ensure_topic(brokers, topic, partitions).unwrap(),
        partitions
    );
    let batch = batch.to_string();
    let w =
        TopicWriter::with_properties(brokers, topic, &[("batch.num.messages", &batch)]).unwrap();
    for i in 0..n {
        let value = match bad.contains(&i) {
            true => format!("not a number {i}"),
            false => i.to_string(),
        };
        w.send((i % partitions as u64) as i32, None, value.as_bytes())
            .unwrap();
    }
    w.flush().unwrap();
}

fn two_shards() -> Config {
    Config::default().shards(2).pin(false)
}

#[test]
fn bounded_read_counts_undecodable_records_and_sends_them_aside() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let bad_at = [7, 1000, 2999];
    fill(&b, "numbers", 3, 3000, &bad_at);
    let mut df = Dataflow::new();
    let config = KafkaSourceConfig::new(b.clone(), &["numbers"])
        .until_end(true)
        .event_time(|v: &u64| *v as i64);
    let source = kafka_source(&mut df, "numbers", config, parse).unwrap();
    assert_eq!(source.partitions, 3);
    let records = source.records.collect("records");
    let bad = source.bad_records.collect("bad");
    Runtime::new(two_shards()).unwrap().run(df).unwrap();
    let mut got = records.take();
    got.sort_unstable();
    let expected: Vec<u64> = (0..3000).filter(|i| !bad_at.contains(i)).collect();
    assert_eq!(got, expected);
    let mut bad = bad.take();
    bad.sort_by_key(|r| (r.partition, r.offset));
    let where_: Vec<(i32, i64)> = bad.iter().map(|r| (r.partition, r.offset)).collect();
    // Position i is offset i / 3 of partition i % 3.
    assert_eq!(where_, [(1, 2), (1, 333), (2, 999)]);
    assert_eq!(bad[0].payload, b"not a number 7");
    assert!(bad[0].error.contains("invalid digit"), "{}", bad[0].error);
    assert_eq!(source.bad_count.load(Ordering::Relaxed), 3);
}

#[test]
fn an_unknown_topic_or_bad_brokers_are_refused_before_the_job_starts() {
    let broker = TestBroker::shared();
    let mut df = Dataflow::new();
    let e = kafka_source(
        &mut df,
        "s",
        KafkaSourceConfig::new(broker.brokers(), &["missing"]).until_end(true),
        parse,
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let e = kafka_source(
        &mut df,
        "s",
        KafkaSourceConfig::new("nowhere", &["t"]),
        parse,
    )
    .unwrap_err();
    assert!(e.to_string().contains("host:port"), "{e}");
}

#[test]
fn a_client_librdkafka_refuses_or_a_group_protocol_the_source_cannot_use_fails_before_the_job() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    fill(&b, "bad-client", 2, 10, &[]);
    // A property librdkafka does not know: refused when the source asks for the
    // partitions, before the job.
    let mut df = Dataflow::new();
    let config =
        KafkaSourceConfig::new(b.clone(), &["bad-client"]).property("no.such.property", "1");
    let e = kafka_source(&mut df, "s", config, parse).unwrap_err();
    assert!(
        matches!(e, rill_kafka::Error::Client { .. }) && e.to_string().contains("no.such.property"),
        "{e}"
    );
    // The group protocol of KIP-848 (librdkafka refuses the source's eager `assign` under
    // it, and its session timeout default): refused with the reason, before the job (it
    // used to fail at the job's start, when the shards' consumers were created).
    let mut df = Dataflow::new();
    let config = KafkaSourceConfig::new(b.clone(), &["bad-client"])
        .group("bad-client-group")
        .property("group.protocol", "consumer");
    let e = kafka_source(&mut df, "conflicting", config, parse).unwrap_err();
    assert!(
        matches!(e, rill_kafka::Error::Config(_))
            && e.to_string().contains("group.protocol=consumer")
            && e.to_string().contains("eager"),
        "{e}"
    );
}

/// A broker behind a proxy the test can cut: returns (broker, proxy, bootstrap).
fn broker_behind_proxy() -> (TestBroker, Proxy, String) {
    let port = free_port();
    let proxy = Proxy::new(port);
    let broker = TestBroker::start_advertising(port, proxy.port());
    proxy.restore();
    let brokers = format!("127.0.0.1:{}", proxy.port());
    (broker, proxy, brokers)
}

/// Small fetches, so that the source depends on the broker all through the run.
fn small_fetches(c: KafkaSourceConfig<u64>) -> KafkaSourceConfig<u64> {
    c.property("fetch.max.bytes", "1000")
        .property("message.max.bytes", "1000")
        .property("max.partition.fetch.bytes", "200")
        .property("queued.min.messages", "20")
        .property("reconnect.backoff.max.ms", "200")
}

#[test]
fn the_job_waits_while_the_broker_is_away_and_resumes_without_loss() {
    let (_broker, proxy, b) = broker_behind_proxy();
    let n = 20_000;
    fill_in_batches(&b, "flaky", 2, n, &[], 500);
    let mut df = Dataflow::new();
    let config = small_fetches(KafkaSourceConfig::new(b.clone(), &["flaky"]))
        .until_end(true)
        .broker_timeout(Duration::from_secs(30));
    let source = kafka_source(&mut df, "flaky", config, parse).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let records = source
        .records
        .inspect("count", move |_, _: &u64| {
            counter.fetch_add(1, Ordering::Relaxed);
            // Slow: the consumer fetches (a batch at a time) all through the run.
            std::thread::sleep(Duration::from_micros(50));
        })
        .collect("records");
    let handle = Runtime::new(two_shards()).unwrap().spawn(df).unwrap();
    let start = Instant::now();
    while seen.load(Ordering::Relaxed) < 2_000 {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.cut();
    let at_cut = seen.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    let during = seen.load(Ordering::Relaxed);
    assert!(
        during < n,
        "the whole topic was read before the outage: make fetches smaller"
    );
    proxy.restore();
    handle.join().unwrap();
    let mut got = records.take();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "cut at {at_cut}, {during} before the restore"
    );
}

#[test]
fn a_broker_that_stays_away_fails_the_job_after_the_broker_timeout() {
    let (_broker, proxy, b) = broker_behind_proxy();
    fill(&b, "gone", 1, 100, &[]);
    let mut df = Dataflow::new();
    let config = small_fetches(KafkaSourceConfig::new(b.clone(), &["gone"]))
        .broker_timeout(Duration::from_secs(2));
    let source = kafka_source(&mut df, "gone", config, parse).unwrap();
    source.records.discard("out");
    let handle = Runtime::new(two_shards()).unwrap().spawn(df).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    proxy.cut();
    let cut = Instant::now();
    let e = handle.join().unwrap_err().to_string();
    assert!(
        e.contains("unreachable") && e.contains("broker timeout"),
        "{e}"
    );
    assert!(
        cut.elapsed() < Duration::from_secs(20),
        "took {:?}",
        cut.elapsed()
    );
}

/// The group's committed offset of each of `topic`'s first `partitions` partitions, as
/// `consumer` (a member of the group, or configured with its id) reads them.
fn committed(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};

    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}

#[test]
fn offsets_of_completed_checkpoints_are_committed_to_the_group() {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::ClientConfig;
    use rill_runtime::checkpoint::Checkpointing;

    let broker = TestBroker::shared();
    let b = broker.brokers();
    let n = 2_000;
    fill(&b, "lagging", 2, n, &[]);
    let dir = std::env::temp_dir().join(format!("rill-kafka-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut df = Dataflow::new();
    // Small fetches: the records trickle in while several checkpoints complete.
    let config = small_fetches(KafkaSourceConfig::new(b.clone(), &["lagging"]))
        .until_end(true)
        .commit_offsets_to("lag-watchers");
    let source = kafka_source(&mut df, "lagging", config, parse).unwrap();
    let records = source.records.collect("records");
    let checkpoints = Checkpointing::new(&dir).interval(Some(Duration::from_millis(20)));
    let report = Runtime::new(two_shards().checkpointing(checkpoints))
        .unwrap()
        .run(df)
        .unwrap();
    assert_eq!(records.take().len() as u64, n);
    let completed = report.checkpoints.as_ref().map_or(0, |c| c.completed.len());
    assert!(completed >= 3, "{completed} checkpoints completed");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "lag-watchers")
        .create()
        .unwrap();
    let offsets: Vec<i64> = committed(&consumer, "lagging", 2)
        .into_iter()
        .enumerate()
        .map(|(p, o)| o.unwrap_or_else(|| panic!("partition {p}: nothing committed")))
        .collect();
    // Each partition holds n / 2 records: something was committed, never past the end.
    assert!(
        offsets.iter().all(|&o| o > 0 && o <= n as i64 / 2),
        "{offsets:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Spawns a job of `config` (a group member reading `topic`) on `runtime` that counts the
/// records it reads, and waits until it has read `n`: its handle and its count.
fn spawn_counting_member(
    config: KafkaSourceConfig<u64>,
    topic: &str,
    runtime: Config,
    n: u64,
) -> (rill_runtime::JobHandle, Arc<AtomicU64>) {
    let mut df = Dataflow::new();
    let source = kafka_source(&mut df, topic, config, parse).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    source.records.inspect("count", move |_, _: &u64| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let handle = Runtime::new(runtime).unwrap().spawn(df).unwrap();
    let start = Instant::now();
    while seen.load(Ordering::Relaxed) < n {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    (handle, seen)
}

/// A partition added to a topic while a group member reads it is not in the job's plan
/// (its splits, checkpoints and partition states): the group gives it to a member, and
/// the job fails naming it rather than leave it unread by the whole group.
#[test]
fn a_partition_added_while_a_group_reads_fails_the_job_with_a_reason() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;

    let broker = TestBroker::shared();
    let b = broker.brokers();
    let n = 100;
    fill(&b, "growing", 2, n, &[]);
    // The member notices the new partition at its next metadata refresh.
    let config = KafkaSourceConfig::new(b.clone(), &["growing"])
        .group("growing-members")
        .property("topic.metadata.refresh.interval.ms", "500");
    let (handle, _) = spawn_counting_member(config, "growing", two_shards(), n);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .create()
        .unwrap();
    let grow = NewPartitions::new("growing", 3);
    let results =
        futures_executor::block_on(admin.create_partitions([&grow], &AdminOptions::new())).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job went on with a partition it was not planned with"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = handle.join().unwrap_err().to_string();
    assert!(
        e.contains("not planned with") && e.contains("growing/2"),
        "{e}"
    );
}

/// A group job without checkpoints commits nothing while it reads (no completed
/// checkpoint to commit), so a rebalance must commit where it got to: else the partitions'
/// next owners read them again from the start.
#[test]
fn a_group_member_without_checkpoints_commits_what_it_read_when_a_rebalance_takes_it() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;

    let broker = TestBroker::shared();
    let b = broker.brokers();
    let n = 2_000;
    fill(&b, "handover", 2, n, &[]);
    let config = KafkaSourceConfig::new(b.clone(), &["handover"])
        .group("handover-members")
        .event_time(|v: &u64| *v as i64);
    let one_shard = Config::default().shards(1).pin(false);
    let (handle, seen) = spawn_counting_member(config, "handover", one_shard, n);
    // A second member joins: the range assignor gives it one of the two partitions.
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "handover-members")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    other.subscribe(&["handover"]).unwrap();
    let mut read_again = 0;
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the second member got no partition"
        );
        if let Some(Ok(_)) = other.poll(Duration::from_millis(100)) {
            read_again += 1;
        }
        if other.assignment().is_ok_and(|a| a.count() > 0) {
            break;
        }
    }
    // Whatever it has fetched by now came from where the first member had got to.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(Ok(_)) = other.poll(Duration::from_millis(100)) {
            read_again += 1;
        }
    }
    let offsets = committed(&other, "handover", 2);
    let report = handle.stop().unwrap();
    drop(report);
    assert_eq!(
        offsets,
        vec![Some(n as i64 / 2); 2],
        "committed at the revocation"
    );
    assert_eq!(read_again, 0, "the second member read records again");
    // The first member went on from its own commit: nothing read twice.
    assert_eq!(seen.load(Ordering::Relaxed), n);
}

#[test]
fn starts_at_a_timestamp() {
    use rill_kafka::StartFrom;

    let broker = TestBroker::shared();
    let b = broker.brokers();
    assert_eq!(ensure_topic(&b, "timed", 2).unwrap(), 2);
    let w = TopicWriter::new(&b, "timed").unwrap();
    // Record i has Kafka timestamp 1_000_000 + i ms.
    for i in 0..1000u64 {
        w.send(
            (i % 2) as i32,
            Some(1_000_000 + i as i64),
            i.to_string().as_bytes(),
        )
        .unwrap();
    }
    w.flush().unwrap();
    let read = |start: StartFrom| {
        let mut df = Dataflow::new();
        let config = KafkaSourceConfig::new(b.clone(), &["timed"])
            .until_end(true)
            .start_from(start);
        let records = kafka_source(&mut df, "timed", config, parse)
            .unwrap()
            .records
            .collect("records");
        Runtime::new(two_shards()).unwrap().run(df).unwrap();
        let mut got = records.take();
        got.sort_unstable();
        got
    };
    assert_eq!(
        read(StartFrom::Timestamp(1_000_600)),
        (600..1000).collect::<Vec<_>>()
    );
    assert_eq!(read(StartFrom::Earliest).len(), 1000);
    // Apache Kafka's end-offset lookup is exact: a bounded read from the latest offset
    // reads nothing. (tansu 0.6 answered it with the last batch's base offset.)
    assert_eq!(read(StartFrom::Latest), Vec::<u64>::new());
}

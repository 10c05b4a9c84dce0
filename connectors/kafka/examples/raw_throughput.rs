//! The client's own limit, for comparison with rill's Kafka source and sink: raw
//! librdkafka consumers that only count records, and a raw producer, with the properties
//! rill uses (docs/kafka.md, "Throughput against raw librdkafka").
//!
//! ```sh
//! cargo run --release -p rill-kafka --example raw_throughput -- consume BROKERS TOPIC THREADS
//! cargo run --release -p rill-kafka --example raw_throughput -- consume-batch BROKERS TOPIC THREADS
//! cargo run --release -p rill-kafka --example raw_throughput -- produce BROKERS TOPIC RECORDS BYTES
//! cargo run --release -p rill-kafka --example raw_throughput -- latency BROKERS TOPIC SECONDS
//! ```
//!
//! `consume`: one consumer per thread, thread `i` reading the partitions `p` with
//! `p % THREADS == i` from the earliest offset to the end offset seen at the start (as a
//! bounded `run --kafka --until-end` with THREADS shards reads them), one record per
//! `BaseConsumer::poll`; `consume-batch` the same in batches of up to 1,000 records
//! (`rd_kafka_consume_batch_queue` on the consumer's queue: the fastest a consumer that
//! counts can read; rill's source makes the same call on each partition's own queue); both time
//! from the first record to the last. `produce`: one
//! producer writing RECORDS records of BYTES bytes round-robin over the partitions, then
//! waiting for every acknowledgement. `latency`: one consumer of every partition from
//! its end, for SECONDS, printing the percentiles of (receive time - Kafka timestamp)
//! (the intended send time with `rill-bench generate --kafka --rate`).

use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn usage() -> ! {
    eprintln!(
        "usage: raw_throughput consume|consume-batch BROKERS TOPIC THREADS | produce BROKERS TOPIC RECORDS \
         BYTES | latency BROKERS TOPIC SECONDS"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

/// What a consumer thread read: records, payload bytes, and when its first record came.
type Read = (u64, u64, Option<Instant>);

/// Reads `consumer`'s assigned partitions to `ends` (partition, end offset) in batches.
fn read_batches(consumer: &BaseConsumer, ends: &[(i32, i64)]) -> Read {
    const BATCH: usize = 1000;
    // SAFETY: the consumer's `rd_kafka_t` is live for this call's duration; the returned
    // queue handle is ours and destroyed below, before the consumer is dropped.
    let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
    assert!(!queue.is_null(), "the consumer's queue");
    let mut messages: Vec<*mut rd::rd_kafka_message_t> = Vec::with_capacity(BATCH);
    let (mut records, mut bytes, mut first) = (0u64, 0u64, None);
    let mut done = vec![false; ends.len()];
    while done.iter().any(|d| !d) {
        // SAFETY: `queue` is live; the vector has room for BATCH pointers, of which
        // librdkafka writes the first `n` (returned; -1 on error: none); a zero timeout
        // never blocks.
        let n = unsafe { rd::rd_kafka_consume_batch_queue(queue, 0, messages.as_mut_ptr(), BATCH) };
        // SAFETY: the first `n` elements were written by librdkafka (n <= BATCH).
        unsafe { messages.set_len(n.max(0) as usize) };
        if messages.is_empty() {
            std::thread::yield_now();
        }
        for m in messages.drain(..) {
            // SAFETY: `m` is a live message returned by the batch call, read here and
            // destroyed exactly once just after.
            let (err, partition, offset, len) =
                unsafe { ((*m).err, (*m).partition, (*m).offset, (*m).len) };
            match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    first.get_or_insert_with(Instant::now);
                    records += 1;
                    bytes += len as u64;
                }
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                    // The event's offset is the partition's end (past transaction markers).
                    for (j, (p, end)) in ends.iter().enumerate() {
                        done[j] |= *p == partition && offset >= *end;
                    }
                }
                e => panic!("fetch error {e:?}"),
            }
            // SAFETY: see above: destroyed once, not used after.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
    // SAFETY: our handle of the consumer's queue, destroyed once.
    unsafe { rd::rd_kafka_queue_destroy(queue) };
    (records, bytes, first)
}

fn consume(brokers: &str, topic: &str, threads: usize, batches: bool) {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a consumer");
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (brokers, topic) = (brokers.to_string(), topic.to_string());
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("group.id", "raw-throughput")
                    .set("enable.auto.commit", "false")
                    .set("enable.partition.eof", "true")
                    .set("fetch.wait.max.ms", "100")
                    .set("queued.min.messages", "1000000")
                    .set("isolation.level", "read_committed")
                    .create()
                    .expect("a consumer");
                let mut tpl = TopicPartitionList::new();
                let mut ends = Vec::new();
                for p in (0..partitions).filter(|p| *p as usize % threads == i) {
                    let (low, high) = consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .expect("offsets");
                    tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                        .expect("assign");
                    ends.push((p, high));
                }
                consumer.assign(&tpl).expect("assign");
                if batches {
                    return read_batches(&consumer, &ends);
                }
                let (mut records, mut bytes, mut first) = (0u64, 0u64, None);
                let mut done = vec![false; ends.len()];
                while done.iter().any(|d| !d) {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            first.get_or_insert_with(Instant::now);
                            records += 1;
                            bytes += m.payload().map_or(0, |p| p.len() as u64);
                        }
                        Some(Err(KafkaError::PartitionEOF(p))) => {
                            let positions = consumer.position().expect("positions");
                            for (j, (q, end)) in ends.iter().enumerate() {
                                if *q == p {
                                    let at = positions
                                        .find_partition(&topic, p)
                                        .and_then(|e| match e.offset() {
                                            Offset::Offset(o) => Some(o),
                                            _ => None,
                                        })
                                        .unwrap_or(0);
                                    done[j] |= at >= *end;
                                }
                            }
                        }
                        Some(Err(e)) => panic!("{e}"),
                        None => std::thread::yield_now(),
                    }
                }
                (records, bytes, first)
            })
        })
        .collect();
    let read: Vec<Read> = handles
        .into_iter()
        .map(|h| h.join().expect("a consumer thread"))
        .collect();
    let end = Instant::now();
    let (records, bytes) = read.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    // From the first record (as rill-bench's epoch starts when a source first polls), so
    // that connecting and fetching offsets are not counted.
    let start = read.iter().filter_map(|r| r.2).min().unwrap_or(end);
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "consume: {records} records ({bytes} bytes) in {secs:.2} s: {:.0} records/s with {threads} threads",
        records as f64 / secs
    );
}

fn produce(brokers: &str, topic: &str, records: u64, size: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer");
    let probe = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = probe.topics()[0].partitions().len() as u64;
    if partitions == 0 {
        eprintln!(
            "topic {topic} has no partitions at {brokers}: create it first (e.g. with \
             `rill-bench generate --events 1 --kafka {brokers} --topic {topic} --partitions 4`)"
        );
        std::process::exit(2);
    }
    let payload = vec![b'x'; size];
    let start = Instant::now();
    for i in 0..records {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&payload)
            .partition((i % partitions) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produce: {records} records of {size} bytes in {secs:.2} s: {:.0} records/s",
        records as f64 / secs
    );
}

fn latency(brokers: &str, topic: &str, seconds: f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "raw-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in 0..metadata.topics()[0].partitions().len() as i32 {
        tpl.add_partition_offset(topic, p, Offset::End)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut lat = Vec::new();
    while Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            if let Some(ts) = m.timestamp().to_millis() {
                lat.push(now_ms() - ts);
            }
        }
    }
    lat.sort_unstable();
    let q = |f: f64| lat.get(((lat.len() as f64 * f) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "latency: {} records, p50 {:?} ms, p95 {:?} ms, p99 {:?} ms, max {:?} ms",
        lat.len(),
        q(0.5),
        q(0.95),
        q(0.99),
        lat.last()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("consume") => consume(&args[2], &args[3], arg(&args, 4), false),
        Some("consume-batch") => consume(&args[2], &args[3], arg(&args, 4), true),
        Some("produce") => produce(&args[2], &args[3], arg(&args, 4), arg(&args, 5)),
        Some("latency") => latency(&args[2], &args[3], arg(&args, 4)),
        _ => usage(),
    }
}

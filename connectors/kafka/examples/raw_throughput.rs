//! The client's own limit, for comparison with rill's Kafka source and sink: raw
//! librdkafka consumers that only count records, and a raw producer, with the properties
//! rill uses (docs/kafka.md, "Throughput against raw librdkafka").
//!
//! ```sh
//! cargo run --release -p rill-kafka --example raw_throughput -- consume BROKERS TOPIC THREADS
//! cargo run --release -p rill-kafka --example raw_throughput -- produce BROKERS TOPIC RECORDS BYTES
//! cargo run --release -p rill-kafka --example raw_throughput -- latency BROKERS TOPIC SECONDS
//! ```
//!
//! `consume`: one consumer per thread, thread `i` reading the partitions `p` with
//! `p % THREADS == i` from the earliest offset to the end offset seen at the start (as a
//! bounded `run --kafka --until-end` with THREADS shards reads them). `produce`: one
//! producer writing RECORDS records of BYTES bytes round-robin over the partitions, then
//! waiting for every acknowledgement. `latency`: one consumer of every partition from
//! its end, for SECONDS, printing the percentiles of (receive time - Kafka timestamp)
//! (the intended send time with `rill-bench generate --kafka --rate`).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn usage() -> ! {
    eprintln!(
        "usage: raw_throughput consume BROKERS TOPIC THREADS | produce BROKERS TOPIC RECORDS \
         BYTES | latency BROKERS TOPIC SECONDS"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

fn consume(brokers: &str, topic: &str, threads: usize) {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a consumer");
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let start = Instant::now();
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
                let (mut records, mut bytes) = (0u64, 0u64);
                let mut done = vec![false; ends.len()];
                while done.iter().any(|d| !d) {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
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
                (records, bytes)
            })
        })
        .collect();
    let (records, bytes) = handles
        .into_iter()
        .map(|h| h.join().expect("a consumer thread"))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let secs = start.elapsed().as_secs_f64();
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
        Some("consume") => consume(&args[2], &args[3], arg(&args, 4)),
        Some("produce") => produce(&args[2], &args[3], arg(&args, 4), arg(&args, 5)),
        Some("latency") => latency(&args[2], &args[3], arg(&args, 4)),
        _ => usage(),
    }
}

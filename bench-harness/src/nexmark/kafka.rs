//! NEXMark through Kafka: `generate --kafka` writes the events to a topic (one record per
//! event, its value the CSV line `generate` prints, without the line break), and
//! `run --kafka` reads them back as the query's input instead of the generator.
//!
//! Event `p` goes to partition `p % P`, so every partition holds its events in position
//! order, which is event-time order (out-of-order groups are refused). The source's
//! watermark per partition is ascending over the events' `date_time`, combined as the
//! minimum: no event is ever late, as with the generator, so a bounded run (`--until-end`)
//! produces exactly the rows of the generator run with the same events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_kafka::admin::{ensure_topic, TopicWriter};
use rill_kafka::{kafka_source, KafkaRecord, KafkaSourceConfig, StartFrom};
use rill_runtime::{Dataflow, Stream};

use super::source::{Epoch, SourceStats, Timed};
use super::{Event, GeneratorConfig};

/// Where `run --kafka` reads its events.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    /// Bootstrap brokers, `host:port,...`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Join this consumer group (partitions shared with other processes of the group).
    pub group: Option<String>,
    /// Read up to the end offsets seen at the start, then end.
    pub until_end: bool,
    /// Fail once the brokers have been unreachable for this long.
    pub broker_timeout: Duration,
    /// librdkafka consumer properties for the source.
    pub properties: Vec<(String, String)>,
    /// Measure latency open loop for this long, then stop: each record's Kafka timestamp
    /// is its intended time (as `generate --kafka --rate` writes it), and a row's latency
    /// is from the intended time of its input to the sink.
    pub latency_for: Option<Duration>,
}

/// What the Kafka input counts.
#[derive(Debug, Default)]
pub struct KafkaCounts {
    /// Records that were not NEXMark events.
    pub bad: Arc<AtomicU64>,
    /// The topic's partitions.
    pub partitions: usize,
}

/// The events of `input` as a stream of [`Timed`] events, due at their Kafka timestamps
/// (latency is measured with [`KafkaInput::latency_for`], when those are the intended
/// send times of `generate --kafka --rate`).
pub fn kafka_events(
    df: &mut Dataflow,
    input: &KafkaInput,
    epoch: &Epoch,
    stats: &Arc<SourceStats>,
) -> Result<(Stream<Timed>, KafkaCounts), rill_kafka::Error> {
    let mut config = KafkaSourceConfig::new(input.brokers.clone(), &[input.topic.as_str()])
        .start_from(StartFrom::Earliest)
        .until_end(input.until_end)
        .event_time(|t: &Timed| t.event.date_time() as i64)
        .broker_timeout(input.broker_timeout)
        // A bounded run waits for every partition (exact results); an unbounded one lets
        // a partition silent for 2 s stop holding the watermark back.
        .idle_after((!input.until_end).then_some(Duration::from_secs(2)));
    for (k, v) in &input.properties {
        config = config.property(k.clone(), v.clone());
    }
    if let Some(g) = &input.group {
        config = config.group(g.clone());
    }
    let (epoch, stats) = (epoch.clone(), stats.clone());
    let source = kafka_source(df, "kafka", config, move |r: &KafkaRecord<'_>| {
        let text = std::str::from_utf8(r.payload.unwrap_or_default())
            .map_err(|e| format!("not UTF-8: {e}"))?;
        let event = Event::parse_csv(text).map_err(|e| e.to_string())?;
        stats.emitted.fetch_add(1, Ordering::Relaxed);
        // Due at its Kafka timestamp (the event's time, as `generate --kafka` writes it):
        // no clock read per record.
        let due_ns = epoch.from_unix_ms(r.timestamp.unwrap_or(0));
        Ok::<_, String>(Timed { due_ns, event })
    })?;
    source.bad_records.discard("kafka (bad records)");
    Ok((
        source.records,
        KafkaCounts {
            bad: source.bad_count,
            partitions: source.partitions,
        },
    ))
}

/// Writes events `0..events` of `config` to `topic` (created with `partitions`
/// partitions if missing): event `p` to partition `p % P` with its `date_time` as the
/// Kafka timestamp; with `rate`, open loop: event `p` is sent at its intended time
/// `t0 + p / rate` and carries that wall-clock time (ms) as its Kafka timestamp instead
/// (the events' own times stay in their CSV lines). Returns the topic's partition count.
pub fn write_events_to_kafka(
    config: &GeneratorConfig,
    events: u64,
    brokers: &str,
    topic: &str,
    partitions: usize,
    rate: Option<u64>,
) -> Result<usize, rill_kafka::Error> {
    let partitions = ensure_topic(brokers, topic, partitions)?;
    let writer = match rate {
        // Open loop: a short linger. (`linger.ms=0` sends a request per few records, more
        // requests than the broker here keeps up with at 50k/s: latency grew through the
        // run to seconds; docs/kafka.md.)
        Some(_) => TopicWriter::with_properties(brokers, topic, &[("linger.ms", "2")])?,
        None => TopicWriter::new(brokers, topic)?,
    };
    let mut line = Vec::with_capacity(1024);
    let start = std::time::Instant::now();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut max_lag_ns = 0u64;
    for position in 0..events {
        let mut timestamp = None;
        if let Some(rate) = rate {
            let due_ns = (position as u128 * 1_000_000_000 / rate as u128) as u64;
            loop {
                let now = start.elapsed().as_nanos() as u64;
                if now >= due_ns {
                    max_lag_ns = max_lag_ns.max(now - due_ns);
                    break;
                }
                if due_ns - now > 200_000 {
                    std::thread::sleep(Duration::from_nanos(due_ns - now - 100_000));
                } else {
                    std::hint::spin_loop();
                }
            }
            timestamp = Some(((start_unix_ns + due_ns) / 1_000_000) as i64);
        }
        let event = config.event(position);
        line.clear();
        event.write_csv(&mut line);
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let partition = (position % partitions as u64) as i32;
        let timestamp = timestamp.unwrap_or(event.date_time() as i64);
        writer.send(partition, Some(timestamp), &line)?;
    }
    writer.flush()?;
    if let Some(rate) = rate {
        // Behind schedule, the events' latency includes the writer's lag: say how much.
        eprintln!(
            "generate: {events} events at {rate}/s, at most {:.1} ms behind schedule",
            max_lag_ns as f64 / 1e6
        );
    }
    Ok(partitions)
}

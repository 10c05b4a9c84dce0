//! NEXMark through Kafka: `generate --kafka` writes the events to a topic (one record per
//! event, its value the CSV line `generate` prints, without the line break), and
//! `run --kafka` reads them back as the query's input instead of the generator.
//!
//! Event `p` goes to partition `p % P`, so every partition holds its events in position
//! order, which is event-time order (out-of-order groups are refused). The source's
//! watermark per partition is ascending over the events' `date_time`, combined as the
//! minimum: no event is ever late, as with the generator, so a bounded run (`--until-end`)
//! produces exactly the rows of the generator run with the same events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_kafka::admin::{ensure_topic, TopicWriter};
use rill_kafka::{kafka_source, KafkaRecord, KafkaSourceConfig, StartFrom};
use rill_runtime::{Dataflow, Stream};

use super::generate::KafkaFormat;
use super::source::{Epoch, SourceStats, Timed};
use super::{Event, GeneratorConfig};
use crate::csv_format::trim_line_end;

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
    /// With `latency_for`: measure from when the source polled each record (the part
    /// rill adds) instead of its intended time.
    pub latency_from_poll: bool,
}

/// When each millisecond of event time was reached in a run from Kafka, on the run's
/// clock: the time (intended, or polled with [`KafkaInput::latency_from_poll`]) of the
/// first record polled with that event time. A window's results are due once the first
/// record at or past its end arrived (the partitions' watermarks are ascending over event
/// time), so their latency is measured from [`EventClock::reached`] of the window's end,
/// as the generator's runs measure it from the end's place in the schedule.
#[derive(Debug, Default)]
pub struct EventClock {
    /// Event time (ms) to the run's time (ns after the epoch), the last 10 minutes.
    reached: Mutex<BTreeMap<i64, u64>>,
    /// The largest event time noted: only records past it are noted (one lock per
    /// millisecond of event time, not per record).
    newest: AtomicI64,
}

/// How much event time an [`EventClock`] keeps.
const EVENT_CLOCK_KEEPS_MS: i64 = 600_000;

impl EventClock {
    /// A record of event time `ms` arrived, at `at_ns` on the run's clock.
    #[inline]
    pub fn note(&self, ms: i64, at_ns: u64) {
        if ms <= self.newest.load(Ordering::Relaxed) {
            return;
        }
        self.newest.fetch_max(ms, Ordering::Relaxed);
        let mut reached = self.reached.lock().unwrap_or_else(|e| e.into_inner());
        let at = reached.entry(ms).or_insert(at_ns);
        *at = (*at).min(at_ns);
        while reached
            .first_key_value()
            .is_some_and(|(&first, _)| first < ms - EVENT_CLOCK_KEEPS_MS)
        {
            reached.pop_first();
        }
    }

    /// When event time first reached `ms` (a record at or past it), if it did.
    pub fn reached(&self, ms: i64) -> Option<u64> {
        let reached = self.reached.lock().unwrap_or_else(|e| e.into_inner());
        reached.range(ms..).next().map(|(_, &at)| at)
    }
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
/// send times of `generate --kafka --rate`) and, in a latency run, polled when the source
/// decoded them. `clock` and `poll_clock` note when event time reached each millisecond,
/// at the due and the poll time.
pub fn kafka_events(
    df: &mut Dataflow,
    input: &KafkaInput,
    epoch: &Epoch,
    stats: &Arc<SourceStats>,
    clock: Option<Arc<EventClock>>,
    poll_clock: Option<Arc<EventClock>>,
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
    let from_poll = input.latency_from_poll;
    let latency_run = input.latency_for.is_some();
    let source = kafka_source(df, "kafka", config, move |r: &KafkaRecord<'_>| {
        // A CSV line or the binary encoding (`generate --kafka-format`).
        let event = Event::parse(r.payload.unwrap_or_default()).map_err(|e| e.to_string())?;
        stats.emitted.fetch_add(1, Ordering::Relaxed);
        // Due at its Kafka timestamp (the event's time, as `generate --kafka` writes it);
        // polled now: one clock read per record, in latency runs only.
        let intended_ns = epoch.from_unix_ms(r.timestamp.unwrap_or(0));
        let polled_ns = match latency_run {
            true => epoch.now_ns(),
            false => intended_ns,
        };
        let due_ns = match from_poll {
            true => polled_ns,
            false => intended_ns,
        };
        let time = event.date_time() as i64;
        if let Some(clock) = &clock {
            clock.note(time, due_ns);
        }
        if let Some(clock) = &poll_clock {
            clock.note(time, polled_ns);
        }
        Ok::<_, String>(Timed {
            due_ns,
            polled_ns,
            event,
        })
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
    format: KafkaFormat,
) -> Result<usize, rill_kafka::Error> {
    let partitions = ensure_topic(brokers, topic, partitions)?;
    let writer = match rate {
        // Open loop: a short linger. (`linger.ms=0` sends a request per few records, more
        // requests than the broker here keeps up with at 50k/s: latency grew through the
        // run to seconds; docs/kafka.md.)
        Some(_) => TopicWriter::with_properties(brokers, topic, &[("linger.ms", "2")])?,
        None => TopicWriter::new(brokers, topic)?,
    };
    let start = std::time::Instant::now();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut max_lag_ns = 0u64;
    // The events are made and encoded on a thread of their own, a chunk at a time, ahead
    // of this one, which only paces and sends: on two cores the generator, the encoder and
    // librdkafka's calls do not fit on one. Chunks go back to be refilled (no allocation,
    // no fresh pages, per chunk).
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Chunk>(CHUNKS_AHEAD);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Chunk>();
    std::thread::scope(|scope| -> Result<(), rill_kafka::Error> {
        scope.spawn(move || {
            let mut position = 0;
            while position < events {
                let mut chunk = empty_rx.try_recv().unwrap_or_default();
                chunk.fill(config, position, events.min(position + CHUNK), format);
                position += chunk.len() as u64;
                if full_tx.send(chunk).is_err() {
                    return; // the sender stopped on an error
                }
            }
        });
        let mut position = 0u64;
        for chunk in full_rx {
            for (payload, date_time) in chunk.records() {
                let mut timestamp = date_time;
                if let Some(rate) = rate {
                    let due_ns = (position as u128 * 1_000_000_000 / rate as u128) as u64;
                    max_lag_ns = max_lag_ns.max(wait_until(start, due_ns));
                    timestamp = ((start_unix_ns + due_ns) / 1_000_000) as i64;
                }
                let partition = (position % partitions as u64) as i32;
                writer.send(partition, Some(timestamp), payload)?;
                position += 1;
            }
            // The generator may have finished: a chunk it will not take is dropped.
            let _ = empty_tx.send(chunk);
        }
        Ok(())
    })?;
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

/// Events per chunk the encoding thread hands to the sending one.
const CHUNK: u64 = 1024;
/// Chunks the encoding thread may run ahead.
const CHUNKS_AHEAD: usize = 8;

/// Consecutive events, encoded: their records back to back, where each ends, and each
/// event's `date_time`.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    times: Vec<i64>,
}

impl Chunk {
    /// Refills the chunk with events `from..to` of `config` in `format`.
    fn fill(&mut self, config: &GeneratorConfig, from: u64, to: u64, format: KafkaFormat) {
        self.bytes.clear();
        self.ends.clear();
        self.times.clear();
        for position in from..to {
            let event = config.event(position);
            match format {
                KafkaFormat::Csv => {
                    event.write_csv(&mut self.bytes);
                    trim_line_end(&mut self.bytes);
                }
                KafkaFormat::Binary => event.write_binary(&mut self.bytes),
            }
            self.ends.push(self.bytes.len());
            self.times.push(event.date_time() as i64);
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each record with its event's `date_time`, in order.
    fn records(&self) -> impl Iterator<Item = (&[u8], i64)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .zip(&self.times)
            .map(|((start, &end), &time)| (&self.bytes[start..end], time))
    }
}

/// Waits until `due_ns` after `start`, sleeping (never spinning: at tens of thousands of
/// events a second a spinning sender would take a core from the broker, the producer's
/// threads and the job it feeds, on a small machine; the sleep's overshoot, tens of µs,
/// is part of the lag and of the measured latency); returns how late it was then, in ns.
/// Records due by the time a sleep ends go out back to back.
fn wait_until(start: std::time::Instant, due_ns: u64) -> u64 {
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= due_ns {
            return now - due_ns;
        }
        std::thread::sleep(Duration::from_nanos(due_ns - now));
    }
}

#[cfg(test)]
mod tests {
    use super::EventClock;

    #[test]
    fn the_event_clock_keeps_when_each_event_time_was_first_reached() {
        let clock = EventClock::default();
        clock.note(1_000, 50);
        clock.note(1_000, 40); // the same millisecond again: not a new one
        clock.note(999, 10); // older than the newest: ignored
        clock.note(1_005, 90);
        assert_eq!(clock.reached(900), Some(50));
        assert_eq!(clock.reached(1_000), Some(50));
        // A window ending at 1_003 could close with the first record at or past it.
        assert_eq!(clock.reached(1_003), Some(90));
        assert_eq!(clock.reached(1_006), None);
        // Ten minutes later the oldest are forgotten.
        clock.note(1_005 + 600_000, 1_000);
        assert_eq!(clock.reached(0), Some(90));
    }
}

//! The `rill-bench generate` command: writes NEXMark events as CSV, one per line, in
//! position order (the order a single source emits them).
//!
//! Chunks of positions are generated on several threads and written in order, so the
//! output is the same whatever the machine.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::csv_format::line_writer;
use crate::nexmark::GeneratorConfig;

/// Positions per chunk a thread generates at a time.
const CHUNK: u64 = 16 * 1024;
/// At most this many generating threads.
const MAX_THREADS: usize = 8;

/// Options of `rill-bench generate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Number of events (positions 0..N-1).
    #[arg(long, required_unless_present = "seconds")]
    pub events: Option<u64>,
    /// With --rate: send for this long (rate x SECONDS events) instead of --events.
    #[arg(long, requires = "rate", conflicts_with = "events", value_parser = positive_seconds)]
    pub seconds: Option<f64>,
    /// Generator seed.
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    pub seed: u64,
    /// Out-of-order group size G: events are shuffled within groups of G (1: in order).
    #[arg(long = "out-of-order", default_value_t = 1)]
    pub out_of_order: u64,
    /// Write here instead of stdout.
    #[arg(long, conflicts_with = "kafka")]
    pub output: Option<PathBuf>,
    /// Write the events to Kafka at these brokers (`host:port,...`) instead, one record
    /// per event (its CSV line), event `p` to partition `p % P`; needs --topic.
    #[arg(long, requires = "topic")]
    pub kafka: Option<String>,
    /// The topic --kafka writes (created with --partitions partitions if missing).
    #[arg(long, requires = "kafka")]
    pub topic: Option<String>,
    /// Partitions of a topic --kafka creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub partitions: u64,
    /// Open loop: send the events at this many per second (e.g. 100k), each with its
    /// intended send time as its Kafka timestamp (for `run --kafka --kafka-latency`).
    #[arg(long, requires = "kafka", value_parser = crate::nexmark::cli::parse_rate)]
    pub rate: Option<u64>,
    /// How --kafka encodes each event: `csv` (its CSV line) or `binary` (a magic byte and
    /// its rkyv archive: cheaper to read; `run --kafka` reads both).
    #[arg(long, requires = "kafka", default_value = "csv")]
    pub kafka_format: KafkaFormat,
}

/// A positive, finite number of seconds.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

impl GenerateArgs {
    /// The number of events: --events, or --rate x --seconds (at least one).
    pub fn event_count(&self) -> u64 {
        match (self.events, self.rate, self.seconds) {
            (Some(events), _, _) => events,
            (None, Some(rate), Some(seconds)) => ((rate as f64 * seconds) as u64).max(1),
            // clap requires --events unless --seconds, which requires --rate.
            _ => 0,
        }
    }
}

/// How `generate --kafka` encodes each event.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// The event's CSV line, without its line break.
    Csv,
    /// [`BINARY_MAGIC`](crate::nexmark::model::BINARY_MAGIC) and the event's rkyv archive.
    Binary,
}

/// Runs `rill-bench generate`: 0 on success (or when the reader of stdout goes away early,
/// as with `| head`), 2 if the output cannot be written.
pub fn run(args: &GenerateArgs) -> ExitCode {
    let config = GeneratorConfig {
        seed: args.seed,
        out_of_order_group: args.out_of_order,
        ..GeneratorConfig::default()
    };
    if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic) {
        if args.out_of_order != 1 {
            eprintln!(
                "rill-bench generate: --out-of-order cannot be combined with --kafka (each \
                 partition must be in event-time order)"
            );
            return ExitCode::from(2);
        }
        return match crate::nexmark::kafka::write_events_to_kafka(
            &config,
            args.event_count(),
            brokers,
            topic,
            args.partitions as usize,
            args.rate,
            args.kafka_format,
        ) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rill-bench generate: {e}");
                ExitCode::from(2)
            }
        };
    }
    let result = match &args.output {
        Some(path) => File::create(path)
            .and_then(|file| write_events(&config, args.event_count(), file))
            .map_err(|e| (path.display().to_string(), e)),
        None => write_events(&config, args.event_count(), io::stdout().lock())
            .map_err(|e| ("stdout".to_owned(), e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((_, e)) if e.kind() == io::ErrorKind::BrokenPipe && args.output.is_none() => {
            ExitCode::SUCCESS
        }
        Err((what, e)) => {
            eprintln!("rill-bench generate: cannot write {what}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes positions `0..events` of `config` to `out`, one CSV line each.
pub fn write_events(config: &GeneratorConfig, events: u64, out: impl Write) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS)
        .min(usize::try_from(events.div_ceil(CHUNK)).unwrap_or(usize::MAX))
        .max(1);
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); threads];
    let mut next = 0u64;
    while next < events {
        // One round: thread `i` generates chunk `i` of the round into `buffers[i]`.
        let starts: Vec<u64> = (0..threads as u64)
            .map(|i| next.saturating_add(i * CHUNK))
            .collect();
        if threads == 1 {
            fill(config, starts[0], events, &mut buffers[0]);
        } else {
            std::thread::scope(|scope| {
                for (buffer, &start) in buffers.iter_mut().zip(&starts) {
                    scope.spawn(move || fill(config, start, events, buffer));
                }
            });
        }
        for buffer in &buffers {
            out.write_all(buffer)?;
        }
        next = next.saturating_add(threads as u64 * CHUNK);
    }
    out.flush()
}

/// Replaces `buffer` with the lines of positions `start..min(start + CHUNK, end)`.
fn fill(config: &GeneratorConfig, start: u64, end: u64, buffer: &mut Vec<u8>) {
    buffer.clear();
    let mut out = line_writer(buffer);
    for position in start..start.saturating_add(CHUNK).min(end) {
        // Writing into a Vec cannot fail.
        let _ = config.event(position).write_record(&mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::Event;

    #[test]
    fn writes_positions_in_order() {
        let config = GeneratorConfig {
            out_of_order_group: 7,
            ..GeneratorConfig::default()
        };
        let events = 2 * CHUNK + 123;
        let mut out = Vec::new();
        write_events(&config, events, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut count = 0;
        for (position, line) in text.lines().enumerate() {
            if position % 101 == 0 {
                assert_eq!(Event::parse_csv(line), Ok(config.event(position as u64)));
            }
            count += 1;
        }
        assert_eq!(count, events);
        let mut empty = Vec::new();
        write_events(&config, 0, &mut empty).unwrap();
        assert!(empty.is_empty());
    }
}

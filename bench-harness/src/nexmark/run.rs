//! Running one NEXMark query: the sources, the query, a sink that writes rows and
//! measures latency, and what the run measured.
//!
//! Latency samples go into per-shard HdrHistograms, one per quarter of the run (by the
//! row's ideal time), merged at the end; the quarters show whether latency grows through
//! the run. Sinks also publish every 100 ms so that a progress bar can show live figures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rill_kafka::{kafka_sink, KafkaSinkConfig};
use rill_operators::file_sink::{PartFiles, PartWriter};
use rill_runtime::checkpoint::{Checkpointing, Guarantee, StateWriter};
use rill_runtime::{
    Config, Dataflow, Failure, JobReport, OpResult, Operator, OperatorState, Output, Runtime, Sink,
    Stream,
};

use super::kafka::{kafka_events, EventClock, KafkaInput};
use super::queries::{self, Query, QueryContext};
use super::rows::{write_rows, Row, NOT_POLLED};
use super::source::{Epoch, NexmarkSource, SourceStats, Timed};
use super::GeneratorConfig;
use crate::csv_format::trim_line_end;
use crate::latency::{new_histogram, LatencySummary};
use crate::signals::SignalStop;

/// Quarters of a run, for the latency-growth check.
pub const PHASES: usize = 4;

/// Latency histograms of a run, one per quarter.
pub type PhaseHistograms = [Histogram<u64>; PHASES];

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The query.
    pub query: Query,
    /// Events in total.
    pub events: u64,
    /// Generator settings (seed, out-of-order groups; `inter_event_ns` is set from `rate`).
    pub generator: GeneratorConfig,
    /// Target rate in events/s over all shards; `None` runs unthrottled.
    pub rate: Option<u64>,
    /// Where to write the result rows as CSV.
    pub output: Option<PathBuf>,
    /// Window size in ms (q5, q7, q8, q12; q11's gap).
    pub window_ms: i64,
    /// q5's slide in ms.
    pub slide_ms: i64,
    /// Rows that could ideally have been produced within this long after the start are
    /// left out of the latency figures (state building up, e.g. q5's first windows).
    pub warmup: Duration,
    /// The runtime's configuration.
    pub config: Config,
    /// Checkpoints, and recovery from the latest one in the directory.
    pub checkpointing: Option<Checkpointing>,
    /// Delete the checkpoint directory first (a sweep's trials start from scratch).
    pub fresh_checkpoints: bool,
    /// SIGINT and SIGTERM stop the job (with a savepoint when it takes checkpoints); a
    /// second one cancels it. Off: the signals keep their default action.
    pub stop_on_signal: bool,
    /// Write the rows through the transactional file sink into this directory.
    pub output_dir: Option<PathBuf>,
    /// Read the events from Kafka instead of generating them (`events` is then unused).
    pub kafka: Option<KafkaInput>,
    /// Write the rows (CSV lines) to this Kafka topic, at least once, on the brokers of
    /// `kafka`.
    pub kafka_sink: Option<String>,
    /// Serve the job's metrics (Prometheus text format) at this address while it runs.
    pub metrics_addr: Option<String>,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The query.
    pub query: Query,
    /// Shards.
    pub shards: usize,
    /// Events in total.
    pub events: u64,
    /// The open-loop rate, if any (events/s).
    pub rate: Option<u64>,
    /// Result rows.
    pub rows: u64,
    /// From the first source's first poll to the end of the job.
    pub elapsed: Duration,
    /// Events per second over `elapsed`.
    pub throughput: f64,
    /// Latency per quarter of the run (open loop only).
    pub phases: Option<Box<PhaseHistograms>>,
    /// A latency run from Kafka from intended times: rill's part of the rows' latency,
    /// from when the source polled their input to the sink.
    pub rill_part: Option<Histogram<u64>>,
    /// How late the slowest source emitted its last event.
    pub end_lag: Duration,
    /// The largest lag behind schedule a source saw.
    pub max_lag: Duration,
    /// The runtime's report.
    pub report: JobReport,
    /// Kafka input: records that did not decode as events.
    pub bad_records: u64,
}

impl RunOutcome {
    /// All latency samples of the run.
    pub fn latency_histogram(&self) -> Option<Histogram<u64>> {
        let phases = self.phases.as_ref()?;
        let mut all = new_histogram();
        for h in phases.iter() {
            all.add(h).ok()?;
        }
        Some(all)
    }

    /// Percentiles over the whole run.
    pub fn latency(&self) -> Option<LatencySummary> {
        self.latency_histogram()
            .filter(|h| !h.is_empty())
            .map(|h| LatencySummary::from_histogram(&h))
    }

    /// Percentiles of rill's part ([`RunOutcome::rill_part`]), over the same rows.
    pub fn rill_part(&self) -> Option<LatencySummary> {
        self.rill_part
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(LatencySummary::from_histogram)
    }
}

/// A histogram the sinks publish into (none until the first publish).
pub type SharedHistogram = Arc<Mutex<Option<Histogram<u64>>>>;

/// Live figures a watcher can read while the job runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Source counters.
    pub sources: Arc<SourceStats>,
    /// Latency published by the sinks so far, per quarter.
    pub latency: Arc<Mutex<Option<Box<PhaseHistograms>>>>,
    /// Rill's part of it (a latency run from Kafka), published with it.
    pub rill_part: SharedHistogram,
    /// Rows written so far.
    pub rows: Arc<AtomicU64>,
}

fn phases() -> Box<PhaseHistograms> {
    Box::new(std::array::from_fn(|_| new_histogram()))
}

/// Records rows' latency (sink time minus ideal time) into per-shard histograms, one per
/// quarter of the run, and publishes them (with the row count) every 100 ms.
struct Latencies {
    epoch: Epoch,
    measure: bool,
    run_ns: u64,
    warmup_ns: u64,
    local: Box<PhaseHistograms>,
    live: Arc<Mutex<Option<Box<PhaseHistograms>>>>,
    /// Rill's part (from the input's poll), if measured: here, and published.
    rill_part: Option<(Histogram<u64>, SharedHistogram)>,
    rows: Arc<AtomicU64>,
    unpublished_rows: u64,
    last_publish: u64,
}

const PUBLISH_NS: u64 = 100_000_000;
const FLUSH_BYTES: usize = 1 << 20;

impl Latencies {
    /// Records the latency of `batch`, reaching the sink now.
    fn record<R: Row>(&mut self, batch: &[R]) -> OpResult {
        let now = self.epoch.now_ns();
        self.unpublished_rows += batch.len() as u64;
        if self.measure {
            // Phase `p` holds the rows whose ideal time is at least `bounds[p - 1]` past
            // the warm-up: `floor(since * PHASES / measured)`, without a division per row.
            let measured = u128::from((self.run_ns - self.warmup_ns).max(1));
            let bounds: [u64; PHASES - 1] = std::array::from_fn(|k| {
                ((k as u128 + 1) * measured).div_ceil(PHASES as u128) as u64
            });
            for row in batch {
                let ideal = row.ideal_ns();
                if ideal > self.run_ns || ideal < self.warmup_ns {
                    // Warm-up, or a window that closes after the last event (the end of
                    // the input flushed it early, so it has no meaningful latency).
                    continue;
                }
                let since = ideal - self.warmup_ns;
                let phase = bounds.iter().filter(|&&b| since >= b).count();
                self.local[phase].saturating_record(now.saturating_sub(ideal).max(1));
                if let Some((h, _)) = &mut self.rill_part {
                    let polled = row.polled_ns();
                    if polled != NOT_POLLED {
                        h.saturating_record(now.saturating_sub(polled).max(1));
                    }
                }
            }
        }
        if now.saturating_sub(self.last_publish) >= PUBLISH_NS {
            self.last_publish = now;
            self.publish()?;
        }
        Ok(())
    }

    fn publish(&mut self) -> OpResult {
        if self.measure {
            let mut shared = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let shared = shared.get_or_insert_with(phases);
            for (s, l) in shared.iter_mut().zip(self.local.iter_mut()) {
                s.add(&*l)
                    .map_err(|e| Failure::new(format!("merging histograms: {e:?}")))?;
                l.reset();
            }
            if let Some((local, live)) = &mut self.rill_part {
                let mut shared = live.lock().unwrap_or_else(|e| e.into_inner());
                shared
                    .get_or_insert_with(new_histogram)
                    .add(&*local)
                    .map_err(|e| Failure::new(format!("merging histograms: {e:?}")))?;
                local.reset();
            }
        }
        self.rows.fetch_add(
            std::mem::take(&mut self.unpublished_rows),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

/// Passes rows on unchanged and records their latency: in front of a sink that measures
/// nothing itself (the Kafka sink), so that the latency is that of rows reaching it.
struct MeasureRows(Latencies);

impl<R: Row> Operator<R> for MeasureRows {
    type Out = Output<R>;
    // The histograms are measurements, not state a restore needs.
    const STATE: OperatorState = OperatorState::Stateless;

    fn on_batch(&mut self, batch: &mut Vec<R>, out: &mut Output<R>) -> OpResult {
        self.0.record(batch)?;
        out.give_vec(batch);
        Ok(())
    }

    fn on_end(&mut self, _out: &mut Output<R>) -> OpResult {
        self.0.publish()
    }
}

/// Writes rows (optionally) and records their latency.
struct RowSink {
    file: Option<Arc<Mutex<BufWriter<File>>>>,
    parts: Option<PartWriter>,
    buffer: Vec<u8>,
    latencies: Latencies,
}

impl RowSink {
    fn write_out(&mut self) -> OpResult {
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&self.buffer)
                .map_err(|e| Failure::new(format!("writing the output: {e}")))?;
        }
        self.buffer.clear();
        Ok(())
    }
}

impl<R: Row> Sink<R> for RowSink {
    fn on_batch(&mut self, batch: &mut Vec<R>) -> OpResult {
        self.latencies.record(batch)?;
        let csv_failure = |e: csv::Error| Failure::new(format!("writing the output: {e}"));
        if self.file.is_some() {
            write_rows(batch, &mut self.buffer).map_err(csv_failure)?;
            if self.buffer.len() >= FLUSH_BYTES {
                self.write_out()?;
            }
        }
        if let Some(parts) = &mut self.parts {
            write_rows(batch, parts.buffer()).map_err(csv_failure)?;
            parts.written()?;
        }
        batch.clear();
        Ok(())
    }

    fn on_end(&mut self) -> OpResult {
        self.write_out()?;
        if let Some(parts) = &mut self.parts {
            parts.end()?;
        }
        self.latencies.publish()
    }

    fn snapshot(&mut self, checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        match &mut self.parts {
            Some(parts) => parts.pre_commit(checkpoint),
            None => Ok(()),
        }
    }

    fn on_checkpoint_complete(&mut self, checkpoint: u64) -> OpResult {
        match &mut self.parts {
            Some(parts) => parts.commit(checkpoint),
            None => Ok(()),
        }
    }
}

/// Failures of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The output file could not be created or written.
    #[error("{path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] rill_runtime::Error),
    /// The Kafka source or sink could not be set up.
    #[error(transparent)]
    Kafka(#[from] rill_kafka::Error),
}

/// Runs `spec`, calling `watch` every 200 ms while the job runs.
pub fn run(spec: &RunSpec, live: &Live, mut watch: impl FnMut()) -> Result<RunOutcome, RunError> {
    let mut generator = spec.generator.clone();
    let mut config = spec.config.clone();
    if let Some(rate) = spec.rate {
        generator.inter_event_ns = (1_000_000_000 / rate.max(1)).max(1);
        // Open loop: never park, so a due event is picked up at once.
        config = config.spin_before_park(Duration::from_secs(3600));
    }
    if let Some(c) = &spec.checkpointing {
        if spec.fresh_checkpoints {
            match std::fs::remove_dir_all(c.dir()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RunError::Output {
                        path: c.dir().to_path_buf(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        config = config.checkpointing(c.clone());
    }
    let shards = config.shard_count();
    let generator = Arc::new(generator);
    let epoch = Epoch::default();
    config = config.event_time_now(due_event_time(
        &generator,
        &epoch,
        open_loop_rate(spec),
        live.sources.clone(),
    ));
    // A latency run from Kafka keeps when event time reached each millisecond; from
    // intended times also when it was polled (rill's part; measured from the poll, the
    // two are one clock).
    let latency_run = spec.kafka.as_ref().filter(|k| k.latency_for.is_some());
    let event_clock = latency_run.map(|_| Arc::new(EventClock::default()));
    let poll_clock = latency_run
        .filter(|k| !k.latency_from_poll)
        .map(|_| Arc::new(EventClock::default()));
    let cx = QueryContext {
        window_ms: spec.window_ms,
        slide_ms: spec.slide_ms,
        event_clock: event_clock.clone(),
        poll_clock: poll_clock.clone(),
        ..QueryContext::new(generator.base_time_ms, epoch.clone())
    };
    let file = match &spec.output {
        Some(path) => {
            let mut w =
                File::create(path)
                    .map(BufWriter::new)
                    .map_err(|source| RunError::Output {
                        path: path.clone(),
                        source,
                    })?;
            let header = header_of(spec.query);
            writeln!(w, "{header}").map_err(|source| RunError::Output {
                path: path.clone(),
                source,
            })?;
            Some(Arc::new(Mutex::new(w)))
        }
        None => None,
    };
    let mut df = Dataflow::new();
    let kafka_latency = spec.kafka.as_ref().and_then(|k| k.latency_for);
    let (events, open_loop) = (spec.events, spec.rate.is_some() || kafka_latency.is_some());
    let (g, e, s) = (generator.clone(), epoch.clone(), live.sources.clone());
    let mut bad = None;
    let input = match &spec.kafka {
        Some(k) => {
            let (input, counts) = kafka_events(
                &mut df,
                k,
                &epoch,
                &live.sources,
                event_clock.clone(),
                poll_clock.clone(),
            )?;
            bad = Some(counts.bad);
            input
        }
        None => df.source("nexmark", move |shard| {
            NexmarkSource::new(
                g.clone(),
                shard.index,
                shard.shards,
                events,
                open_loop,
                e.clone(),
                s.clone(),
            )
        }),
    };
    if let Some(dir) = &spec.output_dir {
        df.on_job(Arc::new(PartFiles::new(dir.clone())));
    }
    let sink = SinkParts {
        epoch: epoch.clone(),
        file: file.clone(),
        parts: spec
            .output_dir
            .clone()
            .map(|dir| (dir, header_of(spec.query))),
        measure: open_loop,
        run_ns: match kafka_latency {
            Some(d) => (spec.warmup + d).as_nanos() as u64,
            None => events.saturating_mul(generator.inter_event_ns),
        },
        warmup_ns: spec.warmup.as_nanos() as u64,
        live: live.latency.clone(),
        // Measured where polls are kept apart (from the poll it is the figure itself).
        rill_part: poll_clock.as_ref().map(|_| live.rill_part.clone()),
        rows: live.rows.clone(),
        kafka_sink: match (&spec.kafka_sink, &spec.kafka) {
            (Some(topic), Some(k)) => Some(kafka_sink_config(
                &k.brokers,
                topic,
                spec.checkpointing.as_ref(),
            )?),
            _ => None,
        },
    };
    match spec.query {
        Query::Q0 => sink.attach(&queries::q0(&input, &cx))?,
        Query::Q1 => sink.attach(&queries::q1(&input, &cx))?,
        Query::Q2 => sink.attach(&queries::q2(&input, &cx))?,
        Query::Q3 => sink.attach(&queries::q3(&input, &cx))?,
        Query::Q4 => sink.attach(&queries::q4(&input, &cx))?,
        Query::Q5 => sink.attach(&queries::q5(&input, &cx))?,
        Query::Q6 => sink.attach(&queries::q6(&input, &cx))?,
        Query::Q7 => sink.attach(&queries::q7(&input, &cx))?,
        Query::Q8 => sink.attach(&queries::q8(&input, &cx))?,
        Query::Q11 => sink.attach(&queries::q11(&input, &cx))?,
        Query::Q12 => sink.attach(&queries::q12(&input, &cx))?,
    }
    let savepoints = config
        .checkpoint_settings()
        .is_some_and(|c| c.guarantee_of() != Guarantee::AtMostOnce);
    let handle = Runtime::new(config)?.spawn(df)?;
    let metrics = match &spec.metrics_addr {
        Some(addr) => Some(handle.serve_metrics(addr.as_str(), &spec.query.to_string())?),
        None => None,
    };
    let signals = match spec.stop_on_signal {
        true => Some(
            SignalStop::install(handle.controller(), savepoints).map_err(|source| {
                RunError::Output {
                    path: "<signal handler>".into(),
                    source,
                }
            })?,
        ),
        false => None,
    };
    // A latency run from Kafka stops (drains) once its measured time is over.
    let stop_at = kafka_latency.map(|d| spec.warmup + d + Duration::from_millis(500));
    let mut stopped = false;
    // At the end every input ended and has no lag: the report keeps the last lag sampled
    // while the run lasted, every 200 ms.
    let mut lags = LastLags::default();
    let mut turn = 0u64;
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        watch();
        turn += 1;
        if turn % 4 == 0 {
            lags.sample(&handle.metrics());
        }
        if !stopped && stop_at.is_some_and(|t| Duration::from_nanos(epoch.now_ns()) >= t) {
            handle.controller().stop();
            stopped = true;
        }
    }
    let report = handle.join().map(|r| lags.fill(r));
    // The endpoint closed with the job.
    drop(metrics);
    let signalled = signals.is_some_and(|s| s.finish());
    let report = report?;
    let elapsed = Duration::from_nanos(epoch.now_ns());
    // Read from Kafka, or stopped early: the events are those the sources took.
    let events = match &spec.kafka {
        None if !signalled => events,
        _ => live.sources.emitted.load(Ordering::Relaxed),
    };
    if let (Some(file), Some(path)) = (file, &spec.output) {
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.flush().map_err(|source| RunError::Output {
            path: path.clone(),
            source,
        })?;
    }
    let phases = if open_loop {
        live.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .or_else(|| Some(phases()))
    } else {
        None
    };
    Ok(RunOutcome {
        query: spec.query,
        shards,
        events,
        rate: spec.rate,
        rows: live.rows.load(Ordering::Relaxed),
        elapsed,
        throughput: events as f64 / elapsed.as_secs_f64().max(1e-9),
        phases,
        rill_part: live
            .rill_part
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
        end_lag: Duration::from_nanos(live.sources.end_lag_ns.load(Ordering::Relaxed)),
        max_lag: Duration::from_nanos(live.sources.max_lag_ns.load(Ordering::Relaxed)),
        report,
        bad_records: bad.map_or(0, |b| b.load(Ordering::Relaxed)),
    })
}

/// Per operator and shard, the last watermark lag seen while the job ran.
#[derive(Default)]
struct LastLags(Vec<Vec<Option<i64>>>);

impl LastLags {
    fn sample(&mut self, report: &JobReport) {
        self.0.resize(report.operators.len(), Vec::new());
        for (last, op) in self.0.iter_mut().zip(&report.operators) {
            last.resize(op.watermark_lag_ms.len(), None);
            for (l, now) in last.iter_mut().zip(&op.watermark_lag_ms) {
                if now.is_some() {
                    *l = *now;
                }
            }
        }
    }

    /// `report` with the last lag seen where its own is empty.
    fn fill(&self, mut report: JobReport) -> JobReport {
        for (op, last) in report.operators.iter_mut().zip(&self.0) {
            for (l, seen) in op.watermark_lag_ms.iter_mut().zip(last) {
                *l = l.or(*seen);
            }
        }
        report
    }
}

/// Whether the run is open loop (and so its events follow the wall clock's schedule).
fn open_loop_rate(spec: &RunSpec) -> bool {
    spec.rate.is_some() && spec.kafka.is_none()
}

/// The event time due now, which operators' watermark lag is measured from
/// (`docs/metrics.md`, "Watermark lag"). The generator's event times start in 2015, so
/// the wall clock would make every lag years long. Open loop, event `n` is due
/// `n * inter_event_ns` after the epoch: the event time due now is the generator's
/// schedule read at the wall clock. Unthrottled (or read from Kafka), events have no
/// schedule: the event time due now is that of the newest event the sources emitted, so
/// the lag says how far each operator is behind the sources.
fn due_event_time(
    generator: &Arc<GeneratorConfig>,
    epoch: &Epoch,
    open_loop: bool,
    sources: Arc<SourceStats>,
) -> impl Fn() -> rill_runtime::Timestamp + Send + Sync + 'static {
    let (generator, epoch) = (generator.clone(), epoch.clone());
    move || {
        let base = generator.base_time_ms as rill_runtime::Timestamp;
        if open_loop {
            let ns = epoch.started_ns().unwrap_or(0);
            base + (ns / 1_000_000) as rill_runtime::Timestamp
        } else {
            let emitted = sources.emitted.load(Ordering::Relaxed);
            generator.timestamp_ms(emitted) as rill_runtime::Timestamp
        }
    }
}

/// The CSV header of a query's output.
pub fn header_of(query: Query) -> String {
    use super::rows::*;
    match query {
        Query::Q0 => Timed::header(),
        Query::Q1 => Q1Row::header(),
        Query::Q2 => Q2Row::header(),
        Query::Q3 => Q3Row::header(),
        Query::Q4 => Q4Row::header(),
        Query::Q5 => Q5Row::header(),
        Query::Q6 => Q6Row::header(),
        Query::Q7 => Q7Row::header(),
        Query::Q8 => Q8Row::header(),
        Query::Q11 | Query::Q12 => BidderCount::header(),
    }
}

/// Everything a row sink needs, to attach one to a query's output.
/// The partitions of a `--kafka-sink` topic the run creates.
const SINK_PARTITIONS: usize = 4;

/// `--kafka-sink TOPIC`, created with 4 partitions if missing: exactly-once
/// (transactions) when the job takes exactly-once checkpoints, with the transactional id
/// prefix `rill-<topic>-<hash of the checkpoint directory>`: stable across restarts of
/// the job, distinct between jobs; else at least once.
fn kafka_sink_config(
    brokers: &str,
    topic: &str,
    checkpointing: Option<&Checkpointing>,
) -> Result<KafkaSinkConfig, rill_kafka::Error> {
    rill_kafka::admin::ensure_topic(brokers, topic, SINK_PARTITIONS)?;
    let config = KafkaSinkConfig::new(brokers.to_string(), topic.to_string());
    Ok(match checkpointing {
        Some(c) if c.guarantee_of() == Guarantee::ExactlyOnce => {
            let dir = std::path::absolute(c.dir()).unwrap_or_else(|_| c.dir().to_path_buf());
            // FNV-1a: stable across builds and runs (std's hasher is not).
            let hash = dir
                .to_string_lossy()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
                });
            config.exactly_once(format!("rill-{topic}-{hash:016x}"))
        }
        _ => config,
    })
}

struct SinkParts {
    epoch: Epoch,
    file: Option<Arc<Mutex<BufWriter<File>>>>,
    parts: Option<(PathBuf, String)>,
    measure: bool,
    run_ns: u64,
    warmup_ns: u64,
    live: Arc<Mutex<Option<Box<PhaseHistograms>>>>,
    /// Where rill's part is published, if measured.
    rill_part: Option<SharedHistogram>,
    rows: Arc<AtomicU64>,
    kafka_sink: Option<KafkaSinkConfig>,
}

impl SinkParts {
    fn latencies(&self) -> Latencies {
        Latencies {
            epoch: self.epoch.clone(),
            measure: self.measure,
            run_ns: self.run_ns,
            warmup_ns: self.warmup_ns,
            local: phases(),
            live: self.live.clone(),
            rill_part: self
                .rill_part
                .as_ref()
                .map(|live| (new_histogram(), live.clone())),
            rows: self.rows.clone(),
            unpublished_rows: 0,
            last_publish: 0,
        }
    }

    fn attach<R: Row>(&self, stream: &Stream<R>) -> Result<(), RunError> {
        if let Some(config) = &self.kafka_sink {
            // Latency to the Kafka sink: rows measured as they reach it (its encoding is
            // chained right after), counted there too.
            let parts = self.clone_for_measure();
            let measured = stream.unary("measure", move |_| MeasureRows(parts.latencies()));
            return Ok(kafka_sink(
                &measured,
                "sink",
                config.clone(),
                move |row: &R, buf| {
                    row.write_csv(buf);
                    trim_line_end(buf);
                },
            )?);
        }
        let file = self.file.clone();
        let parts = self.parts.clone();
        let measure = self.clone_for_measure();
        stream.sink("sink", move |shard| RowSink {
            file: file.clone(),
            parts: parts
                .as_ref()
                .map(|(dir, header)| PartWriter::new(shard, dir.clone(), Some(header.clone()))),
            buffer: Vec::with_capacity(FLUSH_BYTES + 4096),
            latencies: measure.latencies(),
        });
        Ok(())
    }

    /// What the per-shard [`Latencies`] are made from (shared with the shards' builders).
    fn clone_for_measure(&self) -> SinkParts {
        SinkParts {
            epoch: self.epoch.clone(),
            file: None,
            parts: None,
            measure: self.measure,
            run_ns: self.run_ns,
            warmup_ns: self.warmup_ns,
            live: self.live.clone(),
            rill_part: self.rill_part.clone(),
            rows: self.rows.clone(),
            kafka_sink: None,
        }
    }
}

//! NEXMark through Kafka, driven through the command line against an Apache Kafka broker
//! the tests share (`rill_kafka::testing`; each test has topics of its own):
//!
//! - `generate --kafka` then `run --kafka --until-end` with exactly-once checkpoints and
//!   the transactional file sink, SIGKILLed and restarted on 2, 1 and 3 shards: the
//!   committed rows equal those of the generator run.
//! - `--kafka-sink` at least once, SIGKILLed: every row is in the output topic.
//! - `--kafka-sink` exactly once (transactions), SIGKILLed on 1, 2 and 3 shards and
//!   aborted by the failpoint between a checkpoint's completion and its commit: a
//!   `read_committed` reader sees every row once; aborted right after a shard's last
//!   commit at the end of the input: no row repeats.
//! - Kafka to rill to Kafka (exactly once) to rill (read_committed, exactly-once files),
//!   both jobs SIGKILLed: the rows equal the generator run's.
//! - Two processes in one consumer group, one SIGKILLed mid-run: the other takes over its
//!   partitions and the union of their committed rows is complete.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rill_kafka::admin::read_topic;
use rill_kafka::testing::{read_text_sorted, remove_dirs_of_ended_processes, TestBroker};

mod common;

use common::Delays;

const BIN: &str = env!("CARGO_BIN_EXE_rill-bench");

/// This process's scratch directory for test `name`, empty. The scratch directories of
/// test processes no longer running go first (a run's are kept for a look until the
/// next: 7 MB each, 131 of them had piled up in /tmp).
fn scratch(name: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    remove_dirs_of_ended_processes(&tmp, |dir| {
        let rest = dir.strip_prefix("rill-kafka-")?;
        // (The brokers' own directories are the launcher's to remove.)
        if rest.starts_with("broker-") {
            return None;
        }
        rest.rsplit('-').next()?.parse().ok()
    });
    let root = tmp.join(format!("rill-kafka-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

fn bench(args: &[&str]) -> String {
    let o = Command::new(BIN)
        .args(args)
        .output()
        .expect("rill-bench runs");
    assert!(
        o.status.success(),
        "rill-bench {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `events` NEXMark events (seed 7) to `topic`.
fn generate(brokers: &str, topic: &str, events: u64, partitions: usize) {
    let events = events.to_string();
    let partitions = partitions.to_string();
    bench(&[
        "generate",
        "--events",
        &events,
        "--seed",
        "7",
        "--kafka",
        brokers,
        "--topic",
        topic,
        "--partitions",
        &partitions,
    ]);
}

/// The generator run's rows of `query` over `events` events, sorted.
fn reference(root: &Path, query: &str, events: u64) -> Vec<String> {
    let path = root.join(format!("reference-{query}.csv"));
    let events = events.to_string();
    bench(&[
        "run",
        "--query",
        query,
        "--events",
        &events,
        "--seed",
        "7",
        "--output",
        path.to_str().unwrap(),
        "--shards",
        "2",
        "--no-pin",
        "--quiet",
        "--window-size",
        "1s",
        "--window-slide",
        "500ms",
    ]);
    common::output_rows(&path)
}

/// The newest complete checkpoint's number in `dir` (0 if none).
fn newest_checkpoint(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().join("MANIFEST").exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// When a [`kill_at`] run is SIGKILLed: after it completed this many checkpoints of its
/// own, and then this long (progress, not time from the start: how long a run takes to
/// start, join its group or read its first records does not move the kill).
#[derive(Debug, Clone, Copy)]
struct KillPoint {
    checkpoints: u64,
    after: Duration,
}

impl Delays {
    /// A kill point after 1-3 new checkpoints and 0-100 ms more (anywhere in the 40 ms
    /// checkpoint cycle the runs use: between barriers, in a checkpoint, between a
    /// completion and a sink's commit).
    fn kill_point(&mut self) -> KillPoint {
        KillPoint {
            checkpoints: self.between(1, 3),
            after: self.next(0, 100),
        }
    }
}

/// Runs `command`, whose checkpoints go to `checkpoints`, and SIGKILLs it at `at`; false
/// if it ended (successfully) before.
fn kill_at(mut command: Command, log: &Path, checkpoints: &Path, at: KillPoint) -> bool {
    let start = newest_checkpoint(checkpoints);
    let mut child = command
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("rill-bench starts");
    let ended = |child: &mut Child| match child.try_wait().unwrap() {
        Some(status) => {
            let log = fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "{status}: {log}");
            true
        }
        None => false,
    };
    let limit = Instant::now() + Duration::from_secs(300);
    while newest_checkpoint(checkpoints) < start + at.checkpoints {
        if ended(&mut child) {
            return false;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            panic!(
                "no {} checkpoints in 300 s: {}",
                at.checkpoints,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = Instant::now() + at.after;
    while Instant::now() < deadline {
        if ended(&mut child) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    true
}

fn finish(mut command: Command) -> String {
    let o = command.output().expect("rill-bench runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `run --query Q --kafka B --topic T --until-end` with checkpoints in `root`.
fn kafka_run(
    root: &Path,
    brokers: &str,
    topic: &str,
    query: &str,
    guarantee: &str,
    shards: usize,
) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--query",
        query,
        "--kafka",
        brokers,
        "--topic",
        topic,
        "--until-end",
    ])
    .args([
        "--guarantee",
        guarantee,
        "--checkpoint-interval",
        "40ms",
        "--checkpoint-dir",
    ])
    .arg(root.join("checkpoints"))
    .args(["--shards", &shards.to_string(), "--no-pin", "--quiet"])
    .args(["--window-size", "1s", "--window-slide", "500ms"]);
    c
}

#[test]
fn exactly_once_from_kafka_survives_sigkills_and_shard_changes() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("exactly-once");
    // Enough that runs killed after 1-3 checkpoints of their own leave work for the next.
    let events = 200_000;
    generate(&b, "events-q5", events, 4);
    let expected = reference(&root, "q5", events);
    assert!(expected.len() > 20, "{} rows", expected.len());
    let out = root.join("out");
    let mut delays = Delays(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    for shards in [2, 1, 3, 2] {
        let mut c = kafka_run(&root, &b, "events-q5", "q5", "exactly-once", shards);
        c.arg("--output-dir").arg(&out);
        let (log, checkpoints) = (root.join("last.log"), root.join("checkpoints"));
        kills += kill_at(c, &log, &checkpoints, delays.kill_point()) as usize;
    }
    let mut c = kafka_run(&root, &b, "events-q5", "q5", "exactly-once", 2);
    c.arg("--output-dir").arg(&out);
    finish(c);
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    assert_eq!(
        common::committed_rows(&out),
        expected,
        "after {kills} kills"
    );
}

#[test]
fn at_least_once_kafka_sink_loses_no_row_across_sigkills() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("sink");
    // As above.
    let events = 100_000;
    generate(&b, "events-q1", events, 4);
    let expected = reference(&root, "q1", events);
    let mut delays = Delays(0x2545_f491_4f6c_dd1d);
    let mut kills = 0;
    for _ in 0..3 {
        let mut c = kafka_run(&root, &b, "events-q1", "q1", "at-least-once", 2);
        c.args(["--kafka-sink", "rows"]);
        let (log, checkpoints) = (root.join("last.log"), root.join("checkpoints"));
        kills += kill_at(c, &log, &checkpoints, delays.kill_point()) as usize;
    }
    let mut c = kafka_run(&root, &b, "events-q1", "q1", "at-least-once", 2);
    c.args(["--kafka-sink", "rows"]);
    finish(c);
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    let written: Vec<String> = read_topic(&b, "rows")
        .unwrap()
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    let distinct: BTreeSet<&String> = written.iter().collect();
    let expected: BTreeSet<&String> = expected.iter().collect();
    let missing = expected.difference(&distinct).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} rows missing after {kills} kills",
        expected.len()
    );
    assert_eq!(distinct, expected, "rows that are no result of the query");
    eprintln!(
        "at-least-once sink: {} rows written for {} distinct ({} duplicates) after {kills} kills",
        written.len(),
        distinct.len(),
        written.len() - distinct.len()
    );
}

/// Runs `c` with failpoint `var=value`: the process must abort, saying `says`.
fn failpoint(mut c: Command, var: &str, value: &str, says: &str) {
    c.env(var, value);
    let o = c.output().expect("rill-bench runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains(says),
        "the failpoint {var}={value} did not fire ({}): {stderr}",
        o.status
    );
}

/// q1 from topic `events-NAME` (4 partitions) to `rows-NAME` through the exactly-once
/// Kafka sink, with the rows the query must write.
struct EosSinkJob {
    brokers: String,
    root: PathBuf,
    name: String,
    expected: Vec<String>,
}

impl EosSinkJob {
    fn new(name: &str, events: u64) -> Self {
        let brokers = TestBroker::shared().brokers();
        let root = scratch(&format!("eos-{name}"));
        generate(&brokers, &format!("events-{name}"), events, 4);
        let expected = reference(&root, "q1", events);
        EosSinkJob {
            brokers,
            root,
            name: name.to_string(),
            expected,
        }
    }

    /// A run on `shards` shards, from the last checkpoint if there is one.
    fn run(&self, shards: usize) -> Command {
        let input = format!("events-{}", self.name);
        let (root, b) = (&self.root, &self.brokers);
        let mut c = kafka_run(root, b, &input, "q1", "exactly-once", shards);
        c.args(["--kafka-sink", &format!("rows-{}", self.name)]);
        c
    }

    /// A `read_committed` reader sees every expected row once, after `what`.
    fn assert_committed_once(&self, what: &str) {
        let written = read_text_sorted(&self.brokers, &format!("rows-{}", self.name));
        assert_eq!(
            written.len(),
            self.expected.len(),
            "a read_committed reader sees {} rows for {} results after {what}",
            written.len(),
            self.expected.len()
        );
        assert_eq!(written, self.expected);
    }
}

#[test]
fn exactly_once_kafka_sink_writes_every_row_once_across_sigkills_and_the_failpoint() {
    // Enough events that the kills come before a run's end (a kill between a shard's end
    // and the job's, restored onto another shard count, may repeat that shard's last rows:
    // docs/kafka.md).
    let job = EosSinkJob::new("eos", 200_000);
    let run = |shards| job.run(shards);
    // The failpoint first: the process aborts after its third checkpoint completed and
    // before that epoch's transaction committed; the next run must produce it again.
    failpoint(
        run(2),
        "RILL_KAFKA_CRASH_BEFORE_COMMIT",
        "3",
        "between completion and commit",
    );
    let mut delays = Delays(0x5851_f42d_4c95_7f2d);
    let mut kills = 0;
    for shards in [1, 2, 3] {
        let (log, checkpoints) = (job.root.join("last.log"), job.root.join("checkpoints"));
        kills += kill_at(run(shards), &log, &checkpoints, delays.kill_point()) as usize;
    }
    finish(run(3));
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    job.assert_committed_once(&format!("{kills} kills and the failpoint"));
}

#[test]
fn a_crash_after_a_shards_last_commit_repeats_no_row() {
    let job = EosSinkJob::new("last", 50_000);
    let run = |shards| job.run(shards);
    // The first shard to end commits its last transaction and the process aborts, before
    // the job's final manifest: the restored job replays from its last checkpoint, and
    // that shard drops what it already committed.
    failpoint(
        run(2),
        "RILL_KAFKA_CRASH_AFTER_LAST_COMMIT",
        "1",
        "after the last commit",
    );
    finish(run(2));
    job.assert_committed_once("the failpoint");
}

#[test]
fn kafka_to_rill_to_kafka_to_rill_is_exactly_once_through_crashes_of_both_jobs() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("e2e");
    let events = 60_000;
    generate(&b, "events-e2e", events, 4);
    let expected = reference(&root, "q1", events);
    // Job 1: the events themselves (q0), exactly once into the topic "mid".
    let first = |shards: usize| {
        let mut c = kafka_run(
            &root.join("first"),
            &b,
            "events-e2e",
            "q0",
            "exactly-once",
            shards,
        );
        c.args(["--kafka-sink", "mid"]);
        c
    };
    let mut delays = Delays(0x1405_7b7e_f767_814f);
    let mut kills = 0;
    for shards in [2, 1] {
        let checkpoints = root.join("first").join("checkpoints");
        kills += kill_at(
            first(shards),
            &root.join("first.log"),
            &checkpoints,
            delays.kill_point(),
        ) as usize;
    }
    finish(first(2));
    assert_eq!(
        read_text_sorted(&b, "mid").len() as u64,
        events,
        "job 1 wrote each event once"
    );
    // Job 2: q1 from "mid" (read_committed) into committed part files.
    let out = root.join("out");
    let second = |shards: usize| {
        let mut c = kafka_run(
            &root.join("second"),
            &b,
            "mid",
            "q1",
            "exactly-once",
            shards,
        );
        c.arg("--output-dir").arg(&out);
        c
    };
    for shards in [2, 3] {
        let checkpoints = root.join("second").join("checkpoints");
        kills += kill_at(
            second(shards),
            &root.join("second.log"),
            &checkpoints,
            delays.kill_point(),
        ) as usize;
    }
    finish(second(2));
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    assert_eq!(
        common::committed_rows(&out),
        expected,
        "after {kills} kills"
    );
}

/// Holds the broker for a latency test: one at a time (two debug runs and two paced
/// writers at once on two cores measured each other: q7's rows came up to 2 s late), and
/// after paced writes (3 s at 10k/s, once per process) to a topic of their own: for its
/// first seconds of paced traffic a broker that has just started (its JVM has not yet
/// compiled the request path) delivers records seconds late, even to a raw consumer (p50
/// 1.8 s in the first 4 s at 10k/s, 3-7 ms from the second round on). So the latency
/// tests measure the path, not the broker's start or each other, however they are run.
fn latency_turn(brokers: &str) -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static WARM: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    WARM.get_or_init(|| {
        bench(&[
            "generate", "--events", "30000", "--rate", "10k", "--kafka", brokers, "--topic",
            "warm-up",
        ]);
    });
    turn
}

#[test]
fn latency_from_kafka_is_measured_from_the_intended_send_times() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let _turn = latency_turn(&b);
    // The run first (its clock starts before the first event is due), then the paced
    // writer.
    assert_eq!(
        rill_kafka::admin::ensure_topic(&b, "events-paced", 2).unwrap(),
        2
    );
    let generate = std::thread::spawn({
        let b = b.clone();
        move || {
            std::thread::sleep(Duration::from_millis(500));
            // The form: --rate and --seconds (40,000 events).
            bench(&[
                "generate",
                "--kafka",
                &b,
                "--topic",
                "events-paced",
                "--rate",
                "10k",
                "--seconds",
                "4",
            ]);
        }
    });
    let o = Command::new(BIN)
        .args([
            "run",
            "--query",
            "q0",
            "--kafka",
            &b,
            "--topic",
            "events-paced",
        ])
        // The form: --seconds alone makes it a latency run that stops.
        .args(["--seconds", "3", "--shards", "2", "--no-pin"])
        .output()
        .expect("rill-bench runs");
    generate.join().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = summary_row(&stdout, "q0");
    // (Durations print as a number and a unit: "1.23 ms".)
    let rows: u64 = row[4].parse().unwrap_or(0);
    assert!(rows > 1000, "{rows} rows: {stdout}");
    let end_to_end = ms(row[6], row[7], &stdout);
    assert!(end_to_end > 0.0, "no latency measured: {stdout}");
    // And, in the same run, rill's part of it: from each record's poll, so no more than
    // from its intended time (it was sent, fetched and polled after it) at any percentile,
    // and less at the median (the producer's 2 ms linger alone comes before the poll).
    let part: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rill's part (record polled to sink): "))
        .unwrap_or_else(|| panic!("no line on rill's part: {stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        (part[0], part[3], part[6]),
        ("p50", "p95", "p99"),
        "{stdout}"
    );
    // (Where each percentile's value is, in that line and in the summary row.)
    for (label, in_part, in_row) in [("p50", 1, 6), ("p95", 4, 8), ("p99", 7, 10)] {
        let rill = ms(part[in_part], part[in_part + 1], &stdout);
        let all = ms(row[in_row], row[in_row + 1], &stdout);
        let below = if label == "p50" {
            rill < all
        } else {
            rill <= all
        };
        assert!(
            rill > 0.0 && below,
            "{label}: rill's part {rill} ms of {all} ms: {stdout}"
        );
    }
}

/// The fields of `query`'s summary row in `stdout`: query shards mode events/s rows
/// latency p50 p95 p99 ...
fn summary_row<'a>(stdout: &'a str, query: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(query))
        .unwrap_or_else(|| panic!("no summary row: {stdout}"))
        .split_whitespace()
        .collect()
}

/// A printed duration ("1.23" and "ms") in ms.
fn ms(value: &str, unit: &str, stdout: &str) -> f64 {
    let v: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("no duration in {value:?}: {stdout}"));
    match unit {
        "ns" => v / 1e6,
        "µs" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        unit => panic!("unit {unit}: {stdout}"),
    }
}

/// `run --kafka-latency` of `query` over `topic` (paced), with `extra` flags: the
/// latency summary's p50 in ms, and the row count.
fn kafka_latency_run(brokers: &str, topic: &str, query: &str, extra: &[&str]) -> (f64, u64) {
    let o = Command::new(BIN)
        .args([
            "run", "--query", query, "--kafka", brokers, "--topic", topic,
        ])
        .args([
            "--kafka-latency",
            "--seconds",
            "3",
            "--shards",
            "2",
            "--no-pin",
        ])
        .args(extra)
        .output()
        .expect("rill-bench runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = summary_row(&stdout, query);
    let rows: u64 = row[4].parse().unwrap_or(0);
    (ms(row[6], row[7], &stdout), rows)
}

/// Windows from Kafka are measured from when the first record at or past their end was
/// due (or, with --from-poll, polled); single events with --from-poll from their poll.
#[test]
fn window_latency_and_rills_part_are_measured_from_kafka() {
    let b = TestBroker::shared().brokers();
    let topic = "events-paced-windows";
    assert_eq!(rill_kafka::admin::ensure_topic(&b, topic, 2).unwrap(), 2);
    let _turn = latency_turn(&b);
    // 40k events at 10k/s: 4 s of wall time and of event time (100 µs apart), so 500 ms
    // windows close every 500 ms. Each run reads the topic from its start: the second
    // measures from the poll, so the records the first run read cost it nothing.
    let q7 = std::thread::spawn({
        let b = b.clone();
        move || kafka_latency_run(&b, topic, "q7", &["--window-size", "500ms"])
    });
    let write = |b: &str| {
        std::thread::sleep(Duration::from_millis(500));
        bench(&[
            "generate", "--events", "40000", "--rate", "10k", "--kafka", b, "--topic", topic,
        ]);
    };
    write(&b);
    let (q7_p50, q7_rows) = q7.join().unwrap();
    assert!(q7_rows >= 3, "{q7_rows} q7 rows");
    // Measured (rows due within the run), from a time within the run (a loaded machine
    // makes the figure itself vary a lot: seconds under a release build).
    assert!(q7_p50 > 0.0 && q7_p50 < 3_000.0, "q7 p50 {q7_p50} ms");

    let q0 = std::thread::spawn({
        let b = b.clone();
        move || kafka_latency_run(&b, topic, "q0", &["--from-poll"])
    });
    write(&b);
    let (q0_p50, q0_rows) = q0.join().unwrap();
    assert!(q0_rows > 1000, "{q0_rows} q0 rows");
    assert!(
        q0_p50 > 0.0 && q0_p50 < 400.0,
        "q0 from the poll: p50 {q0_p50} ms"
    );
}

/// Events written in the binary encoding read back as the same events: q0's (every
/// event), q2's and q5's rows from them equal the generator run's.
#[test]
fn binary_events_from_kafka_give_the_generator_runs_rows() {
    let b = TestBroker::shared().brokers();
    let root = scratch("binary");
    let events = 20_000u64;
    bench(&[
        "generate",
        "--events",
        &events.to_string(),
        "--seed",
        "7",
        "--kafka",
        &b,
        "--topic",
        "events-binary",
        "--partitions",
        "3",
        "--kafka-format",
        "binary",
    ]);
    for query in ["q0", "q2", "q5"] {
        let out = root.join(format!("{query}.csv"));
        bench(&[
            "run",
            "--query",
            query,
            "--kafka",
            &b,
            "--topic",
            "events-binary",
            "--until-end",
            "--shards",
            "2",
            "--no-pin",
            "--quiet",
            "--window-size",
            "1s",
            "--window-slide",
            "500ms",
            "--output",
            out.to_str().unwrap(),
        ]);
        let got = common::output_rows(&out);
        assert!(!got.is_empty(), "{query}: no rows");
        assert_eq!(got, reference(&root, query, events), "{query}");
    }
}

fn group_member(root: &Path, brokers: &str, name: &str) -> Command {
    let dir = root.join(name);
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--query",
        "q2",
        "--kafka",
        brokers,
        "--topic",
        "events-q2",
        "--until-end",
    ])
    .args([
        "--group",
        "g",
        "--checkpoint-interval",
        "100ms",
        "--checkpoint-dir",
    ])
    .arg(dir.join("checkpoints"))
    .arg("--output-dir")
    .arg(dir.join("out"))
    .args(["--shards", "1", "--no-pin", "--quiet"]);
    c
}

#[test]
fn a_group_member_killed_mid_run_is_taken_over_and_no_row_is_missing() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("group");
    let events = 600_000;
    generate(&b, "events-q2", events, 4);
    let expected = reference(&root, "q2", events);
    let spawn = |name: &str| -> Child {
        group_member(&root, &b, name)
            .stdout(Stdio::null())
            .stderr(fs::File::create(root.join(format!("{name}.log"))).unwrap())
            .spawn()
            .expect("rill-bench starts")
    };
    let mut survivor = spawn("survivor");
    let mut victim = spawn("victim");
    // Kill the victim once it has committed output (it owns partitions and reads them).
    let start = Instant::now();
    loop {
        if !common::committed_rows(&root.join("victim/out")).is_empty() {
            break;
        }
        if let Some(status) = victim.try_wait().unwrap() {
            panic!(
                "the victim ended ({status}) before it was killed: {}",
                fs::read_to_string(root.join("victim.log")).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the victim never wrote rows"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().expect("SIGKILL");
    victim.wait().unwrap();
    let victim_rows = common::committed_rows(&root.join("victim/out"));
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = survivor.kill();
            let _ = survivor.wait();
            panic!(
                "the survivor did not finish within 180 s: {}",
                fs::read_to_string(root.join("survivor.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(root.join("survivor.log")).unwrap_or_default()
    );
    let survivor_rows = common::committed_rows(&root.join("survivor/out"));
    let union: BTreeSet<&String> = victim_rows.iter().chain(&survivor_rows).collect();
    let expected: BTreeSet<&String> = expected.iter().collect();
    let missing = expected.difference(&union).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} rows missing (victim {}, survivor {})",
        expected.len(),
        victim_rows.len(),
        survivor_rows.len()
    );
    assert_eq!(union, expected);
    assert!(
        victim_rows.len() < expected.len(),
        "the victim had read everything before it was killed"
    );
}

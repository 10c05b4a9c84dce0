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
use rill_kafka::testing::TestBroker;

mod common;

use common::Delays;

const BIN: &str = env!("CARGO_BIN_EXE_rill-bench");

fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rill-kafka-{name}-{}", std::process::id()));
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

/// Runs `command` and SIGKILLs it after `delay`; false if it ended before.
fn kill_after(mut command: Command, log: &Path, delay: Duration) -> bool {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("rill-bench starts");
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{}",
                fs::read_to_string(log).unwrap_or_default()
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
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
        kills += kill_after(c, &root.join("last.log"), delays.next(400, 1500)) as usize;
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
    let events = 100_000;
    generate(&b, "events-q1", events, 4);
    let expected = reference(&root, "q1", events);
    let mut delays = Delays(0x2545_f491_4f6c_dd1d);
    let mut kills = 0;
    for _ in 0..3 {
        let mut c = kafka_run(&root, &b, "events-q1", "q1", "at-least-once", 2);
        c.args(["--kafka-sink", "rows"]);
        kills += kill_after(c, &root.join("last.log"), delays.next(400, 1500)) as usize;
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

/// Kafka records of `topic` as read by a `read_committed` reader, sorted.
fn committed_records(brokers: &str, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = read_topic(brokers, topic)
        .unwrap()
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn exactly_once_kafka_sink_writes_every_row_once_across_sigkills_and_the_failpoint() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("eos-sink");
    // Enough events that the kills come before a run's end (a kill between a shard's end
    // and the job's, restored onto another shard count, may repeat that shard's last rows:
    // docs/kafka.md).
    let events = 200_000;
    generate(&b, "events-eos", events, 4);
    let expected = reference(&root, "q1", events);
    let run = |shards: usize| {
        let mut c = kafka_run(&root, &b, "events-eos", "q1", "exactly-once", shards);
        c.args(["--kafka-sink", "rows-eos"]);
        c
    };
    // The failpoint first: the process aborts after its third checkpoint completed and
    // before that epoch's transaction committed; the next run must produce it again.
    let mut c = run(2);
    c.env("RILL_KAFKA_CRASH_BEFORE_COMMIT", "3");
    let o = c.output().expect("rill-bench runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("between completion and commit"),
        "the failpoint did not fire ({}): {stderr}",
        o.status
    );
    let mut delays = Delays(0x5851_f42d_4c95_7f2d);
    let mut kills = 0;
    for shards in [1, 2, 3] {
        kills += kill_after(run(shards), &root.join("last.log"), delays.next(300, 900)) as usize;
    }
    finish(run(3));
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    let written = committed_records(&b, "rows-eos");
    assert_eq!(
        written.len(),
        expected.len(),
        "a read_committed reader sees {} rows for {} results after {kills} kills and the \
         failpoint",
        written.len(),
        expected.len()
    );
    assert_eq!(written, expected);
}

#[test]
fn a_crash_after_a_shards_last_commit_repeats_no_row() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
    let root = scratch("eos-last");
    let events = 50_000;
    generate(&b, "events-last", events, 4);
    let expected = reference(&root, "q1", events);
    let run = |shards: usize| {
        let mut c = kafka_run(&root, &b, "events-last", "q1", "exactly-once", shards);
        c.args(["--kafka-sink", "rows-last"]);
        c
    };
    // The first shard to end commits its last transaction and the process aborts, before
    // the job's final manifest: the restored job replays from its last checkpoint, and
    // that shard drops what it already committed.
    let mut c = run(2);
    c.env("RILL_KAFKA_CRASH_AFTER_LAST_COMMIT", "1");
    let o = c.output().expect("rill-bench runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("after the last commit"),
        "the failpoint did not fire ({}): {stderr}",
        o.status
    );
    finish(run(2));
    let written = committed_records(&b, "rows-last");
    assert_eq!(
        written.len(),
        expected.len(),
        "a read_committed reader sees {} rows for {} results",
        written.len(),
        expected.len()
    );
    assert_eq!(written, expected);
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
        kills += kill_after(
            first(shards),
            &root.join("first.log"),
            delays.next(400, 1200),
        ) as usize;
    }
    finish(first(2));
    assert_eq!(
        committed_records(&b, "mid").len() as u64,
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
        kills += kill_after(
            second(shards),
            &root.join("second.log"),
            delays.next(400, 1200),
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

#[test]
fn latency_from_kafka_is_measured_from_the_intended_send_times() {
    let broker = TestBroker::shared();
    let b = broker.brokers();
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
            bench(&[
                "generate",
                "--events",
                "40000",
                "--rate",
                "10k",
                "--kafka",
                &b,
                "--topic",
                "events-paced",
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
        .args([
            "--kafka-latency",
            "--seconds",
            "3",
            "--shards",
            "2",
            "--no-pin",
        ])
        .output()
        .expect("rill-bench runs");
    generate.join().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The summary row: query shards mode events/s rows latency p50 p95 p99 ...
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("q0"))
        .unwrap_or_else(|| panic!("no summary row: {stdout}"))
        .split_whitespace()
        .collect();
    // (Durations print as a number and a unit: "1.23 ms".)
    let rows: u64 = row[4].parse().unwrap_or(0);
    assert!(rows > 1000, "{rows} rows: {stdout}");
    assert!(
        row[6].parse::<f64>().is_ok_and(|v| v > 0.0) && ["ns", "µs", "ms", "s"].contains(&row[7]),
        "no latency measured: {stdout}"
    );
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

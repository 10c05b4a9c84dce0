//! Partition state that moves with its partition, against Apache Kafka (on loopback, a
//! broker per test: the members use fixed topic and group names): a running count and
//! sum per key within each partition ([`kafka_source_with_state`]), run by group members
//! in child processes (this test binary again, running the ignored test `member`),
//! SIGKILLed mid-run.
//!
//! Every row a member writes is `partition,key,count,sum`: the count and sum of the key's
//! records in that partition so far. A state that restarted empty, or from the wrong
//! offset, writes rows whose sums are not those of the key's first `count` records, and
//! the checks below compare every row with that oracle (what a single process computes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rill_kafka::admin::{ensure_topic, TopicWriter};
use rill_kafka::testing::TestBroker;
use rill_kafka::{kafka_source_with_state, KafkaRecord, KafkaSourceConfig, PartitionState};
use rill_operators::Inspect;
use rill_runtime::checkpoint::{find_latest, Checkpointing};
use rill_runtime::{Config, Dataflow, Output, Runtime};

const TOPIC: &str = "keyed";
const PARTITIONS: u64 = 4;
const KEYS: u64 = 5;
const GROUP: &str = "counts";

/// Record `i` goes to partition `i % 4` (at offset `i / 4`); its key is the partition's
/// record number modulo 5, its value `i`.
fn key_of(value: u64) -> u64 {
    (value / PARTITIONS) % KEYS
}

fn fill(brokers: &str, n: u64) {
    assert_eq!(
        ensure_topic(brokers, TOPIC, PARTITIONS as usize).unwrap(),
        PARTITIONS as usize
    );
    let w = TopicWriter::new(brokers, TOPIC).unwrap();
    for i in 0..n {
        w.send((i % PARTITIONS) as i32, None, i.to_string().as_bytes())
            .unwrap();
    }
    w.flush().unwrap();
}

/// The sums of each (partition, key) after its 1st, 2nd, ... record.
fn oracle(n: u64) -> BTreeMap<(i32, u64), Vec<u64>> {
    let mut sums: BTreeMap<(i32, u64), Vec<u64>> = BTreeMap::new();
    for i in 0..n {
        let run = sums
            .entry(((i % PARTITIONS) as i32, key_of(i)))
            .or_default();
        run.push(run.last().copied().unwrap_or(0) + i);
    }
    sums
}

type Row = (i32, u64, u64, u64);

fn parse(r: &KafkaRecord<'_>) -> Result<u64, String> {
    let text = std::str::from_utf8(r.payload.unwrap_or_default()).map_err(|e| e.to_string())?;
    text.parse::<u64>().map_err(|e| format!("{text:?}: {e}"))
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// One member: run by the tests below as a child process, with its settings in the
/// environment; does nothing when run without them.
#[test]
#[ignore = "a member process of the partition-state tests, which start it themselves"]
fn member() {
    let Ok(brokers) = std::env::var("RILL_PS_BROKERS") else {
        return;
    };
    let pause = Duration::from_micros(var("RILL_PS_PAUSE_US").parse().unwrap());
    let mut config = KafkaSourceConfig::new(brokers, &[TOPIC])
        .until_end(true)
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500");
    if var("RILL_PS_MODE") == "group" {
        config = config.group(GROUP);
    }
    let mut df = Dataflow::new();
    let counts = kafka_source_with_state(
        &mut df,
        "counts",
        config,
        PartitionState::new(var("RILL_PS_STATE")),
        parse,
        move |at, counts: &mut HashMap<u64, (u64, u64)>, value: u64, out: &mut Output<Row>| {
            let key = key_of(value);
            let (count, sum) = counts.entry(key).or_default();
            *count += 1;
            *sum += value;
            out.give((at.partition, key, *count, *sum));
            // Slow, so that the test can kill it mid-run.
            std::thread::sleep(pause);
        },
    )
    .unwrap();
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(var("RILL_PS_OUT"))
        .unwrap();
    let out = Arc::new(Mutex::new(out));
    counts
        .output
        .inspect("write", move |_, (p, key, count, sum): &Row| {
            // One write per row: a kill never leaves half a line.
            let line = format!("{p},{key},{count},{sum}\n");
            out.lock().unwrap().write_all(line.as_bytes()).unwrap();
        })
        .discard("rows");
    let checkpoints =
        Checkpointing::new(var("RILL_PS_CHECKPOINTS")).interval(Some(Duration::from_millis(50)));
    let config = Config::default()
        .shards(1)
        .pin(false)
        .checkpointing(checkpoints);
    Runtime::new(config).unwrap().run(df).unwrap();
}

/// Test scratch space.
fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rill-kafka-ps-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

/// A member process, SIGKILLed when dropped (so a failing test leaves none behind).
struct Member(Child);

impl Member {
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().unwrap();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts member `name` (its checkpoints and rows under `root/name`, the partition
/// state in `root/state`).
fn spawn(root: &Path, brokers: &str, mode: &str, name: &str, pause_us: u64) -> Member {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(format!("{name}.log")))
        .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "member",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RILL_PS_BROKERS", brokers)
        .env("RILL_PS_MODE", mode)
        .env("RILL_PS_STATE", root.join("state"))
        .env("RILL_PS_CHECKPOINTS", dir.join("checkpoints"))
        .env("RILL_PS_OUT", dir.join("rows.csv"))
        .env("RILL_PS_PAUSE_US", pause_us.to_string())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the test binary starts again as a member");
    Member(child)
}

fn rows(root: &Path, name: &str) -> Vec<Row> {
    let text = fs::read_to_string(root.join(name).join("rows.csv")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (f[0] as i32, f[1], f[2], f[3])
        })
        .collect()
}

fn log(root: &Path, name: &str) -> String {
    fs::read_to_string(root.join(format!("{name}.log"))).unwrap_or_default()
}

/// Waits for `child` to end successfully within `within`.
fn finish(mut member: Member, root: &Path, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = member.0.try_wait().unwrap() {
            assert!(status.success(), "{name} failed: {}", log(root, name));
            return;
        }
        if Instant::now() > deadline {
            drop(member);
            panic!(
                "{name} did not finish within {within:?}: {}",
                log(root, name)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every row is the oracle's row for its (partition, key, count), and every key's last
/// count was reached.
fn check_rows(all: &[Row], n: u64) {
    let oracle = oracle(n);
    for &(p, key, count, sum) in all {
        let expected = oracle[&(p, key)].get(count as usize - 1).copied();
        assert_eq!(
            expected,
            Some(sum),
            "row partition {p} key {key} count {count}: sum {sum}, a single process has \
             {expected:?} (the state did not continue where it was)"
        );
    }
    let mut last: BTreeMap<(i32, u64), u64> = BTreeMap::new();
    for &(p, key, count, _) in all {
        let c = last.entry((p, key)).or_default();
        *c = (*c).max(count);
    }
    let expected: BTreeMap<(i32, u64), u64> = oracle
        .iter()
        .map(|(&k, sums)| (k, sums.len() as u64))
        .collect();
    assert_eq!(last, expected, "the final counts");
}

/// A client that reads the group's committed offsets (it does not join the group).
fn group_reader(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", GROUP)
        .create()
        .unwrap()
}

/// The group's committed offsets, by partition.
fn committed(consumer: &BaseConsumer) -> Vec<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition(TOPIC, p);
    }
    let Ok(c) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return vec![None; PARTITIONS as usize];
    };
    (0..PARTITIONS as i32)
        .map(|p| match c.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

#[test]
fn a_partitions_state_moves_to_the_member_that_takes_it_over() {
    let broker = TestBroker::start();
    let b = broker.brokers();
    let n = 24_000;
    let per_partition = (n / PARTITIONS) as i64;
    fill(&b, n);
    let root = scratch("takeover");
    let survivor = spawn(&root, &b, "group", "survivor", 200);
    let mut victim = spawn(&root, &b, "group", "victim", 200);
    // Kill the victim once the group has committed an offset of one of its partitions
    // past the first records (so the survivor must resume that partition's state).
    let reader = group_reader(&b);
    let start = Instant::now();
    let taken = loop {
        let owned: BTreeSet<i32> = rows(&root, "victim").iter().map(|r| r.0).collect();
        let offsets = committed(&reader);
        let moving: Vec<(i32, i64)> = owned
            .iter()
            .filter_map(|&p| offsets[p as usize].map(|o| (p, o)))
            .filter(|&(_, o)| o > 2 * KEYS as i64 && o < per_partition)
            .collect();
        if !moving.is_empty() {
            break moving;
        }
        if let Some(status) = victim.0.try_wait().unwrap() {
            panic!(
                "the victim ended ({status}) before it was killed: {}",
                log(&root, "victim")
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the victim never committed: {}",
            log(&root, "victim")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    victim.kill();
    // (The survivor may have read a partition before the victim joined: only its rows
    // after the kill tell where it took the victim's partitions over.)
    let before_kill = rows(&root, "survivor").len();
    finish(survivor, &root, "survivor", Duration::from_secs(120));

    let (victim_rows, survivor_rows) = (rows(&root, "victim"), rows(&root, "survivor"));
    let mut all = victim_rows.clone();
    all.extend(&survivor_rows);
    check_rows(&all, n);
    // The survivor took the victim's partitions over from their committed offsets, with
    // the state the victim had written there: after the kill it has no row of their
    // first records.
    for &(p, offset) in &taken {
        let first = survivor_rows[before_kill..]
            .iter()
            .filter(|r| r.0 == p)
            .map(|r| r.2)
            .min()
            .unwrap_or_else(|| panic!("the survivor has no row of partition {p}"));
        assert!(
            first > 1,
            "the survivor read partition {p} from its start, not from offset {offset}"
        );
    }
    assert!(
        fs::read_dir(root.join(format!("state/counts/{TOPIC}/{}", taken[0].0)))
            .unwrap()
            .count()
            > 0
    );
    let _ = fs::remove_dir_all(&root);
}

/// True if a partition's state was written at an offset past its start.
fn written_past_start(root: &Path) -> bool {
    (0..PARTITIONS).any(|p| {
        fs::read_dir(root.join(format!("state/counts/{TOPIC}/{p}")))
            .map(|files| {
                files.flatten().any(|f| {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".state") && !name.starts_with("00000000000000000000")
                })
            })
            .unwrap_or(false)
    })
}

/// One process in `mode`, SIGKILLed mid-run and restarted from its own checkpoint: every
/// partition's state resumes where the checkpoint has it.
fn restart(mode: &str) {
    let broker = TestBroker::start();
    let b = broker.brokers();
    let n = 8_000;
    fill(&b, n);
    let root = scratch(&format!("restart-{mode}"));
    let mut first = spawn(&root, &b, mode, "member", 300);
    // Kill it once a checkpoint completed after a barrier that wrote a partition's state
    // past its start (so the restart resumes from there, not from the beginning).
    let checkpoints = root.join("member/checkpoints");
    let latest = || find_latest(&checkpoints).checkpoint().unwrap_or(0);
    let start = Instant::now();
    let mut after = None;
    loop {
        match after {
            None if written_past_start(&root) => after = Some(latest()),
            Some(c) if latest() > c => break,
            _ => {}
        }
        if let Some(status) = first.0.try_wait().unwrap() {
            panic!(
                "the member ended ({status}) before it was killed: {}",
                log(&root, "member")
            );
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill();
    let before = rows(&root, "member").len();
    assert!(
        before < n as usize,
        "the member read everything before it was killed"
    );
    let again = spawn(&root, &b, mode, "member", 0);
    finish(again, &root, "member", Duration::from_secs(120));
    let all = rows(&root, "member");
    check_rows(&all, n);
    // The restart resumed from the checkpoint: it did not read everything again.
    assert!(
        all.len() < before + n as usize,
        "{} rows, {before} before the kill",
        all.len()
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_process_restarted_from_its_checkpoint_resumes_each_partitions_state() {
    restart("static");
}

#[test]
fn a_group_member_restarted_from_its_checkpoint_resumes_each_partitions_state() {
    restart("group");
}

//! Crash tests through the command line: `rill-bench run` with checkpoints and the
//! transactional file sink is SIGKILLed at random moments, restarted from its checkpoint
//! directory (on other shard counts too, and after its newest checkpoint was damaged),
//! and its committed output compared with an uninterrupted run.
//!
//! Exactly-once: identical rows. At-least-once: nothing missing (duplicates counted).
//! At-most-once: nothing duplicated, every row a real result of real bids (losses
//! counted).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_bench::nexmark::{Event, GeneratorConfig};

mod common;

use common::Delays;

const BIN: &str = env!("CARGO_BIN_EXE_rill-bench");

struct Job {
    root: PathBuf,
    query: &'static str,
    events: u64,
    guarantee: &'static str,
}

impl Job {
    fn new(name: &str, query: &'static str, events: u64, guarantee: &'static str) -> Job {
        let root = std::env::temp_dir().join(format!("rill-crash-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Job {
            root,
            query,
            events,
            guarantee,
        }
    }

    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    fn command(&self, shards: usize) -> Command {
        let mut c = Command::new(BIN);
        c.args(["run", "--query", self.query, "--events"])
            .arg(self.events.to_string())
            .args(["--guarantee", self.guarantee, "--checkpoint-dir"])
            .arg(self.checkpoints())
            .args(["--checkpoint-interval", "40ms", "--output-dir"])
            .arg(self.out())
            .args(["--shards", &shards.to_string(), "--no-pin", "--quiet"])
            .args(["--window-size", "1s", "--window-slide", "500ms"]);
        c
    }

    /// Starts the job and lets it run for `delay`; `None` if it ended (successfully) before.
    fn run_for(&self, shards: usize, delay: Duration) -> Option<std::process::Child> {
        let log = fs::File::create(self.root.join("last.log")).unwrap();
        let mut child = self
            .command(shards)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rill-bench starts");
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let log = fs::read_to_string(self.root.join("last.log")).unwrap_or_default();
                assert!(
                    status.success(),
                    "run failed before it was interrupted: {log}"
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(child)
    }

    /// Runs the job and SIGKILLs it after `delay`; returns false if it had already ended.
    fn kill_after(&self, shards: usize, delay: Duration) -> bool {
        let Some(mut child) = self.run_for(shards, delay) else {
            return false;
        };
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        true
    }

    /// Runs the job and sends it `signal` after `delay`; returns false if it had already
    /// ended. A signalled run must exit 0, stopped at a savepoint.
    fn signal_after(&self, shards: usize, delay: Duration, signal: i32) -> bool {
        let log_path = self.root.join("last.log");
        let Some(mut child) = self.run_for(shards, delay) else {
            return false;
        };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill failed");
        let status = child.wait().unwrap();
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        assert!(status.success(), "a signalled run exits 0: {status}: {log}");
        if log.contains("stopped at savepoint") {
            return true;
        }
        // It ended on its own just as the signal came.
        assert!(!log.contains("cancelled"), "{log}");
        false
    }

    /// Runs the job to its end; returns its stdout.
    fn finish(&self, shards: usize) -> String {
        let o = self.command(shards).output().expect("rill-bench runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Complete checkpoints, oldest first.
    fn complete_checkpoints(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(self.checkpoints())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.retain(|d| d.join("MANIFEST").exists());
        dirs.sort();
        dirs
    }

    /// The committed rows (header lines left out), sorted.
    fn committed(&self) -> Vec<String> {
        common::committed_rows(&self.out())
    }

    /// The rows of an uninterrupted run without checkpoints, sorted.
    fn reference(&self) -> Vec<String> {
        let file = self.root.join("reference.csv");
        let o = Command::new(BIN)
            .args(["run", "--query", self.query, "--events"])
            .arg(self.events.to_string())
            .arg("--output")
            .arg(&file)
            .args(["--shards", "2", "--no-pin", "--quiet"])
            .args(["--window-size", "1s", "--window-slide", "500ms"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        common::output_rows(&file)
    }

    /// SIGKILLs `kills` runs on `shards` shards at random moments; returns how many were
    /// killed while running.
    fn kill_many(&self, shards: usize, kills: usize, delays: &mut Delays) -> usize {
        let mut killed = 0;
        for _ in 0..kills {
            if self.kill_after(shards, delays.next(150, 450)) {
                killed += 1;
            }
        }
        killed
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn damage(file: &Path, truncate: bool) {
    let mut bytes = fs::read(file).unwrap();
    if truncate {
        bytes.truncate(bytes.len() * 2 / 3);
    } else {
        let i = bytes.len() / 2;
        bytes[i] ^= 0xff;
    }
    fs::write(file, bytes).unwrap();
}

/// Damages the newest complete checkpoint if an older complete one remains to fall back
/// on; returns whether it did.
fn damage_newest(job: &Job, truncate: bool) -> bool {
    let complete = job.complete_checkpoints();
    if complete.len() < 2 {
        return false;
    }
    let newest = complete.last().unwrap();
    let shard_file = fs::read_dir(newest)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "bin"));
    match shard_file {
        Some(f) => {
            damage(&f, truncate);
            true
        }
        None => false,
    }
}

#[test]
fn exactly_once_q5_survives_sigkills_rescaling_and_damaged_checkpoints() {
    // Enough events that the runs last through every kill (the cheaper checkpoints are,
    // the faster a run gets through them).
    let job = Job::new("eo", "q5", 5_000_000, "exactly-once");
    let mut delays = Delays(0x9e37_79b9_7f4a_7c15);
    let mut killed = 0;
    let mut damaged = 0;
    // 2 shards, then 1, then 3: each restart may also find its newest checkpoint damaged.
    for (shards, kills) in [(2, 8), (1, 6), (3, 6)] {
        for k in 0..kills {
            if k == 3 && damage_newest(&job, shards == 1) {
                damaged += 1;
            }
            killed += job.kill_many(shards, 1, &mut delays);
        }
    }
    let stdout = job.finish(3);
    assert!(killed >= 20, "only {killed} runs were killed while running");
    assert!(damaged >= 1, "no checkpoint was damaged");
    let committed = job.committed();
    let reference = job.reference();
    assert!(!reference.is_empty());
    assert_eq!(committed.len(), reference.len(), "{stdout}");
    assert_eq!(committed, reference);
    // Running the finished job again changes nothing.
    let again = job.finish(2);
    assert_eq!(job.committed(), reference, "{again}");
}

/// SIGTERM and SIGINT at random moments stop the job with a savepoint (exit 0); the same
/// command resumes it, on other shard counts too; the committed output equals an
/// uninterrupted run's.
#[test]
fn exactly_once_q5_stopped_by_signals_resumes_from_savepoints() {
    let job = Job::new("signals", "q5", 3_000_000, "exactly-once");
    let mut delays = Delays(0x5851_f42d_4c95_7f2d);
    let mut stopped = 0;
    for (i, shards) in [2, 2, 1, 3, 3, 2].into_iter().enumerate() {
        let signal = if i % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        if job.signal_after(shards, delays.next(150, 400), signal) {
            stopped += 1;
            // The newest complete checkpoint is the savepoint: self-contained.
            let newest = job.complete_checkpoints().pop().unwrap();
            let manifest = fs::read_to_string(newest.join("MANIFEST")).unwrap();
            let id = manifest
                .lines()
                .find_map(|l| l.strip_prefix("id "))
                .unwrap();
            assert!(
                manifest.lines().any(|l| l == format!("base {id}")),
                "{manifest}"
            );
        }
    }
    job.finish(2);
    assert!(
        stopped >= 4,
        "only {stopped} runs were stopped while running"
    );
    let reference = job.reference();
    assert!(!reference.is_empty());
    assert_eq!(job.committed(), reference);
}

#[test]
fn at_least_once_q7_loses_nothing() {
    let job = Job::new("alo", "q7", 1_000_000, "at-least-once");
    let mut delays = Delays(0x2545_f491_4f6c_dd1d);
    let killed = job.kill_many(2, 6, &mut delays);
    job.finish(2);
    assert!(killed >= 4, "only {killed} runs were killed while running");
    let committed = job.committed();
    let reference = job.reference();
    let have: BTreeSet<&String> = committed.iter().collect();
    let missing: Vec<&String> = reference.iter().filter(|r| !have.contains(r)).collect();
    assert!(missing.is_empty(), "missing rows: {missing:?}");
    let duplicates = committed.len() - have.len();
    eprintln!(
        "at-least-once: {} rows, {} reference rows, {duplicates} duplicates",
        committed.len(),
        reference.len()
    );
}

#[test]
fn at_most_once_q7_duplicates_nothing() {
    let events = 1_000_000u64;
    let job = Job::new("amo", "q7", events, "at-most-once");
    let mut delays = Delays(0x1234_5678_9abc_def1);
    let killed = job.kill_many(2, 6, &mut delays);
    job.finish(2);
    assert!(killed >= 4, "only {killed} runs were killed while running");
    let committed = job.committed();
    let reference = job.reference();
    // Every row is a real bid of its window (window_start,window_end,auction,bidder,price).
    let g = GeneratorConfig::default();
    let mut bids: BTreeSet<(i64, u64, u64, u64)> = BTreeSet::new();
    for n in 0..events {
        if let Event::Bid(b) = g.event(n) {
            let t = b.date_time as i64;
            bids.insert((t - t.rem_euclid(1000), b.auction, b.bidder, b.price));
        }
    }
    let mut seen: BTreeMap<&String, usize> = BTreeMap::new();
    for row in &committed {
        *seen.entry(row).or_default() += 1;
        let f = common::fields(row);
        let key = (
            f[0].parse::<i64>().unwrap(),
            f[2].parse::<u64>().unwrap(),
            f[3].parse::<u64>().unwrap(),
            f[4].parse::<u64>().unwrap(),
        );
        assert!(bids.contains(&key), "row {row} is no bid of its window");
    }
    let mut in_reference: BTreeMap<&String, usize> = BTreeMap::new();
    for row in &reference {
        *in_reference.entry(row).or_default() += 1;
    }
    // A row appears at most as often as without failures (once, for rows the failures
    // made up from a partial window): more would mean a replayed bid.
    let dup: Vec<_> = seen
        .iter()
        .filter(|(row, &n)| n > in_reference.get(*row).copied().unwrap_or(1))
        .collect();
    assert!(dup.is_empty(), "duplicated rows: {dup:?}");
    let have: BTreeSet<&String> = committed.iter().collect();
    let lost = reference.iter().filter(|r| !have.contains(r)).count();
    eprintln!(
        "at-most-once: {} rows, {} reference rows, {lost} lost",
        committed.len(),
        reference.len()
    );
}

#[test]
fn checkpoint_flags_are_checked() {
    let o = Command::new(BIN)
        .args(["run", "--query", "q1", "--guarantee", "exactly-once"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--guarantee needs --checkpoint-dir"));
    let o = Command::new(BIN)
        .args([
            "run",
            "--query",
            "q1",
            "--checkpoint-dir",
            "/tmp/rill-unused",
            "--guarantee",
            "twice",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown guarantee"));
}

#[test]
fn exactly_once_process_function_and_window_queries_survive_sigkills() {
    // q3 (incremental join), q4 and q6 (two process-function stages with timers), q8
    // (tumbling window aggregate), q11 (merging session windows).
    // Events per query: enough that a run usually outlives its kill (150-450 ms) even
    // after earlier runs' checkpoints took most of the work (q8 runs fastest).
    for (query, seed, events) in [
        ("q3", 7u64, 600_000),
        ("q4", 11, 600_000),
        ("q6", 13, 600_000),
        ("q8", 17, 1_200_000),
        ("q11", 19, 600_000),
    ] {
        let job = Job::new(&format!("eo-{query}"), query, events, "exactly-once");
        let mut delays = Delays(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut killed = job.kill_many(2, 3, &mut delays);
        killed += job.kill_many(1, 2, &mut delays);
        job.finish(3);
        assert!(
            killed >= 3,
            "{query}: only {killed} runs were killed while running"
        );
        let reference = job.reference();
        assert!(!reference.is_empty(), "{query}");
        assert_eq!(job.committed(), reference, "{query}");
    }
}

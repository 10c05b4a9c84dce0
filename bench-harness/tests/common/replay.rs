//! Running `rill-bench replay` from the hand-checked scenario tests (`replay.rs`), and
//! reading its panes back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const HEADER: &str =
    "key,window_start,window_end,value,timing,pane_index,is_last,emit_time,kind";

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub enum Input<'a> {
    File(PathBuf),
    Text(&'a str),
    Stdin(&'a str),
}

pub fn example(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/replay")).join(name)
}

/// A fresh path under the temp dir, unique within and across test processes.
pub fn temp_path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("rill-replay-{}-{n}-{tag}", std::process::id()))
}

/// Splits options on whitespace outside parentheses, so triggers may contain spaces.
pub fn argv(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut depth = 0i32;
    for word in line.split_whitespace() {
        match out.last_mut() {
            Some(last) if depth > 0 => *last = format!("{last} {word}"),
            _ => out.push(word.to_string()),
        }
        depth += word.matches('(').count() as i32 - word.matches(')').count() as i32;
    }
    out
}

/// Runs `rill-bench replay` with `args` (and `--late-output late` if given).
pub fn replay(input: Input, args: &str, late: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill-bench"));
    cmd.arg("replay").args(argv(args));
    if let Some(late) = late {
        cmd.arg("--late-output").arg(late);
    }
    let temp = temp_path("input.csv");
    match input {
        Input::File(path) => cmd.arg("--input").arg(path),
        Input::Text(text) => {
            std::fs::write(&temp, text).expect("write input");
            cmd.arg("--input").arg(&temp)
        }
        Input::Stdin(text) => {
            std::fs::write(&temp, text).expect("write input");
            cmd.stdin(std::fs::File::open(&temp).expect("open input"))
        }
    };
    let out = cmd.output().expect("run rill-bench");
    std::fs::remove_file(&temp).ok();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

pub fn file(name: &str, args: &str) -> Run {
    replay(Input::File(example(name)), args, None)
}

pub fn text(input: &str, args: &str) -> Run {
    replay(Input::Text(input), args, None)
}

pub fn ok(run: Run) -> String {
    assert_eq!(run.code, Some(0), "replay failed: {}", run.stderr);
    run.stdout
}

/// Reads and removes a `--late-output` file.
pub fn take_late(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("late output written");
    std::fs::remove_file(path).ok();
    text
}

/// Lines of `text`, trimmed, without blank lines.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub fn field(row: &str, i: usize) -> String {
    super::fields(row).swap_remove(i)
}

/// The rows in emission order, sorted by key within each run of equal emit_time.
pub fn canonical(rows: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for group in rows.chunk_by(|a, b| field(a, 7) == field(b, 7)) {
        let mut group = group.to_vec();
        group.sort_by_key(|row| field(row, 0));
        out.extend(group);
    }
    out
}

/// Data rows of an output, after checking the header.
pub fn rows(stdout: &str) -> Vec<String> {
    let mut all = lines(stdout);
    assert!(!all.is_empty(), "no output");
    assert_eq!(all.remove(0), HEADER);
    for row in &all {
        assert_eq!(super::fields(row).len(), 9, "bad row {row:?}");
    }
    all
}

/// Checks a successful run's panes against `expected` (rows, one per line).
pub fn check(run: Run, expected: &str) {
    assert_panes(&ok(run), expected);
}

pub fn assert_panes(stdout: &str, expected: &str) {
    let got = canonical(&rows(stdout));
    let want = canonical(&lines(expected));
    let want_text = want.join("\n");
    assert_eq!(
        got, want,
        "\n--- got ---\n{stdout}--- expected ---\n{want_text}\n"
    );
}

/// Each key's rows, in output order.
pub fn per_key(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows(stdout) {
        keys.entry(field(&row, 0)).or_default().push(row);
    }
    keys
}

/// Per key, the sum of `+` values minus the sum of `-` values.
pub fn signed_sums(stdout: &str) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for row in rows(stdout) {
        let v: i64 = field(&row, 3).parse().unwrap();
        let sign = if field(&row, 8) == "-" { -1 } else { 1 };
        *sums.entry(field(&row, 0)).or_insert(0) += sign * v;
    }
    sums
}

/// Per key, the sum over its windows of each window's last emitted value.
pub fn last_values(stdout: &str) -> BTreeMap<String, i64> {
    let mut last = BTreeMap::new();
    for row in rows(stdout).iter().filter(|r| field(r, 8) == "+") {
        let window = [0, 1, 2].map(|i| field(row, i).to_string());
        last.insert(window, field(row, 3).parse::<i64>().unwrap());
    }
    let mut sums = BTreeMap::new();
    for ([key, ..], v) in last {
        *sums.entry(key).or_insert(0) += v;
    }
    sums
}

pub fn totals(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

// late_data.csv, fixed:10, default trigger, lateness 0 (GC time = end):
// - a 1@5, a 3@8 -> a[0,10) = 4; b 2@12 -> b[10,20).
// - watermark 10 (clock 20): a[0,10) ON_TIME 4, closed and GC'd -> last.
// - a 4@7 (25): its window is past GC time -> dropped, to the late output.
// - a 5@15 -> a[10,20). Watermark 20 (30): a[10,20) = 5 and b[10,20) = 2.
// - b 6@3 (31): [0,10) is past GC -> dropped, to the late output.
// With --lateness 10, a[0,10) is closed by its once trigger at watermark 10 but GC'd only
// at 20: a 4@7 is dropped as closed, not written to the late output; b 6@3 arrives at
// watermark 20 >= its GC time 20 and is written. The panes are the same.

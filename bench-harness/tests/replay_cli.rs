//! `rill-bench replay` through the binary: a hand-checked scenario, the same output on 1
//! and 3 shards, and clear errors for bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn replay(input: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill-bench"))
        .arg("replay")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may exit before reading (a bad option): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

const HEADER: &str = "key,window_start,window_end,value,timing,pane_index,is_last,emit_time,kind";

/// Hand-checked: 10 ms windows, lateness 10, early firing after every 2 records, late
/// firing per record, accumulating.
/// - a@1, a@3 (arrivals 100, 101): count 2 reached -> EARLY pane 4 at 101 (index 0).
/// - watermark 10 at 102: the window ends -> ON_TIME 4 at 102 (index 1; no new records,
///   the on-time pane fires anyway).
/// - a@5 at 103: late but within lateness -> LATE 9 at 103 (index 2).
/// - watermark 20 at 104: GC time 20 reached, nothing new -> no pane.
/// - a@7 at 105: its window is gone -> dropped (late output).
/// - b@25 at 106, end of input: the final watermark closes [20, 30): ON_TIME, last.
#[test]
fn early_on_time_late_and_dropped() {
    let input = "event,a,1,1,100\nevent,a,3,3,101\nwatermark,10,102\nevent,a,5,5,103\n\
                 watermark,20,104\nevent,a,7,7,105\nevent,b,2,25,106\n";
    let late = std::env::temp_dir().join(format!("rill-late-{}.csv", std::process::id()));
    let out = replay(
        input,
        &[
            "--window",
            "fixed:10ms",
            "--lateness",
            "10ms",
            "--trigger",
            "watermark(early=count(2), late=count(1))",
            "--accumulation",
            "accumulating",
            "--late-output",
            late.to_str().unwrap(),
        ],
    );
    let expected = [
        HEADER,
        "a,0,10,4,EARLY,0,false,101,+",
        "a,0,10,4,ON_TIME,1,false,102,+",
        "a,0,10,9,LATE,2,false,103,+",
        "b,20,30,2,ON_TIME,0,true,106,+",
    ];
    assert_eq!(stdout(&out), expected.join("\n") + "\n");
    assert_eq!(std::fs::read_to_string(&late).unwrap(), "event,a,7,7,105\n");
    let _ = std::fs::remove_file(late);
}

/// Retracting panes: each later pane is preceded by the retraction of the previous value.
#[test]
fn retractions_precede_updated_panes() {
    let input = "event,k,2,00:00:01,00:00:01\nevent,k,3,00:00:02,00:00:02\n";
    let out = replay(
        input,
        &[
            "--window",
            "global",
            "--trigger",
            "repeat(count(1))",
            "--accumulation",
            "retracting",
        ],
    );
    let expected = [
        HEADER,
        "k,-inf,+inf,2,EARLY,0,false,00:00:01,+",
        "k,-inf,+inf,2,EARLY,1,false,00:00:02,-",
        "k,-inf,+inf,5,EARLY,1,false,00:00:02,+",
    ];
    assert_eq!(stdout(&out), expected.join("\n") + "\n");
}

#[test]
fn same_rows_on_one_and_three_shards() {
    let mut input = String::new();
    for i in 0..300i64 {
        let key = ["x", "y", "z", "w"][(i % 4) as usize];
        let event_time = i * 7 % 500;
        input.push_str(&format!("event,{key},{},{event_time},{i}\n", i % 13 - 6));
        if i % 40 == 39 {
            input.push_str(&format!("watermark,{},{i}\n", i * 2));
        }
    }
    for window in ["session:15", "sliding:50,10", "count:3"] {
        let args = [
            "--window",
            window,
            "--trigger",
            "watermark(early=repeat(processing(delay=5)), late=count(2))",
            "--lateness",
            "100",
        ];
        let rows = |shards: &str| {
            let mut a = args.to_vec();
            a.extend(["--shards", shards]);
            let mut rows: Vec<String> = stdout(&replay(&input, &a))
                .lines()
                .map(str::to_string)
                .collect();
            rows.sort();
            rows
        };
        let one = rows("1");
        assert!(one.len() > 10, "{window}: {one:?}");
        assert_eq!(one, rows("3"), "{window}");
    }
}

#[test]
fn bad_input_is_reported_with_its_line() {
    let out = replay(
        "event,a,1,1,1\nevent,a,one,2,2\n",
        &["--window", "fixed:10"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");

    let out = replay("event,a,1,1,1\n", &["--window", "sliding:10"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--window"));
}

//! `rill-bench run` and `sweep` through the binary: reports in every format, charts,
//! open-loop figures and clear errors for bad flags.

use std::process::{Command, Output};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_rill-bench");

fn rill_bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("rill-bench runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn bad_flags_get_a_message_not_a_panic() {
    // generate's open-loop flags to Kafka, after its own.
    let paced = ["--rate", "10", "--kafka", "127.0.0.1:1", "--topic", "t"];
    for (args, expect) in [
        (vec!["run", "--query", "q9"], "unknown query 'q9'"),
        (
            vec!["run", "--query", "q1", "--rate", "fast"],
            "is not a rate",
        ),
        (vec!["run", "--query", "q1", "--rate", "0"], "between 1 and"),
        (
            vec!["run", "--query", "q1", "--window-size", "0s"],
            "at least 1 ms",
        ),
        (vec!["run", "--query", "q1", "--events", "0"], "--events"),
        (
            vec!["run", "--query", "q1", "--out-of-order", "0"],
            "--out-of-order",
        ),
        (
            vec!["run", "--query", "q1", "--json", "--csv"],
            "cannot be used with",
        ),
        (
            vec![
                "sweep",
                "--query",
                "q1",
                "--start-rate",
                "2M",
                "--max-rate",
                "1M",
            ],
            "--start-rate is above --max-rate",
        ),
        (
            vec![
                "run",
                "--query",
                "q1",
                "--events",
                "10",
                "--output",
                "/nonexistent/dir/x.csv",
            ],
            "/nonexistent/dir/x.csv",
        ),
        (vec!["run", "--query", "q0", "--from-poll"], "--kafka"),
        (
            vec![
                "run",
                "--query",
                "q0",
                "--kafka",
                "127.0.0.1:1",
                "--topic",
                "t",
                "--until-end",
                "--from-poll",
            ],
            "--from-poll needs",
        ),
        (vec!["generate"], "--events"),
        (vec!["generate", "--seconds", "2"], "--rate"),
        (
            [&["generate", "--events", "5", "--seconds", "2"][..], &paced].concat(),
            "cannot be used with",
        ),
        (
            [&["generate", "--seconds", "0"][..], &paced].concat(),
            "not a positive number of seconds",
        ),
    ] {
        let o = rill_bench(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn unthrottled_run_reports_json_and_csv() {
    let o = rill_bench(&[
        "run", "--query", "q1", "--events", "50000", "--shards", "2", "--no-pin", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["query"], "q1");
    assert_eq!(v["events"], 50_000);
    assert_eq!(v["shard_count"], 2);
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(2));
    // Every 50 events hold 46 bids; q1 keeps every bid.
    assert_eq!(v["rows"], 46_000);
    assert!(v["throughput"].as_f64().unwrap() > 0.0);
    assert!(v["p95_us"].is_null(), "unthrottled runs measure no latency");

    let o = rill_bench(&[
        "run", "--query", "q2", "--events", "50000", "--no-pin", "--csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("query,shards,events,rate,"));
    assert!(lines[1].starts_with("q2,"));
    assert_eq!(
        common::fields(lines[0]).len(),
        common::fields(lines[1]).len()
    );
}

#[test]
fn open_loop_run_measures_latency_and_plots() {
    let dir = std::env::temp_dir().join(format!("rill-cli-plot-{}", std::process::id()));
    let o = rill_bench(&[
        "run",
        "--query",
        "q0",
        "--rate",
        "200k",
        "--seconds",
        "0.5",
        "--no-pin",
        "--json",
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["events"], 100_000);
    assert_eq!(v["rate"], 200_000);
    assert_eq!(v["latency_kind"], "event");
    let (p50, p99, max) = (
        v["p50_us"].as_f64().unwrap(),
        v["p99_us"].as_f64().unwrap(),
        v["max_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{v}");
    // Open loop: the run cannot finish before its schedule.
    assert!(v["elapsed_s"].as_f64().unwrap() >= 0.49, "{v}");
    for file in ["q0-cdf.svg", "q0-cdf.png"] {
        let len = std::fs::metadata(dir.join(file))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 0, "{file} missing");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sweep_finds_a_rate_and_reports_levels() {
    let sweep = || {
        let o = rill_bench(&[
            "sweep",
            "--query",
            "q1",
            "--seconds",
            "0.5",
            "--start-rate",
            "10k",
            "--max-rate",
            "20k",
            "--bisections",
            "1",
            "--no-pin",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        json(&o)
    };
    // 10k/s and 20k/s are far below what q1 sustains even in a debug build, but one stall
    // of a shared 2-vCPU machine (100 ms was seen) makes a half-second trial's latency
    // grow, and the judge rightly calls it unsustainable: allow two more tries.
    let mut v = sweep();
    for _ in 0..2 {
        if v["max_sustainable_rate"] == 20_000 {
            break;
        }
        v = sweep();
    }
    assert_eq!(v["max_sustainable_rate"], 20_000, "{v}");
    assert_eq!(v["trials"].as_array().unwrap().len(), 2);
    let levels = v["levels"].as_array().unwrap();
    let percents: Vec<u64> = levels
        .iter()
        .map(|l| l["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, [25, 50, 75, 100]);
    assert_eq!(levels[1]["run"]["rate"], 10_000);
}

#[test]
fn json_has_operators_and_shards_arrays_and_profile_prints_a_table() {
    let o = rill_bench(&[
        "run", "--query", "q1", "--events", "50000", "--shards", "2", "--no-pin", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let operators = v["operators"].as_array().expect("an operators array");
    // Every operator on both shards.
    assert!(
        operators.len() >= 4 && operators.len() % 2 == 0,
        "{operators:?}"
    );
    for op in operators {
        for field in ["name", "shard", "records_in", "records_out", "busy_ms"] {
            assert!(!op[field].is_null(), "{field} missing in {op}");
        }
        assert!(op.get("watermark_lag_ms").is_some(), "{op}");
    }
    let source_out: u64 = (operators.iter())
        .filter(|o| o["name"] == "nexmark")
        .map(|o| o["records_out"].as_u64().unwrap())
        .sum();
    assert_eq!(source_out, 50_000);
    let busy: f64 = operators
        .iter()
        .map(|o| o["busy_ms"].as_f64().unwrap())
        .sum();
    assert!(busy > 0.0);
    let shards = v["shards"].as_array().expect("a shards array");
    assert_eq!(shards.len(), 2);
    for s in shards {
        let part = |f: &str| s[f].as_f64().unwrap_or_else(|| panic!("{f} in {s}"));
        let sum =
            part("busy_ms") + part("idle_ms") + part("backpressured_ms") + part("checkpoint_ms");
        let wall = part("wall_ms");
        assert!((sum - wall).abs() <= 0.03 * wall, "{s}");
    }

    let q1_on_one_shard = |flags: &[&str]| {
        let mut args = vec!["run", "--query", "q1", "--events", "20000", "--shards", "1"];
        args.push("--no-pin");
        args.extend_from_slice(flags);
        rill_bench(&args)
    };
    let o = q1_on_one_shard(&["--profile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("records out"), "{out}");
    assert!(out.contains("backpressured"), "{out}");

    let o = q1_on_one_shard(&["--json", "--no-profile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let busy: f64 = (v["operators"].as_array().unwrap().iter())
        .map(|o| o["busy_ms"].as_f64().unwrap())
        .sum();
    assert_eq!(busy, 0.0);
}

#[test]
fn metrics_addr_serves_the_run_while_it_lasts() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--query",
            "q0",
            "--rate",
            "100k",
            "--seconds",
            "4",
            "--shards",
            "1",
            "--no-pin",
            "--quiet",
            "--metrics-addr",
            &addr,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            if response
                .contains(r#"rill_operator_records_in_total{job="q0",operator="sink",shard="0"}"#)
            {
                break response;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no metrics at {addr}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"));
    assert!(body.contains(r#"rill_shard_busy_seconds_total{job="q0",shard="0"}"#));
    assert!(child.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "still serving after the run"
    );
}

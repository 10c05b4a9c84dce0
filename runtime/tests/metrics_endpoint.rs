//! The Prometheus endpoint, scraped with plain HTTP GETs while a job runs: the counters are
//! there, labelled with the job, operator and shard, and they grow between two scrapes; the
//! endpoint closes with the job.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::runtime;
use rill_runtime::prometheus::Format;
use rill_runtime::{Dataflow, Partitioning};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A plain HTTP/1.1 GET; returns the status line, the headers and the body.
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n{accept}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn counters_are_labelled_and_grow_between_scrapes_and_the_endpoint_closes_with_the_job() {
    let mut df = Dataflow::new();
    let (numbers, input) = df.input::<u64>("numbers");
    numbers
        .exchange_named("spread", Partitioning::by_key(|n: &u64| *n))
        .discard("sink");
    let job = runtime(2).spawn(df).unwrap();
    let server = job.serve_metrics("127.0.0.1:0", "test-job").unwrap();
    let addr = server.local_addr();
    let records = |body: &str| -> f64 {
        (0..2)
            .map(|shard| {
                let series = format!(
                    r#"rill_operator_records_in_total{{job="test-job",operator="sink",shard="{shard}"}}"#
                );
                sample(body, &series).unwrap_or_else(|| panic!("no {series} in\n{body}"))
            })
            .sum()
    };
    let scrape_until = |at_least: f64| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, headers, body) = get(addr, "/metrics", None);
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert!(
                headers.contains("Content-Type: text/plain; version=0.0.4"),
                "{headers}"
            );
            if records(&body) >= at_least {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "the counters did not reach {at_least}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    for n in 0..1_000 {
        input.send(n).unwrap();
    }
    let first = scrape_until(1_000.0);
    for n in 1_000..5_000 {
        input.send(n).unwrap();
    }
    let second = scrape_until(5_000.0);
    assert!(records(&second) > records(&first));

    // Labelled series of every kind are there, named as Prometheus users expect.
    for series in [
        r#"rill_operator_records_out_total{job="test-job",operator="numbers",shard="0"}"#,
        r#"rill_operator_records_dropped_total{job="test-job",operator="sink",shard="1"}"#,
        r#"rill_operator_busy_seconds_total{job="test-job",operator="spread",shard="0"}"#,
        r#"rill_shard_busy_seconds_total{job="test-job",shard="0"}"#,
        r#"rill_shard_idle_seconds_total{job="test-job",shard="1"}"#,
        r#"rill_shard_backpressured_seconds_total{job="test-job",shard="1"}"#,
        r#"rill_shard_checkpoint_seconds_total{job="test-job",shard="0"}"#,
        r#"rill_shard_wall_seconds_total{job="test-job",shard="0"}"#,
        r#"rill_channel_records_total{job="test-job",exchange="spread",from="0",to="1"}"#,
        r#"rill_channel_backpressured_seconds_total{job="test-job",exchange="spread",from="1",to="0"}"#,
        r#"rill_job_elapsed_seconds{job="test-job"}"#,
    ] {
        assert!(
            sample(&second, series).is_some(),
            "no {series} in\n{second}"
        );
    }
    assert!(second.contains("# TYPE rill_operator_records_in_total counter"));
    assert!(second.contains("# TYPE rill_operator_busy_seconds_total counter"));
    let wall = |body: &str| {
        sample(
            body,
            r#"rill_shard_wall_seconds_total{job="test-job",shard="0"}"#,
        )
    };
    assert!(wall(&second) > wall(&first));
    // No checkpoints, no checkpoint metrics; no watermark yet, no lag.
    assert!(!second.contains("rill_checkpoint"));
    assert!(!second.contains("rill_operator_watermark_lag_seconds{"));

    // The watermark lag appears once the input has a watermark.
    input.advance_watermark(1_000).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let lag = r#"rill_operator_watermark_lag_seconds{job="test-job",operator="sink",shard="1"}"#;
    while sample(&get(addr, "/metrics", None).2, lag).is_none() {
        assert!(Instant::now() < deadline, "no {lag}");
        std::thread::sleep(Duration::from_millis(10));
    }

    // OpenMetrics when asked for, other paths and methods refused.
    let (status, headers, body) = get(addr, "/metrics", Some("application/openmetrics-text"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("application/openmetrics-text"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(get(addr, "/", None).0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        job.controller()
            .prometheus_text("x", Format::Prometheus)
            .lines()
            .next(),
        Some("# HELP rill_job_elapsed_seconds Time since the job started")
    );

    drop(input);
    let report = job.join().unwrap();
    assert_eq!(report.operator("sink").unwrap().total(), 5_000);
    // The endpoint closed with the job.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "the endpoint outlived the job");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after the job ended"
    );
    server.join();
}

#[test]
fn a_stopped_server_closes_its_socket() {
    let mut df = Dataflow::new();
    let (numbers, input) = df.input::<u64>("numbers");
    numbers.discard("sink");
    let job = runtime(1).spawn(df).unwrap();
    let server = job.serve_metrics("127.0.0.1:0", "j").unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics", None).0, "HTTP/1.1 200 OK");
    server.stop();
    assert!(TcpStream::connect(addr).is_err());
    // Binding a taken address is an error that says what failed.
    let first = job.serve_metrics("127.0.0.1:0", "j").unwrap();
    let err = job.serve_metrics(first.local_addr(), "j").unwrap_err();
    assert!(
        err.to_string().contains("bind the metrics address"),
        "{err}"
    );
    drop(input);
    job.join().unwrap();
}

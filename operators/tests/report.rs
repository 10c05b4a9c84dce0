//! What the job report shows of the operators: records a window operator or a join
//! dropped (late, or for a closed window), per operator and shard; and exchanges named
//! after the operators they feed, or as the user named them.

use std::collections::{BTreeSet, VecDeque};

use rill_operators::prelude::*;
use rill_operators::window::Sum;
use rill_runtime::{
    shard_of_key, Config, Dataflow, Failure, JobReport, Runtime, Source, SourceOutput,
    SourceStatus, Timestamp,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (value, event time in ms)
type Ev = (i64, Timestamp);

/// Emits records and watermarks (`Err`) in the given order.
struct Script(VecDeque<Result<Ev, Timestamp>>);

impl Source<Ev> for Script {
    fn poll(&mut self, out: &mut SourceOutput<Ev>, _: usize) -> Result<SourceStatus, Failure> {
        match self.0.pop_front() {
            Some(Ok(r)) => out.give(r),
            Some(Err(w)) => out.watermark(w)?,
            None => return Ok(SourceStatus::Done),
        }
        Ok(SourceStatus::Emitted)
    }
}

fn run(df: Dataflow) -> JobReport {
    Runtime::new(Config::default().shards(2).pin(false))
        .unwrap()
        .run(df)
        .unwrap()
}

#[test]
fn records_dropped_as_late_or_closed_are_in_the_report_per_operator() {
    let owner = shard_of_key(&0u32, 2);
    let mut df = Dataflow::new();
    // The shard owning key 0 plays the script; with no exchange in between, its operators
    // see exactly these watermarks. (2, 500) and (3, 600) come after [0, 1000) closed.
    let keyed = df
        .source("script", move |shard| {
            let script = vec![
                Ok((1, 100)),
                Err(1000),
                Ok((2, 500)),
                Ok((3, 600)),
                Ok((4, 1200)),
            ];
            Script(if shard.index == owner {
                script.into()
            } else {
                VecDeque::new()
            })
        })
        .assume_keyed_by(|_: &Ev| 0u32);
    let tumbling = || WindowSpec::event_time(Windows::tumbling(1000), |e: &Ev| e.1);
    let late = tumbling();
    // Kept for 1 s of lateness, but the trigger finished at the on-time pane: closed.
    let closed = tumbling()
        .allowed_lateness(1000)
        .trigger(Trigger::after_watermark());
    let (late_metrics, closed_metrics) = (late.metrics(), closed.metrics());
    keyed
        .window(late)
        .aggregate("late sum", Sum::new(|e: &Ev| e.0))
        .discard("late out");
    keyed
        .window(closed)
        .aggregate("closed sum", Sum::new(|e: &Ev| e.0))
        .discard("closed out");
    // Each late record falls in a joined window that has closed, on both sides.
    keyed
        .window_join(
            &keyed,
            "join",
            Windows::tumbling(1000),
            |e| e.1,
            |e| e.1,
            |_, _, a, b| a.0 + b.0,
        )
        .discard("join out");
    let report = run(df);

    let mut expected = vec![0, 0];
    expected[owner] = 2;
    let late = report.operator("late sum").unwrap();
    assert_eq!(late.dropped, expected);
    assert_eq!(late_metrics.dropped_late(), 2);
    let closed = report.operator("closed sum").unwrap();
    assert_eq!(closed.dropped, expected);
    assert_eq!(closed_metrics.dropped_closed(), 2);
    expected[owner] = 4;
    assert_eq!(report.operator("join").unwrap().dropped, expected);
    for quiet in ["script", "late out", "closed out", "join out"] {
        assert_eq!(
            report.operator(quiet).unwrap().dropped_total(),
            0,
            "{quiet}"
        );
    }
    let printed = report.to_string();
    let line = |name: &str| {
        let dropped = printed.split_once(" dropped ").expect("a dropped table").1;
        dropped
            .lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
    };
    assert!(line("late sum").unwrap().contains(" 2  "), "{printed}");
    assert!(line("join").unwrap().contains(" 4  "), "{printed}");
    assert_eq!(line("late out"), None, "{printed}");
}

#[test]
fn a_job_with_no_drops_prints_no_dropped_table() {
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0..100i64).map(|n| (n, n)).collect())
        .key_by(|e: &Ev| e.0 % 3)
        .window(WindowSpec::event_time(Windows::tumbling(10), |e: &Ev| e.1))
        .count("count")
        .discard("out");
    let report = run(df);
    assert!(report.operators.iter().all(|o| o.dropped == [0, 0]));
    assert!(!report.to_string().contains("dropped"), "{report}");
}

#[test]
fn exchanges_are_named_after_the_operators_they_feed_or_as_given() {
    let mut df = Dataflow::new();
    let words = df.vec_source("words", vec!["a".to_string(), "bb".into(), "a".into()]);
    let counted = words
        .key_by(|w: &String| w.clone())
        .count("count per word")
        .map("count", |(_, n)| n);
    counted
        .key_by(|_: &u64| ())
        .count("count of counts")
        .discard("out");
    words
        .key_by_named("by length", |w: &String| w.len())
        .count("count per length")
        .discard("lengths out");
    let report = run(df);

    let names: BTreeSet<&str> = report
        .channels
        .iter()
        .map(|c| c.exchange.as_str())
        .collect();
    let expected = [
        "key-hash -> count per word",
        "key-hash -> count of counts",
        "by length",
    ];
    assert_eq!(names, BTreeSet::from(expected));
    for name in expected {
        // 2 x 2 channels per exchange; its node among the operators has the same name.
        let channels = report.channels.iter().filter(|c| c.exchange == name);
        assert_eq!(channels.count(), 4, "{name}");
        assert_eq!(report.operator(name).unwrap().total(), 3, "{name}");
    }
    let printed = report.to_string();
    assert!(
        expected.iter().all(|name| printed.contains(name)),
        "{printed}"
    );
}

//! Event time from a host: records sent through an input handle carry their timestamps,
//! the handle's watermark fires the windows while the input stays open, and each pane
//! reaches the host's subscription before the watermark that completed it.

use rill_operators::prelude::*;
use rill_runtime::subscription::Event;
use rill_runtime::{Config, Dataflow, Runtime, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (key, event time in ms, value)
type Reading = (u64, Timestamp, u64);

#[test]
fn a_handles_watermark_fires_windows_while_the_input_is_open() {
    let mut df = Dataflow::new();
    let (readings, input) = df.keyed_input("readings", |r: &Reading| r.0);
    let mut panes = readings
        .assume_keyed_by(|r: &Reading| r.0)
        .window(WindowSpec::event_time(
            Windows::tumbling(1_000),
            |r: &Reading| r.1,
        ))
        .sum("sum", |r: &Reading| r.2)
        .subscribe("panes", 1024);
    let job = Runtime::new(Config::default().shards(2).pin(false))
        .unwrap()
        .spawn(df)
        .unwrap();
    // Two windows' worth for three keys, then the watermark past the first window only.
    for t in (0..2_000).step_by(100) {
        for key in 0..3u64 {
            input.send((key, t, key + 1)).unwrap();
        }
    }
    input.advance_watermark(1_000).unwrap();
    let mut first = Vec::new();
    loop {
        match panes.recv_event().expect("the input is still open") {
            Event::Record(p) => first.push((p.key, p.window.start, p.value)),
            Event::Watermark(w) if w >= 1_000 => break,
            Event::Watermark(_) => {}
        }
    }
    first.sort();
    // Window [0, 1000): ten readings per key.
    assert_eq!(first, vec![(0, 0, 10), (1, 0, 20), (2, 0, 30)]);
    // The second window fires only when the input ends (the final watermark).
    assert!(
        panes.try_recv().is_err(),
        "nothing before the watermark passes 2000"
    );
    drop(input);
    let mut second: Vec<(u64, Timestamp, u64)> = panes
        .by_ref()
        .map(|p| (p.key, p.window.start, p.value))
        .collect();
    second.sort();
    assert_eq!(second, vec![(0, 1_000, 10), (1, 1_000, 20), (2, 1_000, 30)]);
    job.join().unwrap();
}

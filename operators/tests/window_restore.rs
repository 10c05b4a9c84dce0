//! A checkpoint's window state is restored only by the kind of window operator that wrote
//! it: a job whose window spec changed so that another operator runs it (here: allowed
//! lateness, which the sliced operator handles and the one for windows that fire once
//! does not) fails with a clear error instead of silently starting without the windows.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use rill_operators::prelude::*;
use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::{Config, Dataflow, Runtime, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn job(lateness: i64, crash_after: u64) -> Dataflow {
    let mut df = Dataflow::new();
    numbers(&mut df, 200_000, crash_after)
        .key_by(|n: &u64| n % 7)
        .window(
            WindowSpec::event_time(Windows::sliding(1_000, 500), |n: &u64| *n as Timestamp)
                .allowed_lateness(lateness),
        )
        .count("counts")
        .discard("out");
    df
}

fn config(checkpointing: &Checkpointing) -> Config {
    Config::default()
        .shards(2)
        .pin(false)
        .checkpointing(checkpointing.clone())
}

#[test]
fn window_state_of_another_window_operator_is_refused() {
    let dir = scratch("window-restore");
    let checkpointing =
        Checkpointing::new(dir.join("checkpoints")).interval(Some(Duration::from_millis(15)));
    let err = Runtime::new(config(&checkpointing))
        .unwrap()
        .run(job(5, 150_000))
        .expect_err("the run crashes");
    assert!(err.to_string().contains("injected crash"), "{err}");
    // Without lateness the windows fire once: another operator, which refuses the state.
    let err = Runtime::new(config(&checkpointing))
        .unwrap()
        .run(job(0, 0))
        .expect_err("another window operator refuses the state");
    assert!(
        err.to_string().contains("another kind of window operator"),
        "{err}"
    );
    // The spec that wrote it restores.
    let report = Runtime::new(config(&checkpointing))
        .unwrap()
        .run(job(5, 0))
        .expect("the same spec restores");
    assert!(report.checkpoints.unwrap().restored_from.is_some());
    fs::remove_dir_all(dir).unwrap();
}

//! The library reports through `tracing`: a job's start and end, its checkpoints, a
//! restore, a damaged checkpoint skipped, and failures, inside spans per job and shard.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_runtime::checkpoint::Checkpointing;
use rill_runtime::OperatorState;
use rill_runtime::{Config, Dataflow, Failure, Partitioning, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

fn job(fail: bool) -> Dataflow {
    let mut df = Dataflow::new();
    df.vec_source("numbers", (0u64..10_000).collect())
        .exchange(Partitioning::by_key(|n: &u64| n % 7))
        .unary("check", move |_| Check(fail))
        .discard("sink");
    df
}

struct Check(bool);

impl rill_runtime::Operator<u64> for Check {
    type Out = rill_runtime::Output<u64>;
    const STATE: OperatorState = OperatorState::Stateless;
    fn on_batch(&mut self, batch: &mut Vec<u64>, out: &mut Self::Out) -> rill_runtime::OpResult {
        if self.0 {
            return Err(Failure::new("injected failure"));
        }
        out.give_vec(batch);
        Ok(())
    }
}

/// 2 shards, checkpoints on demand only.
fn on_demand(dir: &std::path::Path) -> Runtime {
    let checkpointing = Checkpointing::new(dir).interval(None);
    Runtime::new(
        Config::default()
            .shards(2)
            .pin(false)
            .checkpointing(checkpointing),
    )
    .unwrap()
}

#[test]
fn jobs_report_through_tracing() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("rill_runtime=debug"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let dir = std::env::temp_dir().join(format!("rill-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = |dir: &std::path::Path| {
        let c = Checkpointing::new(dir).interval(Some(Duration::from_millis(5)));
        Config::default().shards(2).pin(false).checkpointing(c)
    };
    // A job that checkpoints and ends.
    let handle = Runtime::new(config(&dir))
        .unwrap()
        .spawn(job(false))
        .unwrap();
    handle.checkpoint_now();
    handle.join().unwrap();
    let log = captured.take();
    assert!(log.contains("job starting"), "{log}");
    assert!(log.contains("shards=2"), "{log}");
    assert!(log.contains("job ended"), "{log}");
    assert!(log.contains("end=Finished"), "{log}");
    // A failing job: the shard's error, inside the job's and the shard's spans.
    let dir2 = dir.join("failing");
    let err = Runtime::new(config(&dir2)).unwrap().run(job(true));
    assert!(err.is_err());
    let log = captured.take();
    assert!(log.contains("shard failed"), "{log}");
    assert!(log.contains("injected failure"), "{log}");
    assert!(log.contains("job failed"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("job{id=") && l.contains("shard{index=")),
        "{log}"
    );
    // A checkpoint completes (debug), a damaged one is skipped and an older one restored.
    let dir3 = dir.join("restore");
    let handle = on_demand(&dir3)
        .spawn({
            let mut df = Dataflow::new();
            let (input, _keep) = df.input::<u64>("numbers");
            input.discard("sink");
            std::mem::forget(_keep); // the input stays open: the job runs until cancelled
            df
        })
        .unwrap();
    for id in 1..=2 {
        handle.checkpoint_now();
        while handle.latest_checkpoint().unwrap() < id {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    handle.cancel().unwrap();
    let log = captured.take();
    assert!(log.contains("checkpoint complete"), "{log}");
    let newest = dir3.join("chk-000002").join("shard-000.bin");
    let mut bytes = std::fs::read(&newest).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    let handle = on_demand(&dir3)
        .spawn({
            let mut df = Dataflow::new();
            let (input, handle) = df.input::<u64>("numbers");
            input.discard("sink");
            drop(handle);
            df
        })
        .unwrap();
    handle.join().unwrap();
    let log = captured.take();
    assert!(log.contains("skipped a damaged checkpoint"), "{log}");
    assert!(
        log.contains("restoring") && log.contains("checkpoint=1"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! A sink that keeps work instead of waiting for it (`Sink::pending`): while it keeps
//! records (`Blocked`), the source feeding it is held back and the shard's other chains go
//! on; while it has work under way (`Working`) it is still fed; the shard does not finish
//! before the sink is done; a failure while it keeps work fails the job naming the sink.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rill_runtime::{Config, Dataflow, Error, Failure, OpResult, Pending, Runtime, Sink};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 64;

/// Takes records only while its gate is open; keeps them (pending) while it is closed,
/// as a sink whose client library's queue is full does.
struct GateSink {
    gate: Arc<AtomicBool>,
    kept: Vec<u64>,
    delivered: Arc<Mutex<Vec<u64>>>,
    fail: bool,
}

impl GateSink {
    fn pass(&mut self) {
        if self.gate.load(Ordering::SeqCst) {
            self.delivered
                .lock()
                .unwrap()
                .extend(std::mem::take(&mut self.kept));
        }
    }
}

impl Sink<u64> for GateSink {
    fn on_batch(&mut self, batch: &mut Vec<u64>) -> OpResult {
        self.kept.append(batch);
        self.pass();
        Ok(())
    }
    fn pending(&self) -> Pending {
        match self.kept.is_empty() {
            true => Pending::Nothing,
            false => Pending::Blocked,
        }
    }
    fn poll_pending(&mut self) -> OpResult {
        if self.fail {
            return Err(Failure::new("the service went away"));
        }
        self.pass();
        Ok(())
    }
}

fn config() -> Config {
    Config::default().shards(1).pin(false).batch_records(BATCH)
}

#[test]
fn a_sink_that_keeps_records_holds_back_its_source_and_not_the_shard() {
    const GATED: u64 = 100_000;
    const OTHER: u64 = 20_000;
    let gate = Arc::new(AtomicBool::new(false));
    let pulled = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let mut df = Dataflow::new();
    let p = pulled.clone();
    let (g, d) = (gate.clone(), delivered.clone());
    df.iter_source("gated", move |_| {
        let p = p.clone();
        (0..GATED).inspect(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        })
    })
    .sink("gate", move |_| GateSink {
        gate: g.clone(),
        kept: Vec::new(),
        delivered: d.clone(),
        fail: false,
    });
    // A second chain on the same (only) shard.
    let mut other = df
        .iter_source("other", |_| 0..OTHER)
        .subscribe("other-out", 1024);
    let job = Runtime::new(config()).unwrap().spawn(df).unwrap();

    // The other chain runs to its end while the gate is closed: the shard turns.
    // (Its end reaches the subscription only with the job's.)
    let got: Vec<u64> = (0..OTHER).map_while(|_| other.recv()).collect();
    assert_eq!(got, (0..OTHER).collect::<Vec<_>>());
    // The gated source was held back after the sink kept its first batch (a waiting
    // sink without the hook would have stopped the shard, and `other` with it).
    let pulled_while_closed = pulled.load(Ordering::SeqCst);
    assert!(
        pulled_while_closed <= 2 * BATCH as u64 + 1,
        "the source fed a sink that keeps records: {pulled_while_closed} records pulled"
    );
    assert!(delivered.lock().unwrap().is_empty());
    // The job cannot finish while the sink keeps records.
    assert!(!job.is_finished());

    gate.store(true, Ordering::SeqCst);
    job.join().unwrap();
    assert_eq!(*delivered.lock().unwrap(), (0..GATED).collect::<Vec<_>>());
}

#[test]
fn a_sink_that_fails_while_it_keeps_records_fails_the_job_naming_it() {
    let mut df = Dataflow::new();
    df.iter_source("numbers", |_| 0..1_000u64)
        .sink("gate", |_| GateSink {
            gate: Arc::new(AtomicBool::new(false)),
            kept: Vec::new(),
            delivered: Arc::default(),
            fail: true,
        });
    let err = Runtime::new(config()).unwrap().run(df).unwrap_err();
    let Error::OperatorFailed {
        operator, message, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(operator, "gate");
    assert!(message.contains("the service went away"), "{err}");
}

/// Has work under way (as a commit on another thread) until its gate opens; takes every
/// record meanwhile.
struct WorkingSink {
    gate: Arc<AtomicBool>,
    taken: u64,
    ended: std::sync::mpsc::Sender<u64>,
    polled_after_end: std::sync::mpsc::Sender<()>,
    has_ended: bool,
}

impl Sink<u64> for WorkingSink {
    fn on_batch(&mut self, batch: &mut Vec<u64>) -> OpResult {
        self.taken += batch.len() as u64;
        batch.clear();
        Ok(())
    }
    fn on_end(&mut self) -> OpResult {
        self.has_ended = true;
        let _ = self.ended.send(self.taken);
        Ok(())
    }
    fn poll_pending(&mut self) -> OpResult {
        if self.has_ended {
            let _ = self.polled_after_end.send(());
        }
        Ok(())
    }
    fn pending(&self) -> Pending {
        match self.gate.load(Ordering::SeqCst) {
            true => Pending::Nothing,
            false => Pending::Working,
        }
    }
}

#[test]
fn a_working_sink_is_fed_and_keeps_the_shard_from_finishing() {
    const N: u64 = 50_000;
    let gate = Arc::new(AtomicBool::new(false));
    let (tx, ended) = std::sync::mpsc::channel();
    let (ptx, polled) = std::sync::mpsc::channel();
    let mut df = Dataflow::new();
    let g = gate.clone();
    df.iter_source("numbers", |_| 0..N)
        .sink("working", move |_| WorkingSink {
            gate: g.clone(),
            taken: 0,
            ended: tx.clone(),
            polled_after_end: ptx.clone(),
            has_ended: false,
        });
    let job = Runtime::new(config()).unwrap().spawn(df).unwrap();
    // Fed to the end although its work is under way...
    assert_eq!(ended.recv().unwrap(), N);
    // ...polled after its end (the timeout only turns a hang into a failure)...
    polled
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the shard polls a working sink after the end of its input");
    // ...and the job waits for that work.
    assert!(!job.is_finished());
    gate.store(true, Ordering::SeqCst);
    job.join().unwrap();
}

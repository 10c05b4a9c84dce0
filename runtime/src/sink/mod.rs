//! Sinks: where records leave a dataflow. [`Collected`] gathers them for tests and
//! embedders; a discarding sink only counts them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::checkpoint::{ShardCheckpoint, StateReader, StateWriter};
use crate::error::{Failure, OpResult};
use crate::head::{BlockedFlag, SenderDriver};
use crate::operator::{Operator, OperatorState};
use crate::time::Timestamp;

pub mod subscription;

/// A sink instance on one shard.
pub trait Sink<T> {
    /// Consumes a batch (records left in it are discarded).
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult;
    /// The watermark advanced.
    fn on_watermark(&mut self, _watermark: Timestamp) -> OpResult {
        Ok(())
    }
    /// The input ended: flush and close.
    fn on_end(&mut self) -> OpResult {
        Ok(())
    }
    /// Checkpoint `checkpoint`'s barrier arrived: a two-phase-commit sink *pre-commits*
    /// here (makes what it received since the previous barrier durable, uncommitted) and
    /// may write state. Default: nothing.
    fn snapshot(&mut self, _checkpoint: u64, _state: &mut StateWriter) -> OpResult {
        Ok(())
    }
    /// Checkpoint `checkpoint` is complete (every shard's state is durable): *commit*
    /// everything pre-committed up to it. Runs on the sink's shard. Default: nothing.
    fn on_checkpoint_complete(&mut self, _checkpoint: u64) -> OpResult {
        Ok(())
    }
    /// The job restores from a checkpoint: the sink's state, and the checkpoint's id
    /// ([`StateReader::checkpoint`]).
    fn restore(&mut self, _state: &StateReader) -> OpResult {
        Ok(())
    }
    /// What the sink keeps that it has not finished, so that it never has to wait for it
    /// (the shard's other operators go on meanwhile): [`Pending::Nothing`] by default.
    /// While it is not `Nothing` the shard calls [`Sink::poll_pending`] on every turn of
    /// its loop (at least every millisecond while it parks) and does not finish; while it
    /// is [`Pending::Blocked`], the chain heads that feed the sink are not scheduled either
    /// (backpressure: nothing more reaches it, barriers included).
    fn pending(&self) -> Pending {
        Pending::Nothing
    }
    /// Goes on with what [`Sink::pending`] reports, without waiting (an error fails the
    /// job). Default: nothing.
    fn poll_pending(&mut self) -> OpResult {
        Ok(())
    }
}

/// What a sink keeps that it has not finished ([`Sink::pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: the sink is done with what it received.
    Nothing,
    /// Work under way elsewhere (a commit on another thread, acknowledgements at the end
    /// of the input): poll the sink, do not finish, and go on feeding it.
    Working,
    /// Records the sink took and could not pass on yet (a client library's full queue):
    /// poll the sink, and feed it nothing more until it can.
    Blocked,
}

/// Adapts a [`Sink`] to the operator interface. The sink is shared with the shard's
/// checkpoint-complete hook and with the shard loop's [`PendingDriver`]; after every call
/// the sink's [`Sink::pending`] sets the flag that holds back the chain heads feeding it.
pub(crate) struct SinkOperator<S> {
    sink: Rc<RefCell<S>>,
    pending: PendingFlags,
}

/// A sink's [`Pending`] as the shard sees it: the flag that holds back the heads feeding
/// it (while `Blocked`), and whether its driver has work (while not `Nothing`).
#[derive(Clone, Default)]
struct PendingFlags {
    blocked: BlockedFlag,
    working: Rc<Cell<bool>>,
}

impl PendingFlags {
    fn set(&self, pending: Pending) {
        self.blocked.set(pending == Pending::Blocked);
        self.working.set(pending != Pending::Nothing);
    }
}

impl<S> SinkOperator<S> {
    pub(crate) fn new<T>(sink: S, checkpoint: Option<&ShardCheckpoint>) -> Self
    where
        S: Sink<T> + 'static,
    {
        let sink = Rc::new(RefCell::new(sink));
        let pending = PendingFlags::default();
        if let Some(checkpoint) = checkpoint {
            let (hook, flags) = (sink.clone(), pending.clone());
            checkpoint.on_complete(Box::new(move |id| {
                let mut sink = hook.borrow_mut();
                let result = sink.on_checkpoint_complete(id);
                flags.set(sink.pending());
                result
            }));
        }
        SinkOperator { sink, pending }
    }

    /// The flag set while the sink keeps something, and the shard loop's side, which
    /// polls the sink (`node`: the sink's node, named in its failures).
    pub(crate) fn driver<T>(&self, node: usize) -> (BlockedFlag, Rc<RefCell<dyn SenderDriver>>)
    where
        S: Sink<T> + 'static,
        T: 'static,
    {
        let driver = PendingDriver {
            sink: self.sink.clone(),
            pending: self.pending.clone(),
            node,
            records: std::marker::PhantomData::<fn(T)>,
        };
        (self.pending.blocked.clone(), Rc::new(RefCell::new(driver)))
    }

    fn call<T>(&mut self, f: impl FnOnce(&mut S) -> OpResult) -> OpResult
    where
        S: Sink<T>,
    {
        let mut sink = self.sink.borrow_mut();
        let result = f(&mut sink);
        self.pending.set(sink.pending());
        result
    }
}

impl<T, S: Sink<T>> Operator<T> for SinkOperator<S> {
    type Out = ();
    const STATE: OperatorState = OperatorState::Checkpointed;
    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut ()) -> OpResult {
        self.call(|s| s.on_batch(batch))
    }
    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut ()) -> OpResult {
        self.call(|s| s.on_watermark(watermark))
    }
    fn on_end(&mut self, _out: &mut ()) -> OpResult {
        self.call(|s| s.on_end())
    }
    fn snapshot(&mut self, checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.call(|s| s.snapshot(checkpoint, state))
    }
    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.call(|s| s.restore(state))
    }
}

/// The shard loop's side of a sink that keeps work ([`Sink::pending`]): polls it while it
/// does, and keeps the shard from finishing meanwhile.
pub(crate) struct PendingDriver<S, T> {
    sink: Rc<RefCell<S>>,
    pending: PendingFlags,
    node: usize,
    records: std::marker::PhantomData<fn(T)>,
}

impl<T, S: Sink<T>> SenderDriver for PendingDriver<S, T> {
    fn poll(&mut self, _now: Instant, _force: bool) -> Result<bool, Failure> {
        if !self.pending.working.get() {
            return Ok(false);
        }
        let mut sink = self.sink.borrow_mut();
        let result = sink.poll_pending();
        self.pending.set(sink.pending());
        result.map_err(|mut e| {
            e.operator.get_or_insert(self.node);
            e
        })?;
        Ok(self.pending.working.get())
    }

    fn has_returns(&self) -> bool {
        false
    }
}

/// The records a collecting sink received, per shard, available once the job finished.
#[derive(Debug)]
pub struct Collected<T> {
    pub(crate) shards: Arc<Mutex<Vec<Vec<T>>>>,
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Collected {
            shards: self.shards.clone(),
        }
    }
}

impl<T> Collected<T> {
    pub(crate) fn new(shards: usize) -> Self {
        Collected {
            shards: Arc::new(Mutex::new((0..shards).map(|_| Vec::new()).collect())),
        }
    }

    /// Takes the records of every shard, shard 0 first, each in arrival order.
    pub fn take(&self) -> Vec<T> {
        self.take_per_shard().into_iter().flatten().collect()
    }

    /// Takes the records, one vector per shard.
    pub fn take_per_shard(&self) -> Vec<Vec<T>> {
        let mut guard = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        guard.iter_mut().map(std::mem::take).collect()
    }
}

/// Appends to its shard's vector of a [`Collected`].
pub(crate) struct CollectSink<T> {
    pub(crate) target: Collected<T>,
    pub(crate) shard: usize,
}

impl<T> Sink<T> for CollectSink<T> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        let mut guard = self.target.shards.lock().unwrap_or_else(|e| e.into_inner());
        if guard.len() <= self.shard {
            guard.resize_with(self.shard + 1, Vec::new);
        }
        guard[self.shard].append(batch);
        Ok(())
    }
}

/// Drops every record (the runtime's per-operator counter counts them).
pub(crate) struct DiscardSink;

impl<T> Sink<T> for DiscardSink {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        batch.clear();
        Ok(())
    }
}

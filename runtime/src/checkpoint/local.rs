//! The checkpoint state of one shard, kept in a thread-local (one shard per thread): the
//! inputs and sources that must reach a barrier, the state operators handed over, the
//! state to restore, and the commit hooks of sinks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use super::store::{self, NodeState, ShardFile, StateEntry};
use super::{CheckpointContext, Coordinator, Guarantee, StateReader, StateWriter};
use crate::error::{Failure, OpResult};

type Hook = Box<dyn FnMut(u64) -> OpResult>;

/// What the shard restores: per node, the entries that belong to it.
pub(crate) struct Restore {
    pub checkpoint: u64,
    pub shard: usize,
    pub shards: usize,
    /// Per node: (written by `put_keyed_all`, bytes).
    pub nodes: HashMap<usize, Vec<(bool, AlignedVec<16>)>>,
}

struct Pending {
    id: u64,
    nodes: BTreeMap<usize, Vec<StateEntry>>,
    holding_since: Option<Instant>,
    alignment: Duration,
}

pub(crate) struct Local {
    shard: usize,
    shards: usize,
    pub coord: Arc<Coordinator>,
    first_epoch: u64,
    restore: Option<Restore>,
    inputs: Vec<Rc<Cell<u64>>>,
    sources: Vec<Rc<Cell<u64>>>,
    pending: Option<Pending>,
    hooks: Vec<Hook>,
    committed: u64,
    written: u64,
    done: bool,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut Local) -> R) -> Option<R> {
    LOCAL.with(|l| l.borrow_mut().as_mut().map(f))
}

/// Installs the shard's checkpoint state on this thread.
pub(crate) fn install(
    shard: usize,
    shards: usize,
    coord: Arc<Coordinator>,
    first_epoch: u64,
    restore: Option<Restore>,
) {
    let base = coord.completed.load(Ordering::SeqCst);
    LOCAL.with(|l| {
        *l.borrow_mut() = Some(Local {
            shard,
            shards,
            coord,
            first_epoch,
            restore,
            inputs: Vec::new(),
            sources: Vec::new(),
            pending: None,
            hooks: Vec::new(),
            committed: base,
            written: base,
            done: false,
        })
    });
}

/// Removes it (the shard stopped).
pub(crate) fn uninstall() {
    LOCAL.with(|l| l.borrow_mut().take());
}

pub(crate) fn context() -> Option<CheckpointContext> {
    with(|l| CheckpointContext {
        guarantee: l.coord.guarantee,
        first_epoch: l.first_epoch,
    })
}

pub(crate) fn coordinator() -> Option<Arc<Coordinator>> {
    with(|l| l.coord.clone())
}

pub(crate) fn on_complete(hook: Hook) {
    with(|l| l.hooks.push(hook));
}

/// True if barriers are aligned on this shard (exactly-once).
pub(crate) fn aligned() -> bool {
    with(|l| l.coord.guarantee.aligned()).unwrap_or(false)
}

/// A new operator input that must see every barrier: the cell holds the last one it saw.
pub(crate) fn register_input() -> Rc<Cell<u64>> {
    let cell = Rc::new(Cell::new(0));
    with(|l| {
        cell.set(l.written);
        l.inputs.push(cell.clone())
    });
    cell
}

/// A new source: the cell holds the last barrier it injected.
pub(crate) fn register_source() -> Rc<Cell<u64>> {
    let cell = Rc::new(Cell::new(0));
    with(|l| {
        cell.set(l.written);
        l.sources.push(cell.clone())
    });
    cell
}

/// The state restored for `node`, if the job restores.
pub(crate) fn restored(node: usize) -> Option<StateReader> {
    with(|l| {
        l.restore.as_mut().map(|r| StateReader {
            checkpoint: r.checkpoint,
            shard: r.shard,
            shards: r.shards,
            entries: r.nodes.remove(&node).unwrap_or_default(),
        })
    })
    .flatten()
}

/// Hands over `node`'s state for checkpoint `id`.
pub(crate) fn submit(node: usize, id: u64, state: StateWriter) {
    with(|l| {
        let p = l.pending_for(id);
        p.nodes.entry(node).or_default().extend(state.entries);
    });
}

/// An input of an operator started (`true`) or stopped holding back records for
/// alignment; the time in between counts as alignment.
pub(crate) fn holding(id: u64, holding: bool) {
    with(|l| {
        let p = l.pending_for(id);
        if holding {
            p.holding_since.get_or_insert_with(Instant::now);
        } else if let Some(since) = p.holding_since.take() {
            p.alignment = p.alignment.max(since.elapsed());
        }
    });
}

/// After `frontier` took `progress` (it was aligning a barrier before if `was_aligning`):
/// records when an exactly-once input started and stopped holding back records.
pub(crate) fn track_alignment(
    was_aligning: bool,
    frontier: &crate::progress::Frontier,
    progress: crate::progress::Progress,
) {
    match (was_aligning, frontier.aligning(), progress) {
        (false, true, crate::progress::Progress::Barrier(id)) => holding(id, true),
        (true, false, _) => holding(frontier.last_barrier(), false),
        _ => {}
    }
}

impl Local {
    fn pending_for(&mut self, id: u64) -> &mut Pending {
        if self.pending.as_ref().map_or(true, |p| p.id != id) {
            self.pending = Some(Pending {
                id,
                nodes: BTreeMap::new(),
                holding_since: None,
                alignment: Duration::ZERO,
            });
        }
        self.pending.as_mut().expect("set above")
    }
}

/// The shard loop's turn: runs commit hooks of completed checkpoints, and writes this
/// shard's file once every input and source reached the requested barrier.
pub(crate) fn service() -> Result<(), Failure> {
    let Some(result) = with(|l| -> Result<u64, Failure> {
        let requested = l.coord.requested.load(Ordering::Acquire);
        if requested > l.written
            && l.inputs.iter().all(|c| c.get() >= requested)
            && l.sources.iter().all(|c| c.get() >= requested)
        {
            l.written = requested;
            let pending = match l.pending.take() {
                Some(p) if p.id == requested => p,
                _ => Pending {
                    id: requested,
                    nodes: BTreeMap::new(),
                    holding_since: None,
                    alignment: Duration::ZERO,
                },
            };
            write_shard_file(l, pending)?;
        }
        Ok(l.coord.completed.load(Ordering::Acquire))
    }) else {
        return Ok(());
    };
    let completed = result?;
    // Hooks run outside the borrow: a hook may call back into the runtime.
    let due = with(|l| (completed > l.committed).then(|| std::mem::take(&mut l.hooks))).flatten();
    if let Some(mut hooks) = due {
        let mut result = Ok(());
        for h in &mut hooks {
            result = result.and_then(|()| h(completed));
        }
        with(|l| {
            l.committed = completed;
            hooks.append(&mut l.hooks);
            l.hooks = hooks;
        });
        result?;
    }
    Ok(())
}

/// Serializes the shard's state for `pending.id` and hands the bytes to the coordinator
/// thread, which writes and syncs the file while the shard keeps processing, then acks.
fn write_shard_file(l: &mut Local, pending: Pending) -> Result<(), Failure> {
    let id = pending.id;
    let file = ShardFile {
        checkpoint: id,
        shard: l.shard as u32,
        shards: l.shards as u32,
        nodes: pending
            .nodes
            .into_iter()
            .map(|(node, entries)| NodeState {
                operator: l.coord.operator_ids[node].clone(),
                entries,
            })
            .collect(),
    };
    let bytes = store::encode(&file)
        .map_err(|e| Failure::new(format!("could not serialize checkpoint {id}: {e}")))?;
    l.coord.alignment_ns[l.shard].store(pending.alignment.as_nanos() as u64, Ordering::SeqCst);
    l.coord.submit_file(id, l.shard, bytes);
    Ok(())
}

/// Marks this shard done (all its inputs ended). Returns whether it may stop: once the
/// coordinator starts no more checkpoints and this shard's files are written.
pub(crate) fn may_stop() -> bool {
    with(|l| {
        if !l.done {
            l.done = true;
            l.coord.done_shards.fetch_add(1, Ordering::SeqCst);
        }
        let acked = l.coord.acked[l.shard].load(Ordering::SeqCst);
        l.coord.stopped.load(Ordering::SeqCst)
            && l.written <= acked
            && l.coord.requested.load(Ordering::SeqCst) <= l.written
    })
    .unwrap_or(true)
}

/// The at-most-once guarantee is on.
pub(crate) fn at_most_once() -> bool {
    with(|l| l.coord.guarantee == Guarantee::AtMostOnce).unwrap_or(false)
}

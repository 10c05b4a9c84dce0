//! One shard's part in checkpoints, as an object the shard owns and hands to what needs it
//! (no thread-local): the inputs and sources that must reach a barrier, the state operators
//! handed over, the state to restore, and the commit hooks of sinks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stall::{Piece, Stall, Stopwatch, Work};
use super::store::{NodeState, ShardFile, StateEntry};
use super::{
    CheckpointContext, Coordinator, Deferred, Guarantee, RestoredEntry, Scratch, StateReader,
    StateWriter,
};
use crate::error::{Failure, OpResult};
use crate::progress::{Frontier, Progress};

type Hook = Box<dyn FnMut(u64) -> OpResult>;

/// Records archived into one entry at a time while a checkpoint's state is written in
/// slices: one call's work (about 25 KB of records in NEXMark q3) is the step by which a
/// slice keeps to its time.
const SLICE_RECORDS: usize = 256;

/// How long one slice archives at least before the shard's loop gets the thread back
/// (slices otherwise last as long as the loop's last turn, up to `SLICE_TIME_MAX`).
const SLICE_TIME: Duration = Duration::from_micros(200);
const SLICE_TIME_MAX: Duration = Duration::from_millis(2);

/// What the shard restores: per node, the entries that belong to it.
pub(crate) struct Restore {
    pub checkpoint: u64,
    pub shard: usize,
    pub shards: usize,
    /// Per node: its entries this shard owns.
    pub nodes: HashMap<usize, Vec<RestoredEntry>>,
}

struct Pending {
    id: u64,
    nodes: BTreeMap<usize, Vec<StateEntry>>,
    /// Per node, changelog records still to archive (in slices, after the barrier).
    deferred: Vec<(usize, Deferred)>,
    holding_since: Option<Instant>,
    alignment: Duration,
    /// Time spent taking this checkpoint's state on the record path.
    snapshot: Duration,
    /// The longest of those pieces of work (an operator's snapshot, or one slice).
    stall: Stall,
}

impl Pending {
    fn new(id: u64) -> Self {
        Pending {
            id,
            nodes: BTreeMap::new(),
            deferred: Vec::new(),
            holding_since: None,
            alignment: Duration::ZERO,
            snapshot: Duration::ZERO,
            stall: Stall::default(),
        }
    }

    /// Counts a piece of checkpoint work on the record path.
    fn took(&mut self, work: Work, piece: Piece) {
        self.snapshot += work.wall;
        if work.wall > self.stall.work.wall {
            self.stall = Stall { work, piece };
        }
    }
}

/// A shard's checkpoint state. Built on the shard's thread; shared (`Rc`) by the shard's
/// loop and the runtime's operator plumbing that takes part in checkpoints.
pub(crate) struct ShardCheckpoint {
    shard: usize,
    shards: usize,
    coord: Arc<Coordinator>,
    first_epoch: u64,
    state: RefCell<State>,
}

struct State {
    restore: Option<Restore>,
    /// A checkpoint every input passed whose deferred records are being archived.
    archiving: Option<Pending>,
    scratch: Scratch,
    /// When the loop last called `service`: the length of its turns sizes the slices.
    last_service: Option<Instant>,
    inputs: Vec<Rc<Cell<u64>>>,
    sources: Vec<Rc<Cell<u64>>>,
    pending: Option<Pending>,
    hooks: Vec<Hook>,
    committed: u64,
    written: u64,
    done: bool,
}

impl State {
    fn pending_for(&mut self, id: u64) -> &mut Pending {
        if self.pending.as_ref().map_or(true, |p| p.id != id) {
            self.pending = Some(Pending::new(id));
        }
        self.pending.as_mut().expect("set above")
    }
}

impl ShardCheckpoint {
    /// Shard `shard` of `shards`'s checkpoint state, restoring `restore`.
    pub(crate) fn new(
        shard: usize,
        shards: usize,
        coord: Arc<Coordinator>,
        first_epoch: u64,
        restore: Option<Restore>,
    ) -> Rc<Self> {
        let base = coord.completed.load(Ordering::SeqCst);
        Rc::new(ShardCheckpoint {
            shard,
            shards,
            coord,
            first_epoch,
            state: RefCell::new(State {
                restore,
                archiving: None,
                scratch: Scratch::default(),
                last_service: None,
                inputs: Vec::new(),
                sources: Vec::new(),
                pending: None,
                hooks: Vec::new(),
                committed: base,
                written: base,
                done: false,
            }),
        })
    }

    /// What operators may know: the guarantee and the first epoch of this run.
    pub(crate) fn context(&self) -> CheckpointContext {
        CheckpointContext {
            guarantee: self.coord.guarantee,
            first_epoch: self.first_epoch,
        }
    }

    /// This shard's index and the job's shard count.
    pub(crate) fn shard(&self) -> (usize, usize) {
        (self.shard, self.shards)
    }

    /// Which key groups checkpoint `id`'s keyed tables copy whole (see
    /// `Coordinator::copy_of`).
    pub(crate) fn copy_of(&self, id: u64) -> (u32, u32) {
        self.coord.copy_of(id)
    }

    /// This shard's index.
    pub(crate) fn index(&self) -> usize {
        self.shard
    }

    /// The state shared with the coordinator.
    pub(crate) fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coord
    }

    /// True if barriers are aligned (exactly-once).
    pub(crate) fn aligned(&self) -> bool {
        self.coord.guarantee.aligned()
    }

    /// True under at-most-once (leases, no snapshots).
    pub(crate) fn at_most_once(&self) -> bool {
        self.coord.guarantee == Guarantee::AtMostOnce
    }

    /// Runs `hook` on this shard after every completed checkpoint, with its id.
    pub(crate) fn on_complete(&self, hook: Hook) {
        self.state.borrow_mut().hooks.push(hook);
    }

    /// A new operator input that must see every barrier: the cell holds the last one it saw.
    pub(crate) fn register_input(&self) -> Rc<Cell<u64>> {
        let mut s = self.state.borrow_mut();
        let cell = Rc::new(Cell::new(s.written));
        s.inputs.push(cell.clone());
        cell
    }

    /// A new source: the cell holds the last barrier it injected.
    pub(crate) fn register_source(&self) -> Rc<Cell<u64>> {
        let mut s = self.state.borrow_mut();
        let cell = Rc::new(Cell::new(s.written));
        s.sources.push(cell.clone());
        cell
    }

    /// The state restored for `node`, if the job restores.
    pub(crate) fn restored(&self, node: usize) -> Option<StateReader> {
        let mut s = self.state.borrow_mut();
        s.restore.as_mut().map(|r| StateReader {
            checkpoint: r.checkpoint,
            shard: r.shard,
            shards: r.shards,
            entries: r.nodes.remove(&node).unwrap_or_default(),
        })
    }

    /// Hands over `node`'s state for checkpoint `id`, which took `took` to write.
    pub(crate) fn submit(&self, node: usize, id: u64, state: StateWriter, took: Work) {
        let mut s = self.state.borrow_mut();
        let p = s.pending_for(id);
        p.nodes.entry(node).or_default().extend(state.entries);
        p.deferred
            .extend(state.deferred.into_iter().map(|d| (node, d)));
        p.took(took, Piece::Barrier(node));
    }

    /// An input of an operator started (`true`) or stopped holding back records for
    /// alignment; the time in between counts as alignment.
    fn holding(&self, id: u64, holding: bool) {
        let mut s = self.state.borrow_mut();
        let p = s.pending_for(id);
        if holding {
            p.holding_since.get_or_insert_with(Instant::now);
        } else if let Some(since) = p.holding_since.take() {
            p.alignment = p.alignment.max(since.elapsed());
        }
    }

    /// After `frontier` took `progress` (it was aligning a barrier before if
    /// `was_aligning`): records when an exactly-once input started and stopped holding
    /// back records.
    pub(crate) fn track_alignment(
        &self,
        was_aligning: bool,
        frontier: &Frontier,
        progress: Progress,
    ) {
        match (was_aligning, frontier.aligning(), progress) {
            (false, true, Progress::Barrier(id)) => self.holding(id, true),
            (true, false, _) => self.holding(frontier.last_barrier(), false),
            _ => {}
        }
    }

    /// The shard loop's turn: runs commit hooks of completed checkpoints; once every
    /// input and source reached the requested barrier, archives the deferred records of
    /// its state in slices (one slice per turn) and then hands the shard's file over.
    /// Returns whether it did work (a slice), so that the shard does not park meanwhile.
    pub(crate) fn service(&self) -> Result<bool, Failure> {
        let mut worked = false;
        let completed = {
            let mut s = self.state.borrow_mut();
            // A slice takes about as long as the loop's turn did (half of the shard's time
            // while a checkpoint is archived), within bounds.
            let now = Instant::now();
            let turn = s.last_service.map_or(SLICE_TIME, |t| now - t);
            s.last_service = Some(now);
            let requested = self.coord.requested.load(Ordering::Acquire);
            // One checkpoint is archived at a time: a later one waits for it (keyed tables
            // collect their records during archiving, see `crate::state`).
            if requested > s.written
                && s.archiving.is_none()
                && s.inputs.iter().all(|c| c.get() >= requested)
                && s.sources.iter().all(|c| c.get() >= requested)
            {
                s.written = requested;
                let pending = match s.pending.take() {
                    Some(p) if p.id == requested => p,
                    _ => Pending::new(requested),
                };
                s.archiving = Some(pending);
                let mut spare = self.coord.take_spare(self.shard);
                s.scratch.spare.append(&mut spare);
            }
            if s.archiving.is_some() {
                worked = true;
                if self.archive_slice(&mut s, turn.clamp(SLICE_TIME, SLICE_TIME_MAX))? {
                    let pending = s.archiving.take().expect("checked above");
                    self.write_shard_file(pending)?;
                }
            }
            self.coord.completed.load(Ordering::Acquire)
        };
        // Hooks run outside the borrow: a hook may call back into the runtime.
        let due = {
            let mut s = self.state.borrow_mut();
            (completed > s.committed).then(|| std::mem::take(&mut s.hooks))
        };
        if let Some(mut hooks) = due {
            let mut result = Ok(());
            for h in &mut hooks {
                result = result.and_then(|()| h(completed));
            }
            let mut s = self.state.borrow_mut();
            s.committed = completed;
            hooks.append(&mut s.hooks);
            s.hooks = hooks;
            drop(s);
            result?;
        }
        Ok(worked)
    }

    /// Archives deferred records for about one batch turn. True once none are left.
    fn archive_slice(&self, s: &mut State, budget: Duration) -> Result<bool, Failure> {
        let started = Stopwatch::start();
        let mut piece = Piece::Nothing;
        let State {
            archiving, scratch, ..
        } = s;
        let p = archiving.as_mut().expect("called while archiving");
        while let Some((node, d)) = p.deferred.last_mut() {
            piece = Piece::Archive(*node);
            match d.next_entry(scratch, SLICE_RECORDS) {
                Some(entry) => {
                    let entry = entry?;
                    if !entry.bytes.is_empty() {
                        p.nodes.entry(*node).or_default().push(entry);
                    }
                }
                None => {
                    p.deferred.pop();
                    continue;
                }
            }
            if started.wall_elapsed() >= budget {
                break;
            }
        }
        if piece != Piece::Nothing {
            p.took(started.elapsed(), piece);
        }
        Ok(p.deferred.is_empty())
    }

    /// Hands the shard's state for `pending.id` (its operators' entries, already
    /// archived) to the coordinator thread, which frames, checksums, writes and syncs the
    /// file while the shard keeps processing, then acks.
    fn write_shard_file(&self, pending: Pending) -> Result<(), Failure> {
        let started = Instant::now();
        let id = pending.id;
        let taken = pending.snapshot;
        let file = ShardFile {
            checkpoint: id,
            shard: self.shard as u32,
            shards: self.shards as u32,
            nodes: pending
                .nodes
                .into_iter()
                .map(|(node, entries)| NodeState {
                    operator: self.coord.operator_ids[node].clone(),
                    entries,
                })
                .collect(),
        };
        self.coord.alignment_ns[self.shard]
            .store(pending.alignment.as_nanos() as u64, Ordering::SeqCst);
        self.coord.snapshot_ns[self.shard].store(
            (taken + started.elapsed()).as_nanos() as u64,
            Ordering::SeqCst,
        );
        let stall = pending.stall;
        self.coord.stalls.lock().unwrap_or_else(|e| e.into_inner())[self.shard] = stall;
        self.coord.submit_file(id, self.shard, file);
        Ok(())
    }

    /// The newest checkpoint whose completion hooks ran on this shard (its sinks
    /// committed it).
    pub(crate) fn committed(&self) -> u64 {
        self.state.borrow().committed
    }

    /// Marks this shard done (all its inputs ended). Returns whether it may stop: once the
    /// coordinator starts no more checkpoints and this shard's files are written.
    pub(crate) fn may_stop(&self) -> bool {
        let mut s = self.state.borrow_mut();
        if !s.done {
            s.done = true;
            self.coord.done_shards.fetch_add(1, Ordering::SeqCst);
        }
        let acked = self.coord.acked[self.shard].load(Ordering::SeqCst);
        self.coord.stopped.load(Ordering::SeqCst)
            && s.written <= acked
            && self.coord.requested.load(Ordering::SeqCst) <= s.written
    }
}

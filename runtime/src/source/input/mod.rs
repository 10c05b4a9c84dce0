//! Input handles: a host program feeds records into a running job.
//!
//! [`Dataflow::input`](crate::Dataflow::input) adds a source whose records come from an
//! [`InputHandle`]. The handle is `Send + Sync + Clone`: any number of host threads send
//! through it. Each shard reads its own bounded queue (its capacity: the channel credits
//! times the batch size, as for an exchange channel), so memory stays bounded: `send`
//! blocks while the shard's queue is full (the job is backpressured), `try_send` hands the
//! record back, and `send_async` waits on any executor. A record goes to the shard that
//! owns its key ([`Dataflow::keyed_input`](crate::Dataflow::keyed_input): no exchange is
//! needed behind it) or round robin.
//!
//! Event time: records carry their timestamps; a handle promises with
//! [`InputHandle::advance_watermark`] that it sends nothing older. The input's watermark
//! is the minimum over its open handles (a clone starts at its original's watermark), sent
//! to every shard in order behind the records sent before it. Closing or dropping every
//! handle ends the stream (the final watermark follows, as for a bounded source).
//!
//! Guarantee and replay: every record sent gets the next *position* (0, 1, 2, ... from the
//! job's first start, counted on across restarts: [`InputHandle::position`]). Checkpoints
//! record what each shard took. After a restore, [`InputHandle::resume_position`] is the
//! lowest position not known to be taken: a host that logs its input (and sends it from
//! one thread, so that positions follow its log) resends its log from there, and each
//! shard drops the resent records an earlier run already took, so every record counts
//! exactly once (see `positions`). A host that does not resend loses what it sent after
//! the restored checkpoint (at most once). Stopping with a savepoint loses nothing: the
//! inputs close, every record already sent is processed, then the savepoint's barrier
//! follows, and the resumed job's `resume_position` is where the host stopped.

mod positions;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_channel::{Receiver, Sender};

use super::{Source, SourceStatus};
use crate::checkpoint::SplitPosition;
use crate::error::Failure;
use crate::park::ShardWaker;
use crate::push::SourceOutput;
use crate::shard_info::ShardInfo;
use crate::time::{Timestamp, MIN_WATERMARK};
use positions::{route, split, Replay};

/// What travels from the handles to a shard.
pub(crate) enum Message<T> {
    /// A record and its position.
    Record(T, u64),
    Watermark(Timestamp),
}

/// The record could not be sent: the job no longer takes input (it ended, was stopped or
/// cancelled, or never started and was dropped). The record is handed back.
#[derive(Clone, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`InputHandle::try_send`] did not send; the record is handed back.
#[derive(Clone, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The shard's queue is full (the job is backpressured), or the job has not started.
    Full(T),
    /// The job no longer takes input.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The record that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(r) | TrySendError::Closed(r) => r,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the job no longer takes input")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the input's queue is full"),
            TrySendError::Closed(_) => f.write_str("the job no longer takes input"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Hashes a record's key (routing an input by key).
pub(crate) type KeyHash<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// The queues of a started job, one per shard, and how to wake each shard.
struct Bound<T> {
    senders: Vec<Sender<Message<T>>>,
    wakers: Vec<Arc<ShardWaker>>,
}

impl<T> Bound<T> {
    /// Sends watermark `w` to every shard and wakes it: waiting while a queue is full
    /// (`wait`), or leaving a full queue without it (the next move of the minimum sends
    /// it). False if a queue is closed.
    fn send_watermark(&self, w: Timestamp, wait: bool) -> bool {
        let mut open = true;
        for (tx, waker) in self.senders.iter().zip(&self.wakers) {
            let sent = match wait {
                true => tx.send_blocking(Message::Watermark(w)).is_ok(),
                false => tx.try_send(Message::Watermark(w)).is_ok(),
            };
            open &= sent || !tx.is_closed();
            waker.wake();
        }
        open
    }
}

/// Watermarks of the open handles.
struct Marks {
    /// By handle id: its watermark, `None` once it closed.
    handles: Vec<Option<Timestamp>>,
    /// The minimum sent to the shards last.
    sent: Timestamp,
}

impl Marks {
    /// The input's watermark: the minimum over the open handles (`None`: none is open).
    fn minimum(&self) -> Option<Timestamp> {
        self.handles.iter().flatten().copied().min()
    }
}

/// What the handles, the graph and the shards share.
struct Shared<T> {
    name: String,
    by_key: Option<KeyHash<T>>,
    bound: OnceLock<Bound<T>>,
    /// Set once every shard reported what it restored: the input takes records.
    replay: OnceLock<Arc<Replay>>,
    /// Closed once the input takes records (or never will): a latch that blocking and
    /// async senders wait on.
    started: (Sender<()>, Receiver<()>),
    /// The next record's position.
    next: AtomicU64,
    /// What the shards restored, until every shard reported.
    reports: Mutex<Reports>,
    /// Each shard's receiving end, until the shard takes it.
    receivers: Mutex<Vec<Option<Receiver<Message<T>>>>>,
    marks: Mutex<Marks>,
}

/// The shards' reports of what they restored.
#[derive(Default)]
struct Reports {
    expected: usize,
    received: usize,
    splits: Vec<SplitPosition>,
}

impl<T> Shared<T> {
    fn lock_marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A shard restored `splits` (none: a fresh start). Once every shard reported, the
    /// input knows its positions and takes records.
    fn report(&self, splits: &[SplitPosition]) {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        r.splits.extend_from_slice(splits);
        r.received += 1;
        if r.received == r.expected {
            let replay = Replay::from_splits(&r.splits);
            self.next.store(replay.resume, Ordering::SeqCst);
            let _ = self.replay.set(Arc::new(replay));
            self.started.0.close();
        }
    }

    fn key_hash(&self, record: &T) -> Option<u64> {
        self.by_key.as_ref().map(|h| h(record))
    }
}

/// Sends records into a running job (see the [module docs](self)).
pub struct InputHandle<T> {
    shared: Arc<Shared<T>>,
    id: usize,
}

impl<T> fmt::Debug for InputHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputHandle")
            .field("input", &self.shared.name)
            .field("handle", &self.id)
            .field("started", &self.is_started())
            .finish()
    }
}

impl<T> Clone for InputHandle<T> {
    /// Another handle on the same input, starting at this one's watermark; the input ends
    /// when every handle is closed or dropped.
    fn clone(&self) -> Self {
        let mut marks = self.shared.lock_marks();
        let mark = marks.handles[self.id];
        marks.handles.push(mark);
        let id = marks.handles.len() - 1;
        drop(marks);
        InputHandle {
            shared: self.shared.clone(),
            id,
        }
    }
}

impl<T> InputHandle<T> {
    /// True once the job has started and takes records.
    pub fn is_started(&self) -> bool {
        self.shared.replay.get().is_some()
    }
}

impl<T: Send + 'static> InputHandle<T> {
    /// Sends `record`, waiting while its shard's queue is full (and until the job started).
    pub fn send(&self, record: T) -> Result<(), SendError<T>> {
        let Some(bound) = self.wait_started() else {
            return Err(SendError(record));
        };
        match self.offer(bound, record) {
            Offered::Sent => Ok(()),
            Offered::Closed(r) => Err(SendError(r)),
            Offered::Full(shard, m, position) => {
                let result = bound.senders[shard].send_blocking(m);
                bound.wakers[shard].wake();
                self.sent(position);
                result.map_err(|e| SendError(record_of(e.0)))
            }
        }
    }

    /// Sends `record` if its shard's queue has room now; hands it back otherwise.
    pub fn try_send(&self, record: T) -> Result<(), TrySendError<T>> {
        let started = self.shared.replay.get().and(self.shared.bound.get());
        let Some(bound) = started else {
            return Err(if self.shared.started.0.is_closed() {
                TrySendError::Closed(record)
            } else {
                TrySendError::Full(record)
            });
        };
        match self.offer(bound, record) {
            Offered::Sent => Ok(()),
            Offered::Closed(r) => Err(TrySendError::Closed(r)),
            Offered::Full(_, m, _) => Err(TrySendError::Full(record_of(m))),
        }
    }

    /// Sends `record`, waiting (asynchronously, on any executor) while its shard's queue is
    /// full or the job has not started.
    pub async fn send_async(&self, record: T) -> Result<(), SendError<T>> {
        let _ = self.shared.started.1.recv().await;
        let Some(bound) = self.shared.bound.get() else {
            return Err(SendError(record));
        };
        match self.offer(bound, record) {
            Offered::Sent => Ok(()),
            Offered::Closed(r) => Err(SendError(r)),
            Offered::Full(shard, m, position) => {
                let result = bound.senders[shard].send(m).await;
                bound.wakers[shard].wake();
                self.sent(position);
                result.map_err(|e| SendError(record_of(e.0)))
            }
        }
    }

    /// Puts `record` on its shard's queue if there is room, and wakes the shard (also when
    /// the queue is full: a parked shard that drains it makes room).
    /// The record gets the next position (with several sending threads at once, two may
    /// get the same one: positions follow a host's log only from one thread).
    fn offer(&self, bound: &Bound<T>, record: T) -> Offered<T> {
        let position = self.shared.next.load(Ordering::Relaxed);
        let key = self.shared.key_hash(&record);
        let shard = route(position, key, bound.senders.len());
        let result = bound.senders[shard].try_send(Message::Record(record, position));
        bound.wakers[shard].wake();
        match result {
            Ok(()) => {
                self.sent(position);
                Offered::Sent
            }
            Err(async_channel::TrySendError::Full(m)) => Offered::Full(shard, m, position),
            Err(async_channel::TrySendError::Closed(m)) => Offered::Closed(record_of(m)),
        }
    }

    fn sent(&self, position: u64) {
        self.shared.next.fetch_max(position + 1, Ordering::Relaxed);
    }

    /// The position the next record sent gets.
    pub fn position(&self) -> u64 {
        self.shared.next.load(Ordering::Relaxed)
    }

    /// Waits until the job started, and returns the lowest position it has not taken
    /// (0 for a fresh job): a host that replays from its own log resends from there, in
    /// the same order (see the [module docs](self)). `None` if the job can no longer
    /// start.
    pub fn resume_position(&self) -> Option<u64> {
        if self.shared.replay.get().is_none() {
            let _ = self.shared.started.1.recv_blocking();
        }
        self.shared.replay.get().map(|r| r.resume)
    }

    /// Promises that this handle sends no record with an event time below `watermark`.
    /// When the minimum over the open handles moves, it goes to every shard (waiting while
    /// a queue is full). A watermark below this handle's current one is ignored.
    pub fn advance_watermark(&self, watermark: Timestamp) -> Result<(), SendError<Timestamp>> {
        let mut marks = self.shared.lock_marks();
        let mine = &mut marks.handles[self.id];
        if mine.is_some_and(|m| m >= watermark) {
            return Ok(());
        }
        *mine = Some(watermark);
        match marks.minimum() {
            Some(min) if min > marks.sent => {
                marks.sent = min;
                // Not started: `bind` (under this lock) sends the minimum to every shard.
                let started = self.shared.bound.get().is_some();
                drop(marks);
                if started {
                    self.broadcast(min)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// This handle's watermark.
    pub fn watermark(&self) -> Timestamp {
        self.shared.lock_marks().handles[self.id].unwrap_or(MIN_WATERMARK)
    }

    /// Closes this handle (as dropping it does). The input ends once every handle is
    /// closed: each shard processes what it was sent, then the final watermark follows.
    pub fn close(self) {}

    /// True once the job no longer takes records (it ended, stopped or was cancelled).
    pub fn is_closed(&self) -> bool {
        match self.shared.bound.get() {
            Some(b) => b.senders.iter().any(Sender::is_closed),
            None => self.shared.started.0.is_closed(),
        }
    }

    fn wait_started(&self) -> Option<&Bound<T>> {
        if self.shared.replay.get().is_none() {
            let _ = self.shared.started.1.recv_blocking();
        }
        self.shared.bound.get()
    }

    /// Sends watermark `w` to every shard of the started job, waiting while a queue is
    /// full.
    fn broadcast(&self, w: Timestamp) -> Result<(), SendError<Timestamp>> {
        match self.shared.bound.get() {
            Some(bound) if !bound.send_watermark(w, true) => Err(SendError(w)),
            _ => Ok(()),
        }
    }
}

impl<T> Drop for InputHandle<T> {
    fn drop(&mut self) {
        let mut marks = self.shared.lock_marks();
        marks.handles[self.id] = None;
        let moved = marks.minimum().filter(|&min| min > marks.sent);
        if let Some(min) = moved {
            marks.sent = min;
        }
        let last = marks.handles.iter().all(Option::is_none);
        // Under the lock: `bind` sees either an open handle or this close.
        let bound = self.shared.bound.get();
        drop(marks);
        if last {
            // The last handle: the input ends once the shards took what was sent.
            if let Some(bound) = bound {
                for (tx, waker) in bound.senders.iter().zip(&bound.wakers) {
                    tx.close();
                    waker.wake();
                }
            }
            return;
        }
        // Another handle is still open and the minimum moved: tell the shards without
        // blocking the dropping thread (a full queue gets it with the next move).
        if let (Some(min), Some(bound)) = (moved, bound) {
            bound.send_watermark(min, false);
        }
    }
}

/// What [`InputHandle::offer`] did.
enum Offered<T> {
    Sent,
    /// The queue of this shard is full: the message (with its position) is handed back.
    Full(usize, Message<T>, u64),
    /// The job no longer takes input.
    Closed(T),
}

fn record_of<T>(m: Message<T>) -> T {
    match m {
        Message::Record(r, _) => r,
        Message::Watermark(_) => unreachable!("only records are handed back"),
    }
}

/// The graph's side of an input: binds it to the shards when the job starts.
pub(crate) trait InputBinding: Send + Sync {
    /// Creates one queue per shard of `capacity` messages.
    fn bind(&self, wakers: &[Arc<ShardWaker>], capacity: usize);
    /// The job ended (or never started): senders get errors from now on.
    fn close(&self);
}

/// The graph's reference to an input's shared state.
pub(crate) struct InputBinder<T>(Arc<Shared<T>>);

impl<T: Send> InputBinding for InputBinder<T> {
    fn bind(&self, wakers: &[Arc<ShardWaker>], capacity: usize) {
        let (senders, receivers): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|_| async_channel::bounded(capacity.max(1)))
            .unzip();
        // Under the marks' lock: a handle that moves the watermark or closes meanwhile
        // sees the queues, or is seen here.
        let marks = self.0.lock_marks();
        let bound = Bound {
            senders,
            wakers: wakers.to_vec(),
        };
        if marks.sent > MIN_WATERMARK {
            bound.send_watermark(marks.sent, false);
        }
        if marks.handles.iter().all(Option::is_none) {
            // Every handle closed before the start: the input is empty.
            bound.senders.iter().for_each(|tx| {
                tx.close();
            });
        }
        *self.0.receivers.lock().unwrap_or_else(|e| e.into_inner()) =
            receivers.into_iter().map(Some).collect();
        self.0
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expected = wakers.len();
        let _ = self.0.bound.set(bound);
        drop(marks);
        // The input takes records once every shard reported what it restored.
    }

    fn close(&self) {
        if let Some(b) = self.0.bound.get() {
            for tx in &b.senders {
                tx.close();
            }
        }
        self.0.started.0.close();
    }
}

impl<T> Drop for InputBinder<T> {
    fn drop(&mut self) {
        // The dataflow was dropped (or the job ended): nothing waits for a start.
        self.0.started.0.close();
    }
}

/// A new input named `name` (routing by `by_key`'s hash, or round robin): its first
/// handle, and the binder the graph keeps.
pub(crate) fn input<T: Send>(
    name: &str,
    by_key: Option<KeyHash<T>>,
) -> (InputHandle<T>, InputBinder<T>) {
    let shared = Arc::new(Shared {
        name: name.to_string(),
        by_key,
        bound: OnceLock::new(),
        replay: OnceLock::new(),
        started: async_channel::bounded(1),
        next: AtomicU64::new(0),
        reports: Mutex::new(Reports::default()),
        receivers: Mutex::new(Vec::new()),
        marks: Mutex::new(Marks {
            handles: vec![Some(MIN_WATERMARK)],
            sent: MIN_WATERMARK,
        }),
    });
    let handle = InputHandle {
        shared: shared.clone(),
        id: 0,
    };
    (handle, InputBinder(shared))
}

impl<T> InputBinder<T> {
    /// Shard `shard`'s source (built on the shard when the job starts, after `bind`).
    pub(crate) fn source(&self, shard: ShardInfo) -> InputSource<T> {
        let rx = self
            .0
            .receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(shard.index)
            .and_then(Option::take);
        InputSource {
            rx,
            shard,
            shared: self.0.clone(),
            restored: Vec::new(),
            reported: false,
            replay: None,
            position: 0,
        }
    }

    /// Another reference for the graph's node factory.
    pub(crate) fn share(&self) -> InputBinder<T> {
        InputBinder(self.0.clone())
    }
}

/// One shard's end of an input.
pub(crate) struct InputSource<T> {
    /// `None` if the input was never bound (the source ends at once).
    rx: Option<Receiver<Message<T>>>,
    shard: ShardInfo,
    shared: Arc<Shared<T>>,
    /// The splits this shard restored (earlier runs' positions).
    restored: Vec<SplitPosition>,
    reported: bool,
    /// What every shard restored, once all reported.
    replay: Option<Arc<Replay>>,
    /// One past the highest position this shard took.
    position: u64,
}

impl<T: Clone> Source<T> for InputSource<T> {
    fn poll(&mut self, out: &mut SourceOutput<T>, max: usize) -> Result<SourceStatus, Failure> {
        let Some(rx) = &self.rx else {
            return Ok(SourceStatus::Done);
        };
        if !self.reported {
            self.reported = true;
            self.shared.report(&self.restored);
        }
        let replay = match &self.replay {
            Some(r) => r.clone(),
            None => match self.shared.replay.get() {
                Some(r) => {
                    self.replay = Some(r.clone());
                    r.clone()
                }
                // Waiting for the other shards' reports: nothing was sent yet.
                None => return Ok(SourceStatus::Idle),
            },
        };
        let mut status = SourceStatus::Idle;
        let mut records = 0;
        while records < max {
            match rx.try_recv() {
                Ok(Message::Record(r, position)) => {
                    status = SourceStatus::Emitted;
                    self.position = self.position.max(position + 1);
                    if replay.may_be_taken(position)
                        && replay.taken(position, self.shared.key_hash(&r))
                    {
                        continue; // resent by the host, taken by an earlier run
                    }
                    out.give(r);
                    records += 1;
                }
                Ok(Message::Watermark(w)) => {
                    out.watermark(w)?;
                    status = SourceStatus::Emitted;
                }
                Err(async_channel::TryRecvError::Empty) => break,
                Err(async_channel::TryRecvError::Closed) => {
                    // Closed and drained: every position sent was taken by some shard, so
                    // a later run resumes after all of them.
                    let sent = self.shared.next.load(Ordering::SeqCst);
                    self.position = self.position.max(sent);
                    return Ok(SourceStatus::Done);
                }
            }
        }
        Ok(status)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(match &self.replay {
            Some(r) => {
                let mut splits = r.carried(&self.restored);
                let position = self.position.max(r.resume);
                splits.push(split(
                    r.number,
                    self.shard.index,
                    self.shard.shards,
                    position,
                ));
                splits
            }
            // Not started: nothing taken in this run yet.
            None => self.restored.clone(),
        })
    }

    fn restore(&mut self, splits: Vec<SplitPosition>) -> Result<(), Failure> {
        self.restored = splits;
        Ok(())
    }

    fn close(&mut self) -> bool {
        if let Some(rx) = &self.rx {
            rx.close();
        }
        true
    }
}

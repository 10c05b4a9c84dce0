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
//! Guarantee: a handle's records are not replayable. Under checkpointing each shard's
//! position is the number of records it took; a crash loses what the host sent after the
//! checkpoint the job restores. Stopping with a savepoint loses nothing: the inputs close,
//! every record already sent is processed, then the savepoint's barrier follows.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_channel::{Receiver, Sender};

use super::{Source, SourceStatus};
use crate::checkpoint::SplitPosition;
use crate::context::ShardInfo;
use crate::error::Failure;
use crate::keys::{key_group, shard_of_key_group};
use crate::park::ShardWaker;
use crate::push::SourceOutput;
use crate::time::{Timestamp, MIN_WATERMARK};

/// What travels from the handles to a shard.
pub(crate) enum Message<T> {
    Record(T),
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
    /// Closed once the job started (or can never start): a latch that blocking and async
    /// senders wait on.
    started: (Sender<()>, Receiver<()>),
    /// Each shard's receiving end, until the shard takes it.
    receivers: Mutex<Vec<Option<Receiver<Message<T>>>>>,
    marks: Mutex<Marks>,
}

impl<T> Shared<T> {
    fn lock_marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends records into a running job (see the [module docs](self)).
pub struct InputHandle<T> {
    shared: Arc<Shared<T>>,
    id: usize,
    next: AtomicUsize,
}

impl<T> fmt::Debug for InputHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputHandle")
            .field("input", &self.shared.name)
            .field("handle", &self.id)
            .field("started", &self.shared.bound.get().is_some())
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
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
        }
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
            Offered::Full(shard, m) => {
                let result = bound.senders[shard].send_blocking(m);
                bound.wakers[shard].wake();
                result.map_err(|e| SendError(record_of(e.0)))
            }
        }
    }

    /// Sends `record` if its shard's queue has room now; hands it back otherwise.
    pub fn try_send(&self, record: T) -> Result<(), TrySendError<T>> {
        let Some(bound) = self.shared.bound.get() else {
            return Err(if self.shared.started.0.is_closed() {
                TrySendError::Closed(record)
            } else {
                TrySendError::Full(record)
            });
        };
        match self.offer(bound, record) {
            Offered::Sent => Ok(()),
            Offered::Closed(r) => Err(TrySendError::Closed(r)),
            Offered::Full(_, m) => Err(TrySendError::Full(record_of(m))),
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
            Offered::Full(shard, m) => {
                let result = bound.senders[shard].send(m).await;
                bound.wakers[shard].wake();
                result.map_err(|e| SendError(record_of(e.0)))
            }
        }
    }

    /// Puts `record` on its shard's queue if there is room, and wakes the shard (also when
    /// the queue is full: a parked shard that drains it makes room).
    fn offer(&self, bound: &Bound<T>, record: T) -> Offered<T> {
        let shard = self.route(&record, bound.senders.len());
        let result = bound.senders[shard].try_send(Message::Record(record));
        bound.wakers[shard].wake();
        match result {
            Ok(()) => Offered::Sent,
            Err(async_channel::TrySendError::Full(m)) => Offered::Full(shard, m),
            Err(async_channel::TrySendError::Closed(m)) => Offered::Closed(record_of(m)),
        }
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

    /// True once the job has started and takes records.
    pub fn is_started(&self) -> bool {
        self.shared.bound.get().is_some()
    }

    /// True once the job no longer takes records (it ended, stopped or was cancelled).
    pub fn is_closed(&self) -> bool {
        match self.shared.bound.get() {
            Some(b) => b.senders.iter().any(Sender::is_closed),
            None => self.shared.started.0.is_closed(),
        }
    }

    fn wait_started(&self) -> Option<&Bound<T>> {
        if let Some(b) = self.shared.bound.get() {
            return Some(b);
        }
        let _ = self.shared.started.1.recv_blocking();
        self.shared.bound.get()
    }

    #[inline]
    fn route(&self, record: &T, shards: usize) -> usize {
        match &self.shared.by_key {
            Some(hash) => shard_of_key_group(key_group(hash(record)), shards),
            None => self.next.fetch_add(1, Ordering::Relaxed) % shards,
        }
    }

    /// Sends watermark `w` to every shard of the started job, waiting while a queue is
    /// full.
    fn broadcast(&self, w: Timestamp) -> Result<(), SendError<Timestamp>> {
        let Some(bound) = self.shared.bound.get() else {
            return Ok(());
        };
        let mut result = Ok(());
        for (tx, waker) in bound.senders.iter().zip(&bound.wakers) {
            if tx.send_blocking(Message::Watermark(w)).is_err() {
                result = Err(SendError(w));
            }
            waker.wake();
        }
        result
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
            for (tx, waker) in bound.senders.iter().zip(&bound.wakers) {
                let _ = tx.try_send(Message::Watermark(min));
                waker.wake();
            }
        }
    }
}

/// What [`InputHandle::offer`] did.
enum Offered<T> {
    Sent,
    /// The queue of this shard is full: the message is handed back.
    Full(usize, Message<T>),
    /// The job no longer takes input.
    Closed(T),
}

fn record_of<T>(m: Message<T>) -> T {
    match m {
        Message::Record(r) => r,
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
        if marks.sent > MIN_WATERMARK {
            for tx in &senders {
                let _ = tx.try_send(Message::Watermark(marks.sent));
            }
        }
        if marks.handles.iter().all(Option::is_none) {
            // Every handle closed before the start: the input is empty.
            senders.iter().for_each(|tx| {
                tx.close();
            });
        }
        *self.0.receivers.lock().unwrap_or_else(|e| e.into_inner()) =
            receivers.into_iter().map(Some).collect();
        let _ = self.0.bound.set(Bound {
            senders,
            wakers: wakers.to_vec(),
        });
        drop(marks);
        self.0.started.0.close();
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
        started: async_channel::bounded(1),
        receivers: Mutex::new(Vec::new()),
        marks: Mutex::new(Marks {
            handles: vec![Some(MIN_WATERMARK)],
            sent: MIN_WATERMARK,
        }),
    });
    let handle = InputHandle {
        shared: shared.clone(),
        id: 0,
        next: AtomicUsize::new(0),
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
            taken: 0,
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
    taken: u64,
}

impl<T: Clone> Source<T> for InputSource<T> {
    fn poll(&mut self, out: &mut SourceOutput<T>, max: usize) -> Result<SourceStatus, Failure> {
        let Some(rx) = &self.rx else {
            return Ok(SourceStatus::Done);
        };
        let mut status = SourceStatus::Idle;
        let mut records = 0;
        while records < max {
            match rx.try_recv() {
                Ok(Message::Record(r)) => {
                    out.give(r);
                    records += 1;
                    status = SourceStatus::Emitted;
                }
                Ok(Message::Watermark(w)) => {
                    out.watermark(w)?;
                    status = SourceStatus::Emitted;
                }
                Err(async_channel::TryRecvError::Empty) => break,
                Err(async_channel::TryRecvError::Closed) => return Ok(SourceStatus::Done),
            }
        }
        self.taken += records as u64;
        Ok(status)
    }

    fn checkpoint(&self) -> Option<Vec<SplitPosition>> {
        Some(vec![SplitPosition {
            split: self.shard.index as u32,
            of: self.shard.shards as u32,
            position: self.taken,
        }])
    }

    fn restore(&mut self, _splits: Vec<SplitPosition>) -> Result<(), Failure> {
        // Not replayable: what the host sends after the restart is new input.
        Ok(())
    }

    fn close(&mut self) -> bool {
        if let Some(rx) = &self.rx {
            rx.close();
        }
        true
    }
}

//! Subscriptions: a host program reads a stream's records while the job runs.
//!
//! [`Stream::subscribe`](crate::Stream::subscribe) ends a stream in a sink whose records a
//! [`Subscription`] receives, from every shard, through one bounded queue. The host reads
//! with a blocking [`Subscription::recv`], [`Subscription::try_recv`], an async
//! [`Subscription::recv_async`] (any executor) or as an iterator. A slow reader slows the
//! job down: a shard whose records do not fit keeps them and is not scheduled upstream of
//! the sink until the reader makes room (as with an exchange channel out of credit), so
//! nothing is dropped and memory stays bounded.
//!
//! The subscription also shows the stream's watermark: [`Subscription::watermark`] is the
//! minimum over the shards of the watermark that followed the records read so far, so
//! once it passes `t`, every record the stream will carry with an event time below `t` has
//! been read (a probe). [`Subscription::recv_event`] delivers its moves in order with the
//! records. The queue ends (`recv` returns `None`) when every shard's sink
//! ended: the stream ended, or the job stopped, was cancelled or failed
//! ([`JobHandle::join`](crate::JobHandle::join) says which).
//!
//! Dropping a subscription does not stop or fail the job: from then on its sink discards
//! what reaches it and counts it as dropped records of the sink (in the job report). The
//! records already in the queue (at most its capacity) go with the subscription.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_channel::{Receiver, Sender};

use crate::error::{Failure, OpResult};
use crate::head::{BlockedFlag, SenderDriver};
use crate::instrument::DroppedRecords;
use crate::operator::{Operator, OperatorState};
use crate::park::ShardWaker;
use crate::sync::{fence, AtomicBool, Ordering};
use crate::time::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};

/// What travels from the shards to the subscription.
enum Item<T> {
    Record(T),
    Watermark {
        shard: u32,
        shards: u32,
        watermark: Timestamp,
    },
}

/// Why [`Subscription::try_recv`] returned no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing to read now.
    Empty,
    /// The stream ended (or the job stopped): nothing more will come.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no record to read now"),
            TryRecvError::Closed => f.write_str("the subscribed stream ended"),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// A shard whose sink waits for room, and how to wake it.
struct Waiting {
    waker: Arc<ShardWaker>,
    full: Arc<AtomicBool>,
}

/// What the reader and the sinks share: which shards wait for room.
#[derive(Default)]
struct Shared {
    /// Set while some shard's sink waits for room (checked after every read).
    any_full: AtomicBool,
    shards: Mutex<Vec<Waiting>>,
}

impl Shared {
    /// After the reader made room: wakes the shards waiting for it.
    fn made_room(&self) {
        let shards = || self.shards.lock().unwrap_or_else(|e| e.into_inner());
        made_room(&self.any_full, || {
            for w in shards().iter() {
                if w.full.swap(false, Ordering::SeqCst) {
                    w.waker.wake();
                }
            }
        });
    }
}

/// The reader's half of the handshake that wakes a sink waiting for room: after taking an
/// item (which made room), if some sink announced it waits, clear the announcement and
/// wake the waiting shards (`wake_waiting`). With [`wait_for_room`] (the sink's half) no
/// wake-up is lost: the reader fences between making room and reading the announcement,
/// the sink between announcing and looking for room, so one of them sees the other
/// (`loom_tests` below).
fn made_room(any_full: &AtomicBool, wake_waiting: impl FnOnce()) {
    fence(Ordering::SeqCst);
    if !any_full.load(Ordering::Relaxed) {
        return;
    }
    any_full.store(false, Ordering::SeqCst);
    wake_waiting();
}

/// The sink's half: its queue was full. Announces that shard waits (`mine`, and
/// `any_full` for the reader's quick check), then looks again: true if room appeared
/// meanwhile (send again now); otherwise the reader wakes the shard once it makes room.
fn wait_for_room(
    any_full: &AtomicBool,
    mine: &AtomicBool,
    has_room: impl FnOnce() -> bool,
) -> bool {
    mine.store(true, Ordering::SeqCst);
    any_full.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    has_room()
}

/// Reads a stream's records while the job runs (see the [module docs](self)).
pub struct Subscription<T> {
    name: String,
    rx: Receiver<Item<T>>,
    shared: Arc<Shared>,
    /// Per shard: the watermark that followed its records read so far.
    marks: Vec<Timestamp>,
    ended: bool,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("watermark", &self.watermark())
            .field("queued", &self.rx.len())
            .finish()
    }
}

/// What a subscription delivers: a record, or a move of the stream's watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
    /// A record of the stream.
    Record(T),
    /// The stream's watermark moved here: every record with an event time below it has
    /// been delivered.
    Watermark(Timestamp),
}

impl<T> Subscription<T> {
    /// Waits for the next record; `None` once the stream ended.
    pub fn recv(&mut self) -> Option<T> {
        loop {
            match self.recv_event()? {
                Event::Record(r) => return Some(r),
                Event::Watermark(_) => {}
            }
        }
    }

    /// The next record if one is waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        loop {
            match self.try_recv_event()? {
                Event::Record(r) => return Ok(r),
                Event::Watermark(_) => {}
            }
        }
    }

    /// Waits (asynchronously, on any executor) for the next record; `None` once the stream
    /// ended.
    pub async fn recv_async(&mut self) -> Option<T> {
        loop {
            match self.recv_event_async().await? {
                Event::Record(r) => return Some(r),
                Event::Watermark(_) => {}
            }
        }
    }

    /// Waits for the next record or move of the watermark; `None` once the stream ended.
    pub fn recv_event(&mut self) -> Option<Event<T>> {
        loop {
            let item = self.rx.recv_blocking().ok();
            if let Some(event) = self.take(item) {
                return event;
            }
        }
    }

    /// The next record or move of the watermark, if one is waiting.
    pub fn try_recv_event(&mut self) -> Result<Event<T>, TryRecvError> {
        loop {
            let item = match self.rx.try_recv() {
                Ok(item) => Some(item),
                Err(async_channel::TryRecvError::Empty) => return Err(TryRecvError::Empty),
                Err(async_channel::TryRecvError::Closed) => None,
            };
            if let Some(event) = self.take(item) {
                return event.ok_or(TryRecvError::Closed);
            }
        }
    }

    /// Waits (asynchronously) for the next record or move of the watermark; `None` once
    /// the stream ended.
    pub async fn recv_event_async(&mut self) -> Option<Event<T>> {
        loop {
            let item = self.rx.recv().await.ok();
            if let Some(event) = self.take(item) {
                return event;
            }
        }
    }

    /// The stream's watermark as read so far: every record with an event time below it
    /// has been received ([`MAX_WATERMARK`] once the stream ended normally).
    pub fn watermark(&self) -> Timestamp {
        if self.marks.is_empty() {
            return if self.ended {
                MAX_WATERMARK
            } else {
                MIN_WATERMARK
            };
        }
        self.marks.iter().copied().min().unwrap_or(MIN_WATERMARK)
    }

    /// Records waiting to be read (and watermark moves).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True if nothing waits to be read.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// True once the stream ended and every record was read.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Handles one item from the queue (`None`: the queue closed). Returns `Some` when the
    /// caller has an answer: an event, or the end (`Some(None)`).
    fn take(&mut self, item: Option<Item<T>>) -> Option<Option<Event<T>>> {
        match item {
            Some(Item::Record(r)) => {
                self.shared.made_room();
                Some(Some(Event::Record(r)))
            }
            Some(Item::Watermark {
                shard,
                shards,
                watermark,
            }) => {
                self.shared.made_room();
                let before = self.watermark();
                if self.marks.len() < shards as usize {
                    self.marks.resize(shards as usize, MIN_WATERMARK);
                }
                let m = &mut self.marks[shard as usize];
                *m = (*m).max(watermark);
                let after = self.watermark();
                (after > before).then_some(Some(Event::Watermark(after)))
            }
            None => {
                self.ended = true;
                Some(None)
            }
        }
    }
}

impl<T> Iterator for Subscription<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv()
    }
}

/// A new subscription named `name` holding up to `capacity` records, and what each
/// shard's sink is built from.
pub(crate) fn subscription<T>(name: &str, capacity: usize) -> (Subscription<T>, SinkSide<T>) {
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    let shared = Arc::new(Shared::default());
    let sub = Subscription {
        name: name.to_string(),
        rx,
        shared: shared.clone(),
        marks: Vec::new(),
        ended: false,
    };
    (sub, SinkSide { tx, shared })
}

/// What the graph keeps to build each shard's sink.
pub(crate) struct SinkSide<T> {
    tx: Sender<Item<T>>,
    shared: Arc<Shared>,
}

impl<T> SinkSide<T> {
    /// Shard `shard` of `shards`'s sink; `waker` wakes the shard when the reader makes
    /// room; `dropped` counts records discarded once the subscription is gone.
    pub(crate) fn sink(
        &self,
        shard: usize,
        shards: usize,
        waker: Arc<ShardWaker>,
        dropped: DroppedRecords,
    ) -> SubscriptionSink<T> {
        let full = Arc::new(AtomicBool::new(false));
        self.shared
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Waiting {
                waker,
                full: full.clone(),
            });
        SubscriptionSink(Rc::new(RefCell::new(SinkState {
            tx: Some(self.tx.clone()),
            shared: self.shared.clone(),
            full,
            blocked: Rc::default(),
            pending: VecDeque::new(),
            shard: shard as u32,
            shards: shards as u32,
            watermark: MIN_WATERMARK,
            ended: false,
            dropped,
        })))
    }
}

struct SinkState<T> {
    /// `None` once the sink ended and sent everything.
    tx: Option<Sender<Item<T>>>,
    shared: Arc<Shared>,
    /// Set while this shard waits for the reader to make room (the reader clears it).
    full: Arc<AtomicBool>,
    /// Set while records wait: the chain heads feeding the sink are not scheduled.
    blocked: BlockedFlag,
    pending: VecDeque<Item<T>>,
    shard: u32,
    shards: u32,
    watermark: Timestamp,
    ended: bool,
    dropped: DroppedRecords,
}

impl<T> SinkState<T> {
    /// Sends what waits, then `item`; keeps what does not fit.
    fn offer(&mut self, item: Option<Item<T>>) {
        self.pending.extend(item);
        self.send_pending();
    }

    fn send_pending(&mut self) {
        let Some(tx) = &self.tx else {
            return;
        };
        while let Some(item) = self.pending.pop_front() {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(item)) => {
                    self.pending.push_front(item);
                    // The reader may have made room before it saw the announcement.
                    if wait_for_room(&self.shared.any_full, &self.full, || !tx.is_full()) {
                        continue;
                    }
                    break;
                }
                Err(async_channel::TrySendError::Closed(item)) => {
                    // The subscription was dropped: what reaches the sink is discarded.
                    let records = self
                        .pending
                        .iter()
                        .chain(std::iter::once(&item))
                        .filter(|i| matches!(i, Item::Record(_)))
                        .count();
                    self.dropped.add(records as u64);
                    self.pending.clear();
                    break;
                }
            }
        }
        self.blocked.set(!self.pending.is_empty());
        if self.ended && self.pending.is_empty() {
            self.tx = None;
        }
    }
}

/// One shard's subscription sink: an operator at the end of the stream, and a sender the
/// shard's loop polls to send what waits.
pub(crate) struct SubscriptionSink<T>(Rc<RefCell<SinkState<T>>>);

impl<T> SubscriptionSink<T> {
    /// Set while records wait for room.
    pub(crate) fn blocked(&self) -> BlockedFlag {
        self.0.borrow().blocked.clone()
    }

    /// The shard loop's side.
    pub(crate) fn driver(&self) -> Rc<RefCell<dyn SenderDriver>>
    where
        T: 'static,
    {
        Rc::new(RefCell::new(SubscriptionSink(self.0.clone())))
    }
}

impl<T> Operator<T> for SubscriptionSink<T> {
    type Out = ();
    const STATE: OperatorState = OperatorState::Stateless;

    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut ()) -> OpResult {
        let mut s = self.0.borrow_mut();
        if s.tx.as_ref().is_some_and(Sender::is_closed) {
            s.dropped.add(batch.len() as u64);
            batch.clear();
            return Ok(());
        }
        if s.pending.is_empty() {
            // Fast path: straight into the queue while it has room.
            let mut records = batch.drain(..);
            if let Some(tx) = &s.tx {
                for r in records.by_ref() {
                    if let Err(e) = tx.try_send(Item::Record(r)) {
                        s.pending.push_back(e.into_inner());
                        break;
                    }
                }
            }
            s.pending.extend(records.map(Item::Record));
        } else {
            s.pending.extend(batch.drain(..).map(Item::Record));
        }
        s.send_pending();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut ()) -> OpResult {
        let mut s = self.0.borrow_mut();
        if watermark > s.watermark {
            s.watermark = watermark;
            let item = Item::Watermark {
                shard: s.shard,
                shards: s.shards,
                watermark,
            };
            s.offer(Some(item));
        }
        Ok(())
    }

    fn on_end(&mut self, _out: &mut ()) -> OpResult {
        let mut s = self.0.borrow_mut();
        s.ended = true;
        s.offer(None);
        Ok(())
    }
}

impl<T> SenderDriver for SubscriptionSink<T> {
    fn poll(&mut self, _now: Instant, _force: bool) -> Result<bool, Failure> {
        let mut s = self.0.borrow_mut();
        if !s.pending.is_empty() {
            s.send_pending();
        }
        Ok(!s.pending.is_empty())
    }

    fn has_returns(&self) -> bool {
        let s = self.0.borrow();
        !s.pending.is_empty() && s.tx.as_ref().is_some_and(|tx| !tx.is_full())
    }
}

#[cfg(all(test, rill_loom))]
mod loom_tests {
    use super::{made_room, wait_for_room};
    use crate::park::ShardWaker;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::Arc;
    use std::time::Duration;

    /// A sink pushes two items through a queue of one; the reader takes them. When the
    /// queue is full the sink announces it waits and parks unless room appeared; the
    /// reader wakes it after making room. A lost wake-up would leave the sink parked
    /// forever (loom's park has no timeout): loom reports it as a deadlock.
    #[test]
    fn no_lost_wakeup_when_the_reader_makes_room() {
        loom::model(|| {
            let queue = Arc::new(AtomicUsize::new(0));
            let any_full = Arc::new(AtomicBool::new(false));
            let full = Arc::new(AtomicBool::new(false));
            let waker = Arc::new(ShardWaker::default());
            let (q, any, mine, w) = (queue.clone(), any_full.clone(), full.clone(), waker.clone());
            let sink = loom::thread::spawn(move || {
                w.register_current();
                let push = || {
                    q.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                };
                for _ in 0..2 {
                    while !push() {
                        if wait_for_room(&any, &mine, || q.load(Ordering::SeqCst) == 0) {
                            continue;
                        }
                        w.park(Duration::from_millis(1), || q.load(Ordering::SeqCst) == 0);
                    }
                }
            });
            let mut taken = 0;
            while taken < 2 {
                if queue
                    .compare_exchange(1, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    taken += 1;
                    made_room(&any_full, || {
                        if full.swap(false, Ordering::SeqCst) {
                            waker.wake();
                        }
                    });
                } else {
                    loom::thread::yield_now();
                }
            }
            sink.join().unwrap();
        });
    }
}

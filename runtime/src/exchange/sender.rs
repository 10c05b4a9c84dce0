//! The producing side of an exchange on one shard: partitions records over its channels,
//! stages them per destination, and seals a staged batch into an rkyv buffer when it is
//! full or its flush delay has passed.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rkyv::ser::allocator::Arena;

use crate::data::ExchangeData;
use crate::error::OpResult;
use crate::exchange::channel::{ChannelLimits, ChannelTx};
use crate::head::{BlockedFlag, SenderDriver};
use crate::keys::{key_group, shard_of_key_group};
use crate::progress::Progress;
use crate::push::Push;

pub(crate) enum Route<T> {
    KeyHash(Arc<dyn Fn(&T) -> u64 + Send + Sync>),
    Broadcast,
    RoundRobin { next: usize },
}

/// Records waiting for one destination.
struct Staged<T> {
    records: Vec<T>,
    since: Option<Instant>,
    /// Records per batch: `batch_records`, lowered once the serialized size of a record is
    /// known so that a batch stays near `batch_bytes`.
    limit: usize,
}

pub(crate) struct ExchangeSender<T> {
    channels: Vec<ChannelTx>,
    staged: Vec<Staged<T>>,
    arena: Arena,
    route: Route<T>,
    blocked: BlockedFlag,
    limits: ChannelLimits,
}

impl<T: ExchangeData> ExchangeSender<T> {
    pub(crate) fn new(
        channels: Vec<ChannelTx>,
        route: Route<T>,
        blocked: BlockedFlag,
        limits: ChannelLimits,
    ) -> Self {
        let staged = channels
            .iter()
            .map(|_| Staged {
                records: Vec::with_capacity(limits.batch_records),
                since: None,
                limit: limits.batch_records,
            })
            .collect();
        ExchangeSender {
            channels,
            staged,
            arena: Arena::new(),
            route,
            blocked,
            limits,
        }
    }

    #[inline]
    fn stage(&mut self, dest: usize, record: T) -> OpResult {
        let staged = &mut self.staged[dest];
        if staged.records.is_empty() {
            staged.since = Some(Instant::now());
        }
        staged.records.push(record);
        if staged.records.len() >= staged.limit {
            self.seal(dest)?;
        }
        Ok(())
    }

    /// Serializes the records staged for `dest` into a buffer and sends it.
    fn seal(&mut self, dest: usize) -> OpResult {
        let staged = &mut self.staged[dest];
        if staged.records.is_empty() {
            return Ok(());
        }
        let channel = &mut self.channels[dest];
        let mut buf = channel.take_buffer();
        buf.write_all(&staged.records, &mut self.arena)?;
        let per_record = (buf.byte_len() / staged.records.len()).max(1);
        staged.limit = (self.limits.batch_bytes / per_record).clamp(1, self.limits.batch_records);
        staged.records.clear();
        staged.since = None;
        channel.send_data(buf);
        Ok(())
    }

    fn update_blocked(&self) {
        self.blocked
            .set(self.channels.iter().any(ChannelTx::is_blocked));
    }
}

impl<T: ExchangeData> Push<T> for ExchangeSender<T> {
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        let shards = self.channels.len();
        match &mut self.route {
            Route::KeyHash(hash) => {
                let hash = hash.clone();
                for r in batch.drain(..) {
                    let dest = shard_of_key_group(key_group(hash(&r)), shards);
                    self.stage(dest, r)?;
                }
            }
            Route::Broadcast => {
                for r in batch.drain(..) {
                    for dest in 0..shards - 1 {
                        self.stage(dest, r.clone())?;
                    }
                    self.stage(shards - 1, r)?;
                }
            }
            Route::RoundRobin { next } => {
                let mut dest = *next;
                for r in batch.drain(..) {
                    self.stage(dest, r)?;
                    dest = if dest + 1 == shards { 0 } else { dest + 1 };
                }
                if let Route::RoundRobin { next } = &mut self.route {
                    *next = dest;
                }
            }
        }
        self.update_blocked();
        Ok(())
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        for dest in 0..self.channels.len() {
            self.seal(dest)?;
            self.channels[dest].send_progress(progress);
        }
        self.update_blocked();
        Ok(())
    }
}

impl<T: ExchangeData> SenderDriver for ExchangeSender<T> {
    fn poll(&mut self, now: Instant, force: bool) -> Result<bool, crate::Failure> {
        let mut unsent = false;
        for dest in 0..self.channels.len() {
            let due = self.staged[dest]
                .since
                .is_some_and(|since| force || now.duration_since(since) >= self.limits.flush_delay);
            if due {
                self.seal(dest)?;
            }
            unsent |= self.channels[dest].poll() || !self.staged[dest].records.is_empty();
        }
        self.update_blocked();
        Ok(unsent)
    }

    fn has_returns(&self) -> bool {
        self.channels.iter().any(ChannelTx::has_returns)
    }
}

/// The handle the upstream tee pushes into; the shard loop holds the same sender as a
/// [`SenderDriver`].
pub(crate) struct SharedSender<T>(pub Rc<RefCell<ExchangeSender<T>>>);

impl<T: ExchangeData> Push<T> for SharedSender<T> {
    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> OpResult {
        self.0.borrow_mut().push(batch)
    }
    fn progress(&mut self, progress: Progress) -> OpResult {
        self.0.borrow_mut().progress(progress)
    }
}

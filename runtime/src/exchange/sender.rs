//! The producing side of an exchange on one shard: partitions records over its channels.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::data::ExchangeData;
use crate::error::OpResult;
use crate::exchange::channel::ChannelTx;
use crate::exchange::route::{key_group, shard_of_key_group};
use crate::push::{Progress, Push};
use crate::shard::head::{BlockedFlag, SenderDriver};

pub(crate) enum Route<T> {
    KeyHash(Arc<dyn Fn(&T) -> u64 + Send + Sync>),
    Broadcast,
    RoundRobin { next: usize },
}

pub(crate) struct ExchangeSender<T> {
    channels: Vec<ChannelTx>,
    route: Route<T>,
    blocked: BlockedFlag,
}

impl<T: ExchangeData> ExchangeSender<T> {
    pub(crate) fn new(channels: Vec<ChannelTx>, route: Route<T>, blocked: BlockedFlag) -> Self {
        ExchangeSender {
            channels,
            route,
            blocked,
        }
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
                for r in batch.iter() {
                    let dest = shard_of_key_group(key_group(hash(r)), shards);
                    self.channels[dest].write(r)?;
                }
            }
            Route::Broadcast => {
                for r in batch.iter() {
                    for ch in &mut self.channels {
                        ch.write(r)?;
                    }
                }
            }
            Route::RoundRobin { next } => {
                for r in batch.iter() {
                    self.channels[*next].write(r)?;
                    *next = if *next + 1 == shards { 0 } else { *next + 1 };
                }
            }
        }
        batch.clear();
        self.update_blocked();
        Ok(())
    }

    fn progress(&mut self, progress: Progress) -> OpResult {
        for ch in &mut self.channels {
            ch.send_progress(progress);
        }
        self.update_blocked();
        Ok(())
    }
}

impl<T: ExchangeData> SenderDriver for ExchangeSender<T> {
    fn poll(&mut self, now: Instant, force: bool) -> bool {
        let mut unsent = false;
        for ch in &mut self.channels {
            unsent |= ch.poll(now, force);
        }
        self.update_blocked();
        unsent
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

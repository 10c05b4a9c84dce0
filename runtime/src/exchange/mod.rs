//! Exchanges: moving records between shards.
//!
//! An exchange edge between N shards is an N x N mesh of channels, each a lock-free
//! single-producer single-consumer ring (rtrb) of batches. Records are serialized with rkyv
//! into pooled, 64-byte aligned [`batch::BatchBuf`]s; the receiver validates and reads them
//! in place and hands the buffer back to the producer through a second ring, which is also
//! how credit returns. See [`route`] for how destinations are chosen, and
//! `docs/exchange.md` for the measured choice of ring.

pub mod batch;
pub(crate) mod channel;
pub(crate) mod receiver;
pub mod route;
pub(crate) mod sender;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::checkpoint::ShardCheckpoint;
use crate::data::ExchangeData;
use crate::exchange::channel::{ChannelLimits, ChannelRx, ChannelTx};
use crate::exchange::receiver::ExchangeReceiver;
use crate::exchange::route::Partitioning;
use crate::exchange::sender::{ExchangeSender, Route, SharedSender};
use crate::head::{BlockedFlag, Head, SenderDriver};
use crate::instrument::{NodeStats, ShardProfile, Timed, TimedHead};
use crate::push::Push;

/// The pieces one exchange edge becomes on one shard.
pub(crate) struct ShardExchange {
    /// A `Box<dyn Push<T>>` for the producing stream's output.
    pub sender_push: Box<dyn Any>,
    pub driver: Rc<RefCell<dyn SenderDriver>>,
    pub blocked: BlockedFlag,
    pub head: Box<dyn Head>,
}

/// What one exchange edge is built from on one shard.
pub(crate) struct EdgeOnShard {
    pub shard: usize,
    /// The channels to every shard, and from every shard.
    pub tx: Vec<ChannelTx>,
    pub rx: Vec<ChannelRx>,
    pub limits: ChannelLimits,
    pub checkpoint: Option<Rc<ShardCheckpoint>>,
    /// With profiling: the exchange's node, charged the time of its sending side (routing
    /// and serializing records) and of its receiving side (reading batches).
    pub timing: Option<(Rc<ShardProfile>, Arc<NodeStats>)>,
}

/// An exchange edge with its record type erased, so the job description can hold it.
pub(crate) trait ErasedExchange: Send + Sync {
    /// Builds the sender and receiver on one shard; `downstream` is the consuming input's
    /// `Box<dyn Push<T>>`.
    fn build(&self, name: String, downstream: Box<dyn Any>, edge: EdgeOnShard) -> ShardExchange;
}

pub(crate) struct TypedExchange<T> {
    pub partitioning: Partitioning<T>,
}

impl<T: ExchangeData> ErasedExchange for TypedExchange<T> {
    fn build(&self, name: String, downstream: Box<dyn Any>, edge: EdgeOnShard) -> ShardExchange {
        let EdgeOnShard {
            shard,
            tx,
            rx,
            limits,
            checkpoint,
            timing,
        } = edge;
        let downstream = *downstream
            .downcast::<Box<dyn Push<T>>>()
            .expect("exchange input built with its own record type");
        let route = match &self.partitioning {
            Partitioning::KeyHash(f) => Route::KeyHash(f.clone()),
            Partitioning::Broadcast => Route::Broadcast,
            Partitioning::Rebalance | Partitioning::Forward => Route::RoundRobin {
                next: shard % tx.len(),
            },
        };
        let blocked: BlockedFlag = Rc::new(Cell::new(false));
        let sender = Rc::new(RefCell::new(ExchangeSender::new(
            tx,
            route,
            blocked.clone(),
            limits,
        )));
        let push = SharedSender(sender.clone());
        let head: Box<dyn Head> = Box::new(ExchangeReceiver::new(name, rx, downstream, checkpoint));
        let (push, head): (Box<dyn Push<T>>, Box<dyn Head>) = match timing {
            Some((profile, stats)) => (
                Box::new(Timed {
                    inner: push,
                    profile: profile.clone(),
                    stats: stats.clone(),
                }),
                Box::new(TimedHead {
                    inner: head,
                    profile,
                    stats,
                }),
            ),
            None => (Box::new(push), head),
        };
        ShardExchange {
            sender_push: Box::new(push),
            driver: sender,
            blocked,
            head,
        }
    }
}

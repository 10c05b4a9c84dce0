//! The consuming side of an exchange on one shard: reads batches from every producer's
//! channel in place, hands the buffers back, and pushes the records down its chain.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use crate::checkpoint::ShardCheckpoint;
use crate::data::ExchangeData;
use crate::error::Failure;
use crate::exchange::channel::{ChannelRx, Msg};
use crate::head::Head;
use crate::progress::Frontier;
use crate::progress::Progress;
use crate::push::Push;

/// Batches a receiver reads per poll before the shard turns to its other work.
const BATCHES_PER_POLL: usize = 8;

pub(crate) struct ExchangeReceiver<T> {
    name: String,
    channels: Vec<ChannelRx>,
    frontier: Frontier,
    downstream: Box<dyn Push<T>>,
    staging: Vec<T>,
    next: usize,
    /// The shard's checkpoint, if the job takes them.
    checkpoint: Option<Rc<ShardCheckpoint>>,
    /// Exactly-once: a channel that delivered the barrier being aligned is not read.
    aligned: bool,
}

impl<T: ExchangeData> ExchangeReceiver<T> {
    pub(crate) fn new(
        name: String,
        channels: Vec<ChannelRx>,
        downstream: Box<dyn Push<T>>,
        checkpoint: Option<Rc<ShardCheckpoint>>,
    ) -> Self {
        let frontier = Frontier::new(channels.len());
        ExchangeReceiver {
            name,
            channels,
            frontier,
            downstream,
            staging: Vec::new(),
            next: 0,
            aligned: checkpoint.as_ref().is_some_and(|c| c.aligned()),
            checkpoint,
        }
    }
}

impl<T: ExchangeData> Head for ExchangeReceiver<T> {
    fn poll(&mut self, blocked: &dyn Fn() -> bool) -> Result<bool, Failure> {
        let n = self.channels.len();
        let mut worked = false;
        let mut batches = 0;
        // Visit channels round robin, draining each in order, so none starves.
        for step in 0..n {
            let i = (self.next + step) % n;
            while batches < BATCHES_PER_POLL {
                if self.aligned && self.frontier.holds(i) {
                    break;
                }
                let Some(msg) = self.channels[i].pop() else {
                    break;
                };
                worked = true;
                match msg {
                    Msg::Data(buf) => {
                        batches += 1;
                        let read = buf.read_into(&mut self.staging);
                        self.channels[i].give_back(buf);
                        read?;
                        self.downstream.push(&mut self.staging)?;
                        self.staging.clear();
                        if blocked() {
                            self.next = i;
                            return Ok(true);
                        }
                    }
                    Msg::Progress(p) => {
                        let was_aligning = self.frontier.aligning();
                        let downstream = &mut self.downstream;
                        self.frontier.update(i, p, |q| downstream.progress(q))?;
                        if let Some(c) = self.checkpoint.as_ref().filter(|_| self.aligned) {
                            c.track_alignment(was_aligning, &self.frontier, p);
                        }
                    }
                }
            }
        }
        self.next = (self.next + 1) % n;
        Ok(worked)
    }

    fn is_done(&self) -> bool {
        self.frontier.is_ended()
    }

    fn has_input(&self) -> bool {
        self.channels.iter().any(ChannelRx::has_input)
    }

    fn exchange_name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn late_barrier(&mut self) -> Result<(), Failure> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        if !self.frontier.is_ended() {
            return Ok(());
        }
        // Once every channel ended the frontier passes a new barrier on at once, once.
        let requested = checkpoint.coordinator().requested.load(Ordering::Acquire);
        let downstream = &mut self.downstream;
        self.frontier
            .update(0, Progress::Barrier(requested), |q| downstream.progress(q))
    }
}

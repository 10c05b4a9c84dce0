//! The consuming side of an exchange on one shard: reads batches from every producer's
//! channel in place, hands the buffers back, and pushes the records down its chain.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::checkpoint::{local, Coordinator};
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
    /// Exactly-once: a channel that delivered the barrier being aligned is not read.
    aligned: bool,
    coord: Option<Arc<Coordinator>>,
}

impl<T: ExchangeData> ExchangeReceiver<T> {
    pub(crate) fn new(
        name: String,
        channels: Vec<ChannelRx>,
        downstream: Box<dyn Push<T>>,
    ) -> Self {
        let frontier = Frontier::new(channels.len());
        ExchangeReceiver {
            name,
            channels,
            frontier,
            downstream,
            staging: Vec::new(),
            next: 0,
            aligned: local::aligned(),
            coord: local::coordinator(),
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
                        if self.aligned {
                            local::track_alignment(was_aligning, &self.frontier, p);
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
        let Some(coord) = &self.coord else {
            return Ok(());
        };
        if !self.frontier.is_ended() {
            return Ok(());
        }
        // Once every channel ended the frontier passes a new barrier on at once, once.
        let requested = coord.requested.load(Ordering::Acquire);
        let downstream = &mut self.downstream;
        self.frontier
            .update(0, Progress::Barrier(requested), |q| downstream.progress(q))
    }
}

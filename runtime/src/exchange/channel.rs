//! One channel of an exchange: a producer shard sending batches to a consumer shard over a
//! lock-free SPSC ring, with a second ring carrying emptied buffers back.
//!
//! **Credits.** A producer may have at most `credits` batches in flight on a channel; the
//! consumer returns each buffer after reading it, which gives the credit back. Without
//! credit the producer queues the sealed batch, and the chain that writes to it is no
//! longer scheduled, so pressure travels back to the sources. Progress messages ride the
//! same ring behind the data, so they stay in order with it.
//!
//! **Waking.** A shard with work polls its rings in its loop: no syscall, no wake-up. A
//! shard that ran out of work parks its thread; whoever pushes to one of its rings unparks
//! it (a Dekker-style handshake on [`ShardWaker`] with SeqCst fences on both sides).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::exchange::batch::BatchBuf;
use crate::park::ShardWaker;
use crate::progress::Progress;

/// What travels on a channel's ring.
#[derive(Debug)]
pub(crate) enum Msg {
    Data(BatchBuf),
    Progress(Progress),
}

/// Counters of one channel, written by the producer and readable while the job runs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ChannelMetrics {
    pub(crate) batches: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) backpressured_ns: AtomicU64,
}

impl ChannelMetrics {
    /// Batches sent.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Records sent.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    /// Serialized bytes sent.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Time the producer spent without credit on this channel.
    pub fn backpressured(&self) -> Duration {
        Duration::from_nanos(self.backpressured_ns.load(Ordering::Relaxed))
    }
}

/// Batch sizing shared by every channel of a job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelLimits {
    pub batch_bytes: usize,
    pub batch_records: usize,
    pub credits: usize,
    pub flush_delay: Duration,
}

/// Creates the two ends of one channel.
pub(crate) fn channel(
    limits: ChannelLimits,
    metrics: Arc<ChannelMetrics>,
    producer_waker: Arc<ShardWaker>,
    consumer_waker: Arc<ShardWaker>,
) -> (ChannelTx, ChannelRx) {
    // Data uses at most `credits` slots; progress messages are coalesced, so a few more
    // slots always suffice for them.
    let (ring_tx, ring_rx) = RingBuffer::new(limits.credits + 4);
    let (ret_tx, ret_rx) = RingBuffer::new(limits.credits + 1);
    (
        ChannelTx {
            ring: ring_tx,
            returns: ret_rx,
            queue: VecDeque::new(),
            spare: Vec::new(),
            in_flight: 0,
            blocked_since: None,
            metrics,
            consumer: consumer_waker,
            limits,
        },
        ChannelRx {
            ring: ring_rx,
            returns: ret_tx,
            producer: producer_waker,
        },
    )
}

/// The producer's end of a channel.
pub(crate) struct ChannelTx {
    ring: Producer<Msg>,
    returns: Consumer<BatchBuf>,
    /// Sealed batches and progress waiting, in order, for credit or a ring slot.
    queue: VecDeque<Msg>,
    spare: Vec<BatchBuf>,
    in_flight: usize,
    blocked_since: Option<Instant>,
    metrics: Arc<ChannelMetrics>,
    consumer: Arc<ShardWaker>,
    limits: ChannelLimits,
}

impl ChannelTx {
    /// An empty buffer to serialize the next batch into: a returned one if any.
    pub(crate) fn take_buffer(&mut self) -> BatchBuf {
        self.reclaim();
        self.spare
            .pop()
            .unwrap_or_else(|| BatchBuf::with_capacity(self.limits.batch_bytes * 2))
    }

    fn reclaim(&mut self) {
        while let Ok(buf) = self.returns.pop() {
            self.in_flight -= 1;
            self.spare.push(buf);
        }
    }

    /// Sends a sealed batch behind everything queued, as far as credit allows.
    pub(crate) fn send_data(&mut self, batch: BatchBuf) {
        self.queue.push_back(Msg::Data(batch));
        self.drain();
    }

    /// Sends `progress` behind every batch sent so far.
    pub(crate) fn send_progress(&mut self, progress: Progress) {
        match (self.queue.back_mut(), progress) {
            (Some(Msg::Progress(Progress::Watermark(w))), Progress::Watermark(n)) => *w = n,
            (Some(Msg::Progress(Progress::ProcessingTime(t))), Progress::ProcessingTime(n)) => {
                *t = n
            }
            _ => self.queue.push_back(Msg::Progress(progress)),
        }
        self.drain();
    }

    /// Sends queued messages in order while credit and ring slots allow.
    fn drain(&mut self) {
        let mut sent = false;
        while let Some(front) = self.queue.front() {
            if let Msg::Data(_) = front {
                self.reclaim();
                if self.in_flight >= self.limits.credits {
                    break;
                }
            }
            if self.ring.is_full() {
                break;
            }
            let msg = self.queue.pop_front().expect("front exists");
            if let Msg::Data(buf) = &msg {
                self.in_flight += 1;
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .records
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                self.metrics
                    .bytes
                    .fetch_add(buf.byte_len() as u64, Ordering::Relaxed);
            }
            if self.ring.push(msg).is_err() {
                unreachable!("the ring had a free slot and only this producer pushes");
            }
            sent = true;
        }
        if sent {
            self.consumer.wake();
        }
        if self.queue.is_empty() {
            if let Some(since) = self.blocked_since.take() {
                self.metrics
                    .backpressured_ns
                    .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        } else {
            self.blocked_since.get_or_insert_with(Instant::now);
        }
    }

    /// Sends what credit allows. Returns true while something is queued.
    pub(crate) fn poll(&mut self) -> bool {
        if !self.queue.is_empty() {
            self.drain();
        }
        !self.queue.is_empty()
    }

    /// True while the channel holds messages it has no credit or room to send.
    #[inline]
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked_since.is_some()
    }

    /// True if the consumer has handed buffers back that the producer has not reclaimed.
    pub(crate) fn has_returns(&self) -> bool {
        !self.returns.is_empty()
    }
}

/// The consumer's end of a channel.
pub(crate) struct ChannelRx {
    ring: Consumer<Msg>,
    returns: Producer<BatchBuf>,
    producer: Arc<ShardWaker>,
}

impl ChannelRx {
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Msg> {
        self.ring.pop().ok()
    }

    pub(crate) fn has_input(&self) -> bool {
        !self.ring.is_empty()
    }

    /// Hands a read buffer back to the producer, returning its credit.
    pub(crate) fn give_back(&mut self, mut buf: BatchBuf) {
        buf.clear();
        // A full return ring cannot happen (at most `credits` buffers are out); a producer
        // that has finished may have dropped its end, and then the buffer is just freed.
        let _ = self.returns.push(buf);
        self.producer.wake();
    }
}

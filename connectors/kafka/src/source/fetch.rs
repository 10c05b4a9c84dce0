//! Reading a consumer's records in batches, from each partition's own fetch queue,
//! drained with librdkafka's `rd_kafka_consume_batch_queue` (one call, one
//! application-poll clock read, for up to a whole batch of records, where
//! `BaseConsumer::poll` costs a call, an event and two clock reads per record).
//!
//! librdkafka forwards a partition's fetch queue to the consumer's own queue when it
//! starts fetching the partition, unless the application forwarded that queue itself
//! before: it then keeps the application's forwarding, even none. The source *detaches*
//! every partition's fetch queue (forwards it to nowhere) before it assigns the partition
//! (in a group: in the rebalance callback, before `assign`), so a partition's records,
//! its end-of-partition events and its fetch errors stay in its own queue, in offset
//! order, and the source reads each owned partition's queue itself. The consumer's own
//! queue keeps everything else (statistics, client errors, rebalances, commit results),
//! which the source still serves with `BaseConsumer::poll` as rdkafka's events. (Serving
//! those through a batch call would run librdkafka's callbacks instead of rdkafka's
//! events: a rebalance would unassign every partition.) Transaction markers and the
//! records of aborted transactions never reach the application, as with `poll`.
//!
//! Why not one queue for all of a shard's partitions, each forwarded to it once assigned
//! (the source's first design): a forwarding can only be set after librdkafka knows the partition,
//! and a group member learns its partitions in the rebalance callback, where librdkafka's
//! own forwarding to the consumer's queue was the default. Records fetched before the
//! member forwarded the partition were in the consumer's queue and the later ones in the
//! shard's; the source could read a later record before an earlier one (measured: a
//! partition read from offset 5049 to its end, then from 0), or an end-of-partition
//! event before records, which it then skipped as read. Detaching before the assignment
//! leaves one queue per partition and no such race. A fetch stop (an unassignment)
//! clears a queue's forwarding, which is none already; librdkafka's mark that the
//! application chose the forwarding stays.
//!
//! A revoked partition's records still in its queue are dropped when the source applies
//! the revocation (the partition's next owner reads them from the committed offset);
//! librdkafka discards the ones fetched before an unassignment if the partition comes
//! back later (their fetch version is outdated).
//!
//! librdkafka 2.12 moves the consumer's position one past an end-of-partition event read
//! in a batch (confluentinc/librdkafka#4844, fixed after 2.12.1): the source takes a
//! partition's position at its end from the event's offset instead.

use std::ffi::CString;
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;

/// A handle of one partition's fetch queue, detached from the consumer's queue (see the
/// module docs). Dropped before the consumer (the holder's field order).
pub(super) struct PartitionQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
}

impl std::fmt::Debug for PartitionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionQueue").finish_non_exhaustive()
    }
}

impl PartitionQueue {
    /// Detaches the fetch queue of `topic`/`partition` of `consumer` from the consumer's
    /// queue, for good, and returns a handle of it; an error (why) if librdkafka refuses
    /// the partition (it creates the partition's queue if it does not know it yet). Call
    /// it before the partition is assigned: records fetched before are in the consumer's
    /// queue.
    pub(super) fn detach<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionQueue, String> {
        let refused = || format!("librdkafka has no fetch queue for partition {topic}/{partition}");
        let name = CString::new(topic).map_err(|_| refused())?;
        // SAFETY: the consumer's `rd_kafka_t` is live and `topic` a NUL-terminated string
        // that outlives the call; the returned handle (or null) is ours to destroy.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                name.as_ptr(),
                partition,
            )
        };
        let queue = NonNull::new(queue).ok_or_else(refused)?;
        // SAFETY: `queue` is the live handle just returned. Forwarding it to null marks
        // the forwarding as the application's (librdkafka then never forwards it to the
        // consumer's queue) and removes any.
        unsafe { rd::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Ok(PartitionQueue { queue })
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the handle is live (returned by `rd_kafka_queue_get_partition`,
        // destroyed only here) and its client still exists (the holder drops it before
        // the consumer). Destroying a handle drops our reference only: the partition's
        // queue lives on with its partition.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// The buffer batches are taken into (one per shard, reused).
#[derive(Default)]
pub(super) struct Batches {
    /// The last batch's messages (taken, not yet destroyed: see [`Batch`]).
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

impl Batches {
    /// Takes up to `max` messages that are ready in `queue`, without waiting. The
    /// [`Batch`] hands them out and destroys each exactly once when dropped.
    pub(super) fn take(&mut self, queue: &PartitionQueue, max: usize) -> Batch<'_> {
        self.messages.clear();
        self.messages.reserve(max);
        // SAFETY: `queue` is live; the array has room for `max` pointers (reserved
        // above), of which librdkafka writes the first `n` (returned) and nothing past
        // them; a zero timeout never blocks. Each message written is ours to destroy
        // (`Batch::drop`).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                queue.queue.as_ptr(),
                0,
                self.messages.as_mut_ptr(),
                max,
            )
        };
        // SAFETY: librdkafka initialized the first `n` elements (`n` <= `max` <= the
        // capacity); -1 (an error) means none.
        unsafe { self.messages.set_len(n.max(0) as usize) };
        Batch {
            messages: &mut self.messages,
        }
    }

    /// Drops the messages `queue` holds now (a revoked partition's): until a batch comes
    /// back short, so that a fetch still arriving cannot keep it going.
    pub(super) fn purge(&mut self, queue: &PartitionQueue) {
        const PURGE_BATCH: usize = 1024;
        while self.take(queue, PURGE_BATCH).len() == PURGE_BATCH {}
    }
}

/// Messages taken from a [`PartitionQueue`]; every one is destroyed when the batch is dropped
/// (also when the source stops half-way through it on an error).
pub(super) struct Batch<'a> {
    messages: &'a mut Vec<*mut rd::rd_kafka_message_t>,
}

impl Batch<'_> {
    /// How many messages.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Message `i` (`i < len`), borrowed from the batch.
    pub(super) fn get(&self, i: usize) -> Fetched<'_> {
        let message = self.messages[i];
        // SAFETY: every pointer of the batch is a live message librdkafka returned, not
        // destroyed before the batch is dropped, and the returned view borrows the batch.
        let message = unsafe { &*message };
        Fetched { message }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each pointer is a message returned by `rd_kafka_consume_batch_queue`
            // and destroyed only here (drained: never twice); no view of it outlives the
            // batch.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// One message of a [`Batch`]: a record, or (`err` set) an end of partition or a fetch
/// error.
#[derive(Clone, Copy)]
pub(super) struct Fetched<'a> {
    message: &'a rd::rd_kafka_message_t,
}

impl<'a> Fetched<'a> {
    /// librdkafka's error code (`RD_KAFKA_RESP_ERR_NO_ERROR` for a record).
    pub(super) fn err(&self) -> RDKafkaRespErr {
        self.message.err
    }

    pub(super) fn partition(&self) -> i32 {
        self.message.partition
    }

    /// The record's offset; for an end of partition, the offset the consumer fetches
    /// next (the partition's end: past transaction markers).
    pub(super) fn offset(&self) -> i64 {
        self.message.offset
    }

    /// The Kafka timestamp in ms, if the record has one.
    pub(super) fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; `kind` is a valid place for the type.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) };
        match kind {
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => None,
            _ => Some(t),
        }
    }

    pub(super) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: a live message's key is `key_len` bytes at `key` (or null), owned by
        // the message.
        unsafe { bytes(self.message.key, self.message.key_len) }
    }

    pub(super) fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: a live message's payload is `len` bytes at `payload` (or null), owned
        // by the message.
        unsafe { bytes(self.message.payload, self.message.len) }
    }
}

/// `len` bytes at `ptr`, or `None` for null.
///
/// # Safety
///
/// `ptr` is null or points to `len` initialized bytes that live and stay unchanged for `'a`.
unsafe fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

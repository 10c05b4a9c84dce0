//! Reading a consumer's records in batches: one queue of the shard's own that the fetch
//! queues of its partitions are forwarded to, drained with librdkafka's
//! `rd_kafka_consume_batch_queue` (one call, one application-poll clock read, for up to
//! a whole batch of records, where `BaseConsumer::poll` costs a call, an event and two
//! clock reads per record).
//!
//! Only the partitions' fetch queues are forwarded: the consumer's own queue keeps
//! everything else (statistics, client errors, rebalances, commit results), which the
//! source still serves with `BaseConsumer::poll` as rdkafka's events. (Serving those
//! through a batch call would run librdkafka's callbacks instead of rdkafka's events: a
//! rebalance would unassign every partition.) A forwarded fetch queue carries its
//! partition's records in offset order, and its end-of-partition events and fetch
//! errors in order with them (as messages whose `err` is set); transaction markers and
//! the records of aborted transactions never reach the application, as with `poll`.
//!
//! librdkafka forwards a partition's fetch queue to the consumer's queue when it starts
//! fetching and clears the forwarding when it stops (at an unassignment); a forwarding
//! the application set is kept at the start. So a static assignment forwards its
//! partitions once, after assigning them, and a group member forwards each partition a
//! rebalance gives it when the source applies that rebalance (again after every
//! reassignment). Records that reached the consumer's queue before the forwarding are
//! returned by `BaseConsumer::poll`: the source drains that queue before it reads this
//! one, so a partition's records keep their order. A revoked partition's records still in
//! this queue are read after the source applied the revocation, and dropped (the
//! partition's next owner reads them from the committed offset); librdkafka discards the
//! ones fetched before an unassignment if the partition comes back (their fetch version
//! is outdated).
//!
//! librdkafka 2.12 moves the consumer's position one past an end-of-partition event read
//! in a batch (confluentinc/librdkafka#4844, fixed after 2.12.1): the source takes a
//! partition's position at its end from the event's offset instead.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;

/// The shard's queue its partitions' fetch queues are forwarded to.
pub(super) struct FetchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The last batch's messages (taken, not yet destroyed: see [`Batch`]).
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

impl std::fmt::Debug for FetchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchQueue").finish_non_exhaustive()
    }
}

impl FetchQueue {
    /// A new queue of `consumer` (which must outlive it: declare it after the queue).
    pub(super) fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<FetchQueue> {
        // SAFETY: `native_ptr` is the consumer's live `rd_kafka_t`; the new queue holds a
        // reference to it and is destroyed in `Drop`, before the consumer (the caller's
        // field order).
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        Some(FetchQueue {
            queue: NonNull::new(queue)?,
            messages: Vec::new(),
        })
    }

    /// Forwards the fetch queue of `topic`/`partition` of `consumer` (assigned to it) to
    /// this queue; false if librdkafka does not know the partition.
    pub(super) fn forward<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        // SAFETY: the consumer's `rd_kafka_t` is live and `topic` a NUL-terminated string
        // that outlives the call; the returned handle (or null) is ours to destroy.
        let fetch = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        if fetch.is_null() {
            return false;
        }
        // SAFETY: `fetch` is the live handle just returned and `self.queue` is live (a
        // queue of the same client). The forwarding holds its own reference to both
        // queues, so destroying our handle of the fetch queue (not its owner) afterwards
        // only drops our reference.
        unsafe {
            rd::rd_kafka_queue_forward(fetch, self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(fetch);
        }
        true
    }

    /// Takes up to `max` messages that are ready, without waiting. The [`Batch`] hands
    /// them out and destroys each exactly once when dropped.
    pub(super) fn take(&mut self, max: usize) -> Batch<'_> {
        self.messages.clear();
        self.messages.reserve(max);
        // SAFETY: `self.queue` is live; the array has room for `max` pointers (reserved
        // above), of which librdkafka writes the first `n` (returned) and nothing past
        // them; a zero timeout never blocks. Each message written is ours to destroy
        // (`Batch::drop`).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
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
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is live (created in `new`, destroyed only here) and its
        // client still exists (the consumer is dropped after this queue). Fetch queues
        // still forwarded to it hold their own reference.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from a [`FetchQueue`]; every one is destroyed when the batch is dropped
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

    /// The topic handle: the same pointer for every message of one topic of a consumer.
    pub(super) fn topic_handle(&self) -> *const rd::rd_kafka_topic_t {
        self.message.rkt
    }

    /// The topic's name.
    pub(super) fn topic(&self) -> &'a str {
        // SAFETY: a consumed message's topic handle is live as long as the message, and
        // its name is a NUL-terminated string owned by the handle.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.message.rkt)) };
        name.to_str().unwrap_or("")
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

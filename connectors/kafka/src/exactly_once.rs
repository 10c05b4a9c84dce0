//! The exactly-once Kafka sink: one transaction per checkpoint epoch and shard, committed
//! when the checkpoint completes (two-phase commit), for `read_committed` readers.
//!
//! Shard `s` writes through a [`TransactionalProducer`] with the transactional id
//! `<prefix>-<s>` ([`KafkaSinkConfig::exactly_once`]). The records between barrier `e-1`
//! and barrier `e` go into one transaction. At barrier `e` the shard writes into its
//! checkpoint state `(transactional id, e, the transaction's records)` (**pre-commit**:
//! what the checkpoint holds can be produced again, so the barrier waits for nothing).
//! When checkpoint `e` completes it adds the marker `e` to the transaction and
//! **commits** (which waits for the broker's acknowledgements). Records that arrive between the barrier
//! and the completion are held in memory and go into the next transaction after the
//! commit (a librdkafka producer has one transaction at a time); if the next barrier
//! comes first, they join the open transaction, which then commits with that later
//! checkpoint.
//!
//! **Recovery.** A restored shard creates the producers of the transactional ids in its
//! state, which fences the old ones and aborts what they left open, and reads each id's
//! committed marker. A marker at or past the restored epoch `e` means transaction `e`
//! committed before the crash: nothing to do. Else the crash came between the
//! checkpoint's completion and the commit, and the transaction was just aborted: the
//! shard produces the records from its state again, with marker `e`, and commits them
//! before it takes new records. The records of a pre-committed epoch are therefore part
//! of the checkpoint (as Flink's two-phase sinks keep their pending transactions).
//!
//! **End of input.** The open transaction is committed at the end with a marker flagged
//! *last* (with the job's shard count). A restore onto as many shards that finds such a
//! marker at or past its epoch knows that everything this shard wrote after the restored
//! checkpoint is committed already: the shard drops what the replay produces, which is
//! the same records again (counted as the sink's dropped records in the job report).
//! Restored onto another shard count it cannot tell them apart: those records may then
//! be written twice (docs/kafka.md).
//!
//! Failpoints for tests: with `RILL_KAFKA_CRASH_BEFORE_COMMIT=N` the process aborts at the
//! `N`-th commit of a completed checkpoint, after the completion and before the commit;
//! with `RILL_KAFKA_CRASH_AFTER_LAST_COMMIT` set, right after a shard's last commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{DroppedRecords, Failure, OpResult, Sink};

use crate::config::KafkaSinkConfig;
use crate::sink::{send, EncodeFn};
use crate::transaction::{Marker, TransactionalProducer};

/// The state section of the sink: one [`Pending`] per shard.
const STATE: &str = "kafka-transaction";

/// A shard's checkpointed transaction: its transactional id, the epoch (checkpoint) that
/// commits it, its records (framed; empty if none is pre-committed), and the shard count
/// of a run that was discarding a replay (0: none): a restore onto as many shards goes on
/// discarding.
type Pending = (String, u64, Vec<u8>, u32);
const STATE_VERSION: u32 = 1;

/// The failpoint's environment variable (see the module docs).
pub const CRASH_BEFORE_COMMIT: &str = "RILL_KAFKA_CRASH_BEFORE_COMMIT";

/// A second failpoint: when set, the process aborts right after a shard committed its
/// last transaction at the end of the input (before the job's final manifest).
pub const CRASH_AFTER_LAST_COMMIT: &str = "RILL_KAFKA_CRASH_AFTER_LAST_COMMIT";

static COMMITS: AtomicU64 = AtomicU64::new(0);

fn failpoint() {
    if let Some(n) = std::env::var(CRASH_BEFORE_COMMIT)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            eprintln!("{CRASH_BEFORE_COMMIT}={n}: aborting between completion and commit");
            std::process::abort();
        }
    }
}

/// Appends `record` to `framed` as a 4-byte little-endian length and the bytes.
fn frame(framed: &mut Vec<u8>, record: &[u8]) {
    framed.extend_from_slice(&(record.len() as u32).to_le_bytes());
    framed.extend_from_slice(record);
}

/// The records of `framed`; an error if the framing is broken.
pub(crate) fn records(framed: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < framed.len() {
        let len = framed
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| {
                Failure::new("a Kafka transaction's records in the checkpoint are cut")
            })?;
        let record = framed.get(at + 4..at + 4 + len).ok_or_else(|| {
            Failure::new("a Kafka transaction's records in the checkpoint are cut")
        })?;
        out.push(record);
        at += 4 + len;
    }
    Ok(out)
}

/// One shard's instance of the exactly-once Kafka sink (see the module docs).
pub struct ExactlyOnceKafkaSink<T> {
    name: String,
    config: Arc<KafkaSinkConfig>,
    encode: EncodeFn<T>,
    shard: u32,
    shards: u32,
    id: String,
    producer: Option<TransactionalProducer>,
    buffer: Vec<u8>,
    /// A transaction is open.
    open: bool,
    /// The records of the open transaction, framed (checkpointed once pre-committed).
    transaction: Vec<u8>,
    /// The barrier whose checkpoint commits the open transaction, once pre-committed.
    ready: Option<u64>,
    /// Records after that barrier, held until the commit.
    held: Vec<u8>,
    /// The last barrier seen.
    last_barrier: u64,
    /// What the state of a restore asked for, done when the producer is created.
    recovered: Vec<Pending>,
    /// The replay's records are committed already (a *last* marker): drop them.
    discard: bool,
    /// The sink's dropped-record counter (in the job report).
    dropped: DroppedRecords,
}

impl<T> std::fmt::Debug for ExactlyOnceKafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnceKafkaSink")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl<T> ExactlyOnceKafkaSink<T> {
    pub(crate) fn new(
        name: String,
        config: Arc<KafkaSinkConfig>,
        encode: EncodeFn<T>,
        shard: usize,
        shards: usize,
        dropped: DroppedRecords,
    ) -> Self {
        let prefix = config.transactional_id.clone().unwrap_or_default();
        ExactlyOnceKafkaSink {
            name,
            config,
            encode,
            shard: shard as u32,
            shards: shards as u32,
            id: format!("{prefix}-{shard}"),
            producer: None,
            buffer: Vec::new(),
            open: false,
            transaction: Vec::new(),
            ready: None,
            held: Vec::new(),
            last_barrier: 0,
            recovered: Vec::new(),
            discard: false,
            dropped,
        }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> Failure {
        Failure::new(format!(
            "Kafka sink {} ({}, transactional id {}): {what}: {e}",
            self.name, self.config.topic, self.id
        ))
    }

    fn transactional(&self, id: &str) -> Result<TransactionalProducer, Failure> {
        TransactionalProducer::new(
            &self.config.brokers,
            &self.config.topic,
            id,
            &self.config.properties,
            self.config.flush_timeout,
        )
        .map_err(|e| self.fail("cannot start the transactional producer", e))
    }

    /// Creates the producer at first use: after a restore, which it completes.
    fn ensure_producer(&mut self) -> OpResult {
        if self.producer.is_none() {
            let own = self.transactional(&self.id.clone())?;
            for (id, epoch, framed, discarding) in std::mem::take(&mut self.recovered) {
                if id == self.id && discarding == self.shards {
                    // Still replaying what a last transaction committed (see `recover`).
                    self.discard = true;
                }
                if id == self.id {
                    self.recover(&own, epoch, &framed)?;
                } else {
                    // A shard of a run with more shards: fence it, finish its epoch.
                    let other = self.transactional(&id)?;
                    self.recover(&other, epoch, &framed)?;
                }
            }
            self.producer = Some(own);
        }
        Ok(())
    }

    /// The producer (after [`Self::ensure_producer`]).
    fn created(&self) -> Result<&TransactionalProducer, Failure> {
        self.producer
            .as_ref()
            .ok_or_else(|| Failure::new("the transactional producer was not created"))
    }

    /// Restored epoch `epoch` of `producer`'s id, whose transaction held `framed`.
    fn recover(&mut self, producer: &TransactionalProducer, epoch: u64, framed: &[u8]) -> OpResult {
        let marker = producer
            .committed_marker()
            .map_err(|e| self.fail("cannot read the marker", e))?;
        match marker {
            Some(m) if m.epoch >= epoch => {
                // Discard the replay only where it produces what was committed: this
                // shard's own id, restored onto as many shards (with another shard count
                // the records after the checkpoint go to other shards: they may repeat).
                if m.last == Some(self.shards) && producer.id() == self.id {
                    self.discard = true;
                }
                Ok(())
            }
            _ if framed.is_empty() => Ok(()),
            _ => {
                // Completed, not committed: produce the epoch again.
                producer.begin().map_err(|e| self.fail("cannot begin", e))?;
                for r in records(framed)? {
                    send(
                        producer.producer(),
                        &self.config.topic,
                        None,
                        None,
                        r,
                        self.config.flush_timeout,
                    )
                    .map_err(|e| self.fail("cannot send", e))?;
                }
                producer
                    .mark(Marker { epoch, last: None })
                    .map_err(|e| self.fail("cannot add the marker", e))?;
                producer
                    .commit()
                    .map_err(|e| self.fail("cannot commit a recovered epoch", e))
            }
        }
    }

    /// Sends framed records into the open transaction (opening one if needed).
    fn send_all(&mut self, framed: &[u8]) -> OpResult {
        if framed.is_empty() {
            return Ok(());
        }
        self.ensure_producer()?;
        let producer = self.created()?;
        if !self.open {
            producer.begin().map_err(|e| self.fail("cannot begin", e))?;
        }
        for r in records(framed)? {
            send(
                producer.producer(),
                &self.config.topic,
                None,
                None,
                r,
                self.config.flush_timeout,
            )
            .map_err(|e| self.fail("cannot send", e))?;
        }
        producer.producer().poll(Duration::ZERO);
        self.open = true;
        self.transaction.extend_from_slice(framed);
        Ok(())
    }

    /// Adds `marker` to the open transaction and commits it (which first waits for the
    /// broker's acknowledgements): two round trips, at a checkpoint's completion or at the
    /// end, never at a barrier.
    fn commit(&mut self, marker: Marker) -> OpResult {
        self.ensure_producer()?;
        let producer = self.created()?;
        producer.mark(marker).map_err(|e| {
            self.fail(
                &format!("cannot add the marker of epoch {}", marker.epoch),
                e,
            )
        })?;
        if marker.last.is_none() {
            failpoint();
        }
        producer
            .commit()
            .map_err(|e| self.fail(&format!("cannot commit epoch {}", marker.epoch), e))?;
        self.open = false;
        self.transaction.clear();
        self.ready = None;
        Ok(())
    }
}

impl<T> Sink<T> for ExactlyOnceKafkaSink<T> {
    fn on_batch(&mut self, batch: &mut Vec<T>) -> OpResult {
        if self.discard {
            self.dropped.add(batch.len() as u64);
            batch.clear();
            return Ok(());
        }
        let mut framed = std::mem::take(&mut self.buffer);
        framed.clear();
        let mut record = Vec::new();
        for r in batch.drain(..) {
            record.clear();
            (self.encode)(&r, &mut record);
            frame(&mut framed, &record);
        }
        let result = match self.ready {
            Some(_) => {
                self.held.extend_from_slice(&framed);
                Ok(())
            }
            None => self.send_all(&framed),
        };
        self.buffer = framed;
        result
    }

    fn snapshot(&mut self, checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.last_barrier = checkpoint;
        if !self.discard {
            if self.ready.is_some() {
                // The previous checkpoint has not completed: its transaction takes this
                // epoch's records too and commits with this checkpoint.
                let held = std::mem::take(&mut self.held);
                self.send_all(&held)?;
            }
            if self.open {
                // Pre-committed: the records are in the checkpoint (below), so the barrier
                // waits for no acknowledgement; the commit does.
                self.ready = Some(checkpoint);
                if let Some(p) = &self.producer {
                    p.producer().poll(Duration::ZERO);
                }
            }
        }
        let records = match self.ready {
            Some(_) => self.transaction.clone(),
            None => Vec::new(),
        };
        let discarding = if self.discard { self.shards } else { 0 };
        state.section(STATE, STATE_VERSION).put_split(
            self.shard,
            (self.id.clone(), checkpoint, records, discarding),
        )
    }

    fn on_checkpoint_complete(&mut self, checkpoint: u64) -> OpResult {
        match self.ready {
            Some(ready) if ready <= checkpoint => {
                self.commit(Marker {
                    epoch: ready,
                    last: None,
                })?;
                let held = std::mem::take(&mut self.held);
                self.send_all(&held)
            }
            _ => Ok(()),
        }
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.last_barrier = state.checkpoint();
        self.recovered = state.section(STATE, STATE_VERSION)?.values::<Pending>()?;
        // Fence, finish and learn the markers now, before the first record.
        self.ensure_producer()
    }

    fn on_end(&mut self) -> OpResult {
        if self.discard {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.send_all(&held)?;
        if !self.open {
            // Nothing to commit, but a restore must know this shard finished.
            self.ensure_producer()?;
            let producer = self.created()?;
            producer.begin().map_err(|e| self.fail("cannot begin", e))?;
            self.open = true;
        }
        self.commit(Marker {
            epoch: self.last_barrier,
            last: Some(self.shards),
        })?;
        if std::env::var_os(CRASH_AFTER_LAST_COMMIT).is_some() {
            eprintln!("{CRASH_AFTER_LAST_COMMIT}: aborting after the last commit");
            std::process::abort();
        }
        Ok(())
    }
}

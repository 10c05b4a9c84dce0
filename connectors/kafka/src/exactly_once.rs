//! The exactly-once Kafka sink: one transaction per checkpoint epoch and shard, committed
//! when the checkpoint completes (two-phase commit), for `read_committed` readers.
//!
//! Shard `s` writes through a [`TransactionalProducer`] with the transactional id
//! `<prefix>-<s>` ([`KafkaSinkConfig::exactly_once`]). The records between barrier `e-1`
//! and barrier `e` go into one transaction. At barrier `e` the shard writes into its
//! checkpoint state `(transactional id, e, the transaction's records)` (**pre-commit**:
//! what the checkpoint holds can be produced again, so the barrier waits for nothing).
//! When checkpoint `e` completes the shard hands the transaction to the producer's
//! **commit thread**, which adds the marker `e` and **commits** (which waits for the
//! broker's acknowledgements) while the shard goes on: the sink reports
//! [`Pending::Working`] until the thread is done. Records that arrive between the barrier
//! and the end of the commit are held in memory, by epoch, and go into the next
//! transaction after the commit (a librdkafka producer has one transaction at a time); if
//! the next barrier comes first, they join the open transaction, which then commits with
//! that later checkpoint. A barrier during a commit closes an epoch of its own, which the
//! checkpoint holds beside the committing transaction. The sink never waits for room in
//! librdkafka's queue either: it keeps what the queue refuses and reports
//! [`Pending::Blocked`] (as it does once it holds as many records as that queue).
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{DroppedRecords, Failure, OpResult, Pending, Sink};

use crate::config::KafkaSinkConfig;
use crate::sink::{queue_full_error, send, try_send, EncodeFn};
use crate::transaction::{Marker, TransactionalProducer};

/// The state section of the sink: one [`Saved`] per shard.
const STATE: &str = "kafka-transaction";

/// A shard's checkpointed transactions: its transactional id, the checkpoint, the
/// pre-committed epochs not known to be committed (each the barrier that closed it and
/// its records, framed; oldest first), and the shard count of a run that was discarding a
/// replay (0: none): a restore onto as many shards goes on discarding.
type Saved = (String, u64, Vec<(u64, Vec<u8>)>, u32);
/// 2: several epochs per shard (a barrier can pass while a commit is under way).
const STATE_VERSION: u32 = 2;

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

/// The record of `framed` at byte `at`, and the byte after it; an error if the framing is
/// broken.
pub(crate) fn framed_at(framed: &[u8], at: usize) -> Result<(&[u8], usize), Failure> {
    let cut = || Failure::new("a Kafka sink's records in the checkpoint are cut");
    let len = framed
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(cut)?;
    let record = framed.get(at + 4..at + 4 + len).ok_or_else(cut)?;
    Ok((record, at + 4 + len))
}

/// The records of `framed`; an error if the framing is broken.
pub(crate) fn records(framed: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < framed.len() {
        let (record, next) = framed_at(framed, at)?;
        out.push(record);
        at = next;
    }
    Ok(out)
}

/// The transaction open on the producer.
#[derive(Debug, Default)]
struct Transaction {
    /// Its records, framed (checkpointed once pre-committed).
    framed: Vec<u8>,
    /// The bytes of `framed` handed to the producer (the rest waits for room in its
    /// queue).
    handed: usize,
    /// The barrier whose checkpoint commits it, once pre-committed.
    covers: Option<u64>,
}

/// Records taken while the open transaction was pre-committed or committing: one epoch's,
/// closed by a barrier (`Some`), or the records since the last barrier (`None`).
#[derive(Debug)]
struct Epoch {
    framed: Vec<u8>,
    records: usize,
    barrier: Option<u64>,
}

/// librdkafka's default `queue.buffering.max.messages`.
const LIBRDKAFKA_QUEUE_RECORDS: usize = 100_000;

/// A thread that commits the producer's transactions, so that the shard never waits for
/// the round trips (marker and commit): the shard hands it a marker and polls for the
/// result.
struct Committer {
    jobs: mpsc::Sender<Marker>,
    results: mpsc::Receiver<Result<(), Failure>>,
}

impl Committer {
    fn start(producer: Arc<TransactionalProducer>, describe: String) -> Result<Self, Failure> {
        let (jobs, inbox) = mpsc::channel::<Marker>();
        let (outbox, results) = mpsc::channel();
        let thread_describe = describe.clone();
        std::thread::Builder::new()
            .name(format!("rill-kafka-commit-{}", producer.id()))
            .spawn(move || {
                let describe = thread_describe;
                // Ends when the sink is dropped (its sender with it).
                for marker in inbox {
                    let result = producer
                        .mark(marker)
                        .map_err(|e| {
                            (
                                format!("cannot add the marker of epoch {}", marker.epoch),
                                e,
                            )
                        })
                        .and_then(|()| {
                            if marker.last.is_none() {
                                failpoint();
                            }
                            producer
                                .commit()
                                .map_err(|e| (format!("cannot commit epoch {}", marker.epoch), e))
                        })
                        .map_err(|(what, e)| Failure::caused_by(format!("{describe}: {what}"), e));
                    if outbox.send(result).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| {
                Failure::new(format!("{describe}: cannot start the commit thread: {e}"))
            })?;
        Ok(Committer { jobs, results })
    }
}

/// One shard's instance of the exactly-once Kafka sink (see the module docs).
pub struct ExactlyOnceKafkaSink<T> {
    name: String,
    config: Arc<KafkaSinkConfig>,
    encode: EncodeFn<T>,
    shard: u32,
    shards: u32,
    id: String,
    producer: Option<Arc<TransactionalProducer>>,
    committer: Option<Committer>,
    buffer: Vec<u8>,
    /// The transaction open on the producer.
    transaction: Option<Transaction>,
    /// The marker of the open transaction, committing on the commit thread.
    committing: Option<Marker>,
    /// The marker of the open transaction, to commit once all its records are handed over.
    commit_due: Option<Marker>,
    /// Records taken after the open transaction's barrier, by epoch, oldest first.
    waiting: VecDeque<Epoch>,
    /// How many records `waiting` holds, and how many it may hold before the sink blocks
    /// (as many as librdkafka's queue: `queue.buffering.max.messages`).
    waiting_records: usize,
    waiting_limit: usize,
    /// The last completed checkpoint.
    completed: u64,
    /// Since when librdkafka's queue has been full.
    full_since: Option<Instant>,
    /// The last barrier seen.
    last_barrier: u64,
    /// What the state of a restore asked for, done when the producer is created.
    recovered: Vec<Saved>,
    /// The replay's records are committed already (a *last* marker): drop them.
    discard: bool,
    /// The input ended: the last transaction commits (`ended` once it did).
    ending: bool,
    ended: bool,
    /// The sink's dropped-record counter (in the job report).
    dropped: DroppedRecords,
}

impl<T> std::fmt::Debug for ExactlyOnceKafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnceKafkaSink")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("committing", &self.committing)
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
        let waiting_limit = config
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "queue.buffering.max.messages")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(LIBRDKAFKA_QUEUE_RECORDS);
        ExactlyOnceKafkaSink {
            name,
            config,
            encode,
            shard: shard as u32,
            shards: shards as u32,
            id: format!("{prefix}-{shard}"),
            producer: None,
            committer: None,
            buffer: Vec::new(),
            transaction: None,
            committing: None,
            commit_due: None,
            waiting: VecDeque::new(),
            waiting_records: 0,
            waiting_limit,
            completed: 0,
            full_since: None,
            last_barrier: 0,
            recovered: Vec::new(),
            discard: false,
            ending: false,
            ended: false,
            dropped,
        }
    }

    fn describe(&self) -> String {
        format!(
            "Kafka sink {} ({}, transactional id {})",
            self.name, self.config.topic, self.id
        )
    }

    /// A failure of the sink while doing `what`, caused by `e` (kept as its source).
    fn fail(&self, what: &str, e: crate::Error) -> Failure {
        Failure::caused_by(format!("{}: {what}", self.describe()), e)
    }

    /// The commit thread is gone (it ended on a panic): no epoch can commit.
    fn commit_thread_ended(&self) -> Failure {
        Failure::new(format!(
            "{}: cannot commit: the commit thread ended",
            self.describe()
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

    /// Creates the producer (and its commit thread) at first use, or at a restore, which
    /// it completes. (`init_transactions` is a round trip on the shard, once.)
    fn ensure_producer(&mut self) -> OpResult {
        if self.producer.is_none() {
            let own = self.transactional(&self.id.clone())?;
            for (id, checkpoint, epochs, discarding) in std::mem::take(&mut self.recovered) {
                if id == self.id && discarding == self.shards {
                    // Still replaying what a last transaction committed (see `recover`).
                    self.discard = true;
                }
                if id == self.id {
                    self.recover(&own, checkpoint, &epochs)?;
                } else {
                    // A shard of a run with more shards: fence it, finish its epochs.
                    let other = self.transactional(&id)?;
                    self.recover(&other, checkpoint, &epochs)?;
                }
            }
            let own = Arc::new(own);
            self.committer = Some(Committer::start(own.clone(), self.describe())?);
            self.producer = Some(own);
        }
        Ok(())
    }

    /// The producer (after [`Self::ensure_producer`]).
    fn created(&self) -> Result<&TransactionalProducer, Failure> {
        self.producer
            .as_deref()
            .ok_or_else(|| Failure::new("the transactional producer was not created"))
    }

    /// Restored checkpoint `checkpoint` of `producer`'s id, whose pre-committed epochs were
    /// `epochs`. Runs at the restore, before the job takes records: it waits.
    fn recover(
        &mut self,
        producer: &TransactionalProducer,
        checkpoint: u64,
        epochs: &[(u64, Vec<u8>)],
    ) -> OpResult {
        let marker = producer
            .committed_marker()
            .map_err(|e| self.fail("cannot read the marker", e))?;
        if let Some(m) = marker.filter(|m| m.epoch >= checkpoint) {
            // Discard the replay only where it produces what was committed: this shard's
            // own id, restored onto as many shards (with another shard count the records
            // after the checkpoint go to other shards: they may repeat).
            if m.last == Some(self.shards) && producer.id() == self.id {
                self.discard = true;
            }
            return Ok(());
        }
        // The epochs after the marker completed and did not commit: produce them again.
        let after = marker.map_or(0, |m| m.epoch);
        let lost: Vec<&Vec<u8>> = epochs
            .iter()
            .filter(|(epoch, framed)| *epoch > after && !framed.is_empty())
            .map(|(_, framed)| framed)
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        producer.begin().map_err(|e| self.fail("cannot begin", e))?;
        for framed in lost {
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
        }
        producer
            .mark(Marker {
                epoch: checkpoint,
                last: None,
            })
            .map_err(|e| self.fail("cannot add the marker", e))?;
        producer
            .commit()
            .map_err(|e| self.fail("cannot commit a recovered epoch", e))
    }

    /// Adds framed records to the open transaction (opening one if needed) and hands
    /// them over.
    fn add(&mut self, framed: &[u8]) -> OpResult {
        if self.transaction.is_none() {
            self.ensure_producer()?;
            let producer = self.created()?;
            producer.begin().map_err(|e| self.fail("cannot begin", e))?;
            self.transaction = Some(Transaction::default());
        }
        if let Some(t) = &mut self.transaction {
            t.framed.extend_from_slice(framed);
        }
        self.hand_over()
    }

    /// Hands the open transaction's records to the producer until its queue is full
    /// (never waits); starts a due commit once all are handed over.
    fn hand_over(&mut self) -> OpResult {
        let (Some(t), Some(producer)) = (&mut self.transaction, &self.producer) else {
            return Ok(());
        };
        let topic = &self.config.topic;
        while t.handed < t.framed.len() {
            let (record, next) = framed_at(&t.framed, t.handed)?;
            match try_send(producer.producer(), topic, record, 0) {
                Ok(true) => t.handed = next,
                Ok(false) => {
                    let since = *self.full_since.get_or_insert_with(Instant::now);
                    let timeout = self.config.flush_timeout;
                    if since.elapsed() > timeout {
                        let e = queue_full_error(producer.producer(), timeout);
                        return Err(self.fail("cannot send", e));
                    }
                    producer.producer().poll(Duration::ZERO);
                    return Ok(());
                }
                Err(e) => return Err(self.fail("cannot send", e)),
            }
        }
        self.full_since = None;
        producer.producer().poll(Duration::ZERO);
        if let Some(marker) = self.commit_due.take() {
            self.start_commit(marker)?;
        }
        Ok(())
    }

    fn handed_over(&self) -> bool {
        self.transaction
            .as_ref()
            .map_or(true, |t| t.handed == t.framed.len())
    }

    /// Commits the open transaction with `marker` on the commit thread, once all its
    /// records are handed over.
    fn start_commit(&mut self, marker: Marker) -> OpResult {
        if !self.handed_over() {
            self.commit_due = Some(marker);
            return Ok(());
        }
        let committer = self
            .committer
            .as_ref()
            .ok_or_else(|| Failure::new("the commit thread was not started"))?;
        committer
            .jobs
            .send(marker)
            .map_err(|_| self.commit_thread_ended())?;
        self.committing = Some(marker);
        Ok(())
    }

    /// Commits the open transaction if its checkpoint completed and no commit is under way.
    fn commit_if_complete(&mut self) -> OpResult {
        if self.committing.is_some() || self.commit_due.is_some() {
            return Ok(());
        }
        match self.transaction.as_ref().and_then(|t| t.covers) {
            Some(epoch) if epoch <= self.completed => {
                self.start_commit(Marker { epoch, last: None })
            }
            _ => Ok(()),
        }
    }

    /// The commit of the open transaction finished: the waiting epochs go into the next
    /// transaction (the closed ones together, pre-committed for the last of their
    /// barriers; else the records since the last barrier, still open).
    fn committed(&mut self, marker: Marker) -> OpResult {
        self.committing = None;
        self.transaction = None;
        if marker.last.is_some() {
            self.ended = true;
            if std::env::var_os(CRASH_AFTER_LAST_COMMIT).is_some() {
                eprintln!("{CRASH_AFTER_LAST_COMMIT}: aborting after the last commit");
                std::process::abort();
            }
            return Ok(());
        }
        let mut framed = Vec::new();
        let mut covers = None;
        self.waiting_records = 0;
        while let Some(epoch) = self.waiting.front() {
            if epoch.barrier.is_none() && covers.is_some() {
                break;
            }
            let epoch = self.waiting.pop_front().expect("an epoch");
            framed.extend_from_slice(&epoch.framed);
            covers = epoch.barrier;
            if covers.is_none() {
                break;
            }
        }
        self.waiting_records = self.waiting.iter().map(|e| e.records).sum();
        if !framed.is_empty() {
            self.add(&framed)?;
        }
        if let Some(t) = &mut self.transaction {
            t.covers = covers;
        }
        self.commit_if_complete()
    }

    /// The input ended and no commit is under way: everything goes into one last
    /// transaction, committed with a *last* marker (a transaction even if empty: a
    /// restore must know this shard finished).
    fn commit_last(&mut self) -> OpResult {
        let framed: Vec<u8> = self.waiting.drain(..).flat_map(|e| e.framed).collect();
        self.waiting_records = 0;
        self.ensure_producer()?;
        if self.transaction.is_none() {
            self.created()?
                .begin()
                .map_err(|e| self.fail("cannot begin", e))?;
            self.transaction = Some(Transaction::default());
        }
        self.add(&framed)?;
        self.start_commit(Marker {
            epoch: self.last_barrier,
            last: Some(self.shards),
        })
    }

    /// Collects the commit thread's result, if there is one.
    fn poll_commit(&mut self) -> OpResult {
        let Some(marker) = self.committing else {
            return Ok(());
        };
        let committer = self
            .committer
            .as_ref()
            .ok_or_else(|| Failure::new("the commit thread was not started"))?;
        match committer.results.try_recv() {
            Ok(Ok(())) => self.committed(marker),
            Ok(Err(e)) => Err(e),
            Err(mpsc::TryRecvError::Empty) => Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => Err(self.commit_thread_ended()),
        }
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
        let batch_len = batch.len();
        for r in batch.drain(..) {
            record.clear();
            (self.encode)(&r, &mut record);
            frame(&mut framed, &record);
        }
        let behind = self.committing.is_some()
            || self.commit_due.is_some()
            || self
                .transaction
                .as_ref()
                .is_some_and(|t| t.covers.is_some());
        let result = if behind {
            // The open transaction is pre-committed: these records wait for the next.
            let records = batch_len;
            match self.waiting.back_mut() {
                Some(e) if e.barrier.is_none() => {
                    e.framed.extend_from_slice(&framed);
                    e.records += records;
                }
                _ => self.waiting.push_back(Epoch {
                    framed: framed.clone(),
                    records,
                    barrier: None,
                }),
            }
            self.waiting_records += records;
            Ok(())
        } else if framed.is_empty() {
            Ok(())
        } else {
            self.add(&framed)
        };
        self.buffer = framed;
        result
    }

    fn snapshot(&mut self, checkpoint: u64, state: &mut StateWriter) -> OpResult {
        self.last_barrier = checkpoint;
        if !self.discard {
            if self.committing.is_some() || self.commit_due.is_some() {
                // The open transaction is committing: the records since the last barrier
                // are an epoch of their own, pre-committed for this checkpoint.
                if let Some(e) = self.waiting.back_mut().filter(|e| e.barrier.is_none()) {
                    e.barrier = Some(checkpoint);
                }
            } else if self.transaction.is_some() {
                // Pre-committed: the records are in the checkpoint (below), so the barrier
                // waits for no acknowledgement; the commit does. If the previous
                // checkpoint has not completed, its transaction takes this epoch's
                // records too and commits with this checkpoint.
                let framed: Vec<u8> = self.waiting.drain(..).flat_map(|e| e.framed).collect();
                self.waiting_records = 0;
                self.add(&framed)?;
                if let Some(t) = &mut self.transaction {
                    t.covers = Some(checkpoint);
                }
            }
        }
        let mut epochs = Vec::new();
        if let Some((epoch, t)) = self
            .transaction
            .as_ref()
            .and_then(|t| t.covers.map(|c| (c, t)))
        {
            epochs.push((epoch, t.framed.clone()));
        }
        for e in &self.waiting {
            if let Some(barrier) = e.barrier {
                epochs.push((barrier, e.framed.clone()));
            }
        }
        let discarding = if self.discard { self.shards } else { 0 };
        state.section(STATE, STATE_VERSION).put_split(
            self.shard,
            (self.id.clone(), checkpoint, epochs, discarding),
        )
    }

    /// Hands the commit to the commit thread; the shard goes on.
    fn on_checkpoint_complete(&mut self, checkpoint: u64) -> OpResult {
        self.completed = self.completed.max(checkpoint);
        self.commit_if_complete()
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        self.last_barrier = state.checkpoint();
        self.recovered = state.section(STATE, STATE_VERSION)?.values::<Saved>()?;
        // Fence, finish and learn the markers now, before the first record.
        self.ensure_producer()
    }

    /// Waits for nothing: the last commit runs on the commit thread (after one under way)
    /// while the shard polls the sink.
    fn on_end(&mut self) -> OpResult {
        if self.discard {
            return Ok(());
        }
        self.ending = true;
        self.poll_pending()
    }

    /// Blocked while records wait for room in librdkafka's queue, or while as many wait
    /// for a commit under way as that queue holds; working while a commit is under way.
    fn pending(&self) -> Pending {
        if !self.handed_over() || self.waiting_records >= self.waiting_limit {
            Pending::Blocked
        } else if self.committing.is_some()
            || self.commit_due.is_some()
            || (self.ending && !self.ended)
        {
            Pending::Working
        } else {
            Pending::Nothing
        }
    }

    fn poll_pending(&mut self) -> OpResult {
        self.hand_over()?;
        self.poll_commit()?;
        if self.ending && !self.ended && self.committing.is_none() && self.commit_due.is_none() {
            self.commit_last()?;
        }
        Ok(())
    }
}

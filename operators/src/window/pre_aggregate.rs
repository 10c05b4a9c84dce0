//! Pre-aggregation before the key exchange (combiner lifting): a keyed window aggregation
//! whose windows fire once first aggregates on each shard, and sends `(key, slice, partial
//! accumulator, records in it)` across the key exchange instead of the records (Beam's
//! combiner lifting, Flink SQL's local/global aggregation).
//!
//! Each shard keeps, per slice start, a table from key to partial accumulator and record count over
//! its own records. A slice's partials go out when the watermark of the shard's input passes the
//! slice's end, before that watermark is forwarded; all of them go out when the table holds more
//! entries than the spec's
//! [`pre_aggregate_capacity`](super::spec::WindowSpec::pre_aggregate_capacity) (after the batch
//! that took it there), at a checkpoint barrier (so the operator has no state to write), when the
//! input goes idle and when it ends. On the key's shard the operator for windows that fire once
//! (`on_time.rs`) merges the partials into its slices.
//!
//! The final operator decides lateness, pane timing and firing, as without
//! pre-aggregation: its watermark is the minimum over all shards, so a record late for
//! this shard's watermark may still be on time there. So nothing is dropped here: a record
//! whose slice already went out (its end is at or before the shard's watermark), or that
//! no window holds, goes out at once as a partial of one record, judged downstream as the
//! record would have been. A partial of a slice still open here reaches the final operator
//! before this shard's watermark passes the slice's end, so before any window holding the
//! slice can fire: it is on time there whenever its records would have been. Dropped
//! partials count their records, so the job report's dropped counts are those of the
//! records.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use rill_runtime::{OpResult, Operator, OperatorState, Output, StateData, Stream, Timestamp};
use rustc_hash::FxHashMap;

use super::aggregate::Aggregate;
use super::on_time::{OnTimeCodec, OnTimeWindowOperator};
use super::pane::{Pane, Window};
use super::slices::Slicing;
use super::spec::{TimestampFn, WindowSpec};
use super::state::{codec, WindowBase, Windowed, SLICE_ACCUMULATORS};
use crate::key_by::{key_exchange, KeyFn};

/// What crosses the key exchange: a key's partial accumulator of one slice (by its start)
/// and the number of records in it.
pub(crate) type Partial<K, A> = (K, Timestamp, A, u64);

/// Emptied slice tables kept for reuse (each keeps its capacity): enough for the slices
/// that are open at once when records come in time order.
const SPARE_TABLES: usize = 4;

/// A slice's partial accumulators and record counts by key.
type SliceTable<K, A> = FxHashMap<K, (A, u64)>;

/// A slice start and, if its records are combined here, its table (taken out of the map
/// while a run of records in the slice lasts).
type SliceRun<K, A> = (Timestamp, Option<SliceTable<K, A>>);

/// Pre-aggregates `input` on each shard as `spec` windows it, sends the partials through
/// the key exchange (named `exchange`, or after the final operator) and merges them on the
/// key's shard in the operator for windows that fire once, named `name`.
pub(crate) fn pre_aggregate<T, K, G>(
    input: &Stream<T>,
    exchange: Option<&str>,
    name: &str,
    spec: &WindowSpec<T, K>,
    slicing: Slicing,
    key: KeyFn<T, K>,
    agg: G,
) -> Stream<Pane<K, G::Out>>
where
    T: Clone + 'static,
    K: StateData + Hash + Eq,
    G: Aggregate<T, K> + Send + Sync,
    G::Acc: StateData,
    G::Out: StateData,
{
    let (timestamp, local) = (spec.timestamp.clone(), agg.clone());
    let max_entries = spec.pre_aggregate_entries;
    let partials = input.unary(&format!("{name} (pre-aggregate)"), move |_| PreAggregate {
        key: key.clone(),
        timestamp: timestamp.clone(),
        agg: local.clone(),
        slicing,
        slices: BTreeMap::new(),
        entries: 0,
        max_entries,
        watermark: Timestamp::MIN,
        spare: Vec::new(),
    });
    let exchanged = key_exchange(&partials, exchange, |p: &Partial<K, G::Acc>| p.0.clone());
    let spec = spec.timed_by(|p: &Partial<K, G::Acc>| p.1);
    let codec: OnTimeCodec<K, G::Acc> = codec(SLICE_ACCUMULATORS);
    let key_of: KeyFn<Partial<K, G::Acc>, K> = Arc::new(|p: &Partial<K, G::Acc>| p.0.clone());
    let merge = MergeSlices(agg, PhantomData);
    let (panes, _late) = exchanged.unary_split(name, move |shard| {
        let base = WindowBase::new(
            spec.on_shard(shard),
            key_of.clone(),
            merge.clone(),
            shard.state_changes(),
        );
        let records = |p: &Partial<K, G::Acc>| p.3;
        Windowed::new(OnTimeWindowOperator::new(
            base,
            slicing,
            codec.clone(),
            records,
        ))
    });
    panes
}

/// The operator on each shard before the exchange.
struct PreAggregate<T, K, G: Aggregate<T, K>> {
    key: KeyFn<T, K>,
    timestamp: TimestampFn<T>,
    agg: G,
    slicing: Slicing,
    /// Per slice start, its keys' partials.
    slices: BTreeMap<Timestamp, SliceTable<K, G::Acc>>,
    /// Entries in `slices`.
    entries: usize,
    /// The most entries before all go out.
    max_entries: usize,
    /// The input's watermark: the partials of slices ending at or before it went out.
    watermark: Timestamp,
    /// Emptied tables, kept for the next slices (no allocation per slice once warm), at
    /// most [`SPARE_TABLES`].
    spare: Vec<SliceTable<K, G::Acc>>,
}

impl<T, K, G> PreAggregate<T, K, G>
where
    K: Clone + Hash + Eq,
    G: Aggregate<T, K>,
{
    /// True if the records of slice `s` are combined here: some window holds the slice and
    /// its partials have not gone out.
    fn open(&self, s: Timestamp) -> bool {
        self.slicing.last_end(s).is_some()
            && s.saturating_add(self.slicing.slice_len()) > self.watermark
    }

    /// Sends the partials of the slices ending at or before `up_to`, in slice order.
    fn flush(&mut self, up_to: Timestamp, out: &mut Output<Partial<K, G::Acc>>) {
        let len = self.slicing.slice_len();
        while let Some(entry) = self.slices.first_entry() {
            let start = *entry.key();
            if start.saturating_add(len) > up_to {
                break;
            }
            let mut table = entry.remove();
            self.entries -= table.len();
            for (key, (acc, n)) in table.drain() {
                out.give((key, start, acc, n));
            }
            if self.spare.len() < SPARE_TABLES {
                self.spare.push(table);
            }
        }
    }

    /// Returns a slice's table taken out by `on_batch` to the map.
    fn put_back(&mut self, current: Option<SliceRun<K, G::Acc>>) {
        if let Some((start, Some(table))) = current {
            self.slices.insert(start, table);
        }
    }

    /// Sends every partial.
    fn flush_all(&mut self, out: &mut Output<Partial<K, G::Acc>>) {
        self.flush(Timestamp::MAX, out);
    }
}

impl<T, K, G> Operator<T> for PreAggregate<T, K, G>
where
    K: Clone + Hash + Eq,
    G: Aggregate<T, K>,
{
    type Out = Output<Partial<K, G::Acc>>;
    const STATE: OperatorState = OperatorState::Stateless;

    /// Adds each record to its key's partial of its slice. The table of the slice of the
    /// previous record is taken out of the map while a run of records in that slice lasts,
    /// so such a record is one probe of it.
    fn on_batch(&mut self, batch: &mut Vec<T>, out: &mut Self::Out) -> OpResult {
        let len = self.slicing.slice_len();
        // The slice of the previous record.
        let mut current: Option<SliceRun<K, G::Acc>> = None;
        for record in batch.drain(..) {
            let t = (self.timestamp)(&record);
            if !current
                .as_ref()
                .is_some_and(|(s, _)| *s <= t && t - *s < len)
            {
                self.put_back(current.take());
                let s = self.slicing.slice_of(t);
                let table = self.open(s).then(|| {
                    let spare = &mut self.spare;
                    self.slices
                        .remove(&s)
                        .unwrap_or_else(|| spare.pop().unwrap_or_default())
                });
                current = Some((s, table));
            }
            let (start, table) = current.as_mut().expect("set above");
            let key = (self.key)(&record);
            let Some(table) = table else {
                // The final operator judges it, as it would the record.
                let mut acc = self.agg.create();
                self.agg.add(&mut acc, &record);
                out.give((key, *start, acc, 1));
                continue;
            };
            let (agg, entries) = (&self.agg, &mut self.entries);
            let (acc, n) = table.entry(key).or_insert_with(|| {
                *entries += 1;
                (agg.create(), 0)
            });
            agg.add(acc, &record);
            *n += 1;
        }
        self.put_back(current);
        if self.entries > self.max_entries {
            self.flush_all(out);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.watermark = self.watermark.max(watermark);
        self.flush(self.watermark, out);
        Ok(())
    }

    fn on_barrier(&mut self, _checkpoint: u64, out: &mut Self::Out) -> OpResult {
        self.flush_all(out);
        Ok(())
    }

    fn on_idle(&mut self, out: &mut Self::Out) -> OpResult {
        self.flush_all(out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.flush_all(out);
        Ok(())
    }
}

/// The final operator's aggregate: merges the partial accumulators of `G`.
struct MergeSlices<G, T>(G, PhantomData<fn(&T)>);

impl<G: Clone, T> Clone for MergeSlices<G, T> {
    fn clone(&self) -> Self {
        MergeSlices(self.0.clone(), PhantomData)
    }
}

impl<T, K, G> Aggregate<Partial<K, G::Acc>, K> for MergeSlices<G, T>
where
    T: 'static,
    K: 'static,
    G: Aggregate<T, K>,
{
    type Acc = G::Acc;
    type Out = G::Out;
    fn create(&self) -> G::Acc {
        self.0.create()
    }
    #[inline]
    fn add(&self, acc: &mut G::Acc, partial: &Partial<K, G::Acc>) {
        self.0.merge(acc, partial.2.clone())
    }
    fn merge(&self, acc: &mut G::Acc, other: G::Acc) {
        self.0.merge(acc, other)
    }
    fn result(&self, key: &K, window: &Window, acc: &G::Acc) -> G::Out {
        self.0.result(key, window, acc)
    }
    #[inline]
    fn finish(&self, key: &K, window: &Window, acc: G::Acc) -> G::Out {
        self.0.finish(key, window, acc)
    }
}

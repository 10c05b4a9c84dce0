//! The records with the highest score per event-time window, as a two-phase aggregation:
//! each shard keeps its local best records per window, and after an exchange by window one
//! shard merges them. A window's records go out once the watermark reaches its end, so
//! every upstream shard's candidates are in before the merge emits.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_operators::window::Window;
use rill_runtime::checkpoint::{StateReader, StateWriter};
use rill_runtime::{hash_key, ExchangeData, OpResult, Operator, Output, Stream, Timestamp};

type WindowOf<T> = Arc<dyn Fn(&T) -> Window + Send + Sync>;
type ScoreOf<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Keeps, per window, the records whose score equals the window's maximum so far.
pub struct TopPerWindow<T> {
    window: WindowOf<T>,
    score: ScoreOf<T>,
    // Ordered by end, so a watermark releases a prefix.
    best: BTreeMap<(Timestamp, Timestamp), (u64, Vec<T>)>,
}

impl<T> std::fmt::Debug for TopPerWindow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopPerWindow").finish_non_exhaustive()
    }
}

impl<T: ExchangeData> TopPerWindow<T>
where
    (u32, T): ExchangeData,
{
    /// Adds `top_per_window` after `stream`: on each shard, the records with the highest
    /// `score` per `window`, emitted when the watermark reaches the window's end.
    pub fn apply(
        stream: &Stream<T>,
        name: &str,
        window: impl Fn(&T) -> Window + Send + Sync + 'static,
        score: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Stream<T> {
        let (window, score): (WindowOf<T>, ScoreOf<T>) = (Arc::new(window), Arc::new(score));
        stream.unary(name, move |_| TopPerWindow {
            window: window.clone(),
            score: score.clone(),
            best: BTreeMap::new(),
        })
    }

    /// Adds records, keeping those at their window's maximum.
    fn add(&mut self, batch: &mut Vec<T>) {
        for record in batch.drain(..) {
            let w = (self.window)(&record);
            let score = (self.score)(&record);
            let (best, records) = self
                .best
                .entry((w.end, w.start))
                .or_insert_with(|| (score, Vec::new()));
            if score > *best {
                *best = score;
                records.clear();
            }
            if score == *best {
                records.push(record);
            }
        }
    }

    fn release(&mut self, up_to: Timestamp, out: &mut Output<T>) {
        while let Some(entry) = self.best.first_entry() {
            if entry.key().0 > up_to {
                break;
            }
            for record in entry.remove().1 {
                out.give(record);
            }
        }
    }
}

impl<T: ExchangeData> Operator<T> for TopPerWindow<T>
where
    (u32, T): ExchangeData,
{
    type Out = Output<T>;

    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut Output<T>) -> OpResult {
        self.add(batch);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<T>) -> OpResult {
        self.release(watermark, out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<T>) -> OpResult {
        self.release(Timestamp::MAX, out);
        Ok(())
    }

    /// The kept records, keyed by their window: restored onto any shard count, each
    /// window's records meet again on one shard, and re-adding them keeps the maximum.
    fn snapshot(&mut self, _checkpoint: u64, state: &mut StateWriter) -> OpResult {
        let window = self.window.clone();
        state.put_keyed_all(
            self.best
                .values()
                .flat_map(|(_, records)| records.iter())
                .map(|r| (hash_key(&window(r)), r.clone())),
        )
    }

    fn restore(&mut self, state: &StateReader) -> OpResult {
        let mut records = state.keyed_values::<T>()?;
        self.add(&mut records);
        Ok(())
    }
}

//! The records with the highest score per event-time window, as a two-phase aggregation:
//! each shard keeps its local best records per window, and after an exchange by window one
//! shard merges them. A window's records go out once the watermark reaches its end, so
//! every upstream shard's candidates are in before the merge emits.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_operators::window::Window;
use rill_runtime::{Data, OpResult, Operator, Output, Progress, Stream, Timestamp};

type WindowOf<T> = Arc<dyn Fn(&T) -> Window + Send + Sync>;
type ScoreOf<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Keeps, per window, the records whose score equals the window's maximum so far.
pub struct TopPerWindow<T> {
    window: WindowOf<T>,
    score: ScoreOf<T>,
    // Ordered by end, so a watermark releases a prefix.
    best: BTreeMap<(Timestamp, Timestamp), (u64, Vec<T>)>,
}

impl<T: Data> TopPerWindow<T> {
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

impl<T: Data> Operator<T> for TopPerWindow<T> {
    type Out = Output<T>;

    fn on_batch(&mut self, batch: &mut Vec<T>, _out: &mut Output<T>) -> OpResult {
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
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<T>) -> OpResult {
        self.release(watermark, out);
        out.progress(Progress::Watermark(watermark))
    }

    fn on_end(&mut self, out: &mut Output<T>) -> OpResult {
        self.release(Timestamp::MAX, out);
        Ok(())
    }
}

//! rill's hand-written q5 and q7 plans (from `bench-harness` before q5 and q7 moved onto
//! the library, commit dbf4525): operators written directly against the runtime's
//! [`Operator`] trait, the yardstick for the library's window operators.
//!
//! - [`SlidingCounts`]: bids per auction per sliding window, with each window's running
//!   maximum and the auctions at it (counts only grow), emitted at the window's end.
//! - [`TopPerWindow`]: per window, the records with the highest score; run once per shard,
//!   then after an exchange by window once more to merge the shards' candidates.
//!
//! They keep no checkpointed state (the benchmark takes no checkpoints).

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_operators::window::Window;
use rill_runtime::rkyv;
use rill_runtime::{
    ExchangeData, OpResult, Operator, OperatorState, Output, Partitioning, Stream, Timestamp,
};
use rustc_hash::FxHashMap;

use crate::bids::BidRecord;

/// A candidate for q5: an auction with the most bids of its window on one shard.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct HotItem {
    /// The window.
    pub window: Window,
    /// Auction id.
    pub auction: u64,
    /// Its bids in the window.
    pub count: u64,
}

/// Bids per auction in one sliding window, with the running maximum.
#[derive(Default)]
struct WindowCounts {
    counts: FxHashMap<u64, u64>,
    max: u64,
    top: Vec<u64>,
}

/// q5's first phase, on auction-partitioned bids: per sliding window, the auctions with
/// the most bids on this shard, emitted when the watermark reaches the window's end.
pub struct SlidingCounts {
    size: i64,
    slide: i64,
    windows: BTreeMap<Timestamp, WindowCounts>,
    /// Tables of closed windows, cleared, for the next windows.
    spare: Vec<WindowCounts>,
    closed: Vec<WindowCounts>,
}

impl SlidingCounts {
    /// Sliding windows of `size` ms every `slide` ms.
    pub fn new(size: i64, slide: i64) -> Self {
        SlidingCounts {
            size,
            slide,
            windows: BTreeMap::new(),
            spare: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn release(&mut self, up_to: Timestamp, out: &mut Output<HotItem>) {
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if end > up_to {
                break;
            }
            let mut w = entry.remove();
            let window = Window::new(end - self.size, end);
            for auction in w.top.drain(..) {
                out.give(HotItem {
                    window,
                    auction,
                    count: w.max,
                });
            }
            self.closed.push(w);
        }
    }

    /// Clears the closed windows' tables for reuse (after the close's callback).
    fn recycle(&mut self) {
        for mut w in self.closed.drain(..) {
            w.counts.clear();
            w.max = 0;
            self.spare.push(w);
        }
    }
}

impl<B: BidRecord> Operator<B> for SlidingCounts {
    type Out = Output<HotItem>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;

    fn on_batch(&mut self, batch: &mut Vec<B>, _out: &mut Self::Out) -> OpResult {
        // The tables of the windows the last watermark closed: cleared here, after the
        // runtime forwarded that watermark, so that the close does not wait for it.
        self.recycle();
        for b in batch.drain(..) {
            let (time, auction) = (b.time(), b.auction());
            // Windows [s, s + size) with s a multiple of slide and s <= t < s + size.
            let mut start = time - time.rem_euclid(self.slide);
            while start > time - self.size {
                let spare = &mut self.spare;
                let w = self
                    .windows
                    .entry(start + self.size)
                    .or_insert_with(|| spare.pop().unwrap_or_default());
                let c = w.counts.entry(auction).or_insert(0);
                *c += 1;
                if *c > w.max {
                    w.max = *c;
                    w.top.clear();
                }
                if *c == w.max {
                    w.top.push(auction);
                }
                start -= self.slide;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Self::Out) -> OpResult {
        self.release(watermark, out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Self::Out) -> OpResult {
        self.release(Timestamp::MAX, out);
        Ok(())
    }
}

type WindowOf<T> = Arc<dyn Fn(&T) -> Window + Send + Sync>;
type ScoreOf<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Keeps, per window, the records whose score equals the window's maximum so far, and
/// emits them when the watermark reaches the window's end.
pub struct TopPerWindow<T> {
    window: WindowOf<T>,
    score: ScoreOf<T>,
    // Ordered by end, so a watermark releases a prefix.
    best: BTreeMap<(Timestamp, Timestamp), (u64, Vec<T>)>,
}

impl<T: ExchangeData> TopPerWindow<T> {
    /// Adds `TopPerWindow` after `stream`: on each shard, the records with the highest
    /// `score` per `window`.
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

    /// The records with the top score per window over all shards: local candidates, an
    /// exchange by window, then the merge.
    pub fn two_phase(
        stream: &Stream<T>,
        name: &str,
        window: impl Fn(&T) -> Window + Clone + Send + Sync + 'static,
        score: impl Fn(&T) -> u64 + Clone + Send + Sync + 'static,
    ) -> Stream<T> {
        let local = Self::apply(
            stream,
            &format!("{name} (local)"),
            window.clone(),
            score.clone(),
        );
        let w = window.clone();
        let by_window = local.exchange(Partitioning::by_key(move |r: &T| w(r)));
        Self::apply(&by_window, name, window, score)
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

impl<T: ExchangeData> Operator<T> for TopPerWindow<T> {
    type Out = Output<T>;
    const STATE: OperatorState = OperatorState::NotCheckpointed;

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
}

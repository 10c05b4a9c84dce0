//! [`MaxBy`]: the records with the largest score in a window (every one of them when
//! several tie), e.g. NEXMark q7's highest bids.

use std::sync::Arc;

use super::aggregate::Aggregate;
use super::pane::Window;

type ScoreFn<T, S> = Arc<dyn Fn(&T) -> S + Send + Sync>;

/// The records whose `score` is the window's largest, all of them when several tie (in no
/// particular order). An empty pane is an empty vector. Mergeable, so it runs in two
/// phases in [`window_all`](crate::window::WindowAll::window_all).
///
/// ```
/// # use rill_operators::doc_support::run_on_two_shards;
/// use rill_operators::prelude::*;
/// use rill_operators::window::MaxBy;
///
/// // (bidder, price, event time in ms): the highest bids per second.
/// type Bid = (u32, u64, i64);
/// let out = run_on_two_shards(|df| {
///     df.vec_source("bids", vec![(1u32, 5u64, 100i64), (2, 9, 200), (3, 9, 300), (4, 7, 1100)])
///         .window_all(WindowSpec::event_time(Windows::tumbling(1000), |b: &Bid| b.2))
///         .aggregate("highest", MaxBy::new(|b: &Bid| b.1))
///         .map("bidders", |p| {
///             let mut bidders: Vec<u32> = p.value.iter().map(|b| b.0).collect();
///             bidders.sort();
///             (p.window.start, bidders)
///         })
///         .collect("out")
/// });
/// let mut got = out.take();
/// got.sort();
/// assert_eq!(got, [(0, vec![2, 3]), (1000, vec![4])]);
/// ```
pub struct MaxBy<T, S> {
    score: ScoreFn<T, S>,
}

impl<T, S> MaxBy<T, S> {
    /// Keeps the records with the largest `score(record)`.
    pub fn new(score: impl Fn(&T) -> S + Send + Sync + 'static) -> Self {
        MaxBy {
            score: Arc::new(score),
        }
    }
}

impl<T, S> std::fmt::Debug for MaxBy<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaxBy").finish_non_exhaustive()
    }
}

impl<T, S> Clone for MaxBy<T, S> {
    fn clone(&self) -> Self {
        MaxBy {
            score: self.score.clone(),
        }
    }
}

impl<T, K, S> Aggregate<T, K> for MaxBy<T, S>
where
    T: Clone + 'static,
    S: Ord + Clone + 'static,
{
    /// The largest score so far and its records.
    type Acc = Option<(S, Vec<T>)>;
    type Out = Vec<T>;
    const PRE_AGGREGATE: bool = true;

    fn create(&self) -> Self::Acc {
        None
    }

    #[inline]
    fn add(&self, acc: &mut Self::Acc, record: &T) {
        let score = (self.score)(record);
        match acc {
            Some((best, records)) if score == *best => records.push(record.clone()),
            Some((best, _)) if score < *best => {}
            _ => *acc = Some((score, vec![record.clone()])),
        }
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        let Some((score, mut records)) = other else {
            return;
        };
        match acc {
            Some((best, mine)) if score == *best => mine.append(&mut records),
            Some((best, _)) if score < *best => {}
            _ => *acc = Some((score, records)),
        }
    }

    fn result(&self, _: &K, _: &Window, acc: &Self::Acc) -> Vec<T> {
        acc.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
    }
}

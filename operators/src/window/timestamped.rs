//! Records that carry their own event time, panes first: what lets one event-time window
//! aggregate the panes of another without the user picking a time.

use rill_runtime::Timestamp;

use super::assigner::Windows;
use super::pane::{AllPane, Pane};
use super::spec::WindowSpec;

/// A record that knows its event time (Flink's element timestamp). [`Pane`] implements
/// it with [`Pane::timestamp`]; implement it for your own records to window them with
/// [`WindowSpec::timestamped`].
///
/// ```
/// use rill_operators::window::Timestamped;
/// use rill_runtime::Timestamp;
///
/// struct Click {
///     user: u32,
///     at_ms: i64,
/// }
/// impl Timestamped for Click {
///     fn timestamp(&self) -> Timestamp {
///         self.at_ms
///     }
/// }
/// assert_eq!(Click { user: 1, at_ms: 42 }.timestamp(), 42);
/// ```
pub trait Timestamped {
    /// The record's event time, in ms.
    fn timestamp(&self) -> Timestamp;
}

impl<K, V> Pane<K, V> {
    /// The pane's event time: the last instant of its window, `window.end - 1` (Flink's
    /// rule: a window result carries `window.maxTimestamp()`).
    ///
    /// Every record of the window was earlier, and the pane fires once the watermark
    /// passes the window's end, so a downstream event-time window that places the pane at
    /// this time never finds it late: the upstream operator emits the pane before it
    /// forwards the watermark that fired it, and any window containing `end - 1` ends at
    /// or after `end`.
    ///
    /// - The global window (`[Timestamp::MIN, Timestamp::MAX)`) gives `Timestamp::MAX - 1`:
    ///   its panes belong at the end of time, and a downstream event-time window holding
    ///   them fires when the input ends (at the final watermark).
    /// - Count windows are bounded by record ordinals, not time, so their panes have no
    ///   event time: this gives the ordinal of the window's last record. Window such panes
    ///   by a time you carry in the value (e.g. a [`Max`](crate::window::Max) of the
    ///   records' times) or in processing time.
    ///
    /// ```
    /// use rill_operators::window::{Pane, Timing, Window};
    ///
    /// let pane = Pane {
    ///     key: 1u32,
    ///     window: Window::new(10_000, 20_000),
    ///     value: 3u64,
    ///     timing: Timing::OnTime,
    ///     index: 0,
    ///     is_last: true,
    ///     retraction: false,
    ///     emit_time: 0,
    /// };
    /// assert_eq!(pane.timestamp(), 19_999);
    /// ```
    pub fn timestamp(&self) -> Timestamp {
        self.window.end.saturating_sub(1)
    }
}

impl<K, V> Timestamped for Pane<K, V> {
    fn timestamp(&self) -> Timestamp {
        Pane::timestamp(self)
    }
}

/// A pane of non-keyed windows is placed as a keyed one ([`Pane::timestamp`]).
impl<V> Timestamped for AllPane<V> {
    fn timestamp(&self) -> Timestamp {
        self.window.end.saturating_sub(1)
    }
}

impl<T: Timestamped + 'static, K> WindowSpec<T, K> {
    /// Event-time windows over records that carry their event time ([`Timestamped`]):
    /// above all the panes of an upstream window, placed at [`Pane::timestamp`], so that a
    /// cascaded aggregation needs no time picked by hand and drops no pane as late.
    /// Otherwise as [`WindowSpec::event_time`].
    ///
    /// ```
    /// # use rill_operators::doc_support::run_on_two_shards;
    /// use rill_operators::prelude::*;
    /// use rill_operators::window::{Max, Pane};
    ///
    /// // (page, event time in ms): views per page per 10 s, then the busiest page's count
    /// // per 10 s, over the panes of the first window.
    /// type View = (u32, i64);
    /// let views = vec![(1, 100), (1, 2_000), (2, 3_000), (1, 12_000), (2, 13_000), (2, 14_000)];
    /// let out = run_on_two_shards(|df| {
    ///     df.vec_source("views", views)
    ///         .key_by(|v: &View| v.0)
    ///         .window(WindowSpec::event_time(Windows::tumbling(10_000), |v: &View| v.1))
    ///         .count("views per page")
    ///         .key_by(|p: &Pane<u32, u64>| p.window) // one key per upstream window
    ///         .window(WindowSpec::timestamped(Windows::tumbling(10_000)))
    ///         .aggregate("busiest page", Max::new(|p: &Pane<u32, u64>| p.value))
    ///         .map("row", |p| (p.window.start, p.value))
    ///         .collect("out")
    /// });
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [(0, Some(2)), (10_000, Some(2))]);
    /// ```
    pub fn timestamped(windows: Windows) -> Self {
        Self::event_time(windows, T::timestamp)
    }
}

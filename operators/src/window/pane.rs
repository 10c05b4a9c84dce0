//! The words of the window model: a [`Window`] (an interval of time), a [`Pane`] (a
//! window's value at a firing) and its [`Timing`] relative to the watermark; and how a
//! window emits its panes, firing after firing ([`Panes`]).

use rill_runtime::rkyv;
use rill_runtime::{Output, Timestamp};

/// A half-open interval `[start, end)` of time in milliseconds (for count windows, of
/// record ordinals). The global window is `[Timestamp::MIN, Timestamp::MAX)`.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[rkyv(crate = rkyv)]
pub struct Window {
    /// First instant in the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
}

impl Window {
    /// The window spanning all time.
    pub const GLOBAL: Window = Window {
        start: Timestamp::MIN,
        end: Timestamp::MAX,
    };

    /// `[start, end)`.
    pub const fn new(start: Timestamp, end: Timestamp) -> Window {
        Window { start, end }
    }

    /// True if the windows share an instant (touching windows do not overlap).
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window covering both.
    pub fn span(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// When a pane fired relative to the watermark.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash,
)]
#[rkyv(crate = rkyv)]
pub enum Timing {
    /// Before the watermark passed the end of the window.
    Early,
    /// The first non-early pane of a holding window.
    OnTime,
    /// After the on-time pane, or for a window that only got late records.
    Late,
}

impl Timing {
    /// The timing of a pane fired with the watermark past the window's end or not, by a
    /// window that is holding or not (the rule of the [module docs](self)).
    pub(crate) fn of(past_end: bool, holding: bool) -> Timing {
        if !past_end {
            Timing::Early
        } else if holding {
            Timing::OnTime
        } else {
            Timing::Late
        }
    }

    /// `EARLY`, `ON_TIME` or `LATE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Timing::Early => "EARLY",
            Timing::OnTime => "ON_TIME",
            Timing::Late => "LATE",
        }
    }
}

/// One output of a window operator: a window's value at a firing, or (in retracting
/// mode) the retraction of a value emitted before.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct Pane<K, V> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The value (or the value being retracted).
    pub value: V,
    /// Early, on time or late.
    pub timing: Timing,
    /// The pane's number within its window, from 0.
    pub index: u64,
    /// True for the window's final pane.
    pub is_last: bool,
    /// True if this retracts `value`, emitted earlier for `window`.
    pub retraction: bool,
    /// Processing time of the firing.
    pub emit_time: Timestamp,
}

/// One firing of a window of a key: what its panes share.
pub(crate) struct Firing<'a, K> {
    key: &'a K,
    window: Window,
    timing: Timing,
    is_last: bool,
}

impl<'a, K> Firing<'a, K> {
    /// A firing of `key`'s `window` at `timing`, the window's last or not.
    pub(crate) fn new(key: &'a K, window: Window, timing: Timing, is_last: bool) -> Self {
        Firing {
            key,
            window,
            timing,
            is_last,
        }
    }
}

/// What a window keeps of its panes from one firing to the next.
#[derive(Debug, Clone)]
pub(crate) struct Panes<V> {
    /// A record was added while the watermark was before the window's end, and no
    /// non-early pane was emitted since: the next non-early pane is on time.
    pub(crate) holding: bool,
    /// The next pane's number.
    pub(crate) index: u64,
    /// The value of the previous pane (retracting mode).
    pub(crate) last: Option<V>,
}

impl<V> Default for Panes<V> {
    fn default() -> Self {
        Panes {
            holding: false,
            index: 0,
            last: None,
        }
    }
}

impl<V: Clone> Panes<V> {
    /// The timing of the pane a firing emits, with the watermark past the window's end
    /// or not, if it emits one: a window emits unless no record arrived since its
    /// previous firing (`nonempty`) and the pane is not the on-time one.
    pub(crate) fn due(&self, past_end: bool, nonempty: bool) -> Option<Timing> {
        let timing = Timing::of(past_end, self.holding);
        (nonempty || timing == Timing::OnTime).then_some(timing)
    }

    /// Emits the pane of `value` at `firing`, at processing time `now`; when
    /// `retracting`, first the retractions of `merged` (the last values of windows merged
    /// into this one) and of the window's previous value. Numbers the pane, and a
    /// non-early pane ends holding. Returns how many panes it emitted.
    #[inline]
    pub(crate) fn emit<K: Clone>(
        &mut self,
        firing: Firing<'_, K>,
        (now, retracting): (Timestamp, bool),
        value: V,
        merged: Vec<(Window, V)>,
        out: &mut Output<Pane<K, V>>,
    ) -> u64 {
        let index = self.index;
        let pane = |window, value, retraction| Pane {
            key: firing.key.clone(),
            window,
            value,
            timing: firing.timing,
            index,
            is_last: firing.is_last,
            retraction,
            emit_time: now,
        };
        let mut panes = 1;
        if retracting {
            for (w, v) in merged {
                out.give(pane(w, v, true));
                panes += 1;
            }
            if let Some(previous) = self.last.take() {
                out.give(pane(firing.window, previous, true));
                panes += 1;
            }
            self.last = Some(value.clone());
        }
        out.give(pane(firing.window, value, false));
        self.index += 1;
        if firing.timing != Timing::Early {
            self.holding = false;
        }
        panes
    }
}

/// One output of non-keyed windows ([`WindowAll`](super::all::WindowAll)): a window's
/// value over all records at a firing, a [`Pane`] without a key.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = rkyv)]
pub struct AllPane<V> {
    /// The window.
    pub window: Window,
    /// The value (or the value being retracted).
    pub value: V,
    /// Early, on time or late.
    pub timing: Timing,
    /// The pane's number within its window, from 0.
    pub index: u64,
    /// True for the window's final pane.
    pub is_last: bool,
    /// True if this retracts `value`, emitted earlier for `window`.
    pub retraction: bool,
    /// Processing time of the firing.
    pub emit_time: Timestamp,
}

impl<V> From<Pane<(), V>> for AllPane<V> {
    fn from(p: Pane<(), V>) -> Self {
        AllPane {
            window: p.window,
            value: p.value,
            timing: p.timing,
            index: p.index,
            is_last: p.is_last,
            retraction: p.retraction,
            emit_time: p.emit_time,
        }
    }
}

/// The output of a Window Top-N ([`WindowedStream::top_by`](super::WindowedStream::top_by)):
/// per window, the keys at the largest value and that value, all of them when several tie.
pub type TopPane<K, V> = AllPane<Vec<(K, V)>>;

//! Slices: the state of tumbling and sliding windows, shared between the windows that
//! overlap.
//!
//! Time is cut into slices of `gcd(size, period)` ms on the windows' grid, so every window
//! is a run of whole slices and every record of a slice belongs to the same windows (the
//! "general stream slicing" of Traub et al., and Flink's slicing window aggregation). A
//! key keeps one accumulator per slice it has records in; a window's value is the merge of
//! its slices' accumulators when it fires. A record updates one accumulator instead of
//! `size / period` of them.
//!
//! What stays per window is what the Beam model needs to decide and describe panes: the
//! trigger's state, whether the window is holding, its pane index, its last value (for
//! retractions) and whether it closed. A window gets that state when its first record
//! arrives, as in the per-window operator.
//!
//! Discarding panes hold the records since the window's previous firing, but a slice is
//! shared by windows that fire at different times. So a key numbers its firings (`seq`),
//! a window remembers the number after its last firing (`cut`), and a slice keeps its
//! accumulator in *parts* by the firing number at which their first record arrived: a
//! discarding pane merges the parts from `cut` on. A new part starts only when some live
//! window of the slice has a cut that would split it; otherwise the slice keeps one part.
//! Whether a window received records since its last firing is a slice's `last_seq`
//! (the firing number at its newest record) compared with the window's cut.

use std::collections::VecDeque;

use rill_runtime::Timestamp;

use crate::window::state::KeyRecord;
use crate::window::trigger::NodeState;
use crate::window::{Window, Windows};

/// The slice grid of a tumbling or sliding window policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slicing {
    offset: i64,
    slice: i64,
    policy: Windows,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Slicing {
    /// The grid of `policy`, if it is tumbling or sliding (and valid).
    pub(crate) fn of(policy: Windows) -> Option<Slicing> {
        policy.validate().ok()?;
        let (size, period, offset) = match policy {
            Windows::Tumbling { size, offset } => (size, size, offset),
            Windows::Sliding {
                size,
                period,
                offset,
            } => (size, period, offset),
            _ => return None,
        };
        Some(Slicing {
            offset,
            slice: gcd(size, period),
            policy,
        })
    }

    /// The start of the slice holding time `t`.
    #[inline]
    pub(crate) fn slice_of(&self, t: Timestamp) -> Timestamp {
        t - (t - self.offset).rem_euclid(self.slice)
    }

    /// The windows holding time `t` (those of its slice), in ascending start order.
    pub(crate) fn windows_of(&self, t: Timestamp, out: &mut Vec<Window>) {
        self.policy.assign(t, out);
    }

    /// True if slice `s` lies in window `w`.
    #[inline]
    pub(crate) fn covers(w: Window, s: Timestamp) -> bool {
        w.start <= s && s < w.end
    }
}

/// Part of a slice's accumulator: the records that arrived from firing number `since` on
/// (and before the next part's).
#[derive(Debug, Clone)]
pub(crate) struct Part<A> {
    pub(crate) since: u64,
    pub(crate) acc: A,
}

/// One slice of a key.
#[derive(Debug, Clone)]
pub(crate) struct Slice<A> {
    pub(crate) start: Timestamp,
    /// The firing number at the newest record.
    pub(crate) last_seq: u64,
    pub(crate) first: Part<A>,
    /// Further parts, when firings split the slice (discarding mode only; usually none).
    pub(crate) more: Vec<Part<A>>,
}

impl<A> Slice<A> {
    pub(crate) fn parts(&self) -> impl Iterator<Item = &Part<A>> {
        std::iter::once(&self.first).chain(&self.more)
    }

    fn newest(&mut self) -> &mut Part<A> {
        self.more.last_mut().unwrap_or(&mut self.first)
    }
}

/// The pane state of one window of a key (its trigger state lives in
/// [`SlicedKey::triggers`]).
#[derive(Debug, Clone)]
pub(crate) struct PaneState<V> {
    pub(crate) window: Window,
    pub(crate) holding: bool,
    /// The trigger finished: the window takes no more records.
    pub(crate) closed: bool,
    pub(crate) index: u64,
    /// The key's firing number after this window's previous firing (0: never fired).
    pub(crate) cut: u64,
    /// The value of the previous pane (retracting mode).
    pub(crate) last: Option<V>,
}

/// A key's slices and windows.
#[derive(Debug, Clone)]
pub(crate) struct SlicedKey<A, V> {
    /// Slices with records that a live window covers, in ascending start order.
    pub(crate) slices: VecDeque<Slice<A>>,
    /// The windows that received records and are not garbage-collected yet.
    pub(crate) windows: Vec<PaneState<V>>,
    /// The trigger state of window `i`: `triggers[i * n..(i + 1) * n]` for a trigger of
    /// `n` nodes (one vector per key, so opening a window allocates nothing).
    pub(crate) triggers: Vec<NodeState>,
    /// Firings of this key's windows so far.
    pub(crate) seq: u64,
}

impl<A, V> Default for SlicedKey<A, V> {
    fn default() -> Self {
        SlicedKey {
            slices: VecDeque::new(),
            windows: Vec::new(),
            triggers: Vec::new(),
            seq: 0,
        }
    }
}

impl<A, V> SlicedKey<A, V> {
    /// The index of slice `start`, searched from the newest (where records usually go).
    #[inline]
    pub(crate) fn slice(&self, start: Timestamp) -> Option<usize> {
        self.slices.iter().rposition(|s| s.start == start)
    }

    /// The index of window `w`.
    pub(crate) fn window(&self, w: Window) -> Option<usize> {
        self.windows.iter().position(|e| e.window == w)
    }

    /// Window `i`'s trigger state (`n` nodes per window).
    pub(crate) fn trigger_mut(&mut self, i: usize, n: usize) -> &mut [NodeState] {
        &mut self.triggers[i * n..(i + 1) * n]
    }

    /// Window `i`'s trigger state (`n` nodes per window).
    pub(crate) fn trigger(&self, i: usize, n: usize) -> &[NodeState] {
        &self.triggers[i * n..(i + 1) * n]
    }

    /// Adds window `w` with a fresh trigger state; returns its index.
    pub(crate) fn open(&mut self, w: Window, holding: bool, fresh: &[NodeState]) -> usize {
        self.windows.push(PaneState {
            window: w,
            holding,
            closed: false,
            index: 0,
            cut: 0,
            last: None,
        });
        self.triggers.extend_from_slice(fresh);
        self.windows.len() - 1
    }

    /// Removes window `i` and the slices no remaining window covers.
    pub(crate) fn remove_window(&mut self, i: usize, n: usize) -> PaneState<V> {
        self.triggers.drain(i * n..(i + 1) * n);
        let e = self.windows.remove(i);
        // Windows are garbage-collected in end order and every live window of a slice
        // got its state when the slice did, so only slices before the earliest remaining
        // window can have become uncovered.
        match self.windows.iter().map(|w| w.window.start).min() {
            Some(first) => {
                while self.slices.front().is_some_and(|s| s.start < first) {
                    self.slices.pop_front();
                }
            }
            None => self.slices.clear(),
        }
        e
    }

    /// Whether window `i` received records since its previous firing.
    pub(crate) fn nonempty(&self, i: usize) -> bool {
        let e = &self.windows[i];
        self.slices
            .iter()
            .any(|s| Slicing::covers(e.window, s.start) && s.last_seq >= e.cut)
    }

    /// The firing happened: records from now on are after window `i`'s cut.
    pub(crate) fn fired(&mut self, i: usize) {
        self.seq += 1;
        self.windows[i].cut = self.seq;
    }

    /// Adds a record to slice `s` with `add`; `split` says whether discarding panes need
    /// the records after the last firing in a part of their own.
    #[inline]
    pub(crate) fn add_to(
        &mut self,
        s: usize,
        split: bool,
        create: impl FnOnce() -> A,
        add: impl FnOnce(&mut A),
    ) {
        let seq = self.seq;
        let slice = &mut self.slices[s];
        slice.last_seq = seq;
        let start = slice.start;
        let part = slice.newest();
        if part.since == seq || !split {
            add(&mut part.acc);
            return;
        }
        // A firing happened since the part began. It needs a part of its own only if a
        // live window of the slice has its cut inside the part; otherwise the part can
        // claim to start now.
        let since = part.since;
        let needed = self
            .windows
            .iter()
            .any(|w| !w.closed && w.cut > since && Slicing::covers(w.window, start));
        let slice = &mut self.slices[s];
        if needed {
            let mut acc = create();
            add(&mut acc);
            slice.more.push(Part { since: seq, acc });
        } else {
            let part = slice.newest();
            part.since = seq;
            add(&mut part.acc);
        }
    }

    /// Creates slice `start` holding `acc` (one record's worth); returns its index.
    pub(crate) fn insert_slice(&mut self, start: Timestamp, acc: A) -> usize {
        let at = self.slices.partition_point(|s| s.start < start);
        self.slices.insert(
            at,
            Slice {
                start,
                last_seq: self.seq,
                first: Part {
                    since: self.seq,
                    acc,
                },
                more: Vec::new(),
            },
        );
        at
    }
}

/// One window's part of a checkpoint: (window, holding, closed, pane index, cut, last
/// pane's value, trigger node states as (finished, flag, count, deadline)).
type WindowRecord<V> = (
    Window,
    bool,
    bool,
    u64,
    u64,
    Option<V>,
    Vec<(bool, bool, u64, Timestamp)>,
);

/// One key's part of a checkpoint, in the section "slices", version 1: (slices as (start,
/// last firing number, parts as (since, accumulator)), windows, firing number). Timers
/// are not written: a restore derives them from the windows and their triggers'
/// deadlines.
impl<A: Clone, V: Clone> KeyRecord for SlicedKey<A, V> {
    type Record = (
        Vec<(Timestamp, u64, Vec<(u64, A)>)>,
        Vec<WindowRecord<V>>,
        u64,
    );
    const SECTION: &'static str = "slices";
    const VERSION: u32 = 1;

    fn record(&self) -> Self::Record {
        let slices = self
            .slices
            .iter()
            .map(|s| {
                let parts = s.parts().map(|p| (p.since, p.acc.clone())).collect();
                (s.start, s.last_seq, parts)
            })
            .collect();
        let n = self.triggers.len() / self.windows.len().max(1);
        let windows = self
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let trigger = self.trigger(i, n).iter().map(|t| t.to_parts()).collect();
                let (index, cut, last) = (w.index, w.cut, w.last.clone());
                (w.window, w.holding, w.closed, index, cut, last, trigger)
            })
            .collect();
        (slices, windows, self.seq)
    }

    fn from_record((slices, windows, seq): Self::Record) -> Self {
        let slices = slices
            .into_iter()
            .filter_map(|(start, last_seq, parts)| {
                let mut parts = parts.into_iter().map(|(since, acc)| Part { since, acc });
                let first = parts.next()?;
                Some(Slice {
                    start,
                    last_seq,
                    first,
                    more: parts.collect(),
                })
            })
            .collect();
        let mut key = SlicedKey {
            slices,
            seq,
            ..SlicedKey::default()
        };
        for (window, holding, closed, index, cut, last, trigger) in windows {
            key.windows.push(PaneState {
                window,
                holding,
                closed,
                index,
                cut,
                last,
            });
            key.triggers
                .extend(trigger.into_iter().map(NodeState::from_parts));
        }
        key
    }
}

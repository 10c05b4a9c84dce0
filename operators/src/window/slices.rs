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
//! Slices live in a table keyed by `(key, slice start)` (Flink's keyed state with the slice
//! as namespace), placed by the key's group: a record's update is one probe of a compact
//! entry. What stays per key is what the Beam model needs to decide and describe panes,
//! per window: the trigger's state, whether the window is holding, its pane index, its last
//! value (for retractions) and whether it closed; and the starts of the key's slices. A
//! window gets that state when its first record arrives, as in the per-window operator.
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
use std::hash::Hash;

use rill_runtime::keys::key_group;
use rill_runtime::state::{Changes, KeyRecord, KeyedState, SharedKeyedState};
use rill_runtime::{hash_key, Timestamp};

use super::assigner::Windows;
use super::pane::{Panes, Window};
use super::trigger::NodeState;

/// The slice grid of a tumbling or sliding window policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slicing {
    size: i64,
    period: i64,
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
        let (size, period, offset) = policy.grid()?;
        Some(Slicing {
            size,
            period,
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

    /// The slice length.
    pub(crate) fn slice_len(&self) -> i64 {
        self.slice
    }

    /// The window length.
    pub(crate) fn size(&self) -> i64 {
        self.size
    }

    /// The end of the last window holding slice `s`, or `None` if no window holds it
    /// (sliding windows with gaps between them).
    #[inline]
    pub(crate) fn last_end(&self, s: Timestamp) -> Option<Timestamp> {
        let start = s - (s - self.offset).rem_euclid(self.period);
        let end = start.saturating_add(self.size);
        (end > s).then_some(end)
    }

    /// True if a window holding slice `s` ends after `t` (is still open when the
    /// windows ending at or before `t` have fired).
    pub(crate) fn open_after(&self, s: Timestamp, t: Timestamp) -> bool {
        self.last_end(s).is_some_and(|end| end > t)
    }

    /// The start of the first window that holds time `t` or a later one: the smallest
    /// window start greater than `t - size`.
    pub(crate) fn first_start_from(&self, t: Timestamp) -> Timestamp {
        let lo = t.saturating_sub(self.size).saturating_add(1);
        let since = (lo - self.offset).rem_euclid(self.period);
        if since == 0 {
            lo
        } else {
            lo.saturating_add(self.period - since)
        }
    }

    /// The period between window starts.
    pub(crate) fn period(&self) -> i64 {
        self.period
    }

    /// True if slice `s` lies in window `w`.
    #[inline]
    pub(crate) fn covers(w: Window, s: Timestamp) -> bool {
        w.start <= s && s < w.end
    }
}

/// A batch's records in runs of consecutive records in one slice: an operator looks a
/// slice's state up once per run, not once per record (time moves slowly against a
/// batch, so most of a batch is one run). The first record of the next run is read ahead
/// and kept for it.
pub(crate) struct SliceRuns<'s, I: Iterator, F> {
    records: I,
    time: F,
    slicing: &'s Slicing,
    /// The first record of the next run and its time, read ahead by the current one.
    next: Option<(I::Item, Timestamp)>,
    /// The current run's slice.
    slice: Timestamp,
}

impl<'s, I: Iterator, F: FnMut(&I::Item) -> Timestamp> SliceRuns<'s, I, F> {
    /// The runs of `records`, `time` giving each one's time.
    pub(crate) fn new(records: I, slicing: &'s Slicing, time: F) -> Self {
        SliceRuns {
            records,
            time,
            slicing,
            next: None,
            slice: Timestamp::MIN,
        }
    }

    /// Starts the next run: its slice and first record; `None` at the batch's end.
    #[inline]
    pub(crate) fn next_run(&mut self) -> Option<(Timestamp, I::Item)> {
        let (record, t) = match self.next.take() {
            Some(next) => next,
            None => {
                let r = self.records.next()?;
                let t = (self.time)(&r);
                (r, t)
            }
        };
        self.slice = self.slicing.slice_of(t);
        Some((self.slice, record))
    }

    /// The run's next record; `None` at its end (the record after it, in another slice,
    /// starts the next run).
    #[inline]
    pub(crate) fn next_in_run(&mut self) -> Option<I::Item> {
        if self.next.is_some() {
            return None;
        }
        let r = self.records.next()?;
        let t = (self.time)(&r);
        let (s, len) = (self.slice, self.slicing.slice);
        if s <= t && (t.wrapping_sub(s) as u64) < len as u64 {
            Some(r)
        } else {
            self.next = Some((r, t));
            None
        }
    }
}

/// Part of a slice's accumulator: the records that arrived from firing number `since` on
/// (and before the next part's).
#[derive(Debug, Clone)]
pub(crate) struct Part<A> {
    pub(crate) since: u64,
    pub(crate) acc: A,
}

/// One slice of a key: the entry of `(key, start)` in the slices table.
#[derive(Debug, Clone)]
pub(crate) struct Slice<A> {
    /// The key's firing number at the newest record that took the general path (a record
    /// on the fast path comes after no firing of the slice's windows, see `add_fast`).
    pub(crate) last_seq: u64,
    pub(crate) first: Part<A>,
    /// Further parts, when firings split the slice (discarding mode only; usually none).
    pub(crate) more: Vec<Part<A>>,
}

/// The key group of a slice: its key's (so a slice moves with its key on a restore).
pub(crate) fn slice_group<K: Hash>(slice: &(K, Timestamp)) -> u32 {
    key_group(hash_key(&slice.0))
}

/// A table keyed by (key, slice start or window end), placed by the key, shared with the
/// checkpoint being collected after its barrier (copy-on-write).
pub(crate) fn slice_table<K: Clone + Hash + Eq, V>(
    changes: Changes,
) -> SharedKeyedState<(K, Timestamp), V> {
    (KeyedState::with_changes(changes).grouped_by(slice_group::<K>)).into_shared()
}

impl<A> Slice<A> {
    /// A slice from its first part.
    pub(crate) fn new(seq: u64, acc: A) -> Self {
        Slice {
            last_seq: seq,
            first: Part { since: seq, acc },
            more: Vec::new(),
        }
    }

    pub(crate) fn parts(&self) -> impl Iterator<Item = &Part<A>> {
        std::iter::once(&self.first).chain(&self.more)
    }

    fn newest(&mut self) -> &mut Part<A> {
        self.more.last_mut().unwrap_or(&mut self.first)
    }

    /// Adds a record on the fast path: no window of the slice has fired (each is before
    /// its end, and the trigger does not fire before the end), so no part needs to begin.
    #[inline]
    pub(crate) fn add_fast(&mut self, add: impl FnOnce(&mut A)) {
        add(&mut self.newest().acc);
    }
}

/// The pane state of one window of a key (its trigger state lives in
/// [`KeyWindows::triggers`]).
#[derive(Debug, Clone)]
pub(crate) struct PaneState<V> {
    pub(crate) window: Window,
    pub(crate) panes: Panes<V>,
    /// The trigger finished: the window takes no more records.
    pub(crate) closed: bool,
    /// The key's firing number after this window's previous firing (0: never fired).
    pub(crate) cut: u64,
}

/// A key's windows and the starts of its slices.
#[derive(Debug, Clone)]
pub(crate) struct KeyWindows<V> {
    /// Starts of the slices with records that a live window covers, ascending.
    pub(crate) starts: VecDeque<Timestamp>,
    /// The windows that received records and are not garbage-collected yet.
    pub(crate) windows: Vec<PaneState<V>>,
    /// The trigger state of window `i`: `triggers[i * n..(i + 1) * n]` for a trigger of
    /// `n` nodes (one vector per key, so opening a window allocates nothing).
    pub(crate) triggers: Vec<NodeState>,
    /// Firings of this key's windows so far.
    pub(crate) seq: u64,
}

impl<V> Default for KeyWindows<V> {
    fn default() -> Self {
        KeyWindows {
            starts: VecDeque::new(),
            windows: Vec::new(),
            triggers: Vec::new(),
            seq: 0,
        }
    }
}

impl<V> KeyWindows<V> {
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
    pub(crate) fn open(&mut self, w: Window, fresh: &[NodeState]) -> usize {
        self.windows.push(PaneState {
            window: w,
            panes: Panes::default(),
            closed: false,
            cut: 0,
        });
        self.triggers.extend_from_slice(fresh);
        self.windows.len() - 1
    }

    /// Records that the key has slice `start`.
    pub(crate) fn add_start(&mut self, start: Timestamp) {
        let at = self.starts.partition_point(|&s| s < start);
        self.starts.insert(at, start);
    }

    /// The starts of the key's slices in window `w`.
    pub(crate) fn starts_in(&self, w: Window) -> impl Iterator<Item = Timestamp> + '_ {
        let from = self.starts.partition_point(|&s| s < w.start);
        self.starts
            .range(from..)
            .copied()
            .take_while(move |&s| s < w.end)
    }

    /// Removes window `i`; `dropped` gets the starts of the slices no remaining window
    /// covers.
    pub(crate) fn remove_window(&mut self, i: usize, n: usize, mut dropped: impl FnMut(Timestamp)) {
        self.triggers.drain(i * n..(i + 1) * n);
        self.windows.remove(i);
        // Windows are garbage-collected in end order and every live window of a slice
        // got its state when the slice did, so only slices before the earliest remaining
        // window can have become uncovered.
        let first = self.windows.iter().map(|w| w.window.start).min();
        while let Some(&s) = self.starts.front() {
            if first.is_some_and(|f| s >= f) {
                break;
            }
            self.starts.pop_front();
            dropped(s);
        }
    }

    /// The firing happened: records from now on are after window `i`'s cut.
    pub(crate) fn fired(&mut self, i: usize) {
        self.seq += 1;
        self.windows[i].cut = self.seq;
    }

    /// Adds a record to `slice` (starting at `start`) on the general path with `add`;
    /// `split` says whether discarding panes need the records after a firing in a part of
    /// their own.
    pub(crate) fn add_to<A>(
        &self,
        slice: &mut Slice<A>,
        start: Timestamp,
        split: bool,
        create: impl FnOnce() -> A,
        add: impl FnOnce(&mut A),
    ) {
        let seq = self.seq;
        slice.last_seq = seq;
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
}

/// One slice's checkpoint record: (last firing number, parts as (since, accumulator)), in
/// the section "slices", version 1.
impl<A: Clone> KeyRecord for Slice<A> {
    type Record = (u64, Vec<(u64, A)>);

    fn record(&self) -> Self::Record {
        let parts = self.parts().map(|p| (p.since, p.acc.clone())).collect();
        (self.last_seq, parts)
    }

    fn from_record((last_seq, parts): Self::Record) -> Self {
        let mut parts = parts.into_iter().map(|(since, acc)| Part { since, acc });
        let first = parts
            .next()
            .unwrap_or_else(|| unreachable!("a slice has a part"));
        Slice {
            last_seq,
            first,
            more: parts.collect(),
        }
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

/// One key's checkpoint record, in the section "sliced windows", version 1: (slice
/// starts, windows, firing number). Timers are not written: a restore derives them from
/// the windows and their triggers' deadlines.
impl<V: Clone> KeyRecord for KeyWindows<V> {
    type Record = (Vec<Timestamp>, Vec<WindowRecord<V>>, u64);

    fn record(&self) -> Self::Record {
        let n = self.triggers.len() / self.windows.len().max(1);
        let windows = self
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let trigger = self.trigger(i, n).iter().map(|t| t.to_parts()).collect();
                let (index, cut, last) = (w.panes.index, w.cut, w.panes.last.clone());
                (
                    w.window,
                    w.panes.holding,
                    w.closed,
                    index,
                    cut,
                    last,
                    trigger,
                )
            })
            .collect();
        (self.starts.iter().copied().collect(), windows, self.seq)
    }

    fn from_record((starts, windows, seq): Self::Record) -> Self {
        let mut key = KeyWindows {
            starts: starts.into(),
            seq,
            ..KeyWindows::default()
        };
        for (window, holding, closed, index, cut, last, trigger) in windows {
            key.windows.push(PaneState {
                window,
                panes: Panes {
                    holding,
                    index,
                    last,
                },
                closed,
                cut,
            });
            key.triggers
                .extend(trigger.into_iter().map(NodeState::from_parts));
        }
        key
    }
}

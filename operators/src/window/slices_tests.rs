//! The slice grid and a key's slices, against windows found by brute force (every window
//! start `offset + k * period` near the time, kept if it holds it), not by the assigner.

use proptest::prelude::*;
use rill_runtime::Timestamp;

use super::assigner::Windows;

#[path = "../../tests/oracle/brute.rs"]
mod brute;
use super::pane::Window;
use super::slices::{KeyWindows, Slice, Slicing};

/// The windows of `(size, period, offset)` that hold `t`, in ascending start order.
fn brute_windows(size: i64, period: i64, offset: i64, t: Timestamp) -> Vec<Window> {
    brute::windows_of(policy(size, period, offset), t)
}

fn policy(size: i64, period: i64, offset: i64) -> Windows {
    if size == period {
        Windows::Tumbling { size, offset }
    } else {
        Windows::Sliding {
            size,
            period,
            offset,
        }
    }
}

fn grid() -> impl Strategy<Value = (i64, i64, i64, i64)> {
    (1i64..40, 1i64..40, -50i64..50, -500i64..500)
}

proptest! {
    /// A slice is a run of the grid, and every record of a slice belongs to the same
    /// windows: exactly those that cover the slice.
    #[test]
    fn a_slice_belongs_to_exactly_its_records_windows((size, period, offset, t) in grid()) {
        let s = Slicing::of(policy(size, period, offset)).expect("tumbling or sliding");
        let start = s.slice_of(t);
        let len = s.slice_len();
        prop_assert!(start <= t && t < start + len);
        prop_assert_eq!((start - offset).rem_euclid(len), 0);
        prop_assert_eq!(size % len, 0);
        prop_assert_eq!(period % len, 0);
        let windows = brute_windows(size, period, offset, t);
        let mut assigned = Vec::new();
        s.windows_of(t, &mut assigned);
        prop_assert_eq!(&assigned, &windows);
        for u in start..start + len {
            prop_assert_eq!(&brute_windows(size, period, offset, u), &windows);
        }
        for w in &windows {
            prop_assert!(Slicing::covers(*w, start));
        }
    }

    /// The end of the last window holding a slice (none in a gap between sliding windows),
    /// and whether a window of it is still open after a time.
    #[test]
    fn the_last_window_of_a_slice((size, period, offset, t) in grid(), after in -600i64..600) {
        let s = Slicing::of(policy(size, period, offset)).expect("tumbling or sliding");
        let start = s.slice_of(t);
        let last = brute_windows(size, period, offset, start).iter().map(|w| w.end).max();
        prop_assert_eq!(s.last_end(start), last);
        prop_assert_eq!(s.open_after(start, after), last.is_some_and(|e| e > after));
    }

    /// The first window start that holds a time or a later one.
    #[test]
    fn the_first_window_from_a_time((size, period, offset, t) in grid()) {
        let s = Slicing::of(policy(size, period, offset)).expect("tumbling or sliding");
        // The first window of a later time `u` that holds `u`, over the times from `t` on.
        let want = (t..t + size + period)
            .flat_map(|u| brute_windows(size, period, offset, u))
            .map(|w| w.start)
            .min()
            .expect("a start");
        prop_assert_eq!(s.first_start_from(t), want);
    }
}

#[test]
fn only_tumbling_and_sliding_windows_have_a_grid() {
    assert!(Slicing::of(Windows::session(10)).is_none());
    assert!(Slicing::of(Windows::count(3)).is_none());
    assert!(Slicing::of(Windows::tumbling(0)).is_none());
    let s = Slicing::of(Windows::sliding(10, 4)).expect("sliding");
    assert_eq!((s.slice_len(), s.size(), s.period()), (2, 10, 4));
}

/// A key's slices stay sorted; a window reads the slices it covers; removing the earliest
/// window drops the slices no other window covers.
#[test]
fn a_keys_slices_follow_its_windows() {
    let mut key: KeyWindows<u64> = KeyWindows::default();
    for start in [20, 0, 10, 30] {
        key.add_start(start);
    }
    assert_eq!(key.starts, [0, 10, 20, 30]);
    let (a, b) = (Window::new(0, 20), Window::new(10, 30));
    assert_eq!((key.open(a, &[]), key.open(b, &[])), (0, 1));
    assert_eq!(key.starts_in(b).collect::<Vec<_>>(), [10, 20]);
    assert_eq!(key.window(b), Some(1));
    let mut dropped = Vec::new();
    key.remove_window(0, 0, |s| dropped.push(s));
    assert_eq!(dropped, [0]);
    assert_eq!(key.starts, [10, 20, 30]);
    key.remove_window(0, 0, |s| dropped.push(s));
    assert_eq!(dropped, [0, 10, 20, 30]);
    assert!(key.starts.is_empty() && key.windows.is_empty());
}

/// In discarding mode a slice starts a new part after a firing only if a live window of
/// the slice fired (its cut lies inside the newest part); without a split, never.
#[test]
fn a_firing_splits_a_slice_only_for_a_window_that_covers_it() {
    let mut key: KeyWindows<u64> = KeyWindows::default();
    let (early, late) = (Window::new(0, 20), Window::new(10, 30));
    key.open(early, &[]);
    key.open(late, &[]);
    let mut slice = Slice::new(key.seq, 1u64);
    // `early` fired: records of slice 10 after it go to a part of their own (a
    // discarding pane reads the parts from its window's cut on).
    key.fired(0);
    key.add_to(&mut slice, 10, true, || 0, |a| *a += 2);
    let parts: Vec<(u64, u64)> = slice.parts().map(|p| (p.since, p.acc)).collect();
    assert_eq!(parts, [(0, 1), (1, 2)]);
    assert_eq!(slice.last_seq, 1);
    // Another firing, of a window that does not cover slice 30: no new part.
    let mut other = Slice::new(key.seq, 5u64);
    key.fired(1);
    key.add_to(&mut other, 30, true, || 0, |a| *a += 1);
    let parts: Vec<(u64, u64)> = other.parts().map(|p| (p.since, p.acc)).collect();
    assert_eq!(parts, [(2, 6)]);
    // Without splitting (accumulating panes) the newest part takes every record.
    key.add_to(&mut slice, 10, false, || 0, |a| *a += 4);
    let parts: Vec<(u64, u64)> = slice.parts().map(|p| (p.since, p.acc)).collect();
    assert_eq!(parts, [(0, 1), (1, 6)]);
}

//! Window assignment by brute force: a record at `t` belongs to every window
//! `[start, start + size)` with `start = offset + k * period` that holds `t`. Shared by the
//! oracles of `operators/tests` and the unit tests of the slice grid
//! (`src/window/slices_tests.rs`); it shares no code with the assigner it checks
//! (`Windows::assign`). The including module brings `Window`, `Windows` and `Timestamp`
//! into scope.

use super::{Timestamp, Window, Windows};

/// The windows of `windows` (tumbling, sliding or global) that hold `t`, in ascending
/// start order.
pub fn windows_of(windows: Windows, t: Timestamp) -> Vec<Window> {
    if windows == Windows::Global {
        return vec![Window::GLOBAL];
    }
    let (size, period, offset) = windows.grid().expect("tumbling or sliding windows");
    // Every start from one before the earliest that can hold `t` to one after `t`.
    let first = (t - size - offset).div_euclid(period) - 1;
    let last = (t - offset).div_euclid(period) + 1;
    (first..=last)
        .map(|k| offset + k * period)
        .filter(|&start| start <= t && t < start + size)
        .map(|start| Window::new(start, start + size))
        .collect()
}

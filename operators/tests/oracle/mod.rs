//! Window assignment by brute force, for the oracles: a record at `t` belongs to every
//! window `[start, start + size)` with `start = offset + k * period` that holds `t`. It
//! shares no code with the assigner it checks (`Windows::assign`).

use rill_operators::window::{Window, Windows};
use rill_runtime::Timestamp;

/// The windows of `windows` (tumbling, sliding or global) that hold `t`, in ascending
/// start order.
pub fn windows_of(windows: Windows, t: Timestamp) -> Vec<Window> {
    let (size, period, offset) = match windows {
        Windows::Tumbling { size, offset } => (size, size, offset),
        Windows::Sliding {
            size,
            period,
            offset,
        } => (size, period, offset),
        Windows::Global => return vec![Window::GLOBAL],
        other => panic!("no brute-force assignment for {other:?}"),
    };
    // Every start from one before the earliest that can hold `t` to one after `t`.
    let first = (t - size - offset).div_euclid(period) - 1;
    let last = (t - offset).div_euclid(period) + 1;
    (first..=last)
        .map(|k| offset + k * period)
        .filter(|&start| start <= t && t < start + size)
        .map(|start| Window::new(start, start + size))
        .collect()
}

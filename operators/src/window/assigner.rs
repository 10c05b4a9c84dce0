//! Window assigners: which windows a record belongs to.
//!
//! Time windows are half-open `[start, end)` in milliseconds. Fixed (tumbling) windows
//! align to the epoch shifted by an offset; sliding windows have a size and a period, so a
//! record belongs to `size / period` of them; session windows start as `[t, t + gap)` and
//! merge with the key's windows they overlap; the global window spans all time. Count
//! windows group a key's records by arrival ordinal: record `k` (from 0) of a key belongs
//! to every window `[e - size, e)` whose end `e` is a multiple of `step` with
//! `e - size <= k < e` (Flink's `countWindow(size, slide)`; tumbling when `step == size`).
//! A count window ends when its last record arrives, or when the input ends.

use rill_runtime::Timestamp;

use super::pane::Window;

/// A window assignment policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Fixed windows of `size` ms, aligned to the epoch plus `offset`.
    Tumbling {
        /// Window length in ms.
        size: i64,
        /// Shift of the window grid in ms, in `0..size`.
        offset: i64,
    },
    /// Windows of `size` ms starting every `period` ms (plus `offset`).
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        period: i64,
        /// Shift of the window grid in ms.
        offset: i64,
    },
    /// Session windows that close after `gap` ms without records.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
    /// Count windows of `size` records, one starting every `step` records.
    Count {
        /// Records per window.
        size: u64,
        /// Records between window ends.
        step: u64,
    },
    /// One window for all time.
    Global,
}

impl Windows {
    /// Tumbling windows of `size` ms.
    pub fn tumbling(size: i64) -> Windows {
        Windows::Tumbling { size, offset: 0 }
    }

    /// Sliding windows of `size` ms every `period` ms.
    pub fn sliding(size: i64, period: i64) -> Windows {
        Windows::Sliding {
            size,
            period,
            offset: 0,
        }
    }

    /// Session windows with an inactivity `gap` in ms.
    pub fn session(gap: i64) -> Windows {
        Windows::Session { gap }
    }

    /// Tumbling count windows of `size` records.
    pub fn count(size: u64) -> Windows {
        Windows::Count { size, step: size }
    }

    /// Sliding count windows: the last `size` records, every `step` records.
    pub fn sliding_count(size: u64, step: u64) -> Windows {
        Windows::Count { size, step }
    }

    /// Checks the parameters: the first problem found.
    ///
    /// ```
    /// use rill_operators::window::Windows;
    /// assert!(Windows::sliding(10_000, 2_000).validate().is_ok());
    /// let err = Windows::session(0).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "session gap must be > 0");
    /// ```
    pub fn validate(&self) -> Result<(), InvalidWindows> {
        let problem = match *self {
            Windows::Tumbling { size, .. } if size <= 0 => "window size must be > 0",
            Windows::Sliding { size, period, .. } if size <= 0 || period <= 0 => {
                "sliding window size and period must be > 0"
            }
            Windows::Session { gap } if gap <= 0 => "session gap must be > 0",
            Windows::Count { size, step } if size == 0 || step == 0 => {
                "count window size and step must be > 0"
            }
            _ => return Ok(()),
        };
        Err(InvalidWindows(problem))
    }

    /// The size, period and offset of tumbling (period = size) or sliding windows; `None`
    /// for other windows.
    pub fn grid(&self) -> Option<(i64, i64, i64)> {
        match *self {
            Windows::Tumbling { size, offset } => Some((size, size, offset)),
            Windows::Sliding {
                size,
                period,
                offset,
            } => Some((size, period, offset)),
            _ => None,
        }
    }

    /// True for session windows, whose windows merge.
    pub fn is_merging(&self) -> bool {
        matches!(self, Windows::Session { .. })
    }

    /// True for count windows.
    pub fn is_count(&self) -> bool {
        matches!(self, Windows::Count { .. })
    }

    /// Appends the windows of a record at time `t` (the key's arrival ordinal for count
    /// windows), in ascending order of start. Sessions give the unmerged `[t, t + gap)`.
    pub fn assign(&self, t: Timestamp, out: &mut Vec<Window>) {
        match *self {
            Windows::Tumbling { size, offset } => {
                let start = t - (t - offset).rem_euclid(size);
                out.push(Window::new(start, start.saturating_add(size)));
            }
            Windows::Sliding {
                size,
                period,
                offset,
            } => {
                let last = t - (t - offset).rem_euclid(period);
                let mut start = last - (size - 1) / period * period;
                while start <= last {
                    if start.saturating_add(size) > t {
                        out.push(Window::new(start, start.saturating_add(size)));
                    }
                    start += period;
                }
            }
            Windows::Session { gap } => out.push(Window::new(t, t.saturating_add(gap))),
            Windows::Count { size, step } => {
                let (k, size, step) = (t, size as i64, step as i64);
                // Ends e: multiples of step with k < e <= k + size.
                let mut end = (k / step + 1) * step;
                while end <= k + size {
                    out.push(Window::new(end - size, end));
                    end += step;
                }
            }
            Windows::Global => out.push(Window::GLOBAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(w: Windows, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        w.assign(t, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_and_offset() {
        assert_eq!(windows(Windows::tumbling(10), 15), vec![(10, 20)]);
        assert_eq!(windows(Windows::tumbling(10), -1), vec![(-10, 0)]);
        let w = Windows::Tumbling {
            size: 10,
            offset: 3,
        };
        assert_eq!(windows(w, 12), vec![(3, 13)]);
        assert_eq!(windows(w, 13), vec![(13, 23)]);
    }

    #[test]
    fn sliding_windows_cover_the_record() {
        assert_eq!(
            windows(Windows::sliding(10, 5), 12),
            vec![(5, 15), (10, 20)]
        );
        assert_eq!(
            windows(Windows::sliding(10, 3), 0),
            vec![(-9, 1), (-6, 4), (-3, 7), (0, 10)]
        );
        for t in -50..50 {
            for (s, e) in windows(Windows::sliding(10, 3), t) {
                assert!(s <= t && t < e && s.rem_euclid(3) == 0 && e - s == 10);
            }
            assert_eq!(windows(Windows::sliding(9, 3), t).len(), 3);
        }
    }

    #[test]
    fn count_windows() {
        assert_eq!(windows(Windows::count(3), 4), vec![(3, 6)]);
        assert_eq!(
            windows(Windows::sliding_count(4, 2), 0),
            vec![(-2, 2), (0, 4)]
        );
        assert_eq!(
            windows(Windows::sliding_count(4, 2), 3),
            vec![(0, 4), (2, 6)]
        );
    }
}

/// Window parameters no window can be built from (see [`Windows::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidWindows(pub &'static str);

impl std::fmt::Display for InvalidWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidWindows {}

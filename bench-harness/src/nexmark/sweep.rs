//! The sustainable-throughput search (Karimov et al., ICDE 2018): the highest rate at
//! which the generator stays on its schedule and latency does not grow through the run.
//!
//! Starting from a low rate, each trial runs the query open loop for a fixed time. The
//! rate doubles until a trial is not sustainable, then the interval between the last
//! sustainable rate and the first unsustainable one is bisected. Finally the query runs
//! at 25, 50, 75 and 100 % of the maximum to show latency against load.

use std::time::Duration;

use super::run::RunOutcome;

/// Whether a trial kept up, and why not.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// True if the rate is sustainable.
    pub sustainable: bool,
    /// What decided it.
    pub reason: String,
}

/// Judges an open-loop trial that was scheduled to last `scheduled`.
///
/// Not sustainable if the slowest source emitted its last event more than
/// max(50 ms, 1 % of the run) behind schedule, or if latency grew through the run: the
/// p95 of the last quarter with samples exceeds twice the first quarter's plus 1 ms.
pub fn judge(outcome: &RunOutcome, scheduled: Duration) -> Verdict {
    let lag_limit = Duration::from_millis(50).max(scheduled / 100);
    if outcome.end_lag > lag_limit {
        return Verdict {
            sustainable: false,
            reason: format!(
                "generator fell behind by {:.1?} (limit {lag_limit:.0?})",
                outcome.end_lag
            ),
        };
    }
    if let Some(phases) = &outcome.phases {
        let p95: Vec<u64> = phases
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.95))
            .collect();
        if let (Some(&first), Some(&last)) = (p95.first(), p95.last()) {
            if p95.len() >= 2 && last > 2 * first + 1_000_000 {
                return Verdict {
                    sustainable: false,
                    reason: format!(
                        "latency grew: p95 {} in the first quarter with results, {} in the last",
                        crate::latency::fmt_ns(first),
                        crate::latency::fmt_ns(last)
                    ),
                };
            }
        }
    }
    Verdict {
        sustainable: true,
        reason: format!("kept schedule (end lag {:.1?})", outcome.end_lag),
    }
}

/// How a sweep searches.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// The first rate tried (events/s).
    pub start_rate: u64,
    /// Never try above this rate.
    pub max_rate: u64,
    /// Bisection steps after the doubling phase.
    pub bisections: u32,
}

/// The search: doubling, then bisection. `trial(rate)` runs one open-loop trial and
/// says whether it was sustainable. Returns the highest sustainable rate found (0 if even
/// `start_rate` was not) and every trial in order.
pub fn search<T, E>(
    plan: &SweepPlan,
    mut trial: impl FnMut(u64) -> Result<(bool, T), E>,
) -> Result<(u64, Vec<T>), E> {
    let mut trials = Vec::new();
    let mut good = 0u64;
    let mut bad: Option<u64> = None;
    let mut rate = plan.start_rate.max(1);
    while rate <= plan.max_rate {
        let (ok, t) = trial(rate)?;
        trials.push(t);
        if !ok {
            bad = Some(rate);
            break;
        }
        good = rate;
        rate = rate.saturating_mul(2);
    }
    let Some(mut bad) = bad else {
        return Ok((good, trials));
    };
    for _ in 0..plan.bisections {
        let mid = good + (bad - good) / 2;
        if mid <= good || mid >= bad {
            break;
        }
        let (ok, t) = trial(mid)?;
        trials.push(t);
        if ok {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok((good, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(capacity: u64, plan: &SweepPlan) -> (u64, Vec<u64>) {
        search::<u64, ()>(plan, |rate| Ok((rate <= capacity, rate))).unwrap()
    }

    #[test]
    fn doubling_then_bisection_brackets_the_capacity() {
        let plan = SweepPlan {
            start_rate: 1_000,
            max_rate: 1 << 40,
            bisections: 5,
        };
        let (good, tried) = find(37_000, &plan);
        assert_eq!(
            &tried[..7],
            &[1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000]
        );
        assert_eq!(tried.len(), 12);
        // Five halvings of the 32K..64K bracket leave 1K of uncertainty.
        assert!((36_000..=37_000).contains(&good), "{good}");
    }

    #[test]
    fn stops_at_the_cap_and_reports_zero_when_nothing_keeps_up() {
        let plan = SweepPlan {
            start_rate: 1_000,
            max_rate: 10_000,
            bisections: 3,
        };
        assert_eq!(
            find(u64::MAX, &plan),
            (8_000, vec![1_000, 2_000, 4_000, 8_000])
        );
        assert_eq!(find(10, &plan).0, 0);
    }
}

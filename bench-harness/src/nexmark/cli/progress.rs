//! A progress bar for long interactive runs.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::report::fmt_rate;
use crate::latency::{fmt_ns, new_histogram};
use crate::nexmark::run::{run, Live, RunError, RunOutcome, RunSpec};

/// Runs one spec with a progress bar on long interactive runs.
pub(super) fn run_with_progress(
    spec: &RunSpec,
    quiet: bool,
    label: &str,
) -> Result<RunOutcome, RunError> {
    let live = Live::default();
    let expected = spec
        .rate
        .map(|r| spec.events as f64 / r as f64)
        .unwrap_or(spec.events as f64 / 5e6);
    let show = !quiet && std::io::stderr().is_terminal() && expected >= 2.0;
    let bar = if show {
        let bar = ProgressBar::new(spec.events);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut last = (started, 0u64);
    let outcome = run(spec, &live, || {
        let Some(bar) = &bar else { return };
        let emitted = live.sources.emitted.load(Ordering::Relaxed);
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt < 0.25 {
            return;
        }
        let rate = (emitted - last.1) as f64 / dt;
        last = (now, emitted);
        let p95 = live
            .latency
            .lock()
            .ok()
            .and_then(|h| {
                let h = h.as_ref()?;
                let mut all = new_histogram();
                for p in h.iter() {
                    all.add(p).ok()?;
                }
                (!all.is_empty()).then(|| all.value_at_quantile(0.95))
            })
            .map_or(String::new(), |p| format!(", p95 {}", fmt_ns(p)));
        bar.set_position(emitted);
        bar.set_message(format!("{} events/s{p95}", fmt_rate(rate)));
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

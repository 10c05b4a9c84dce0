//! Charts of `run` and `sweep` (SVG and PNG): the latency distribution and, for a sweep,
//! latency against rate.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::report::fmt_rate;
use crate::nexmark::run::RunOutcome;
use crate::nexmark::sweep::Verdict;
use crate::plot::{self, PlotError, RatePoint};

/// One run's latency distribution, or a note on stderr when it measured none.
pub(super) fn plot_run(dir: &Path, o: &RunOutcome) -> Result<(), PlotError> {
    let h = o.latency_histogram();
    let series: Vec<(String, &Histogram<u64>)> = h
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| (fmt_rate(o.rate.unwrap_or(0) as f64) + " events/s", h))
        .collect();
    if series.is_empty() {
        eprintln!("rill-bench: no latency samples to plot (use --rate for an open-loop run)");
        return Ok(());
    }
    write_plots(dir, &o.query.to_string(), &series, &[])
}

/// A sweep's latency against rate (every trial and level) and its levels' distributions.
pub(super) fn plot_sweep(
    dir: &Path,
    query: &str,
    trials: &[(RunOutcome, Verdict)],
    levels: &[(u32, RunOutcome, Verdict)],
) -> Result<(), PlotError> {
    let mut points: Vec<RatePoint> = trials
        .iter()
        .map(|(o, v)| (o, v))
        .chain(levels.iter().map(|(_, o, v)| (o, v)))
        .filter_map(|(o, v)| {
            let l = o.latency()?;
            Some(RatePoint {
                rate: o.rate? as f64,
                p50_ns: l.p50,
                p95_ns: l.p95,
                p99_ns: l.p99,
                p999_ns: l.p999,
                sustainable: v.sustainable,
            })
        })
        .collect();
    points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let hists: Vec<(u32, Histogram<u64>)> = levels
        .iter()
        .filter_map(|(p, o, _)| Some((*p, o.latency_histogram().filter(|h| !h.is_empty())?)))
        .collect();
    let series: Vec<(String, &Histogram<u64>)> = hists
        .iter()
        .map(|(p, h)| (format!("{p} % of max"), h))
        .collect();
    write_plots(dir, query, &series, &points)
}

/// Writes the charts named `<query>-cdf` and `<query>-rate` into `dir`, and says so.
fn write_plots(
    dir: &Path,
    query: &str,
    series: &[(String, &Histogram<u64>)],
    points: &[RatePoint],
) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    if !series.is_empty() {
        files.extend(plot::latency_cdf(
            series,
            &format!("{query}: latency distribution"),
            dir,
            &format!("{query}-cdf"),
        )?);
    }
    if !points.is_empty() {
        files.extend(plot::latency_vs_rate(
            points,
            &format!("{query}: latency against rate"),
            dir,
            &format!("{query}-rate"),
        )?);
    }
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

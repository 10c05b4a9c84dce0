//! The profile table: where a job's time went, per operator instance and per shard.

use std::fmt;
use std::time::Duration;

use super::JobReport;

/// A [`JobReport`] shown as a profile ([`JobReport::profile`]): one line per operator and
/// shard (records in and out, busy time and its share of the shard's wall time, watermark
/// lag), then one line per shard (busy, of which in operators, idle, backpressured and
/// checkpoint time, against the wall time).
#[derive(Debug, Clone, Copy)]
pub struct Profile<'a>(pub(super) &'a JobReport);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn share(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        100.0 * part.as_secs_f64() / whole.as_secs_f64()
    }
}

impl fmt::Display for Profile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if !r.profiled {
            writeln!(
                f,
                "(times not measured: the job ran with Config::profile(false))"
            )?;
        }
        let w = (r.operators.iter().map(|o| o.name.len()))
            .max()
            .unwrap_or(0)
            .max(24);
        writeln!(
            f,
            "{:<w$} {:>5} {:>14} {:>14} {:>11} {:>6} {:>13}",
            "operator", "shard", "records in", "records out", "busy ms", "busy%", "wm lag ms"
        )?;
        for op in &r.operators {
            for shard in 0..op.records.len() {
                let busy = op.busy.get(shard).copied().unwrap_or_default();
                let wall = r.shards.get(shard).map_or(r.elapsed, |s| s.wall);
                let lag = match op.watermark_lag_ms.get(shard).copied().flatten() {
                    Some(l) => l.to_string(),
                    None => "-".to_string(),
                };
                writeln!(
                    f,
                    "{:<w$} {:>5} {:>14} {:>14} {:>11.1} {:>6.1} {:>13}",
                    op.name,
                    shard,
                    op.records[shard],
                    op.records_out.get(shard).copied().unwrap_or(0),
                    ms(busy),
                    share(busy, wall),
                    lag
                )?;
            }
        }
        writeln!(
            f,
            "{:>5} {:>10} {:>10} {:>10} {:>10} {:>14} {:>11} {:>8}",
            "shard",
            "wall ms",
            "busy ms",
            "in ops ms",
            "idle ms",
            "backpressured",
            "checkpoint",
            "sum %"
        )?;
        for s in &r.shards {
            let in_ops: Duration = r.operators.iter().filter_map(|o| o.busy.get(s.shard)).sum();
            writeln!(
                f,
                "{:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>14.1} {:>11.1} {:>8.1}",
                s.shard,
                ms(s.wall),
                ms(s.busy),
                ms(in_ops),
                ms(s.idle),
                ms(s.backpressured),
                ms(s.checkpoint),
                share(s.accounted(), s.wall)
            )?;
        }
        Ok(())
    }
}

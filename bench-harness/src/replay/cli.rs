//! The `rill-bench replay` command: options, reading the log, writing the panes as CSV.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::csv_format::push_record;
use crate::replay::parse::{
    format_time, parse_accumulation, parse_aggregate, parse_duration, parse_input, parse_trigger,
    parse_watermark, parse_window, write_input_row, AccumulationSpec, AggregateSpec, Millis, Row,
    TimeFormat, TriggerSpec, WatermarkSpec, WindowSpec,
};
use crate::replay::run::{replay, ReplayJob, ReplayOutput};

/// Replays a recorded event log through one keyed windowed aggregation, on a simulated
/// processing-time clock, and prints one CSV row per emitted pane.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The event log (CSV rows `event,...`, `watermark,...`, `advance,...`); stdin if absent.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// fixed:<dur>[,offset=<dur>] | sliding:<size>,<period> | session:<gap> | count:<n> |
    /// sliding-count:<n>,<step> | global
    #[arg(long, value_parser = parse_window)]
    pub window: WindowSpec,
    /// watermark | watermark(early=<t>, late=<t>) | count(<n>) | processing(delay=<dur>) |
    /// processing(align=<dur>[, offset=<time>]) | punctuation | repeat(<t>) | all(<t>, ...) |
    /// any(<t>, ...) | seq(<t>, ...) | until(<t>, <t>)
    #[arg(long, value_parser = parse_trigger, default_value = "watermark")]
    pub trigger: TriggerSpec,
    /// discarding | accumulating | retracting
    #[arg(long, value_parser = parse_accumulation, default_value = "discarding")]
    pub accumulation: AccumulationSpec,
    /// Allowed lateness, e.g. 0, 500ms, 10s.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub lateness: Millis,
    /// sum | count | min | max
    #[arg(long, value_parser = parse_aggregate, default_value = "sum")]
    pub aggregate: AggregateSpec,
    /// explicit | perfect | bounded:<dur>
    #[arg(long, value_parser = parse_watermark, default_value = "explicit")]
    pub watermark: WatermarkSpec,
    /// Shards to run on (the output is the same for any count, up to the order of rows
    /// between keys).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,
    /// Write records dropped beyond the allowed lateness here, as input rows.
    #[arg(long)]
    pub late_output: Option<PathBuf>,
}

/// Runs `rill-bench replay`: 0 on success, 2 for bad input, 1 if the job failed.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let text = match read_input(args) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("rill-bench replay: {e}");
            return ExitCode::from(2);
        }
    };
    let input = match parse_input(&text) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("rill-bench replay: {e}");
            return ExitCode::from(2);
        }
    };
    let job = ReplayJob {
        rows: input.rows.into_iter().map(|(_, row)| row).collect(),
        window: args.window,
        trigger: args.trigger.clone(),
        accumulation: args.accumulation,
        lateness: args.lateness,
        aggregate: args.aggregate,
        watermark: args.watermark,
        shards: usize::from(args.shards),
    };
    let output = match replay(&job) {
        Ok(output) => output,
        Err(e) => {
            eprintln!("rill-bench replay: the job failed: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.late_output {
        if let Err(e) = std::fs::write(path, late_csv(&output, input.format)) {
            eprintln!("rill-bench replay: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let counted = matches!(
        args.window,
        WindowSpec::Count { .. } | WindowSpec::SlidingCount { .. }
    );
    let csv = panes_csv(&output, input.format, counted);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(csv.as_bytes())
        .and_then(|_| stdout.flush())
    {
        eprintln!("rill-bench replay: cannot write the output: {e}");
        return ExitCode::from(1);
    }
    if !output.late.is_empty() || output.dropped_closed > 0 {
        eprintln!(
            "rill-bench replay: dropped {} record(s) beyond the allowed lateness{} and {} for windows whose trigger had finished",
            output.late.len(),
            if args.late_output.is_some() { " (written to --late-output)" } else { "" },
            output.dropped_closed
        );
    }
    ExitCode::SUCCESS
}

fn read_input(args: &ReplayArgs) -> Result<String, String> {
    match &args.input {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(text)
        }
    }
}

/// The panes as CSV with a header. Count windows print their bounds as record ordinals.
pub fn panes_csv(output: &ReplayOutput, format: TimeFormat, counted: bool) -> String {
    let bound = |t: Millis| {
        if counted {
            t.to_string()
        } else {
            format_time(t, format)
        }
    };
    let mut csv = Vec::new();
    push_record(&mut csv, PANES_HEADER);
    for p in &output.panes {
        let record = [
            p.key.clone(),
            bound(p.window.start),
            bound(p.window.end),
            p.value.to_string(),
            p.timing.as_str().to_string(),
            p.index.to_string(),
            p.is_last.to_string(),
            format_time(p.emit_time, format),
            if p.retraction { "-" } else { "+" }.to_string(),
        ];
        push_record(&mut csv, record);
    }
    String::from_utf8_lossy(&csv).into_owned()
}

/// The columns of [`panes_csv`].
const PANES_HEADER: [&str; 9] = [
    "key",
    "window_start",
    "window_end",
    "value",
    "timing",
    "pane_index",
    "is_last",
    "emit_time",
    "kind",
];

fn late_csv(output: &ReplayOutput, format: TimeFormat) -> String {
    let mut csv = String::new();
    for e in &output.late {
        let row = Row::Event {
            key: e.key.clone(),
            value: e.value,
            event_time: e.event_time,
            arrival: e.arrival,
            punct: e.punct,
        };
        csv.push_str(&write_input_row(&row, format));
        csv.push('\n');
    }
    csv
}

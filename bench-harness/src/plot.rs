//! Charts of benchmark results, written as SVG (for documents) and PNG (for a quick look).
//!
//! Two charts answer the questions a latency benchmark asks. A *rate sweep* runs the
//! workload open loop at increasing target rates; [`latency_vs_rate`] draws the median and
//! tail latencies of each run against its rate, with the runs the system could not keep up
//! with marked apart, so the knee where latency takes off is plain to see. A *latency
//! distribution* shows one run, or several side by side: [`latency_cdf`] draws the classic
//! HdrHistogram percentile distribution, where the tail gets as much room as the median.
//!
//! Latencies go on a logarithmic axis in both charts, because medians and tails of a
//! streaming system are often orders of magnitude apart. Each chart is written twice, as
//! `DIR/STEM.svg` and `DIR/STEM.png`, and the paths are returned.
//!
//! Drawing needs nothing from the system: text is laid out with an embedded copy of
//! DejaVu Sans (`assets/DejaVuSans.ttf`, under the license beside it) and PNGs are encoded
//! in pure Rust, so the charts come out the same on any machine with a Rust toolchain.
//!
//! ```no_run
//! use std::path::Path;
//! use rill_bench::plot::{latency_vs_rate, RatePoint};
//!
//! let sweep = [
//!     RatePoint { rate: 1e6, p50_ns: 20_000, p95_ns: 40_000, p99_ns: 60_000, p999_ns: 90_000, sustainable: true },
//!     RatePoint { rate: 4e6, p50_ns: 9_000_000, p95_ns: 20_000_000, p99_ns: 25_000_000, p999_ns: 30_000_000, sustainable: false },
//! ];
//! let files = latency_vs_rate(&sweep, "q5, 4 shards", Path::new("target/charts"), "q5-sweep")?;
//! # Ok::<(), rill_bench::plot::PlotError>(())
//! ```

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One measured rate in a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    /// Target rate of the run, in events/s.
    pub rate: f64,
    /// Median latency, in ns.
    pub p50_ns: u64,
    /// 95th percentile latency, in ns.
    pub p95_ns: u64,
    /// 99th percentile latency, in ns.
    pub p99_ns: u64,
    /// 99.9th percentile latency, in ns.
    pub p999_ns: u64,
    /// Whether the system kept up with the rate.
    pub sustainable: bool,
}

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A file or directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Drawing or encoding a chart failed.
    #[error("drawing {}: {message}", path.display())]
    Draw {
        /// The chart being written.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// There was nothing to draw: no points, or only empty histograms.
    #[error("no data for the chart {stem:?}")]
    NoData {
        /// The chart's file stem.
        stem: String,
    },
    /// The embedded font could not be loaded.
    #[error("the embedded chart font could not be loaded")]
    Font,
}

/// Size of every chart, in pixels.
const SIZE: (u32, u32) = (1000, 620);
/// The family every text element asks for; the embedded font is registered under it.
const FONT: &str = "sans-serif";
/// Colours of p50, p95, p99 and p99.9; also the order of the CDF series.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Colour of the grid's finer lines.
const LIGHT_GRID: RGBColor = RGBColor(235, 235, 235);
/// Colour of the grid's labelled lines.
const BOLD_GRID: RGBColor = RGBColor(200, 200, 200);

/// Latency percentiles (p50/p95/p99/p99.9, log-scale y axis in µs) against the rate
/// (x, M events/s); unsustainable points marked differently. Writes DIR/STEM.svg and
/// DIR/STEM.png; returns their paths.
///
/// Points are drawn in order of rate; sustainable runs are filled dots, runs the system
/// could not keep up with are crosses, and a dashed line marks the highest sustainable
/// rate. Tick labels on the latency axis carry their unit (ns, µs, ms, s) so that a wide
/// range stays readable. Points with a rate that is not a finite number are left out.
pub fn latency_vs_rate(
    points: &[RatePoint],
    title: &str,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut points: Vec<RatePoint> = points
        .iter()
        .copied()
        .filter(|p| p.rate.is_finite())
        .collect();
    if points.is_empty() {
        return Err(PlotError::NoData { stem: stem.into() });
    }
    points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    write_chart(&RateChart { points, title }, dir, stem)
}

/// Latency distribution of one or more labelled histograms, as the classic HdrHistogram
/// percentile-distribution plot. Writes DIR/STEM.svg and DIR/STEM.png.
///
/// The x axis is the percentile on a log scale of 1/(1-q), labelled 50%, 90%, 99%,
/// 99.9%, ...: each further nine gets as much room as the step from 0% to 90%, so the tail
/// is as visible as the median. The y axis is the latency at that percentile, also on a
/// log scale (histograms hold ns; tick labels carry their unit). The x axis reaches as far
/// into the tail as the largest histogram has samples for (at least 99%, at most
/// 99.9999%); past its own last sample a curve stays at its maximum. Empty histograms
/// are left out.
pub fn latency_cdf(
    series: &[(String, &Histogram<u64>)],
    title: &str,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    let series: Vec<(&str, &Histogram<u64>)> = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(label, h)| (label.as_str(), *h))
        .collect();
    if series.is_empty() {
        return Err(PlotError::NoData { stem: stem.into() });
    }
    write_chart(&CdfChart { series, title }, dir, stem)
}

/// A chart that can be drawn on any plotters backend.
trait Chart {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Draws `chart` into DIR/STEM.svg and DIR/STEM.png.
fn write_chart(chart: &impl Chart, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        chart
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(&svg_path, e))?;
    }
    std::fs::write(&svg_path, svg).map_err(|source| PlotError::Io {
        path: svg_path.clone(),
        source,
    })?;

    let png_path = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png_path, SIZE).into_drawing_area();
        chart
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(&png_path, e))?;
    }

    Ok(vec![svg_path, png_path])
}

fn draw_error<E: std::error::Error + Send + Sync>(
    path: &Path,
    e: DrawingAreaErrorKind<E>,
) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Registers the embedded font for [`FONT`], once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    ok.then_some(()).ok_or(PlotError::Font)
}

struct RateChart<'a> {
    /// Sorted by rate, all rates finite.
    points: Vec<RatePoint>,
    title: &'a str,
}

impl Chart for RateChart<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        type Percentile = (&'static str, fn(&RatePoint) -> u64);
        const PERCENTILES: [Percentile; 4] = [
            ("p50", |p| p.p50_ns),
            ("p95", |p| p.p95_ns),
            ("p99", |p| p.p99_ns),
            ("p99.9", |p| p.p999_ns),
        ];

        let rate = |p: &RatePoint| p.rate / 1e6;
        let max_rate = self.points.iter().map(rate).fold(0.0, f64::max);
        let min_rate = self.points.iter().map(rate).fold(0.0, f64::min);
        let x_range = if max_rate > min_rate {
            min_rate..max_rate * 1.05
        } else {
            min_rate..min_rate + 1.0
        };
        let latencies = self
            .points
            .iter()
            .flat_map(|p| PERCENTILES.iter().map(move |(_, get)| us(get(p))));
        let y = LogAxis::spanning(latencies);

        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 26))
            .margin(20)
            .margin_right(45)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(
                x_range,
                y.range
                    .clone()
                    .log_scale()
                    .with_key_points(y.bold.clone())
                    .with_light_points(y.light.clone()),
            )?;
        chart
            .configure_mesh()
            .x_desc("rate (M events/s)")
            .y_desc("latency (log scale)")
            .y_label_formatter(&|v| latency_label(*v))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .bold_line_style(BOLD_GRID)
            .light_line_style(LIGHT_GRID)
            .draw()?;

        let max_sustainable = self
            .points
            .iter()
            .filter(|p| p.sustainable)
            .map(rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        if let Some(r) = max_sustainable.filter(|_| self.points.iter().any(|p| !p.sustainable)) {
            let style = ShapeStyle::from(RGBColor(90, 90, 90)).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(
                    [(r, y.range.start), (r, y.range.end)],
                    6,
                    4,
                    style,
                ))?
                .label(format!("max sustainable: {} M/s", round3(r)))
                .legend(move |(x, y)| {
                    DashedPathElement::new([(x - 10, y), (x + 10, y)], 4, 2, style)
                });
        }

        for ((name, get), colour) in PERCENTILES.into_iter().zip(COLOURS) {
            let line: Vec<(f64, f64, bool)> = self
                .points
                .iter()
                .map(|p| (rate(p), us(get(p)), p.sustainable))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    line.iter().map(|&(x, y, _)| (x, y)),
                    colour.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x - 10, y), (x + 10, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                line.iter()
                    .filter(|p| p.2)
                    .map(|&(x, y, _)| Circle::new((x, y), 4, colour.filled())),
            )?;
            chart.draw_series(
                line.iter()
                    .filter(|p| !p.2)
                    .map(|&(x, y, _)| Cross::new((x, y), 5, colour.stroke_width(2))),
            )?;
        }

        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("sustainable")
            .legend(|(x, y)| Circle::new((x, y), 4, BLACK.filled()));
        chart
            .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())?
            .label("not sustainable")
            .legend(|(x, y)| Cross::new((x, y), 5, BLACK.stroke_width(2)));

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BOLD_GRID)
            .draw()?;
        Ok(())
    }
}

struct CdfChart<'a> {
    /// Non-empty histograms of latencies in ns.
    series: Vec<(&'a str, &'a Histogram<u64>)>,
    title: &'a str,
}

impl Chart for CdfChart<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        /// Samples drawn per decade of 1/(1-q).
        const PER_DECADE: u32 = 60;

        // As far into the tail as the largest histogram resolves: n samples reach 1 - 1/n.
        let most = self.series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
        let decades = (most as f64).log10().ceil().clamp(2.0, 6.0) as u32;
        let x_max = 10f64.powi(decades as i32);
        let mut x_bold = vec![1.0, 2.0, 4.0];
        x_bold.extend((1..=decades).map(|d| 10f64.powi(d as i32)));

        let curves: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|(_, h)| {
                (0..=decades * PER_DECADE)
                    .map(|i| {
                        let x = 10f64.powf(f64::from(i) / f64::from(PER_DECADE));
                        (x, us(h.value_at_quantile(1.0 - 1.0 / x)))
                    })
                    .collect()
            })
            .collect();
        let y = LogAxis::spanning(curves.iter().flatten().map(|&(_, y)| y));

        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 26))
            .margin(20)
            .margin_right(45)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(
                (1.0..x_max).log_scale().with_key_points(x_bold),
                y.range
                    .clone()
                    .log_scale()
                    .with_key_points(y.bold.clone())
                    .with_light_points(y.light.clone()),
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-q))")
            .y_desc("latency (log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|v| latency_label(*v))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 18))
            .bold_line_style(BOLD_GRID)
            .light_line_style(LIGHT_GRID)
            .draw()?;

        for (((label, h), curve), colour) in
            self.series.iter().zip(curves).zip(COLOURS.iter().cycle())
        {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(curve, colour.stroke_width(2)))?
                .label(format!("{label} (n = {})", grouped(h.len())))
                .legend(move |(x, y)| {
                    PathElement::new([(x - 10, y), (x + 10, y)], colour.stroke_width(2))
                });
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BOLD_GRID)
            .draw()?;
        Ok(())
    }
}

/// A logarithmic latency axis in µs: whole decades around the data, labelled at each
/// decade (and at 2 and 5 times it when few decades are shown), with finer lines between.
struct LogAxis {
    range: Range<f64>,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl LogAxis {
    fn spanning(values_us: impl Iterator<Item = f64>) -> Self {
        // 1 ns is the smallest latency a histogram records.
        let (lo, hi) = values_us
            .map(|v| v.max(1e-3))
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (1.0, 10.0) };
        let lo_decade = lo.log10().floor() as i32;
        let hi_decade = (hi.log10().ceil() as i32).max(lo_decade + 1);
        let steps: &[f64] = if hi_decade - lo_decade <= 2 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut bold = Vec::new();
        let mut light = Vec::new();
        for d in lo_decade..hi_decade {
            let decade = 10f64.powi(d);
            for k in 1..10 {
                let v = decade * f64::from(k);
                if steps.contains(&f64::from(k)) {
                    bold.push(v);
                } else {
                    light.push(v);
                }
            }
        }
        let end = 10f64.powi(hi_decade);
        bold.push(end);
        LogAxis {
            range: 10f64.powi(lo_decade)..end,
            bold,
            light,
        }
    }
}

/// ns as µs.
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Rounds to three decimals, so that labels print `0.3`, not `0.30000000000000004`.
fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// A latency given in µs, in the unit that keeps its number between 1 and 1000.
fn latency_label(us: f64) -> String {
    let ns = us * 1e3;
    if ns < 1e3 {
        format!("{} ns", round3(ns))
    } else if ns < 1e6 {
        format!("{} µs", round3(ns / 1e3))
    } else if ns < 1e9 {
        format!("{} ms", round3(ns / 1e6))
    } else {
        format!("{} s", round3(ns / 1e9))
    }
}

/// 1234567 as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The percentile at x = 1/(1-q): 10 is 90%, 1000 is 99.9%.
fn percentile_label(x: f64) -> String {
    let nines = x.log10().floor().max(0.0) as usize;
    let decimals = nines.saturating_sub(2);
    format!("{:.*}%", decimals, 100.0 * (1.0 - 1.0 / x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    /// Where a test writes its charts: a fresh temporary directory, removed afterwards,
    /// or `$RILL_PLOT_DIR/NAME`, kept for a look, when that variable is set.
    fn chart_dir(name: &str) -> (PathBuf, bool) {
        match std::env::var_os("RILL_PLOT_DIR") {
            Some(dir) => (PathBuf::from(dir).join(name), true),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("rill-plot-{name}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                (dir, false)
            }
        }
    }

    fn check_files(paths: &[PathBuf], dir: &Path, stem: &str, title: &str) {
        assert_eq!(
            paths,
            [
                dir.join(format!("{stem}.svg")),
                dir.join(format!("{stem}.png"))
            ]
        );
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains(title), "the SVG holds the title");
        let png = std::fs::read(&paths[1]).unwrap();
        assert!(png.len() > 1000, "the PNG has content");
        assert!(png.starts_with(PNG_SIGNATURE), "the PNG is a PNG");
    }

    /// A sweep that keeps up to 3 M events/s and then falls behind.
    fn sweep() -> Vec<RatePoint> {
        (1..=10)
            .map(|i| {
                let rate = f64::from(i) * 0.5e6;
                let load = rate / 3.2e6;
                let p50 = (20_000.0 / (1.0 - load.min(0.99))) as u64;
                let backlog = if load > 1.0 { (load - 1.0) * 2e9 } else { 0.0 };
                RatePoint {
                    rate,
                    p50_ns: p50 + backlog as u64,
                    p95_ns: p50 * 3 + (backlog * 1.5) as u64,
                    p99_ns: p50 * 6 + (backlog * 1.8) as u64,
                    p999_ns: p50 * 20 + (backlog * 2.0) as u64,
                    sustainable: load <= 1.0,
                }
            })
            .collect()
    }

    /// A long-tailed histogram: most samples near `median_ns`, a few far beyond.
    fn histogram(median_ns: u64, n: u64) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // Pareto-like tail above the median.
            let v = median_ns as f64 * 0.7 / (1.0 - u).max(1e-7).powf(0.5);
            h.saturating_record(v as u64);
        }
        h
    }

    #[test]
    fn latency_vs_rate_writes_svg_and_png() {
        let (dir, keep) = chart_dir("rate");
        let title = "q5 sweep, 4 shards";
        let paths = latency_vs_rate(&sweep(), title, &dir, "sweep").unwrap();
        check_files(&paths, &dir, "sweep", title);
        if !keep {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn latency_cdf_writes_svg_and_png() {
        let (dir, keep) = chart_dir("cdf");
        let title = "q1 latency distribution";
        let one = histogram(30_000, 200_000);
        let four = histogram(80_000, 50_000);
        let series = [
            ("1 shard".to_string(), &one),
            ("4 shards".to_string(), &four),
        ];
        let paths = latency_cdf(&series, title, &dir, "cdf").unwrap();
        check_files(&paths, &dir, "cdf", title);
        if !keep {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn no_data_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rill-plot-empty-{}", std::process::id()));
        assert!(matches!(
            latency_vs_rate(&[], "t", &dir, "a"),
            Err(PlotError::NoData { .. })
        ));
        let empty = Histogram::<u64>::new(3).unwrap();
        assert!(matches!(
            latency_cdf(&[("none".into(), &empty)], "t", &dir, "b"),
            Err(PlotError::NoData { .. })
        ));
        assert!(!dir.exists());
    }

    #[test]
    fn labels() {
        assert_eq!(latency_label(0.5), "500 ns");
        assert_eq!(latency_label(20.0), "20 µs");
        assert_eq!(latency_label(1000.0), "1 ms");
        assert_eq!(latency_label(2e6), "2 s");
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(1e6), "99.9999%");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}

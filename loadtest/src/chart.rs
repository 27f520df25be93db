//! The latency chart of a report: one line per latency, milliseconds against the percentile
//! on a "nines" scale (50 %, 90 %, 99 %, 99.9 %… equally spaced), as a PNG beside the JSON
//! and Markdown reports.
//!
//! Text is drawn by plotters' pure-Rust `ab_glyph`, which brings no font of its own: a TTF is
//! read from `LOADTEST_CHART_FONT` or from the usual system places, once per process. Without
//! one there is no chart, and the run says so in one line rather than failing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::ranged1d::{
    AsRangedCoord, KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter,
};
use plotters::prelude::*;

use crate::report::{human, Report};
use crate::stats::LatencySummary;

/// The environment variable that names the TTF or OTF file to draw text with.
pub const FONT_ENV: &str = "LOADTEST_CHART_FONT";

/// Where a sans-serif TTF usually is: Debian and Ubuntu, Fedora, Arch, Alpine, openSUSE,
/// macOS, Windows.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The family the font is registered under, and that the chart asks for.
const FAMILY: &str = "sans-serif";

/// Where the maximum (quantile 1) sits on the nines axis: one nine past 99.99 %, the
/// highest quantile below it that a summary keeps.
const MAX_NINES: f64 = 5.0;

/// The ticks of the x axis: position on the nines scale and label.
const X_TICKS: &[(f64, &str)] = &[
    (std::f64::consts::LOG10_2, "50%"),
    (1.0, "90%"),
    (2.0, "99%"),
    (3.0, "99.9%"),
    (4.0, "99.99%"),
    (MAX_NINES, "100%"),
];

/// Where the light grid lines go: 75 %, 95 %, 99.5 %, 99.95 %, 99.995 %.
const X_LIGHT: &[f64] = &[0.75, 0.95, 0.995, 0.9995, 0.99995];

const SIZE: (u32, u32) = (1000, 600);

/// The x axis: positions on the nines scale, ticks and labels at [`X_TICKS`].
struct NinesAxis(std::ops::Range<f64>);

impl Ranged for NinesAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.0.end - self.0.start;
        let share = if span > 0.0 {
            (value - self.0.start) / span
        } else {
            0.5
        };
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            X_LIGHT.iter().map(|&q| nines(q)).collect()
        } else {
            X_TICKS.iter().map(|&(at, _)| at).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.0.clone()
    }
}

impl ValueFormatter<f64> for NinesAxis {
    fn format(value: &f64) -> String {
        X_TICKS
            .iter()
            .find(|(at, _)| (at - value).abs() < 1e-9)
            .map(|(_, label)| (*label).to_owned())
            .unwrap_or_default()
    }
}

/// Where a quantile goes on the x axis: -log10(1 - q), so that each nine takes the same width;
/// the maximum, and anything within a nine of it, at [`MAX_NINES`].
pub fn nines(quantile: f64) -> f64 {
    let tail = 1.0 - quantile.clamp(0.0, 1.0);
    if tail <= 10f64.powf(-MAX_NINES) {
        MAX_NINES
    } else {
        (-tail.log10()).min(MAX_NINES)
    }
}

/// The (quantile, ms) points of a latency: its `percentiles`, or, for a report written before
/// they were kept, the four percentiles every summary has.
fn points(latency: &LatencySummary) -> Vec<(f64, f64)> {
    if latency.percentiles.is_empty() {
        vec![
            (0.5, latency.p50_ms),
            (0.99, latency.p99_ms),
            (0.999, latency.p999_ms),
            (1.0, latency.max_ms),
        ]
    } else {
        latency
            .percentiles
            .iter()
            .map(|p| (p.quantile, p.ms))
            .collect()
    }
}

/// Whether a font for the chart was found (and registered), and if not why: the first call
/// reads it, later calls answer from memory.
pub fn font() -> Result<&'static Path, &'static str> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(load_font)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(String::as_str)
}

fn load_font() -> Result<PathBuf, String> {
    let from_env = std::env::var_os(FONT_ENV).map(PathBuf::from);
    let candidates = from_env
        .iter()
        .cloned()
        .chain(FONT_PATHS.iter().map(PathBuf::from));
    for path in candidates {
        let registered = std::fs::read(&path).ok().is_some_and(|bytes| {
            // plotters keeps fonts for the life of the process; this is read once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
        });
        if registered {
            return Ok(path);
        }
        if from_env.as_ref() == Some(&path) {
            eprintln!(
                "loadtest: {FONT_ENV}={} is not a readable TTF file; trying the system fonts",
                path.display()
            );
        }
    }
    Err(match from_env {
        Some(path) => format!(
            "{} ({FONT_ENV}) and the usual system fonts are not readable TTF files",
            path.display()
        ),
        None => format!("no TTF font found (set {FONT_ENV} to one)"),
    })
}

/// Draw the latency chart of `report` into `path` (PNG). `Ok(false)`, and nothing written,
/// when the report has no latency with samples or no font is to be had (said on stderr).
pub fn render_chart(report: &Report, path: &Path) -> anyhow::Result<bool> {
    let series: Vec<(&LatencySummary, Vec<(f64, f64)>)> = report
        .latencies
        .iter()
        .filter(|l| l.count > 0)
        .map(|l| {
            let pts = points(l)
                .into_iter()
                .filter(|(q, ms)| q.is_finite() && ms.is_finite())
                .map(|(q, ms)| (nines(q), ms))
                .collect::<Vec<_>>();
            (l, pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    if let Err(why) = font() {
        eprintln!("loadtest: no latency chart: {why}");
        return Ok(false);
    }
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|&(_, ms)| ms))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), ms| {
            (lo.min(ms), hi.max(ms))
        });
    let x = NinesAxis((std::f64::consts::LOG10_2 - 0.15)..(MAX_NINES + 0.15));
    // Histograms record whole microseconds, so 0.001 ms is the least a latency can be.
    let lo = lo.max(0.001);
    let hi = hi.max(lo);
    if hi / lo >= 20.0 {
        draw(report, path, &series, x, (lo / 1.5..hi * 1.5).log_scale())
    } else {
        draw(report, path, &series, x, 0.0..(hi * 1.1).max(0.01))
    }
    .with_context(|| format!("drawing {}", path.display()))?;
    Ok(true)
}

fn draw<Y>(
    report: &Report,
    path: &Path,
    series: &[(&LatencySummary, Vec<(f64, f64)>)],
    x: NinesAxis,
    y: Y,
) -> anyhow::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    // plotters' errors borrow nothing but are not all `Send + Sync`: keep their text.
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(report.stem(), (FAMILY, 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(|e| err(&e))?;
    let y_label = |ms: &f64| ms_label(*ms);
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .y_label_formatter(&y_label)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (latency, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(|e| err(&e))?
            .label(format!(
                "{} (n={})",
                latency.name,
                human(latency.count as f64)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A y axis label: grouped thousands above 100 ms, otherwise up to three decimals, trailing
/// zeros dropped.
fn ms_label(ms: f64) -> String {
    if ms.abs() >= 100.0 {
        return human(ms);
    }
    let text = format!("{ms:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stats::Latencies;
    use std::time::Duration;

    fn report() -> Report {
        let mut r = Report::new("payments");
        r.label = Some("chart-1".into());
        let (mut fast, mut slow) = (Latencies::new(), Latencies::new());
        for i in 1..=10_000u64 {
            fast.record(Duration::from_micros(200 + i % 700));
            slow.record(Duration::from_micros(1_000 + i * i / 1_000));
        }
        r.latencies.push(fast.summary("ack"));
        r.latencies.push(slow.summary("delivery"));
        r.latencies
            .push(Latencies::new().summary("nothing recorded"));
        r
    }

    fn is_png(path: &Path) -> bool {
        let bytes = std::fs::read(path).unwrap();
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1_000
    }

    #[test]
    fn nines_spread_the_tail() {
        assert!((nines(0.5) - std::f64::consts::LOG10_2).abs() < 1e-12);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert!((nines(0.9999) - 4.0).abs() < 1e-6);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nines(0.999_999_9), MAX_NINES);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn labels_read_as_milliseconds() {
        assert_eq!(ms_label(0.0), "0");
        assert_eq!(ms_label(0.25), "0.25");
        assert_eq!(ms_label(2.0), "2");
        assert_eq!(ms_label(12.3456), "12.346");
        assert_eq!(ms_label(1500.0), "1,500");
    }

    #[test]
    fn old_summaries_chart_their_four_percentiles() {
        let old = LatencySummary {
            name: "ack".into(),
            count: 3,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: 3.0,
            max_ms: 4.0,
            ..LatencySummary::default()
        };
        assert_eq!(
            points(&old),
            vec![(0.5, 1.0), (0.99, 2.0), (0.999, 3.0), (1.0, 4.0)]
        );
    }

    #[test]
    fn a_report_with_latencies_is_charted_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments-chart-1.png");
        let found = font();
        // Only a machine without any of the usual fonts skips; this one must draw.
        if let Err(why) = found {
            eprintln!("skipped: {why}");
            assert!(FONT_PATHS.iter().all(|p| !Path::new(p).exists()));
            return;
        }
        assert!(render_chart(&report(), &path).unwrap());
        assert!(is_png(&path), "{}", path.display());
    }

    #[test]
    fn a_narrow_range_is_charted_too() {
        if font().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("narrow.png");
        let mut r = Report::new("narrow");
        let mut l = Latencies::new();
        for _ in 0..10 {
            l.record(Duration::from_millis(5));
        }
        r.latencies.push(l.summary("same"));
        assert!(render_chart(&r, &path).unwrap());
        assert!(is_png(&path));
    }

    #[test]
    fn no_latency_no_chart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.png");
        let mut r = Report::new("connections");
        assert!(!render_chart(&r, &path).unwrap());
        r.latencies.push(Latencies::new().summary("empty"));
        assert!(!render_chart(&r, &path).unwrap());
        assert!(!path.exists());
    }
}

//! What a scenario found: numbers, latencies and checks, as JSON, Markdown, a latency chart
//! (PNG, `chart`) and a terminal table. Rendering is pure so that it is tested without running
//! anything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::stats::LatencySummary;

/// One run of one scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// Free text naming the run (`sqlite-1`, `postgres-2`…), part of the file names.
    #[serde(default)]
    pub label: Option<String>,
    /// The settings the scenario ran with, as given or as a preset made them.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub metrics: Vec<Metric>,
    pub latencies: Vec<LatencySummary>,
    pub checks: Vec<Check>,
    /// Unix milliseconds when the scenario started.
    pub started_at_ms: u64,
    pub elapsed_secs: f64,
}

/// A number with its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// Something that must hold for the run to pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        Report {
            scenario: scenario.to_owned(),
            started_at_ms: unix_ms(),
            ..Report::default()
        }
    }

    pub fn param(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.parameters.insert(name.to_owned(), value.into());
    }

    pub fn metric(&mut self, name: &str, value: f64, unit: &str) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
        });
    }

    pub fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        });
    }

    /// True when every check held (a report without checks passes).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn metric_value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The file stem: the scenario, then the label if there is one.
    pub fn stem(&self) -> String {
        match &self.label {
            Some(label) => format!("{}-{}", self.scenario, sanitize(label)),
            None => self.scenario.clone(),
        }
    }
}

/// Keep file names tame: letters, digits, `-`, `_` and `.`.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A number as people read it: thousands separated, at most two decimals.
pub fn human(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    let (sign, digits) = match rounded.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", rounded.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// The Markdown report.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.passed() { "PASSED" } else { "FAILED" };
    let _ = writeln!(out, "# loadtest `{}`: {verdict}\n", report.stem());
    let _ = writeln!(
        out,
        "Started at {} (Unix ms), ran {:.2} s.\n",
        report.started_at_ms, report.elapsed_secs
    );
    out.push_str("## Parameters\n\n| parameter | value |\n|---|---|\n");
    for (name, value) in &report.parameters {
        let _ = writeln!(out, "| {name} | {} |", cell(value));
    }
    out.push_str("\n## Metrics\n\n| metric | value | unit |\n|---|---:|---|\n");
    for m in &report.metrics {
        let _ = writeln!(out, "| {} | {} | {} |", m.name, human(m.value), m.unit);
    }
    if !report.latencies.is_empty() {
        out.push_str(
            "\n## Latencies (ms)\n\n| latency | count | mean | p50 | p99 | p99.9 | max |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for l in &report.latencies {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                l.name,
                human(l.count as f64),
                l.mean_ms,
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms
            );
        }
    }
    out.push_str("\n## Checks\n\n| check | result | detail |\n|---|---|---|\n");
    for c in &report.checks {
        let result = if c.passed { "ok" } else { "**FAILED**" };
        let _ = writeln!(
            out,
            "| {} | {result} | {} |",
            c.name,
            c.detail.replace('|', "\\|")
        );
    }
    out
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The table printed at the end of a run: one line per metric, latency and check.
pub fn render_summary(report: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for m in &report.metrics {
        rows.push((m.name.clone(), format!("{} {}", human(m.value), m.unit)));
    }
    for l in &report.latencies {
        rows.push((
            format!("{} (ms)", l.name),
            format!(
                "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        ));
    }
    for c in &report.checks {
        let result = if c.passed { "ok" } else { "FAILED" };
        rows.push((
            format!("check {}", c.name),
            format!("{result}: {}", c.detail),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let verdict = if report.passed() { "PASSED" } else { "FAILED" };
    let mut out = format!(
        "== {} — {verdict} in {:.2} s\n",
        report.stem(),
        report.elapsed_secs
    );
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    out
}

/// The files [`write`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub json: PathBuf,
    pub md: PathBuf,
    /// The latency chart, when the report has a latency with samples and a font was found.
    pub png: Option<PathBuf>,
}

impl Written {
    /// The paths, space-separated, for the line that ends a run.
    pub fn paths(&self) -> String {
        let mut out = format!("{} {}", self.json.display(), self.md.display());
        if let Some(png) = &self.png {
            let _ = write!(out, " {}", png.display());
        }
        out
    }
}

/// Write `<stem>.json`, `<stem>.md` and, when there is a latency to draw, the chart
/// `<stem>.png` under `dir`. The chart is an extra: when it cannot be drawn the run says so on
/// stderr and goes on, and an older chart of the same stem is removed so that none is left
/// beside reports it does not show.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{}.json", report.stem()));
    let md = dir.join(format!("{}.md", report.stem()));
    let png = dir.join(format!("{}.png", report.stem()));
    let body = serde_json::to_string_pretty(report).context("encoding the report")?;
    std::fs::write(&json, body).with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&md, render_markdown(report))
        .with_context(|| format!("writing {}", md.display()))?;
    let charted = match crate::chart::render_chart(report, &png) {
        Ok(charted) => charted,
        Err(error) => {
            eprintln!("loadtest: no latency chart: {error:#}");
            false
        }
    };
    if !charted {
        let _ = std::fs::remove_file(&png);
    }
    Ok(Written {
        json,
        md,
        png: charted.then_some(png),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stats::Percentile;

    fn sample() -> Report {
        let mut r = Report::new("payments");
        r.label = Some("sqlite 1".into());
        r.started_at_ms = 1_000;
        r.elapsed_secs = 2.5;
        r.param("users", 100);
        r.param("codec", "json");
        r.metric("payments_per_sec", 12345.678, "1/s");
        r.latencies.push(LatencySummary {
            name: "ack".into(),
            count: 1000,
            mean_ms: 1.0,
            p50_ms: 0.9,
            p99_ms: 4.5,
            p999_ms: 9.25,
            max_ms: 12.0,
            percentiles: vec![
                Percentile {
                    quantile: 0.5,
                    ms: 0.9,
                },
                Percentile {
                    quantile: 1.0,
                    ms: 12.0,
                },
            ],
        });
        r.check("balances", true, "sum 1000 = deposited 1000");
        r
    }

    #[test]
    fn markdown_has_every_section_and_value() {
        let md = render_markdown(&sample());
        assert!(
            md.starts_with("# loadtest `payments-sqlite_1`: PASSED"),
            "{md}"
        );
        assert!(md.contains("| users | 100 |"), "{md}");
        assert!(md.contains("| codec | json |"), "{md}");
        assert!(md.contains("| payments_per_sec | 12,346 | 1/s |"), "{md}");
        assert!(
            md.contains("| ack | 1,000 | 1.000 | 0.900 | 4.500 | 9.250 | 12.000 |"),
            "{md}"
        );
        assert!(
            md.contains("| balances | ok | sum 1000 = deposited 1000 |"),
            "{md}"
        );
    }

    #[test]
    fn a_failed_check_fails_the_report_everywhere() {
        let mut r = sample();
        r.check("gaps", false, "2 gaps | 1 duplicate");
        assert!(!r.passed());
        let md = render_markdown(&r);
        assert!(md.contains(": FAILED"));
        assert!(
            md.contains("| gaps | **FAILED** | 2 gaps \\| 1 duplicate |"),
            "{md}"
        );
        let table = render_summary(&r);
        assert!(table.contains("FAILED in 2.50 s"), "{table}");
        assert!(table.contains("check gaps"), "{table}");
    }

    #[test]
    fn summary_aligns_its_rows() {
        let table = render_summary(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        // Every value starts in the same column, after the longest name.
        let width = "payments_per_sec".len();
        for line in &lines[1..] {
            let value = &line[2 + width..];
            assert!(
                value.starts_with("  ") && !value[2..].starts_with(' '),
                "{table}"
            );
        }
        assert!(
            lines[2].contains("p50 0.900  p99 4.500  p99.9 9.250"),
            "{table}"
        );
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.metric_value("payments_per_sec"), Some(12345.678));
    }

    #[test]
    fn humans_read_grouped_numbers() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(42.0), "42");
        assert_eq!(human(1.23456), "1.23");
        assert_eq!(human(999.4), "999");
        assert_eq!(human(1234.0), "1,234");
        assert_eq!(human(1_234_567.8), "1,234,568");
        assert_eq!(human(-25_000.0), "-25,000");
    }

    #[test]
    fn reports_are_written_as_json_markdown_and_a_chart() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(&sample(), dir.path()).unwrap();
        assert!(written.json.ends_with("payments-sqlite_1.json"));
        let back: Report =
            serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
        assert_eq!(back, sample());
        assert!(std::fs::read_to_string(&written.md)
            .unwrap()
            .contains("PASSED"));
        if crate::chart::font().is_ok() {
            let png = written.png.clone().unwrap();
            assert!(png.ends_with("payments-sqlite_1.png"));
            assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
            assert!(written.paths().ends_with(&format!(".md {}", png.display())));
        }
    }

    #[test]
    fn a_report_without_latencies_has_no_chart_and_loses_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = sample();
        let stale = dir.path().join("payments-sqlite_1.png");
        std::fs::write(&stale, b"old chart").unwrap();
        r.latencies.clear();
        let written = write(&r, dir.path()).unwrap();
        assert_eq!(written.png, None);
        assert!(!stale.exists());
        assert!(!written.paths().contains(".png"));
    }
}

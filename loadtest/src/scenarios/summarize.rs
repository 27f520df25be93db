//! `summarize`: the medians of repeated runs, from the JSON reports of a directory, as the
//! Markdown tables `BENCHMARKS.md` quotes. Runs are grouped by scenario and by label without
//! its trailing run number (`postgres-2` → `postgres`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::report::{human, Report};
use crate::stats::median;

#[derive(Debug, Clone, clap::Args)]
pub struct SummarizeArgs {
    /// Where the JSON reports are (defaults to --report-dir).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// The group a label belongs to: the label without a trailing `-<digits>`.
pub fn group_of(label: Option<&str>) -> String {
    let Some(label) = label else {
        return String::new();
    };
    match label.rsplit_once('-') {
        Some((group, run)) if !run.is_empty() && run.bytes().all(|b| b.is_ascii_digit()) => {
            group.to_owned()
        }
        _ => label.to_owned(),
    }
}

pub fn load(dir: &Path) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let report: Report = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            reports.push(report);
        }
    }
    reports.sort_by(|a, b| (&a.scenario, &a.label).cmp(&(&b.scenario, &b.label)));
    Ok(reports)
}

/// Medians per (scenario, group): metrics, then latency percentiles, then how many runs passed.
pub fn render(reports: &[Report]) -> String {
    let mut groups: BTreeMap<(String, String), Vec<&Report>> = BTreeMap::new();
    for r in reports {
        groups
            .entry((r.scenario.clone(), group_of(r.label.as_deref())))
            .or_default()
            .push(r);
    }
    let mut out = String::new();
    for ((scenario, group), runs) in &groups {
        let passed = runs.iter().filter(|r| r.passed()).count();
        let title = if group.is_empty() {
            scenario.clone()
        } else {
            format!("{scenario} — {group}")
        };
        let _ = writeln!(
            out,
            "### {title}\n\n{} runs, {passed} passed. Medians:\n",
            runs.len()
        );
        out.push_str("| measure | median | runs |\n|---|---:|---|\n");
        let mut names: Vec<(String, String)> = Vec::new();
        for r in runs {
            for m in &r.metrics {
                if !names.iter().any(|(n, _)| *n == m.name) {
                    names.push((m.name.clone(), m.unit.clone()));
                }
            }
        }
        for (name, unit) in names {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.metric_value(&name)).collect();
            if let Some(m) = median(&values) {
                let each: Vec<String> = values.iter().map(|v| human(*v)).collect();
                let _ = writeln!(
                    out,
                    "| {name} ({unit}) | {} | {} |",
                    human(m),
                    each.join(", ")
                );
            }
        }
        let mut latency_names: Vec<String> = Vec::new();
        for r in runs {
            for l in &r.latencies {
                if !latency_names.contains(&l.name) {
                    latency_names.push(l.name.clone());
                }
            }
        }
        for name in latency_names {
            let pick = |f: fn(&crate::stats::LatencySummary) -> f64| -> Vec<f64> {
                runs.iter()
                    .filter_map(|r| r.latencies.iter().find(|l| l.name == name).map(f))
                    .collect()
            };
            for (p, values) in [
                ("p50", pick(|l| l.p50_ms)),
                ("p99", pick(|l| l.p99_ms)),
                ("p99.9", pick(|l| l.p999_ms)),
            ] {
                if let Some(m) = median(&values) {
                    let each: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
                    let _ = writeln!(out, "| {name} {p} (ms) | {m:.2} | {} |", each.join(", "));
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn run(label: &str, rate: f64, p99: f64, ok: bool) -> Report {
        let mut r = Report::new("payments");
        r.label = Some(label.into());
        r.metric("payments_per_sec", rate, "1/s");
        r.latencies.push(LatencySummary {
            name: "pay ack".into(),
            count: 10,
            p99_ms: p99,
            ..LatencySummary::default()
        });
        r.check("balances", ok, "");
        r
    }

    #[test]
    fn labels_group_without_their_run_number() {
        assert_eq!(group_of(Some("postgres-2")), "postgres");
        assert_eq!(group_of(Some("sqlite-json-10")), "sqlite-json");
        assert_eq!(group_of(Some("smoke")), "smoke");
        assert_eq!(group_of(Some("run-")), "run-");
        assert_eq!(group_of(None), "");
    }

    #[test]
    fn medians_per_group() {
        let reports = vec![
            run("sqlite-1", 100.0, 5.0, true),
            run("sqlite-2", 300.0, 1.0, true),
            run("sqlite-3", 200.0, 3.0, false),
            run("postgres-1", 50.0, 9.0, true),
        ];
        let md = render(&reports);
        assert!(
            md.contains("### payments — sqlite\n\n3 runs, 2 passed."),
            "{md}"
        );
        assert!(
            md.contains("| payments_per_sec (1/s) | 200 | 100, 300, 200 |"),
            "{md}"
        );
        assert!(
            md.contains("| pay ack p99 (ms) | 3.00 | 5.00, 1.00, 3.00 |"),
            "{md}"
        );
        assert!(
            md.contains("### payments — postgres\n\n1 runs, 1 passed."),
            "{md}"
        );
    }
}

//! The node's memory and CPU, read from `/proc/<pid>` (Linux only).

use anyhow::{bail, Context};

/// Resident memory in KiB, from the `VmRSS:` line of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next().context("VmRSS has no value")?.parse()?;
    match words.next() {
        Some("kB") | None => Ok(value),
        Some(unit) => bail!("VmRSS in an unknown unit {unit}"),
    }
}

/// User plus system CPU time in clock ticks, from `/proc/<pid>/stat` (fields 14 and 15). The
/// command name (field 2) is in parentheses and may hold spaces, so fields are counted from
/// the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no command name in stat")?;
    // After ")" come field 3 (state) onwards: utime is field 14, index 11 here.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("stat too short")?.parse()?;
    let stime: u64 = fields.get(12).context("stat too short")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat`: USER_HZ, 100 on every Linux build this runs
/// on (reading `sysconf` would need `unsafe`, which the workspace forbids).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A process's memory and CPU at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_kib: u64,
    pub cpu_ticks: u64,
    pub at: std::time::Instant,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(Sample {
        rss_kib: parse_vm_rss_kib(&status)?,
        cpu_ticks: parse_cpu_ticks(&stat)?,
        at: std::time::Instant::now(),
    })
}

/// CPU used between two samples, as a share of one core (1.0 = one core busy).
pub fn cpu_share(before: &Sample, after: &Sample) -> f64 {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / CLOCK_TICKS_PER_SEC / secs
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status).unwrap(), 51234);
        assert!(parse_vm_rss_kib("Name: x\n").is_err());
    }

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let stat =
            "4242 (my node) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1 2";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 325);
        let tricky = "7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 10 5 0 0";
        assert_eq!(parse_cpu_ticks(tricky).unwrap(), 15);
        assert!(parse_cpu_ticks("7 (x) R 1").is_err());
    }

    #[test]
    fn cpu_share_is_per_core() {
        let t0 = std::time::Instant::now();
        let before = Sample {
            rss_kib: 0,
            cpu_ticks: 100,
            at: t0,
        };
        let after = Sample {
            rss_kib: 0,
            cpu_ticks: 150,
            at: t0 + std::time::Duration::from_secs(2),
        };
        assert!((cpu_share(&before, &after) - 0.25).abs() < 1e-9);
    }
}

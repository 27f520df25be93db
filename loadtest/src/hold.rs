//! Opening and holding idle connections, and reading what they cost the server: shared by
//! `connections` (the node) and `reference-connections` (the Socket.IO server).
//!
//! The connections open in two halves, each followed by the same wait, and the server's
//! memory is read before the first, between the two and after the second. What a connection
//! costs is the growth over the second half. The growth from the start understates it: the
//! first half also fills memory the server freed during the run's setup and still holds (an
//! allocator keeps freed pages for a while, a garbage-collected heap its free space), so
//! part of it costs nothing new. On the node that was about 1 KiB a connection with 10,000
//! (BENCHMARKS.md §3).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::procfs::{self, Sample};
use crate::report::Report;
use crate::{progress, setup};

/// The connections once all are open and held, and what the server's memory did meanwhile.
pub struct Held<T> {
    /// What each connection's `make` returned, in order.
    pub holders: Vec<T>,
    /// Time spent opening them (both halves, not the waits).
    pub connect_elapsed: Duration,
    /// `None` without a process id to read.
    pub footprint: Option<Footprint>,
}

/// The server process's samples around the two halves.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    before: Sample,
    half: Sample,
    all_open: Sample,
    held: Sample,
    first_half: usize,
    connections: usize,
}

impl Footprint {
    /// KiB of resident memory each connection of the second half added.
    pub fn per_connection_kib(&self) -> f64 {
        let second_half = self.connections - self.first_half;
        growth_kib(&self.half, &self.held) / second_half.max(1) as f64
    }

    /// KiB each connection of the first half added, setup's freed memory reused included.
    pub fn first_half_per_connection_kib(&self) -> Option<f64> {
        (self.first_half > 0).then(|| growth_kib(&self.before, &self.half) / self.first_half as f64)
    }

    /// The server's CPU, as a share of one core, while all the connections were held.
    pub fn idle_cpu(&self) -> f64 {
        procfs::cpu_share(&self.all_open, &self.held)
    }

    /// The samples as metrics named after `who` (`node`, `server`).
    pub fn record(&self, report: &mut Report, who: &str) {
        let kib = |s: &Sample| s.rss_kib as f64;
        report.metric(&format!("{who}_rss_before"), kib(&self.before), "KiB");
        report.metric(&format!("{who}_rss_half"), kib(&self.half), "KiB");
        report.metric(&format!("{who}_rss_held"), kib(&self.held), "KiB");
        report.metric(
            &format!("{who}_rss_per_connection"),
            self.per_connection_kib(),
            "KiB",
        );
        if let Some(first) = self.first_half_per_connection_kib() {
            report.metric(
                &format!("{who}_rss_per_connection_first_half"),
                first,
                "KiB",
            );
        }
        report.metric(
            &format!("{who}_idle_cpu"),
            self.idle_cpu() * 100.0,
            "% of a core",
        );
    }
}

/// Resident memory gained from `from` to `to`, in KiB (a shrink reads as none).
fn growth_kib(from: &Sample, to: &Sample) -> f64 {
    to.rss_kib.saturating_sub(from.rss_kib) as f64
}

/// Open `connections` with `make(i)` (at most `concurrency` at once) in two halves, wait
/// `hold_secs` after each, and read the process `pid` before, between and after.
pub async fn open_and_hold<T, F, Fut>(
    connections: usize,
    concurrency: usize,
    pid: Option<u32>,
    hold_secs: u64,
    make: F,
) -> anyhow::Result<Held<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let first_half = connections / 2;
    let read = || pid.map(procfs::sample).transpose();
    let before = read()?;
    let make = &make;
    let started = Instant::now();
    let mut holders = setup::each(first_half, concurrency, "connections (1st half)", make).await?;
    let mut connect_elapsed = started.elapsed();
    if first_half > 0 {
        wait(hold_secs, "settling (s)").await;
    }
    let half = read()?;
    let started = Instant::now();
    holders.extend(
        setup::each(
            connections - first_half,
            concurrency,
            "connections (2nd half)",
            |i| make(first_half + i),
        )
        .await?,
    );
    connect_elapsed += started.elapsed();
    let all_open = read()?;
    wait(hold_secs, "holding (s)").await;
    let held = read()?;
    let footprint = match (before, half, all_open, held) {
        (Some(before), Some(half), Some(all_open), Some(held)) => Some(Footprint {
            before,
            half,
            all_open,
            held,
            first_half,
            connections,
        }),
        _ => None,
    };
    Ok(Held {
        holders,
        connect_elapsed,
        footprint,
    })
}

async fn wait(secs: u64, what: &str) {
    let bar = progress::bar(secs, what);
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A footprint of `connections` whose samples read `rss_kib` (before, half, all open,
    /// held) and `cpu_ticks` (all open, held), with `held_after` between the last two.
    fn footprint(
        rss_kib: [u64; 4],
        cpu_ticks: [u64; 2],
        held_after: Duration,
        first_half: usize,
        connections: usize,
    ) -> Footprint {
        let t = Instant::now();
        let sample = |rss_kib, cpu_ticks, at| Sample {
            rss_kib,
            cpu_ticks,
            at,
        };
        Footprint {
            before: sample(rss_kib[0], 0, t),
            half: sample(rss_kib[1], 0, t),
            all_open: sample(rss_kib[2], cpu_ticks[0], t),
            held: sample(rss_kib[3], cpu_ticks[1], t + held_after),
            first_half,
            connections,
        }
    }

    #[test]
    fn a_connection_costs_the_second_halfs_growth() {
        // The first 500 connections grew the process by 8,000 KiB, reusing freed memory; the
        // next 501 by 10,020 KiB.
        let footprint = footprint(
            [50_000, 58_000, 68_020, 68_020],
            [100, 150],
            Duration::from_secs(5),
            500,
            1_001,
        );
        assert!((footprint.per_connection_kib() - 20.0).abs() < 1e-9);
        assert_eq!(footprint.first_half_per_connection_kib(), Some(16.0));
        // 50 ticks of 1/100 s in 5 s: a tenth of a core.
        assert!((footprint.idle_cpu() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn one_connection_has_no_first_half() {
        let footprint = footprint([100, 100, 130, 130], [0, 0], Duration::ZERO, 0, 1);
        assert_eq!(footprint.per_connection_kib(), 30.0);
        assert_eq!(footprint.first_half_per_connection_kib(), None);
    }

    #[test]
    fn a_shrink_reads_as_no_growth() {
        let footprint = footprint([100, 200, 180, 150], [0, 0], Duration::ZERO, 1, 2);
        assert_eq!(footprint.per_connection_kib(), 0.0);
        assert_eq!(footprint.first_half_per_connection_kib(), Some(100.0));
    }
}

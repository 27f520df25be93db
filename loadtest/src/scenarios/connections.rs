//! `connections`: open N authenticated WebSocket connections, spread over users (the node
//! allows 16 per user) and over loopback source addresses (each has its own ephemeral port
//! range), hold them idle, and read the node's memory and CPU from `/proc/<pid>` (the
//! connections open in two halves; a connection's cost is the second half's, see `hold`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::client::{Received, Rest, Ws};
use crate::report::Report;
use crate::scenarios::Common;
use crate::stats::{self, Recorder};
use crate::{hold, setup, target};

/// Connections one source address is given: below the usual ephemeral range (28,232 ports).
const PER_SOURCE_MAX: usize = 25_000;

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections per user (the node's WS_CONNECTIONS_PER_USER_MAX, 16 by default).
    #[arg(long, default_value_t = 16)]
    pub per_user: usize,
    /// Loopback source addresses (127.0.0.2 …); 0: as many as the count needs.
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// The last byte of the first source address: another load generator holding connections
    /// on the same machine at the same time starts after this one's addresses.
    #[arg(long, default_value_t = target::FIRST_SOURCE)]
    pub first_source: u8,
    /// How long to hold the connections once all are open, and to wait once half are.
    #[arg(long, default_value_t = 30)]
    pub hold_secs: u64,
    /// The node's process id, to read its memory (VmRSS) and CPU from /proc.
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

impl ConnectionsArgs {
    pub fn smoke(&mut self) {
        self.connections = 200;
        self.per_user = 16;
        self.sources = 2;
        self.hold_secs = 2;
        self.connect_concurrency = 64;
    }
}

/// Source addresses needed so that none carries more than [`PER_SOURCE_MAX`].
pub fn sources_needed(connections: usize, asked: usize) -> usize {
    if asked > 0 {
        asked
    } else {
        connections.div_ceil(PER_SOURCE_MAX).max(1)
    }
}

pub async fn run(common: &Common, mut args: ConnectionsArgs) -> anyhow::Result<Report> {
    if common.smoke {
        args.smoke();
    }
    if args.connections == 0 || args.per_user == 0 {
        bail!("--connections and --per-user must be at least 1");
    }
    let sources = target::source_addresses(
        args.first_source,
        sources_needed(args.connections, args.sources),
    )?;
    let users_needed = args.connections.div_ceil(args.per_user);
    let mut report = Report::new("connections");
    report.param("codec", common.codec_name());
    report.param("connections", args.connections as u64);
    report.param("users", users_needed as u64);
    report.param("source_addresses", sources.len() as u64);
    report.param("first_source", sources.first().map(ToString::to_string));
    report.param("hold_secs", args.hold_secs);
    report.param("node_pid", args.node_pid.map(u64::from));

    let rest = Rest::new(&common.target)?;
    rest.health().await?;
    let prefix = crate::client::run_prefix();
    let users = setup::users(&rest, users_needed, &prefix, common.setup_concurrency).await?;
    let handshakes = stats::shared();
    let closed_early = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let opened = {
        let handshakes = &handshakes;
        let (users, sources) = (&users, &sources);
        let closed_early = &closed_early;
        let stop_rx = &stop_rx;
        hold::open_and_hold(
            args.connections,
            args.connect_concurrency,
            args.node_pid,
            args.hold_secs,
            |n| {
                let token = users[n / args.per_user].token.clone();
                let source = IpAddr::V4(sources[n % sources.len()]);
                let target = common.target.clone();
                let mut recorder = Recorder::new(handshakes);
                let (closed_early, mut stop) = (Arc::clone(closed_early), stop_rx.clone());
                async move {
                    let begun = Instant::now();
                    let mut ws = Ws::connect(&target, common.codec, &token, Some(source))
                        .await
                        .with_context(|| format!("connection {n} from {source}"))?;
                    recorder.record(begun.elapsed());
                    drop(recorder);
                    // Hold: read (which answers the node's pings) until told to stop.
                    Ok(tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                _ = stop.changed() => break,
                                got = ws.recv() => match got {
                                    Ok(Received::Frame(_)) => continue,
                                    _ => {
                                        closed_early.fetch_add(1, Ordering::Relaxed);
                                        return;
                                    }
                                },
                            }
                        }
                        ws.close().await;
                    }))
                }
            },
        )
        .await
    };
    let held = match opened {
        Ok(held) => held,
        Err(error) => {
            let _ = stop_tx.send(true);
            return Err(error);
        }
    };
    let _ = stop_tx.send(true);
    for holder in held.holders {
        let _ = holder.await;
    }

    let n = args.connections as u64;
    report.metric("connections_open", n as f64, "connections");
    report.metric(
        "connects_per_sec",
        stats::rate(n, held.connect_elapsed),
        "1/s",
    );
    report
        .latencies
        .push(stats::summary_of(&handshakes, "connect + upgrade + hello"));
    if let Some(footprint) = held.footprint {
        footprint.record(&mut report, "node");
    }
    let closed = closed_early.load(Ordering::Relaxed);
    report.check(
        "every connection stayed open while held",
        closed == 0,
        format!("{closed} of {n} closed early"),
    );
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cover_the_count() {
        assert_eq!(sources_needed(10, 0), 1);
        assert_eq!(sources_needed(25_000, 0), 1);
        assert_eq!(sources_needed(25_001, 0), 2);
        assert_eq!(sources_needed(100_000, 0), 4);
        assert_eq!(sources_needed(100_000, 7), 7);
    }
}

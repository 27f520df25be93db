//! `reference-connections`: what `connections` does to the node, done to the Socket.IO
//! reference server: open N connections (WebSocket transport, connected to the default
//! namespace), spread over loopback source addresses, hold them idle (answering the server's
//! pings), and read the server process's memory and CPU from `/proc/<pid>`, as `connections`
//! does (in two halves, see `hold`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::report::Report;
use crate::scenarios::connections::sources_needed;
use crate::scenarios::reference_fanout::ServerArgs;
use crate::sio::{Sio, SioReceived};
use crate::stats::{self, Recorder};
use crate::{hold, target};

#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceConnectionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
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
    /// The server's process id, to read its memory (VmRSS) and CPU from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

impl ReferenceConnectionsArgs {
    /// The same preset as `connections`.
    pub fn smoke(&mut self) {
        self.connections = 200;
        self.sources = 2;
        self.hold_secs = 2;
        self.connect_concurrency = 64;
    }
}

pub async fn run(smoke: bool, mut args: ReferenceConnectionsArgs) -> anyhow::Result<Report> {
    if smoke {
        args.smoke();
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let target = args.server.target()?;
    let sources = target::source_addresses(
        args.first_source,
        sources_needed(args.connections, args.sources),
    )?;
    let mut report = Report::new("reference-connections");
    report.param("server", "socket.io + redis adapter");
    report.param("connections", args.connections as u64);
    report.param("source_addresses", sources.len() as u64);
    report.param("hold_secs", args.hold_secs);
    report.param("server_pid", args.server_pid.map(u64::from));

    let handshakes = stats::shared();
    let closed_early = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let opened = {
        let (handshakes, sources, target) = (&handshakes, &sources, &target);
        let (closed_early, stop_rx, token) = (&closed_early, &stop_rx, &args.server.token);
        hold::open_and_hold(
            args.connections,
            args.connect_concurrency,
            args.server_pid,
            args.hold_secs,
            |n| {
                let source = IpAddr::V4(sources[n % sources.len()]);
                let (target, token) = (target.clone(), token.clone());
                let mut recorder = Recorder::new(handshakes);
                let (closed_early, mut stop) = (Arc::clone(closed_early), stop_rx.clone());
                async move {
                    let begun = Instant::now();
                    let mut sio = Sio::connect(&target, &token, Some(source))
                        .await
                        .with_context(|| format!("connection {n} from {source}"))?;
                    recorder.record(begun.elapsed());
                    drop(recorder);
                    // Hold: read (which answers the server's pings) until told to stop.
                    Ok(tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                _ = stop.changed() => break,
                                got = sio.recv() => match got {
                                    Ok(SioReceived::Closed(_)) | Err(_) => {
                                        closed_early.fetch_add(1, Ordering::Relaxed);
                                        return;
                                    }
                                    Ok(_) => continue,
                                },
                            }
                        }
                        sio.close().await;
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
    report.latencies.push(stats::summary_of(
        &handshakes,
        "connect + upgrade + namespace connect",
    ));
    if let Some(footprint) = held.footprint {
        footprint.record(&mut report, "server");
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

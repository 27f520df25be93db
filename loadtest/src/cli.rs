//! The command line: global settings, then one scenario.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::scenarios::bookings::StreamArgs;
use crate::scenarios::connections::ConnectionsArgs;
use crate::scenarios::fanout::FanoutArgs;
use crate::scenarios::flamegraph::FlamegraphArgs;
use crate::scenarios::payments::PaymentsArgs;
use crate::scenarios::reference::ReferenceArgs;
use crate::scenarios::reference_bookings::ReferenceBookingsArgs;
use crate::scenarios::reference_connections::ReferenceConnectionsArgs;
use crate::scenarios::reference_fanout::ReferenceFanoutArgs;
use crate::scenarios::resume::ResumeArgs;
use crate::scenarios::summarize::SummarizeArgs;

/// Drive a running node the way its clients do, over WebSocket and REST, and report.
///
/// Traffic goes to loopback addresses only. Every scenario is bounded in count and time and
/// stops by itself; the exit code is 1 when any of its checks failed.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// The node's base URL: 127.0.0.0/8, localhost or [::1] only.
    #[arg(
        long,
        global = true,
        env = "LOADTEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The WebSocket codec.
    #[arg(long, global = true, value_enum, default_value_t = CodecArg::Json)]
    pub codec: CodecArg,
    /// Where the JSON and Markdown reports go.
    #[arg(long, global = true, default_value = "target/loadtest")]
    pub report_dir: PathBuf,
    /// A name for this run, part of the report file names (`sqlite-1`).
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// Use the scenario's preset of seconds, for CI (it replaces the scenario's sizes).
    #[arg(long, global = true)]
    pub smoke: bool,
    /// Requests in flight while setting up (registering users, depositing, connecting).
    #[arg(long, global = true, default_value_t = 16)]
    pub setup_concurrency: usize,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CodecArg {
    Json,
    Msgpack,
}

impl From<CodecArg> for protocol::Codec {
    fn from(codec: CodecArg) -> Self {
        match codec {
            CodecArg::Json => protocol::Codec::Json,
            CodecArg::Msgpack => protocol::Codec::MsgPack,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Wallet-to-wallet payments over WebSocket, some to hot merchants; balances checked after.
    Payments(PaymentsArgs),
    /// Threads with several devices per participant, everyone subscribed, both posting.
    Fanout(FanoutArgs),
    /// Disconnect, miss K messages, reconnect with `since`: exactly the missed ones, in order.
    Resume(ResumeArgs),
    /// Hold N idle authenticated connections; the node's memory and CPU per connection.
    Connections(ConnectionsArgs),
    /// Guests race for the nights of a few hot listings over REST; no night booked twice.
    Bookings(StreamArgs),
    /// The usual approach for comparison: a PostgreSQL transaction with row locks per payment.
    ReferencePayments(ReferenceArgs),
    /// The usual approach for comparison: inserts guarded only by a PostgreSQL exclusion
    /// constraint, making the same attempts as `bookings`.
    ReferenceBookings(ReferenceBookingsArgs),
    /// `fanout`'s traffic through the Socket.IO reference server (Redis adapter) instead.
    ReferenceFanout(ReferenceFanoutArgs),
    /// `connections` against the Socket.IO reference server: its memory and CPU per connection.
    ReferenceConnections(ReferenceConnectionsArgs),
    /// Medians of repeated runs from the JSON reports, as Markdown.
    Summarize(SummarizeArgs),
    /// Draw `perf script` output as an SVG flame graph (`profile.sh cpu` does).
    Flamegraph(FlamegraphArgs),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_after_the_scenario_too() {
        let cli = Cli::try_parse_from([
            "loadtest", "payments", "--smoke", "--codec", "msgpack", "--hot", "5",
        ])
        .unwrap();
        assert!(cli.smoke);
        assert_eq!(cli.codec, CodecArg::Msgpack);
        match cli.scenario {
            Scenario::Payments(args) => assert_eq!(args.hot, 5),
            other => panic!("{other:?}"),
        }
    }
}

//! The load generator's binary: parse the command line, run one scenario against a node on
//! this machine, print the summary, write the reports, exit 1 if a check failed.

mod chart;
mod cli;
mod client;
mod hold;
mod procfs;
mod progress;
mod report;
mod scenarios;
mod setup;
mod sio;
mod stats;
mod target;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Scenario};
use scenarios::Common;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Scenario::Summarize(args) = &cli.scenario {
        let dir = args.from.clone().unwrap_or_else(|| cli.report_dir.clone());
        out(&scenarios::summarize::render(&scenarios::summarize::load(
            &dir,
        )?));
        return Ok(ExitCode::SUCCESS);
    }
    if let Scenario::Flamegraph(args) = &cli.scenario {
        scenarios::flamegraph::run(args)?;
        out(&format!("  flame graph: {}\n", args.out.display()));
        return Ok(ExitCode::SUCCESS);
    }
    let common = Common {
        target: target::parse_target(&cli.url)?,
        codec: cli.codec.into(),
        setup_concurrency: cli.setup_concurrency.max(1),
        smoke: cli.smoke,
    };
    let mut report = match cli.scenario {
        Scenario::Payments(args) => scenarios::payments::run(&common, args).await?,
        Scenario::Fanout(args) => scenarios::fanout::run(&common, args).await?,
        Scenario::Resume(args) => scenarios::resume::run(&common, args).await?,
        Scenario::Connections(args) => scenarios::connections::run(&common, args).await?,
        Scenario::Bookings(args) => scenarios::bookings::run(&common, args).await?,
        Scenario::ReferencePayments(args) => scenarios::reference::run(cli.smoke, args).await?,
        Scenario::ReferenceBookings(args) => {
            scenarios::reference_bookings::run(cli.smoke, args).await?
        }
        Scenario::ReferenceFanout(args) => {
            scenarios::reference_fanout::run(cli.smoke, cli.setup_concurrency.max(1), args).await?
        }
        Scenario::ReferenceConnections(args) => {
            scenarios::reference_connections::run(cli.smoke, args).await?
        }
        Scenario::Summarize(_) | Scenario::Flamegraph(_) => return Ok(ExitCode::SUCCESS),
    };
    report.label = cli.label;
    report.param("smoke", cli.smoke);
    out(&report::render_summary(&report));
    let written = report::write(&report, &cli.report_dir)?;
    out(&format!("  reports: {}\n", written.paths()));
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Print to stdout; a closed stdout (`| head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

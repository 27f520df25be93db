//! `flamegraph`: `perf script` output drawn as an SVG flame graph, with inferno (the Rust port
//! of the FlameGraph scripts) as a library, so that `profile.sh cpu` needs no tool beyond
//! `perf` and this binary. A frame's width is the CPU time of the samples that passed through
//! it (perf's sample period: nanoseconds of CPU for `perf record -e cpu-clock`, as
//! `profile.sh` records): read shares, not rates.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use inferno::collapse::perf::{Folder, Options as CollapseOptions};
use inferno::collapse::Collapse;
use inferno::flamegraph::{self, Options as FlameOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct FlamegraphArgs {
    /// The text `perf script` printed (`-` for standard input).
    #[arg(long, default_value = "-")]
    pub perf_script: PathBuf,
    /// Where the SVG goes.
    #[arg(long)]
    pub out: PathBuf,
    /// The graph's title.
    #[arg(long, default_value = "the node's CPU")]
    pub title: String,
}

/// Fold the stacks of `perf_script` and draw them as an SVG into `out`. Fails when the input
/// holds no stack at all (a profile of nothing is a mistake, not an empty picture).
pub fn draw(perf_script: impl BufRead, out: impl Write, title: &str) -> anyhow::Result<()> {
    let mut folded = Vec::new();
    let mut collapse = CollapseOptions::default();
    // One thread: the machine is shared with whatever was just measured.
    collapse.nthreads = 1;
    Folder::from(collapse)
        .collapse(perf_script, &mut folded)
        .context("folding perf's stacks")?;
    if folded.is_empty() {
        bail!("no stacks in the perf script (was perf recording the right process?)");
    }
    let mut options = FlameOptions::default();
    options.title = title.to_owned();
    options.count_name = "ns of CPU".to_owned();
    // Leave out frames under 0.2 % of the time: a profile of a few hundred samples cannot
    // tell them apart from noise, and they are most of the SVG's size.
    options.min_width = 0.2;
    flamegraph::from_reader(&mut options, folded.as_slice(), out).context("drawing the graph")
}

/// `draw` from a file (or standard input) to a file.
pub fn run(args: &FlamegraphArgs) -> anyhow::Result<()> {
    let input: Box<dyn BufRead> = if args.perf_script == Path::new("-") {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        let file = File::open(&args.perf_script)
            .with_context(|| format!("opening {}", args.perf_script.display()))?;
        Box::new(BufReader::new(file))
    };
    // Drawn before the file is created: a failed run leaves an earlier graph as it was.
    let mut svg = Vec::new();
    draw(input, &mut svg, &args.title)?;
    std::fs::write(&args.out, svg).with_context(|| format!("writing {}", args.out.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Two samples of `perf script` as it prints a `--call-graph dwarf` recording: the
    /// header line, then the stack innermost first.
    const SCRIPT: &str = "\
node 1234/1240 [001] 100.000001:    5025125 cpu-clock:pppH: 
\t    55d5c0a1b2c3 node::ws::connection::write_loop+0x13 (/opt/node)
\t    55d5c0a1b000 tokio::runtime::task::raw::poll+0x20 (/opt/node)

node 1234/1240 [001] 100.005026:    5025125 cpu-clock:pppH: 
\t    55d5c0a1c000 node::store::journal::commit+0x44 (/opt/node)
\t    55d5c0a1b000 tokio::runtime::task::raw::poll+0x20 (/opt/node)

";

    #[test]
    fn every_sampled_function_is_in_the_graph() {
        let mut svg = Vec::new();
        draw(SCRIPT.as_bytes(), &mut svg, "a test").unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("a test"));
        for function in [
            "node::ws::connection::write_loop",
            "node::store::journal::commit",
            "tokio::runtime::task::raw::poll",
        ] {
            assert!(svg.contains(function), "{function} is missing");
        }
        // The shared caller holds both samples' periods; each leaf one.
        assert!(
            svg.contains("raw::poll (10,050,250 ns of CPU, 100.00%)"),
            "the caller's time is missing: {svg}"
        );
        assert!(svg.contains("write_loop (5,025,125 ns of CPU, 50.00%)"));
    }

    #[test]
    fn a_run_writes_the_graph_and_a_failed_one_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("perf.script");
        std::fs::write(&script, SCRIPT).unwrap();
        let out = dir.path().join("flame.svg");
        let args = |perf_script: PathBuf| FlamegraphArgs {
            perf_script,
            out: out.clone(),
            title: "t".to_owned(),
        };
        run(&args(script)).unwrap();
        let drawn = std::fs::read_to_string(&out).unwrap();
        assert!(drawn.contains("node::store::journal::commit"));

        let empty = dir.path().join("empty.script");
        std::fs::write(&empty, "").unwrap();
        assert!(run(&args(empty)).is_err());
        assert!(run(&args(dir.path().join("missing.script"))).is_err());
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            drawn,
            "the graph was overwritten"
        );
    }

    #[test]
    fn a_script_without_stacks_is_refused() {
        let error = draw("".as_bytes(), &mut Vec::new(), "t").unwrap_err();
        assert!(error.to_string().contains("no stacks"), "{error}");
    }
}

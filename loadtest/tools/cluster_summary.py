#!/usr/bin/env python3
"""The summary of a cluster.sh run, as Markdown, from its load generators' JSON reports.

    python3 loadtest/tools/cluster_summary.py DIR LABEL PEAK ASKED MACHINE_KIB

DIR holds *-LABEL_N.json, one a server (`connections` against a node, `reference-connections`
against a Socket.IO server); PEAK is the largest number of connections the servers held at one
moment, ASKED the connections asked for in all, and MACHINE_KIB how far the machine's
MemAvailable fell (servers, load generators and the kernel's sockets together). A server's
KiB a connection is what the second half of its connections added (the load generator opens
them in two halves: loadtest/src/hold.rs says why). No third-party modules.
"""

import json
import pathlib
import sys


def metric(report, name):
    for m in report["metrics"]:
        if m["name"] == name:
            return m["value"]
    return None


def connect_latency(report):
    """The connect-to-ready latency: each scenario reports one, under its own name."""
    return report["latencies"][0] if report["latencies"] else {}


def main():
    folder, label = sys.argv[1], sys.argv[2]
    peak, asked, machine_kib = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    reports = [
        json.loads(path.read_text())
        for path in sorted(pathlib.Path(folder).glob(f"*connections-{label}_*.json"))
    ]
    rows, grown_kib, measured, opened, cpu = [], 0.0, 0, 0, 0.0
    failed = []
    for report in reports:
        n = int(metric(report, "connections_open") or 0)
        who = "node" if report["scenario"] == "connections" else "server"
        before = metric(report, f"{who}_rss_before") or 0.0
        half = metric(report, f"{who}_rss_half")
        if half is None:
            sys.exit(f"{report['label']}: no {who}_rss_half (a load generator older than the "
                     "two halves?)")
        held = metric(report, f"{who}_rss_held") or 0.0
        idle = metric(report, f"{who}_idle_cpu") or 0.0
        connect = connect_latency(report)
        second_half = n - n // 2
        grown_kib += max(held - half, 0.0)
        measured += second_half
        opened += n
        cpu += idle
        failed += [c["name"] for c in report["checks"] if not c["passed"]]
        rows.append(
            f"| {report['label']} | {n:,} | {before / 1024:,.0f} | {held / 1024:,.0f} | "
            f"{max(held - half, 0.0) / max(second_half, 1):.1f} | {idle:.1f} | "
            f"{connect.get('p50_ms', 0):.0f} · {connect.get('p99_ms', 0):.0f} |"
        )
    kind = "nodes" if reports and reports[0]["scenario"] == "connections" else "servers"
    print(f"# {label}: {len(reports)} {kind}, {asked:,} connections asked for\n")
    print("| server | connections | RSS before (MiB) | RSS held (MiB) | KiB a connection "
          "| idle CPU (% of a core) | connect p50 · p99 (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"| **all** | **{opened:,}** | | | **{grown_kib / max(measured, 1):.1f}** | **{cpu:.1f}** | |")
    print()
    print(f"- open at the same moment, summed over the {kind}: **{peak:,}**")
    print(f"- the machine's MemAvailable fell by {machine_kib / 1024:,.0f} MiB: "
          f"{machine_kib / max(peak, 1):.1f} KiB a connection, both ends and the kernel")
    ok = peak >= asked and opened >= asked and not failed and len(reports) > 0
    why = failed or (["a server's report is missing"] if not reports else []) or (
        [f"{opened:,} opened"] if opened < asked else [f"at most {peak:,} open at once"]
    )
    print(f"- checks: {'all passed' if ok else 'FAILED: ' + ', '.join(why)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

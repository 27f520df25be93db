#!/usr/bin/env python3
"""Where the machine's CPU goes for SECS seconds: the node by thread, the rest by process.

    python3 loadtest/tools/cpu_by_thread.py NODE_PID SECS

Reads utime + stime from /proc twice, SECS apart, and prints each share in percent of one
core: each of the node's threads (by name and id; names are cut at 15 bytes), then every other
process grouped by command name (postgres backends together, the load generator, Redis), and
what was idle. Linux only; no third-party modules.
"""

import os
import sys
import time
from collections import defaultdict

TICKS = os.sysconf("SC_CLK_TCK")


def stat(path):
    """(name, utime + stime in ticks) of a /proc/…/stat file, or None if it is gone."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces; the fields after it are fixed.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[11]) + int(fields[12])


def sample(node_pid):
    threads = {}
    for tid in os.listdir(f"/proc/{node_pid}/task"):
        got = stat(f"/proc/{node_pid}/task/{tid}/stat")
        if got:
            threads[tid] = got
    processes = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and pid != str(node_pid):
            got = stat(f"/proc/{pid}/stat")
            if got:
                processes[pid] = got
    with open("/proc/stat", encoding="utf-8") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return threads, processes, cpu


def deltas(before, after):
    by_name = defaultdict(int)
    for key, (name, ticks) in after.items():
        if key in before:
            by_name[name] += ticks - before[key][1]
        else:
            by_name[name] += ticks
    return by_name


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    node_pid, secs = int(sys.argv[1]), float(sys.argv[2])
    t0, p0, c0 = sample(node_pid)
    started = time.monotonic()
    time.sleep(secs)
    t1, p1, c1 = sample(node_pid)
    wall = time.monotonic() - started
    idle = (c1[3] + c1[4] - c0[3] - c0[4]) / TICKS
    total = sum(c1) / TICKS - sum(c0) / TICKS

    def pct(ticks):
        return 100.0 * ticks / TICKS / wall

    print(f"over {wall:.1f} s; percent of one core (the machine has {os.cpu_count()})")
    print("\nthe node, by thread (the main thread's id is the node's):")
    node = {tid: ticks - t0.get(tid, (name, 0))[1] for tid, (name, ticks) in t1.items()}
    for tid, ticks in sorted(node.items(), key=lambda kv: -kv[1]):
        if pct(ticks) >= 0.5:
            print(f"  {pct(ticks):6.1f} %  {t1[tid][0]} ({tid})")
    print(f"  {pct(sum(node.values())):6.1f} %  the node in all")
    print("\nother processes, by name:")
    rest = deltas(p0, p1)
    for name, ticks in sorted(rest.items(), key=lambda kv: -kv[1]):
        if pct(ticks) >= 0.5:
            print(f"  {pct(ticks):6.1f} %  {name}")
    if total > 0:
        print(f"\nidle: {100.0 * idle / total:.1f} % of the machine")


if __name__ == "__main__":
    main()

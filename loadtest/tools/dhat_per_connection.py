#!/usr/bin/env python3
"""The heap one idle connection holds, by allocation site (BENCHMARKS.md section 4).

Takes two DHAT profiles (valgrind --tool=dhat) of a node holding N_SMALL and N_LARGE idle
connections, and prints the difference at DHAT's peak divided by N_LARGE - N_SMALL: bytes and
blocks per connection, by the first frame outside the allocator and the standard library,
and, for spawned tasks, by the future that was spawned.

    python3 loadtest/tools/dhat_per_connection.py small.json large.json 200 1200
"""
import collections
import json
import re
import sys

# Less than this a connection cannot hold: actix-http alone gives it two 8 KiB buffers.
MIN_PLAUSIBLE_BYTES = 16 * 1024
SKIP = re.compile(r"<?(alloc|core|std|bytes|hashbrown|tokio::util|smallvec|dashmap|slab|"
                  r"__rustc)::")
# A spawned task's cell is allocated under tokio's `OwnedTasks::bind`; the `spawn…<F>` frame
# further down names the future F that it holds.
TASK_BIND = re.compile(r"OwnedTasks<S>::bind")
SPAWN = re.compile(r"^spawn\w*<(.+)> \(")


def sites(path):
    data = json.load(open(path))
    table = [entry.split(": ", 1)[-1] for entry in data["ftbl"]]
    by_site = collections.Counter()
    blocks = collections.Counter()
    for point in data["pps"]:
        frames = [table[i] for i in point["fs"]]
        if any(TASK_BIND.search(f) for f in frames[:16]):
            spawn = next((m for m in map(SPAWN.search, frames) if m), None)
            site = "task: " + (spawn.group(1)[:100] if spawn else "?")
        else:
            site = "?"
            for frame in frames[1:]:
                name, _, place = frame.rpartition(" (")
                if "::" not in name or place.startswith("library/") or SKIP.match(name):
                    continue
                site = f"{name[:100]} @{place.rstrip(')').split('/')[-1]}"
                break
        by_site[site] += point.get("gb", 0)
        blocks[site] += point.get("gbk", 0)
    return by_site, blocks


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    small, large = sys.argv[1], sys.argv[2]
    n_small, n_large = int(sys.argv[3]), int(sys.argv[4])
    (a, ab), (b, bb) = sites(small), sites(large)
    per = n_large - n_small
    rows = [((b[k] - a.get(k, 0)) / per, (bb[k] - ab.get(k, 0)) / per, k) for k in b]
    rows.sort(reverse=True)
    print("| bytes | blocks | site |\n|---:|---:|---|")
    for size, count, site in rows:
        if size < 32:
            break
        print(f"| {size:,.0f} | {count:.2f} | {site} |")
    total = sum(r[0] for r in rows)
    print(f"| **{total:,.0f}** | {sum(r[1] for r in rows):.1f} | in all |")
    if total < MIN_PLAUSIBLE_BYTES:
        # An idle connection holds at least its socket's buffers: a total this small means
        # DHAT did not see the node's allocations (a build on jemalloc, say), not a small heap.
        sys.exit(f"only {total:,.0f} bytes a connection: DHAT did not see the node's "
                 "allocations (was the node built on jemalloc? see profile.sh heap)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PostgreSQL's time by statement, from a server log written with
`log_min_duration_statement = 0` (BENCHMARKS.md section 4).

Each logged duration is attributed to its phase (parse, bind, execute, or a simple-protocol
statement) and to the statement's first 60 characters, with parameters folded, so the many
batch sizes of one statement count as one. Prints the largest totals, with counts, averages
and shares of all the time logged.

    python3 loadtest/tools/pg_statements.py server.log [TOP]
"""
import collections
import re
import sys

LINE = re.compile(
    r"duration: ([0-9.]+) ms\s+(statement|execute [^:]*|parse [^:]*|bind [^:]*): (.{0,60})"
)


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    total = collections.Counter()
    count = collections.Counter()
    with open(path, errors="replace") as log:
        for line in log:
            found = LINE.search(line)
            if not found:
                continue
            phase = found.group(2).split()[0]
            text = re.sub(r"\$\d+", "$", found.group(3))
            text = re.sub(r"\(\$.*", "(…", text)
            total[(phase, text)] += float(found.group(1))
            count[(phase, text)] += 1
    logged = sum(total.values()) or 1.0
    print(f"{'ms':>9} {'share':>6} {'count':>7} {'avg ms':>8}  phase     statement")
    for (phase, text), ms in total.most_common(top):
        n = count[(phase, text)]
        print(f"{ms:9.0f} {100 * ms / logged:5.1f}% {n:7d} {ms / n:8.2f}  {phase:9s} {text}")
    print(f"{logged:9.0f} ms logged in all")


if __name__ == "__main__":
    main()

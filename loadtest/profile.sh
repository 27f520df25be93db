#!/usr/bin/env bash
# The profiles behind BENCHMARKS.md section 4, against a fresh release node on PostgreSQL +
# Redis started as bench.sh starts it.
#
#   bash loadtest/profile.sh cpu DELAY SECS SCENARIO [ARGS…]
#       perf call graphs of the node for SECS seconds, DELAY seconds into the scenario (after
#       its setup); prints the node's CPU by part (loadtest/tools/perf_parts.py) and draws the
#       flame graph $OUT/flamegraph-SCENARIO.svg (`loadtest flamegraph`). Example:
#       bash loadtest/profile.sh cpu 4 5 payments --users 200 --payments-per-user 400 --hot 3 --hot-share 0.2 --in-flight 8
#   bash loadtest/profile.sh statements DELAY SECS SCENARIO [ARGS…]
#       PostgreSQL's time by statement while the scenario runs, from the server log with every
#       statement's duration logged for the node's database only (from DELAY to DELAY+SECS
#       seconds into the scenario; loadtest/tools/pg_statements.py). Needs to read the server
#       log: $PG_LOG, by default the newest /var/log/postgresql/*.log.
#   bash loadtest/profile.sh threads DELAY SECS SCENARIO [ARGS…]
#       the machine's CPU for SECS seconds, DELAY seconds into the scenario: the node by thread
#       (HTTP workers, actor arbiters, the main thread with the journal writer), every other
#       process by name, and idle (loadtest/tools/cpu_by_thread.py).
#   bash loadtest/profile.sh heap [N_SMALL N_LARGE]
#       the node under valgrind's DHAT twice, holding N_SMALL then N_LARGE idle connections
#       (default 200 and 1200); prints the heap one idle connection holds, by allocation site
#       (loadtest/tools/dhat_per_connection.py).
#
# PROFILE_NODE_BIN profiles another build of the node (an older one, say) instead of this one
# (for heap, build it with --no-default-features: DHAT cannot see jemalloc's allocations).
# Needs perf (cpu) or valgrind (heap), PostgreSQL at $PG_URL and Redis at $REDIS_URL_BENCH.
# Output: $PROFILE_DIR (default target/loadtest/profile): perf.data, perf.script and the
# flame graph (cpu), the DHAT profiles, the load generator's reports. Each node gets its own database, dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${PROFILE_DIR:-$TARGET_DIR/loadtest/profile}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_BENCH="${REDIS_URL_BENCH:-redis://127.0.0.1:6379}"
mode="${1:-}"
[ -n "$mode" ] && shift

cargo build --release -p node -p loadtest
NODE_BIN="${PROFILE_NODE_BIN:-$TARGET_DIR/release/node}"
LOADTEST_BIN="$TARGET_DIR/release/loadtest"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
# Under valgrind the node takes a while to stop and write its profile.
NODE_STOP_TICKS=480
# shellcheck source=loadtest/node.sh
. loadtest/node.sh
cleanup() { stop_node; rm -rf "$TMP"; }
trap cleanup EXIT

# load_in_background LABEL SCENARIO [ARGS…]: the load generator against the node, in the
# background (its pid in $load).
load_in_background() {
  local label=$1; shift
  "$LOADTEST_BIN" --url "$URL" --codec msgpack --report-dir "$OUT" --label "$label" \
    --setup-concurrency 32 "$@" &
  load=$!
}

case "$mode" in
  cpu)
    [ $# -ge 3 ] || { echo "usage: $0 cpu DELAY SECS SCENARIO [ARGS…]" >&2; exit 2; }
    delay=$1 secs=$2; shift 2
    start_node postgres
    load_in_background profile "$@"
    sleep "$delay"
    # cpu-clock: the flame graph's widths are its sample periods, nanoseconds of CPU.
    perf record -e cpu-clock -F 199 --call-graph dwarf -o "$OUT/perf.data" -p "$NODE_PID" -- sleep "$secs"
    wait "$load"
    stop_node
    perf script -i "$OUT/perf.data" 2>/dev/null >"$OUT/perf.script"
    python3 loadtest/tools/perf_parts.py <"$OUT/perf.script"
    "$LOADTEST_BIN" flamegraph --perf-script "$OUT/perf.script" --out "$OUT/flamegraph-$1.svg" \
      --title "the node's CPU: $*"
    ;;
  threads)
    [ $# -ge 3 ] || { echo "usage: $0 threads DELAY SECS SCENARIO [ARGS…]" >&2; exit 2; }
    delay=$1 secs=$2; shift 2
    start_node postgres
    load_in_background threads "$@"
    sleep "$delay"
    python3 loadtest/tools/cpu_by_thread.py "$NODE_PID" "$secs"
    wait "$load"
    ;;
  statements)
    [ $# -ge 3 ] || { echo "usage: $0 statements DELAY SECS SCENARIO [ARGS…]" >&2; exit 2; }
    delay=$1 secs=$2; shift 2
    # shellcheck disable=SC2012
    log="${PG_LOG:-$(ls -t /var/log/postgresql/*.log 2>/dev/null | head -1)}"
    [ -r "$log" ] || { echo "FATAL: cannot read the PostgreSQL server log (set PG_LOG)" >&2; exit 1; }
    NODE_DB_SETTING=log_min_duration_statement=0 start_node postgres
    load_in_background statements "$@"
    sleep "$delay"
    from=$(stat -c %s "$log")
    sleep "$secs"
    to=$(stat -c %s "$log")
    dd if="$log" of="$OUT/statements.log" bs=1M iflag=skip_bytes,count_bytes skip="$from" \
      count="$((to - from))" status=none
    wait "$load"
    stop_node
    python3 loadtest/tools/pg_statements.py "$OUT/statements.log"
    ;;
  heap)
    small="${1:-200}" large="${2:-1200}"
    # DHAT sees only the C library's malloc, and the node's default build allocates through
    # jemalloc, which valgrind cannot see (every site would read zero). So the profile runs a
    # build on the system allocator, in a target directory of its own: target/release/node
    # stays the build that bench.sh and cluster.sh run (the first time, a full build).
    if [ -z "${PROFILE_NODE_BIN:-}" ]; then
      cargo build --release -p node --no-default-features --target-dir "$TARGET_DIR/system-malloc"
      NODE_BIN="$TARGET_DIR/system-malloc/release/node"
    fi
    # (grep reads all of nm's output: with -q it would stop early, and pipefail would fail nm.)
    if nm "$NODE_BIN" 2>/dev/null | grep _rjem_malloc >/dev/null; then
      echo "FATAL: $NODE_BIN allocates through jemalloc, which DHAT cannot see; build it with --no-default-features" >&2
      exit 2
    fi
    for n in "$small" "$large"; do
      start_node postgres valgrind --tool=dhat --dhat-out-file="$OUT/dhat-$n.json"
      # Gently: under valgrind the node is slow, and a fast ramp times its database out.
      "$LOADTEST_BIN" --url "$URL" --codec msgpack --report-dir "$OUT" --label "dhat-$n" \
        --setup-concurrency 8 connections --connections "$n" --hold-secs 20 \
        --connect-concurrency 8
      stop_node
    done
    python3 loadtest/tools/dhat_per_connection.py "$OUT/dhat-$small.json" "$OUT/dhat-$large.json" \
      "$small" "$large"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2
    ;;
esac

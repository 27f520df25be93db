#!/usr/bin/env bash
# The benchmark behind BENCHMARKS.md: release builds, every scenario $RUNS times against a
# fresh release node on SQLite and on PostgreSQL + Redis, and side by side in the same run the
# references at the same sizes: payments as a row-locking PostgreSQL transaction each, bookings
# as inserts guarded by a PostgreSQL exclusion constraint (plain, and ON CONFLICT DO NOTHING),
# fanout and connections through a Socket.IO server with its Redis adapter
# (loadtest/reference/socketio); then the medians.
#
#   bash loadtest/bench.sh            # everything (about 35 minutes on 2 cores, PostgreSQL alone 7 to 15 by the machine; the cluster 10 more)
#   BENCH_BACKENDS=sqlite BENCH_RUNS=1 bash loadtest/bench.sh
#   BENCH_SOCKETIO=0 bash loadtest/bench.sh      # without the Socket.IO reference
#   BENCH_SCENARIOS="bookings fanout" bash loadtest/bench.sh   # some scenarios (and their references)
#   BENCH_BASELINE_BIN=/path/to/old/node bash loadtest/bench.sh  # old against new, alternating
#   BENCH_PAY_RATES="10000 20000" bash loadtest/bench.sh  # the open-loop payment rates ("" for none)
#   BENCH_CLUSTER=0 bash loadtest/bench.sh       # without cluster.sh's 100,000 connections at the end
#
# Needs PostgreSQL at $PG_URL and Redis at $REDIS_URL_BENCH for the postgres runs and the
# Socket.IO reference (as .ci/run has them), and node + npm for the latter (`npm ci` from the
# npm registry, once). Each node gets its own fresh database (created, then dropped), each
# Socket.IO server is fresh too, and each is stopped after its run: nothing is left running.
# Reports: $REPORT_DIR/*.json|md|png, medians: summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
REPORT_DIR="${LOADTEST_REPORT_DIR:-$TARGET_DIR/loadtest/bench}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_BENCH="${REDIS_URL_BENCH:-redis://127.0.0.1:6379}"
BACKENDS="${BENCH_BACKENDS:-sqlite postgres}"
RUNS="${BENCH_RUNS:-3}"
CODEC="${BENCH_CODEC:-msgpack}"
SOCKETIO="${BENCH_SOCKETIO:-1}"
# The 100,000 connections over a cluster of nodes at the end (0: not); see cluster.sh.
CLUSTER="${BENCH_CLUSTER:-1}"
# Which of the node's scenarios to run (their references follow them).
SCENARIOS="${BENCH_SCENARIOS:-payments fanout resume connections bookings}"
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
SIO_DIR=loadtest/reference/socketio

# The sizes (each scenario is bounded by these and by its --max-secs).
PAY_ARGS=(--users "${PAY_USERS:-200}" --payments-per-user "${PAY_PER_USER:-200}" --hot 3 --hot-share 0.2 --in-flight 8)
FANOUT_ARGS=(--threads "${FANOUT_THREADS:-100}" --devices 4 --messages "${FANOUT_MESSAGES:-50}" --in-flight 4)
# 999 missed plus the live post racing the reconnect: gaps of up to 1,000, all replayed.
RESUME_ARGS=(--clients "${RESUME_CLIENTS:-10}" --missed 999 --rounds 3)
CONN_ARGS=(--connections "${CONN_COUNT:-10000}" --hold-secs "${CONN_HOLD_SECS:-20}")
REF_ARGS=(--users "${PAY_USERS:-200}" --payments-per-user "${PAY_PER_USER:-200}" --hot 3 --hot-share 0.2 --in-flight 8 --pool 64)
# And at a load both keep up with (50 payments in flight), where latency is not queueing.
PAY_LIGHT_ARGS=(--users 50 --payments-per-user 200 --hot 3 --hot-share 0.2 --in-flight 1)
REF_LIGHT_ARGS=(--users 50 --payments-per-user 200 --hot 3 --hot-share 0.2 --in-flight 1 --pool 64)
# And offered at fixed rates (an open loop, as independent terminals pay): the ack latency at a
# given throughput, where the closed loops above measure their own queue. About 4 s a rate.
# Whole payments a second (bash arithmetic); a rate too low for one payment per connection
# fails its run (loadtest refuses --payments-per-user 0).
PAY_RATES="${BENCH_PAY_RATES-5000 10000 15000 20000}"
PAY_RATE_SECS="${BENCH_PAY_RATE_SECS:-4}"
PAY_RATE_USERS=200
# The same seeded attempt stream for the node and for the exclusion-constraint reference.
BOOK_ARGS=(--listings "${BOOK_LISTINGS:-5}" --guests "${BOOK_GUESTS:-64}" --attempts-per-guest "${BOOK_PER_GUEST:-100}" \
  --in-flight 1 --days "${BOOK_DAYS:-180}" --max-nights 7 --seed 1)

echo "=== building (release)"
cargo build --release -p node -p loadtest
NODE_BIN="$TARGET_DIR/release/node"
# An older build to compare with: each node run is then preceded by the same run against it,
# labelled BACKEND-base…, so the two alternate on the same machine within minutes. Build it in
# a checkout with a target directory of its own: cargo names a workspace's units by their
# paths within it, so an older checkout built into this target directory is taken for this
# one, and the build above then finds nothing to do when the sources are older than it.
BASELINE_BIN="${BENCH_BASELINE_BIN:-}"
if [ -n "$BASELINE_BIN" ] && cmp -s "$BASELINE_BIN" "$NODE_BIN"; then
  echo "FATAL: the baseline $BASELINE_BIN is the same binary as $NODE_BIN" >&2
  exit 1
fi
LOADTEST_BIN="$TARGET_DIR/release/loadtest"
mkdir -p "$REPORT_DIR"
# Idle connections need file descriptors on both ends: as many as the hard limit allows (the
# node and the loadtest each hold one per connection).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || echo "warning: could not raise the open-file limit"

if [ "$SOCKETIO" != 0 ]; then
  echo "=== installing the Socket.IO reference (npm ci)"
  (cd "$SIO_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

TMP="$(mktemp -d)"
# shellcheck source=loadtest/node.sh
. loadtest/node.sh
SIO_PID=""
stop_sio() {
  if [ -n "$SIO_PID" ] && kill -0 "$SIO_PID" 2>/dev/null; then
    kill "$SIO_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$SIO_PID" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$SIO_PID" 2>/dev/null || true
  fi
  SIO_PID=""
}
cleanup() { stop_sio; stop_node; rm -rf "$TMP"; }
trap cleanup EXIT

# start_sio: a fresh Socket.IO reference server on a free port; sets SIO_PID and SIO_URL.
start_sio() {
  local log
  log="$(mktemp "$TMP/sio.XXXX")"
  PORT=0 REDIS_URL="$REDIS_URL_BENCH" node "$SIO_DIR/server.js" >"$log" 2>&1 &
  SIO_PID=$!
  SIO_URL="http://127.0.0.1:$(listening_port "$log" "$SIO_PID" "the Socket.IO reference")"
}

failed=()
# bench_sio RUN SCENARIO [ARGS…]: one Socket.IO reference scenario against its own fresh server.
bench_sio() {
  local run=$1 scenario=$2; shift 2
  start_sio
  [ "$scenario" = reference-connections ] && set -- "$@" --server-pid "$SIO_PID"
  echo "=== $scenario on socket.io + redis, run $run (server pid $SIO_PID, $SIO_URL)"
  if ! "$LOADTEST_BIN" --report-dir "$REPORT_DIR" --label "socketio-$run" --setup-concurrency 32 \
      "$scenario" --server-url "$SIO_URL" "$@"; then
    failed+=("$scenario socketio-$run")
  fi
  stop_sio
}

# bench_one BACKEND RUN SCENARIO [ARGS…]: one scenario against its own fresh node (labelled
# BACKEND$TAG-RUN).
TAG=""
bench_one() {
  local backend=$1 run=$2 scenario=$3; shift 3
  start_node "$backend"
  [ "$scenario" = connections ] && set -- "$@" --node-pid "$NODE_PID"
  echo "=== $scenario on $backend, run $run (node pid $NODE_PID, $URL)"
  if ! "$LOADTEST_BIN" --url "$URL" --codec "$CODEC" --report-dir "$REPORT_DIR" \
      --label "$backend$TAG-$run" --setup-concurrency 32 "$scenario" "$@"; then
    failed+=("$scenario $backend$TAG-$run")
  fi
  stop_node
}

# bench BACKEND RUN SCENARIO [ARGS…]: bench_one, after the same run on the baseline if any.
bench() {
  if [ -n "$BASELINE_BIN" ]; then
    NODE_BIN="$BASELINE_BIN" TAG="-base$TAG" bench_one "$@"
  fi
  bench_one "$@"
}

for run in $(seq 1 "$RUNS"); do
  for backend in $BACKENDS; do
    if wants payments; then
      bench "$backend" "$run" payments "${PAY_ARGS[@]}"
      TAG=-light bench "$backend" "$run" payments "${PAY_LIGHT_ARGS[@]}"
      for rate in $PAY_RATES; do
        TAG="-rate$rate" bench "$backend" "$run" payments --users "$PAY_RATE_USERS" \
          --payments-per-user $((rate * PAY_RATE_SECS / PAY_RATE_USERS)) --hot 3 --hot-share 0.2 \
          --in-flight 16 --rate "$rate"
      done
    fi
    if wants fanout; then bench "$backend" "$run" fanout "${FANOUT_ARGS[@]}"; fi
    if wants resume; then bench "$backend" "$run" resume "${RESUME_ARGS[@]}"; fi
    if wants connections; then bench "$backend" "$run" connections "${CONN_ARGS[@]}"; fi
    if wants bookings; then bench "$backend" "$run" bookings "${BOOK_ARGS[@]}"; fi
  done
  if [ "$SOCKETIO" != 0 ]; then
    # The Socket.IO reference, right after the node's runs of this round, at the same sizes.
    if wants fanout; then bench_sio "$run" reference-fanout "${FANOUT_ARGS[@]}"; fi
    if wants connections; then bench_sio "$run" reference-connections "${CONN_ARGS[@]}"; fi
  fi
  if [[ " $BACKENDS " == *" postgres "* ]]; then
    # The reference, in the same PostgreSQL, right after the node's runs of this round.
    REF_DB="bench_ref_$(date +%s%N)"
    psql "$PG_URL" -qc "CREATE DATABASE $REF_DB" >/dev/null
    if wants payments; then
      echo "=== reference-payments on postgres, run $run"
      "$LOADTEST_BIN" --report-dir "$REPORT_DIR" --label "postgres-$run" reference-payments \
        --database-url "${PG_URL%/*}/$REF_DB" "${REF_ARGS[@]}" || failed+=("reference-payments postgres-$run")
      echo "=== reference-payments (light) on postgres, run $run"
      "$LOADTEST_BIN" --report-dir "$REPORT_DIR" --label "postgres-light-$run" reference-payments \
        --database-url "${PG_URL%/*}/$REF_DB" "${REF_LIGHT_ARGS[@]}" ||
        failed+=("reference-payments postgres-light-$run")
    fi
    # Twice: the plain INSERT (a violation is the rejection; overlapping inserts in flight at
    # once can deadlock: counted as deadlocked) and INSERT … ON CONFLICT DO NOTHING (never does).
    if wants bookings; then
      echo "=== reference-bookings on postgres, run $run"
      "$LOADTEST_BIN" --report-dir "$REPORT_DIR" --label "postgres-$run" reference-bookings \
        --database-url "${PG_URL%/*}/$REF_DB" "${BOOK_ARGS[@]}" --pool 64 --insert plain ||
        failed+=("reference-bookings postgres-$run")
      echo "=== reference-bookings (ON CONFLICT DO NOTHING) on postgres, run $run"
      "$LOADTEST_BIN" --report-dir "$REPORT_DIR" --label "postgres-on-conflict-$run" reference-bookings \
        --database-url "${PG_URL%/*}/$REF_DB" "${BOOK_ARGS[@]}" --pool 64 --insert on-conflict ||
        failed+=("reference-bookings postgres-on-conflict-$run")
    fi
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $REF_DB" >/dev/null
  fi
done

# 100,000 idle connections at once, over a cluster of nodes and one of Socket.IO servers
# (cluster.sh: one process may not open that many files here), once, after the rounds.
if [ "$CLUSTER" != 0 ] && wants connections && [[ " $BACKENDS " == *" postgres "* ]]; then
  echo "=== connections over a cluster (loadtest/cluster.sh)"
  CLUSTER_BUILD=0 NODE_BIN="$NODE_BIN" LOADTEST_BIN="$LOADTEST_BIN" CLUSTER_SOCKETIO="$SOCKETIO" \
    CLUSTER_DIR="$REPORT_DIR/cluster" PG_URL="$PG_URL" REDIS_URL_BENCH="$REDIS_URL_BENCH" \
    bash loadtest/cluster.sh || failed+=("connections over a cluster")
fi

{
  echo "## Machine"
  echo
  echo '```'
  echo "nproc: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo || true
  free -h
  echo '```'
  echo
  echo "## Medians of $RUNS runs (codec $CODEC)"
  echo
  "$LOADTEST_BIN" summarize --from "$REPORT_DIR"
  for cluster in "$REPORT_DIR"/cluster/summary-*.md; do
    if [ -f "$cluster" ]; then echo; cat "$cluster"; fi
  done
} >"$REPORT_DIR/summary.md"
echo "=== medians in $REPORT_DIR/summary.md"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: runs with failed checks: ${failed[*]}"
  exit 1
fi

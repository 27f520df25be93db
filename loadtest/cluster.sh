#!/usr/bin/env bash
# Hold more idle authenticated WebSocket connections than one process may have files open
# (20,000 on the machines BENCHMARKS.md was measured on, a hard limit): CLUSTER_NODES release
# nodes sharing one PostgreSQL database, one Redis and one signing key (a cluster, as a
# deployment runs it), each held by a load generator of its own from loopback source
# addresses of its own, all open at the same time. Reports the peak of the nodes' summed
# `node_ws_connections` gauges, the nodes' memory per connection (the VmRSS growth over the
# second half of each node's connections, summed, over those connections: loadtest/src/hold.rs)
# and their idle CPU. Then the same with as many
# Socket.IO reference servers sharing its Redis adapter (bench.sh's reference), counted by
# the kernel's established connections on their ports.
#
#   bash loadtest/cluster.sh                                   # 100,000 over 6 nodes
#   CLUSTER_CONNECTIONS=6000 CLUSTER_NODES=3 CLUSTER_HOLD_SECS=5 bash loadtest/cluster.sh
#
# Needs PostgreSQL at $PG_URL and Redis at $REDIS_URL_BENCH, and node + npm for Socket.IO
# (CLUSTER_SOCKETIO=0 to leave it out). The database is created and dropped; the servers and
# the load generators are stopped afterwards. Reports: $CLUSTER_DIR/*-cluster_N.json|md per
# server, and summary-node.md, summary-socketio.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CLUSTER_DIR="${CLUSTER_DIR:-$TARGET_DIR/loadtest/cluster}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_BENCH="${REDIS_URL_BENCH:-redis://127.0.0.1:6379}"
NODES="${CLUSTER_NODES:-6}"
TOTAL="${CLUSTER_CONNECTIONS:-100000}"
# Long enough that every load generator is still holding when the last one has connected.
HOLD="${CLUSTER_HOLD_SECS:-60}"
CODEC="${CLUSTER_CODEC:-msgpack}"
# Then the same with as many Socket.IO reference servers on its Redis adapter (0: not);
# CLUSTER_NODES_RUN=0 leaves the nodes out (Socket.IO only).
SOCKETIO="${CLUSTER_SOCKETIO:-1}"
SIO_DIR=loadtest/reference/socketio
NODE_BIN="${NODE_BIN:-$TARGET_DIR/release/node}"
LOADTEST_BIN="${LOADTEST_BIN:-$TARGET_DIR/release/loadtest}"
PER_NODE=$(( (TOTAL + NODES - 1) / NODES ))
# Source addresses each load generator needs (25,000 connections an address at most).
PER_SOURCES=$(( (PER_NODE + 24999) / 25000 ))

if [ "${CLUSTER_BUILD:-1}" != 0 ]; then
  cargo build --release -p node -p loadtest
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || echo "warning: could not raise the open-file limit"
LIMIT="$(ulimit -n)"
if [ "$PER_NODE" -gt $(( LIMIT - 200 )) ]; then
  echo "FATAL: $PER_NODE connections a node would not fit under the open-file limit $LIMIT;" \
    "raise CLUSTER_NODES" >&2
  exit 1
fi
rm -rf "$CLUSTER_DIR" && mkdir -p "$CLUSTER_DIR"

TMP="$(mktemp -d)"
DB="cluster_$(date +%s%N)"
ALL_PIDS=()
# stop_pids PID…: ask each to stop, give it 20 s, then kill it.
stop_pids() {
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
cleanup() {
  stop_pids "${ALL_PIDS[@]}"
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
. loadtest/node.sh   # listening_port

psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
mkdir -p "$TMP/data"
failed=0

# start_servers KIND: $NODES nodes (KIND node) or Socket.IO servers (KIND socketio); sets
# SERVER_PIDS and URLS.
start_servers() {
  SERVER_PIDS=()
  URLS=()
  for i in $(seq 1 "$NODES"); do
    if [ "$1" = node ]; then
      # One at a time: the first creates the schema and the signing key the others read. A
      # small pool each: idle connections do not use the database, and the nodes share its 100.
      env -u REDIS_URL DATABASE_URL="${PG_URL%/*}/$DB" REDIS_URL="$REDIS_URL_BENCH" \
        NODE_DATA_DIR="$TMP/data" NODE_LISTEN=127.0.0.1:0 DB_POOL_CONNECTIONS_MAX=4 \
        LOG_FORMAT=json RUST_LOG=warn,node::startup=info ARGON2_MEMORY_KIB=1024 \
        ARGON2_ITERATIONS=1 "$NODE_BIN" >"$TMP/$1$i.log" 2>&1 &
    else
      PORT=0 REDIS_URL="$REDIS_URL_BENCH" node "$SIO_DIR/server.js" >"$TMP/$1$i.log" 2>&1 &
    fi
    SERVER_PIDS+=("$!")
    ALL_PIDS+=("$!")
    URLS+=("http://127.0.0.1:$(listening_port "$TMP/$1$i.log" "$!" "$1 $i")")
  done
}

# open_now KIND URL: the connections the server at URL holds now. A node's own gauge counts
# authenticated connections; for Socket.IO, the kernel's established ones on its address and
# port (only the server's end: a load generator's socket on 127.0.0.2… may have the same
# local port).
open_now() {
  if [ "$1" = node ]; then
    curl -sf --max-time 5 "$2/metrics" | awk '$1 == "node_ws_connections" {print $2}' || true
  else
    ss -Htn state established "( src 127.0.0.1:${2##*:} )" 2>/dev/null | wc -l
  fi
}

# hold KIND: hold $TOTAL connections on $NODES servers of KIND at once, then summarise.
hold() {
  local kind=$1 label scenario pid_flag url_flag
  start_servers "$kind"
  echo "=== $NODES $kind servers up: ${URLS[*]}; $PER_NODE connections each, held ${HOLD}s"
  if [ "$kind" = node ]; then
    label=cluster; scenario=connections; pid_flag=--node-pid
  else
    label=socketio_cluster; scenario=reference-connections; pid_flag=--server-pid
  fi
  local before_avail min_avail avail gens=() peak=0 ticks=0 running sum n
  before_avail="$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)"
  min_avail="$before_avail"
  for i in $(seq 1 "$NODES"); do
    local first=$(( 2 + (i - 1) * PER_SOURCES )) url=${URLS[$((i - 1))]}
    if [ "$kind" = node ]; then
      url_flag=(--url "$url")
    else
      url_flag=(--server-url "$url")
    fi
    local common=(--codec "$CODEC")
    [ "$kind" = node ] || common=()
    "$LOADTEST_BIN" "${common[@]}" --report-dir "$CLUSTER_DIR" --label "${label}_$i" \
      "$scenario" "${url_flag[@]}" --connections "$PER_NODE" --hold-secs "$HOLD" \
      --sources "$PER_SOURCES" --first-source "$first" --connect-concurrency 64 \
      "$pid_flag" "${SERVER_PIDS[$((i - 1))]}" >"$TMP/gen-$kind$i.log" 2>&1 &
    gens+=("$!")
    ALL_PIDS+=("$!")
  done
  # Every second: the servers' open connections, summed; the peak is what was held at once.
  while :; do
    running=0
    for pid in "${gens[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 1 ] || break
    sum=0
    for url in "${URLS[@]}"; do
      n="$(open_now "$kind" "$url")"
      sum=$(( sum + ${n:-0} ))
    done
    [ "$sum" -gt "$peak" ] && peak="$sum"
    avail="$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)"
    [ "$avail" -lt "$min_avail" ] && min_avail="$avail"
    ticks=$(( ticks + 1 ))
    if [ -t 1 ]; then
      printf '\r%s connections open (peak %s of %s)   ' "$sum" "$peak" "$TOTAL"
    elif [ $(( ticks % 10 )) = 0 ]; then
      echo "$sum connections open (peak $peak of $TOTAL)"
    fi
    sleep 1
  done
  [ -t 1 ] && echo
  for i in $(seq 1 "$NODES"); do
    if ! wait "${gens[$((i - 1))]}"; then
      echo "load generator $i ($kind) failed:" >&2
      tail -20 "$TMP/gen-$kind$i.log" >&2
      failed=1
    fi
  done
  stop_pids "${SERVER_PIDS[@]}"
  ALL_PIDS=()   # all stopped or waited for: nothing for the cleanup to signal
  python3 loadtest/tools/cluster_summary.py "$CLUSTER_DIR" "$label" "$peak" \
    "$(( NODES * PER_NODE ))" "$(( before_avail - min_avail ))" \
    | tee "$CLUSTER_DIR/summary-$kind.md" || failed=1
}

[ "${CLUSTER_NODES_RUN:-1}" = 0 ] || hold node
if [ "$SOCKETIO" != 0 ]; then
  echo "=== installing the Socket.IO reference (npm ci)"
  (cd "$SIO_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  hold socketio
fi
exit "$failed"

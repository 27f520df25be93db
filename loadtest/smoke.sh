#!/usr/bin/env bash
# Smoke run of the load generator, for CI: build the node and the loadtest, start the node on a
# free loopback port with a throwaway SQLite database and the in-process bus, run every
# scenario's --smoke preset (seconds each) against it, stop the node, and exit non-zero if any
# scenario failed. Reports go to $LOADTEST_REPORT_DIR (default: <target>/loadtest/smoke).
#
#   bash loadtest/smoke.sh                  # debug build
#   LOADTEST_PROFILE=release bash loadtest/smoke.sh
#
# The `reference-payments` and `reference-bookings` smokes run too when
# LOADTEST_REFERENCE_DATABASE_URL names a PostgreSQL database on loopback that they may create
# their tables in (reference-bookings makes a table of its own run, and btree_gist if it is
# missing, and drops both afterwards). The Socket.IO reference smokes (`reference-fanout`,
# `reference-connections`) run when LOADTEST_SOCKETIO_REDIS_URL names a Redis on loopback: they
# `npm ci` loadtest/reference/socketio first (a few seconds, from the npm registry), so they
# are not part of the default, embedded-only smoke.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
PROFILE="${LOADTEST_PROFILE:-debug}"
REPORT_DIR="${LOADTEST_REPORT_DIR:-$TARGET_DIR/loadtest/smoke}"
STARTUP_WAIT_TRIES=120 # × 0.5 s

build_flags=()
[ "$PROFILE" = release ] && build_flags+=(--release)
echo "=== building node and loadtest ($PROFILE)"
cargo build "${build_flags[@]}" -p node -p loadtest
NODE_BIN="$TARGET_DIR/$PROFILE/node"
LOADTEST_BIN="$TARGET_DIR/$PROFILE/loadtest"

TMP="$(mktemp -d)"
NODE_PID=""
SIO_PID=""
# stop PID: TERM, a few seconds' grace, then KILL.
stop() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$SIO_PID"
  stop "$NODE_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "=== starting the node (SQLite in $TMP, in-process bus)"
# Port 0: the node picks a free port and logs it (`listening`, field `port`).
# Cheap password hashing: the smoke registers dozens of users, and argon2's default cost is a
# production setting, not what is being measured here.
env -u REDIS_URL \
  DATABASE_URL="sqlite://$TMP/node.db" NODE_DATA_DIR="$TMP" NODE_LISTEN=127.0.0.1:0 \
  LOG_FORMAT=json RUST_LOG=info ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 \
  "$NODE_BIN" >"$TMP/node.log" 2>&1 &
NODE_PID=$!

PORT=""
for _ in $(seq 1 "$STARTUP_WAIT_TRIES"); do
  PORT="$(grep -m1 '"message":"listening"' "$TMP/node.log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)"
  [ -n "$PORT" ] && break
  kill -0 "$NODE_PID" 2>/dev/null || break
  sleep 0.5
done
if [ -z "$PORT" ]; then
  echo "FATAL: the node did not start; its log:" >&2
  cat "$TMP/node.log" >&2
  exit 1
fi
URL="http://127.0.0.1:$PORT"
echo "node pid $NODE_PID on $URL"

failed=()
# run CODEC SCENARIO [ARGS…]
run() {
  local codec=$1 scenario=$2; shift 2
  echo "=== $scenario ($codec)"
  if ! "$LOADTEST_BIN" --url "$URL" --smoke --codec "$codec" --report-dir "$REPORT_DIR" \
      --label "smoke-$codec" "$scenario" "$@"; then
    failed+=("$scenario ($codec)")
  fi
}
run json payments
# The open loop (payments offered at a fixed rate) on the other codec.
run msgpack payments --rate 400
run json fanout
run msgpack fanout
run json resume
run json connections --node-pid "$NODE_PID"
run json bookings
if [ -n "${LOADTEST_REFERENCE_DATABASE_URL:-}" ]; then
  run json reference-payments --database-url "$LOADTEST_REFERENCE_DATABASE_URL"
  run json reference-bookings --database-url "$LOADTEST_REFERENCE_DATABASE_URL"
fi
if [ -n "${LOADTEST_SOCKETIO_REDIS_URL:-}" ]; then
  SIO_DIR=loadtest/reference/socketio
  echo "=== Socket.IO reference: npm ci, then the server on a free port"
  if (cd "$SIO_DIR" && npm ci --no-audit --no-fund --loglevel=error); then
    PORT=0 REDIS_URL="$LOADTEST_SOCKETIO_REDIS_URL" node "$SIO_DIR/server.js" >"$TMP/sio.log" 2>&1 &
    SIO_PID=$!
    SIO_PORT=""
    for _ in $(seq 1 "$STARTUP_WAIT_TRIES"); do
      SIO_PORT="$(grep -m1 '"message":"listening"' "$TMP/sio.log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)"
      [ -n "$SIO_PORT" ] && break
      kill -0 "$SIO_PID" 2>/dev/null || break
      sleep 0.5
    done
    if [ -n "$SIO_PORT" ]; then
      run json reference-fanout --server-url "http://127.0.0.1:$SIO_PORT"
      run json reference-connections --server-url "http://127.0.0.1:$SIO_PORT" --server-pid "$SIO_PID"
    else
      echo "the Socket.IO reference did not start; its log:" >&2
      cat "$TMP/sio.log" >&2
      failed+=("socket.io reference start")
    fi
    stop "$SIO_PID"
    SIO_PID=""
  else
    failed+=("socket.io reference npm ci")
  fi
fi

if ! kill -0 "$NODE_PID" 2>/dev/null; then
  echo "FATAL: the node died during the smoke run; its log:" >&2
  tail -50 "$TMP/node.log" >&2
  failed+=("node alive")
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "loadtest smoke: FAILED: ${failed[*]}"
  exit 1
fi
echo "loadtest smoke: every scenario passed (reports in $REPORT_DIR)"

# Sourced by bench.sh and profile.sh: start and stop a fresh release node for one run.
# The caller sets TMP (a scratch directory), NODE_BIN, PG_URL and REDIS_URL_BENCH.
NODE_PID=""
NODE_DB=""
# Quarter seconds a stopping node is given before it is killed (a node under valgrind needs
# longer to write its profile).
NODE_STOP_TICKS="${NODE_STOP_TICKS:-80}"

stop_node() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 1 "$NODE_STOP_TICKS"); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$NODE_PID" 2>/dev/null || true
  fi
  NODE_PID=""
  if [ -n "$NODE_DB" ]; then
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $NODE_DB" >/dev/null 2>&1 || true
    NODE_DB=""
  fi
}

# start_node BACKEND [WRAPPER…]: a fresh release node on a free port, run by WRAPPER if given
# (valgrind, say); BACKEND is sqlite (a file in its own directory, the in-process bus) or
# postgres (a database of its own, dropped by stop_node, and Redis). Sets NODE_PID and URL.
start_node() {
  local backend=$1 dir
  shift
  dir="$(mktemp -d "$TMP/node.XXXX")"
  local db_env=(DATABASE_URL="sqlite://$dir/node.db")
  local redis_env=()
  if [ "$backend" = postgres ]; then
    NODE_DB="node_$(date +%s%N)"
    psql "$PG_URL" -qc "CREATE DATABASE $NODE_DB" >/dev/null
    # NODE_DB_SETTING: a server setting for this database's sessions only, as NAME=VALUE
    # (profile.sh's statement log).
    if [ -n "${NODE_DB_SETTING:-}" ]; then
      psql "$PG_URL" -qc "ALTER DATABASE $NODE_DB SET ${NODE_DB_SETTING%%=*} = '${NODE_DB_SETTING#*=}'" >/dev/null
    fi
    db_env=(DATABASE_URL="${PG_URL%/*}/$NODE_DB")
    redis_env=(REDIS_URL="$REDIS_URL_BENCH")
  fi
  # Cheap password hashing: setup registers hundreds of users; hashing is not what is measured.
  env -u REDIS_URL "${db_env[@]}" "${redis_env[@]}" NODE_DATA_DIR="$dir" NODE_LISTEN=127.0.0.1:0 \
    LOG_FORMAT=json RUST_LOG=warn,node::startup=info ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 \
    "$@" "$NODE_BIN" >"$dir/node.log" 2>&1 &
  NODE_PID=$!
  URL="http://127.0.0.1:$(listening_port "$dir/node.log" "$NODE_PID" "the node")"
}

# listening_port LOG PID WHAT: the port a server starting as PID logs (a JSON line with
# "message":"listening" and "port"), waiting up to two minutes; exits if it never does.
listening_port() {
  local log=$1 pid=$2 what=$3 port=""
  for _ in $(seq 1 240); do
    port="$(grep -m1 '"message":"listening"' "$log" 2>/dev/null | grep -o '"port":[0-9]*' | cut -d: -f2 || true)"
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  [ -n "$port" ] || { echo "FATAL: $what did not start:" >&2; cat "$log" >&2; exit 1; }
  echo "$port"
}

#!/usr/bin/env bash
# Several `sesame serve` nodes on one PostgreSQL database, behind the flow
# load generator's round robin (request by request, as a load balancer
# would): flows/s for each node count, the database's share of the CPU, and
# the CPU per flow of the nodes and of PostgreSQL, for sizing. Usage:
#   bench/nodes.sh                          # 1 and 2 nodes
#   NODE_COUNTS="1 2 3" bench/nodes.sh
#   POOLER=transaction bench/nodes.sh       # the nodes behind a PgBouncer (session|transaction)
# Options: BENCH_DB (postgres://postgres@127.0.0.1:5432/test), CONCURRENCY (32),
# DURATION_S (10), MAX_CONNECTIONS (8 per node), SKIP_BUILD=1, FLOW (signin),
# POOLER (none), POOL_SIZE (PgBouncer's server connections; transaction mode: 8).
# CPU is read from /proc: every process named postgres on this machine counts
# as the database (run it on a machine where nothing else uses PostgreSQL);
# PgBouncer's CPU is counted with the database's.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sesame-target}"
BENCH_DB=${BENCH_DB:-postgres://postgres@127.0.0.1:5432/test}
NODE_COUNTS=${NODE_COUNTS:-1 2}
CONCURRENCY=${CONCURRENCY:-32}
DURATION_S=${DURATION_S:-10}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-8}
FLOW=${FLOW:-signin}
POOLER=${POOLER:-none}
RECEIVER_PORT=${RECEIVER_PORT:-18099}
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --quiet --bin sesame --example flow
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
HZ=$(getconf CLK_TCK)

ticks() { # CPU ticks (user + system) of the given pids
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
pg_pids() { pgrep -x postgres || pgrep -f '^postgres:' || true; pgrep -x pgbouncer || true; }

# A PgBouncer in $POOLER mode before schema $1 of $BENCH_DB; sets POOLED_URL.
start_pgbouncer() {
  local schema=$1 pool=$2 dir rest user hostport db host port
  command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || { apt-get update -qq && apt-get install -y -qq pgbouncer; }
  dir=$(mktemp -d); chmod 755 "$dir"
  rest=${BENCH_DB#*://}; user=${rest%%@*}; hostport=${rest#*@}; hostport=${hostport%%/*}
  db=${rest#*/}; db=${db%%\?*}; host=${hostport%%:*}; port=5432; [[ "$hostport" == *:* ]] && port=${hostport##*:}
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
$db = host=$host port=$port dbname=$db user=$user connect_query='SET search_path TO $schema'
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 16432
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = $POOLER
server_reset_query =
max_client_conn = 1000
default_pool_size = $pool
logfile = $dir/pgbouncer.log
INI
  echo "\"$user\" \"\"" >"$dir/users.txt"
  if [[ $(id -u) == 0 ]]; then chown -R postgres "$dir"; /usr/sbin/pgbouncer -u postgres "$dir/pgbouncer.ini" >/dev/null 2>&1 &
  else pgbouncer "$dir/pgbouncer.ini" >/dev/null 2>&1 & fi
  PIDS_DB+=($!)
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/16432) 2>/dev/null && break; sleep 0.1; done
  POOLED_URL="postgres://$user@127.0.0.1:16432/$db?sslmode=disable"
}

PIDS=()
PIDS_DB=()
SCHEMA=""
cleanup() {
  for p in "${PIDS[@]}" "${PIDS_DB[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}" "${PIDS_DB[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  PIDS_DB=()
  if [[ -n "$SCHEMA" ]]; then
    PGOPTIONS='-c client_min_messages=warning' psql "$BENCH_DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null || true
  fi
}
trap cleanup EXIT

echo "pooler: $POOLER   concurrency: $CONCURRENCY   duration: ${DURATION_S}s"
printf '%-6s %-9s %-13s %-15s %-17s %-16s\n' nodes flows/s "p50/p99 ms" "database CPU" "node CPU/flow" "db CPU/flow"
for n in $NODE_COUNTS; do
  SCHEMA="bench_nodes_$$_$n"
  PGOPTIONS='-c client_min_messages=warning' psql "$BENCH_DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
  sep='?'; [[ "$BENCH_DB" == *\?* ]] && sep='&'
  url="$BENCH_DB${sep}options=-c%20search_path%3D$SCHEMA"
  if [[ "$POOLER" != none ]]; then
    # Session mode holds a server connection per node connection (and the audit writer's).
    pool=${POOL_SIZE:-$([[ "$POOLER" == session ]] && echo $((n * (MAX_CONNECTIONS + 1) + 2)) || echo 8)}
    SESAME_DATABASE__URL="$url" SESAME_CLIENTS_FILE="$PWD/clients.toml" SESAME_LOG__LEVEL=warn \
      "$CARGO_TARGET_DIR/release/sesame" migrate >/dev/null
    start_pgbouncer "$SCHEMA" "$pool"
    url="$POOLED_URL"
  fi
  urls=()
  for i in $(seq 1 "$n"); do
    port=$((18080 + i))
    SESAME_DATABASE__URL="$url" SESAME_DATABASE__MAX_CONNECTIONS="$MAX_CONNECTIONS" SESAME_DATABASE__POOLER="$POOLER" \
      SESAME_SERVER__BIND="127.0.0.1:$port" SESAME_ISSUER="http://127.0.0.1:18081" \
      SESAME_LOG__LEVEL=warn SESAME_CLIENTS_FILE="$PWD/clients.toml" \
      SESAME_EMAIL__PROVIDER=webhook SESAME_EMAIL__URL="http://127.0.0.1:$RECEIVER_PORT/hook" \
      SESAME_OTP__IP_MAX_SENDS=100000000 SESAME_OTP__CLIENT_MAX_SENDS=100000000 \
      SESAME_OTP__AUTO_CREATE_ACCOUNTS=true \
      "$CARGO_TARGET_DIR/release/sesame" serve &
    PIDS+=($!)
    urls+=("http://127.0.0.1:$port")
    # One at a time: the first applies the migrations and creates the keys.
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  done
  base=$(IFS=,; echo "${urls[*]}")
  out=$(mktemp)
  "$CARGO_TARGET_DIR/release/examples/flow" "$base" "$RECEIVER_PORT" "$CONCURRENCY" "$DURATION_S" "$FLOW" >"$out" &
  gen=$!
  sleep 1
  n0=$(ticks "${PIDS[@]}"); d0=$(ticks $(pg_pids)); t0=$(date +%s.%N)
  sleep $((DURATION_S - 2))
  n1=$(ticks "${PIDS[@]}"); d1=$(ticks $(pg_pids)); t1=$(date +%s.%N)
  wait "$gen"
  flows=$(awk '/^flows\/s/ {print $2}' "$out")
  lat=$(awk '/^flow latency/ {print $5 "/" $7}' "$out")
  python3 - "$n" "$flows" "$lat" "$n0" "$n1" "$d0" "$d1" "$t0" "$t1" "$HZ" <<'PY'
import sys
n, flows, lat = sys.argv[1], float(sys.argv[2]), sys.argv[3]
n0, n1, d0, d1 = (int(x) for x in sys.argv[4:8])
t0, t1, hz = float(sys.argv[8]), float(sys.argv[9]), int(sys.argv[10])
dt = t1 - t0
node_cores, db_cores = (n1 - n0) / hz / dt, (d1 - d0) / hz / dt
share = db_cores / (node_cores + db_cores) if node_cores + db_cores else 0
print(f"{n:<6} {flows:<9.0f} {lat:<13} {share*100:3.0f}% ({db_cores:.2f} cores) {node_cores*1000/flows:6.2f} ms        {db_cores*1000/flows:6.2f} ms")
PY
  grep -q "0 failed" "$out" || { echo "some flows failed:"; cat "$out"; }
  rm -f "$out"
  cleanup
  sleep 3
done

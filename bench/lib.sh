# Shared by the bench scripts: start a release build of Sesame on a fresh
# database (SQLite in a temp dir, or a fresh schema of $BENCH_DB) and stop it on exit.
# In: PORT, extra environment for the server in the caller's environment. Out: BASE, PID.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sesame-target}"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }

start_sesame() {
  WORK=$(mktemp -d)
  local db=${BENCH_DB:-sqlite://$WORK/bench.db}
  if [[ "$db" == postgres* ]]; then
    SCHEMA="bench_$$"
    PGOPTIONS='-c client_min_messages=warning' psql "$db" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
    local sep='?'; [[ "$db" == *\?* ]] && sep='&'
    db="$db${sep}options=-c%20search_path%3D$SCHEMA"
  fi
  BASE="http://127.0.0.1:$PORT"
  SESAME_DATABASE__URL="$db" SESAME_SERVER__BIND="127.0.0.1:$PORT" SESAME_ISSUER="$BASE" \
    SESAME_LOG__LEVEL=warn SESAME_CLIENTS_FILE="$PWD/clients.toml" \
    "$CARGO_TARGET_DIR/release/sesame" serve &
  PID=$!
  trap stop_sesame EXIT
  for _ in $(seq 1 100); do curl -sf "$BASE/health/ready" >/dev/null && return; sleep 0.1; done
  echo "sesame did not start" >&2
  exit 1
}

stop_sesame() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if [[ -n "${SCHEMA:-}" ]]; then PGOPTIONS='-c client_min_messages=warning' psql "$BENCH_DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null || true; fi
  rm -rf "$WORK"
}

peak_rss() { awk '/^VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$PID/status"; }
rss() { awk '/^VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$PID/status"; }

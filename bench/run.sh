#!/usr/bin/env bash
# Starts a release build of Sesame and measures, with wrk on this machine:
# client_credentials tokens/s, introspections/s, discovery GETs/s, and RSS
# idle and under load. Usage:
#   bench/run.sh                                   # SQLite in a temp dir
#   BENCH_DB=postgres://postgres@127.0.0.1:5432/test bench/run.sh
# Options (environment): DURATION (10s), CONNECTIONS (64), THREADS (2), PORT (18080),
# SKIP_BUILD=1 to run the binary already in $CARGO_TARGET_DIR/release.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
source bench/lib.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --quiet --bin sesame
start_sesame

rate() { awk '/Requests\/sec/ {printf "%d", $2}'; }
errors() { awk '/Non-2xx|Socket errors/ {print "    " $0}'; }

export AUTH="Basic $(printf 'demo:demo-secret' | base64)"
echo "database: ${BENCH_DB:-sqlite}   wrk: $THREADS threads, $CONNECTIONS connections, $DURATION each"
echo "idle RSS:             $(rss)"

# warm-up
wrk -t1 -c4 -d2s "$BASE/.well-known/openid-configuration" >/dev/null

OUT=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$BASE/.well-known/openid-configuration")
echo "discovery GETs/s:     $(echo "$OUT" | rate)"; echo "$OUT" | errors

export BODY="grant_type=client_credentials&scope=api:read"
OUT=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s bench/post.lua "$BASE/oauth2/token")
echo "token responses/s:    $(echo "$OUT" | rate)"; echo "$OUT" | errors

TOKEN=$(curl -s -u demo:demo-secret -d "$BODY" "$BASE/oauth2/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
export BODY="token=$TOKEN"
curl -s -u demo:demo-secret -d "$BODY" "$BASE/oauth2/introspect" | grep -q '"active":true' || { echo "introspection is not active"; exit 1; }
OUT=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s bench/post.lua "$BASE/oauth2/introspect")
echo "introspections/s:     $(echo "$OUT" | rate)"; echo "$OUT" | errors

echo "RSS after load:       $(rss)"
echo "peak RSS:             $(peak_rss)"

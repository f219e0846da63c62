#!/usr/bin/env bash
# The complete OTP flow in flows/s, with webhook delivery to the load
# generator's receiver: FLOW=signin (default) is getcode → verifycode → token
# (the account created at the token step); FLOW=signup adds PUT /api/v1/user/;
# FLOW=signup_password sends a password with it (argon2id; watch the peak RSS). Usage:
#   bench/flow.sh                                            # SQLite
#   BENCH_DB=postgres://postgres@127.0.0.1:5432/test bench/flow.sh
# Options: FLOW (signin), CONCURRENCY (32), DURATION_S (10), PORT (18080), RECEIVER_PORT (18099),
# SKIP_BUILD=1 to run the binaries already in $CARGO_TARGET_DIR/release (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-32}
DURATION_S=${DURATION_S:-10}
FLOW=${FLOW:-signin}
PORT=${PORT:-18080}
RECEIVER_PORT=${RECEIVER_PORT:-18099}
source bench/lib.sh
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --quiet --bin sesame --example flow
export SESAME_EMAIL__PROVIDER=webhook SESAME_EMAIL__URL="http://127.0.0.1:$RECEIVER_PORT/hook"
export SESAME_OTP__IP_MAX_SENDS=100000000 SESAME_OTP__CLIENT_MAX_SENDS=100000000
[[ "$FLOW" == signin ]] && export SESAME_OTP__AUTO_CREATE_ACCOUNTS=true
start_sesame
echo "flow: $FLOW   database: ${BENCH_DB:-sqlite}   concurrency: $CONCURRENCY   duration: ${DURATION_S}s"
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
before=$(ticks)
out=$("$CARGO_TARGET_DIR/release/examples/flow" "$BASE" "$RECEIVER_PORT" "$CONCURRENCY" "$DURATION_S" "$FLOW")
after=$(ticks)
echo "$out"
# Sesame's own CPU (user + system, from /proc) over the run, a flow: on
# SQLite that includes the database's work; on PostgreSQL see bench/nodes.sh
# for the database's share.
echo "$out" | awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" '/^complete flows:/ && $3 > 0 {
  printf "sesame CPU a flow:    %.2f ms\n", t * 1000 / hz / $3 }'
echo "sesame peak RSS:      $(peak_rss)"
sleep 2
echo "sesame RSS after 2 s: $(rss)"

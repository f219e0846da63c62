#!/usr/bin/env bash
# The complete OTP flow (getcode → verifycode → PUT user → token) in flows/s,
# with webhook delivery to the load generator's receiver. Usage:
#   bench/flow.sh                                            # SQLite
#   BENCH_DB=postgres://postgres@127.0.0.1:5432/test bench/flow.sh
# Options: CONCURRENCY (32), DURATION_S (10), PORT (18080), RECEIVER_PORT (18099)
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-32}
DURATION_S=${DURATION_S:-10}
PORT=${PORT:-18080}
RECEIVER_PORT=${RECEIVER_PORT:-18099}
source bench/lib.sh
cargo build --release --quiet --bin sesame --example flow
export SESAME_EMAIL__PROVIDER=webhook SESAME_EMAIL__URL="http://127.0.0.1:$RECEIVER_PORT/hook"
export SESAME_OTP__IP_MAX_SENDS=100000000 SESAME_OTP__CLIENT_MAX_SENDS=100000000
start_sesame
echo "database: ${BENCH_DB:-sqlite}   concurrency: $CONCURRENCY   duration: ${DURATION_S}s"
"$CARGO_TARGET_DIR/release/examples/flow" "$BASE" "$RECEIVER_PORT" "$CONCURRENCY" "$DURATION_S"
echo "sesame peak RSS:      $(peak_rss)"

#!/usr/bin/env bash
# What one OTP flow costs PostgreSQL, counted rather than timed: the
# statements PostgreSQL logs, its BEGINs and COMMITs, and its WAL flushes
# (`pg_stat_wal.wal_sync`), divided by the codes sent. One node, one flow
# at a time for DURATION_S (3) seconds, in a database of its own (CENSUS_DB,
# `census`, created if missing) with `log_statement = 'all'`. Reads the
# server log (PG_LOG, the newest /var/log/postgresql/*.log), so run it on a
# machine where nothing else uses PostgreSQL (`pg_stat_wal` counts the
# whole server; PostgreSQL 15 – 17, where it has `wal_sync`). The counts
# include the bench's own set-up (its schema, the migrations, readiness
# probes): a few hundred statements, a fraction of one a flow. PG is the
# server's base URL, without a database or parameters. Usage:
#   bench/census.sh                      # builds, as bench/nodes.sh does
#   CARGO_TARGET_DIR=/tmp/bin-X SKIP_BUILD=1 bench/census.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
CENSUS_DB=${CENSUS_DB:-census}
DURATION_S=${DURATION_S:-3}
PG_LOG=${PG_LOG:-$(ls -t /var/log/postgresql/*.log | head -1)}
psql -qAt "$PG/postgres" -c "SELECT 1 FROM pg_database WHERE datname = '$CENSUS_DB'" | grep -q 1 ||
  psql -q "$PG/postgres" -c "CREATE DATABASE $CENSUS_DB"
psql -q "$PG/postgres" -c "ALTER DATABASE $CENSUS_DB SET log_statement = 'all'"
start=$(wc -l <"$PG_LOG")
psql -qAt "$PG/$CENSUS_DB" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
BENCH_DB="$PG/$CENSUS_DB" CONCURRENCY=1 DURATION_S=$DURATION_S NODE_COUNTS=1 bash bench/nodes.sh | tail -2
syncs=$(psql -qAt "$PG/$CENSUS_DB" -c "SELECT wal_sync FROM pg_stat_wal")
log=$(mktemp)
tail -n +$((start + 1)) "$PG_LOG" >"$log"
codes=$(grep -c "INSERT INTO otp_codes" "$log" || true)
statements=$(grep -c "LOG:  \(statement\|execute\)" "$log" || true)
txn=$(grep -c "LOG:  statement: \(BEGIN\|COMMIT\)" "$log" || true)
rm -f "$log"
[[ $codes -gt 0 ]] || { echo "no code was sent: is log_statement on, and PG_LOG the server's log?" >&2; exit 1; }
awk -v c="$codes" -v s="$statements" -v t="$txn" -v w="$syncs" 'BEGIN {
  printf "flows %d   statements/flow %.2f   of which BEGIN/COMMIT %.2f   WAL flushes/flow %.2f\n", c, s / c, t / c, w / c }'

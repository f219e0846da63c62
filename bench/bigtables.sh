#!/usr/bin/env bash
# The OTP flow rate on an empty database, then again after preloading
# 1,000,000 accounts and 10,000,000 audit events into the same database
# (the target: at least 90 % of the empty rate). Usage:
#   bench/bigtables.sh                                            # SQLite
#   BENCH_DB=postgres://postgres@127.0.0.1:5432/test bench/bigtables.sh
# Options: ACCOUNTS (1000000), AUDIT_EVENTS (10000000), CONCURRENCY (32),
# DURATION_S (10), SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-32}
DURATION_S=${DURATION_S:-10}
ACCOUNTS=${ACCOUNTS:-1000000}
AUDIT_EVENTS=${AUDIT_EVENTS:-10000000}
PORT=${PORT:-18080}
RECEIVER_PORT=${RECEIVER_PORT:-18099}
source bench/lib.sh
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --quiet --bin sesame --example flow
export SESAME_EMAIL__PROVIDER=webhook SESAME_EMAIL__URL="http://127.0.0.1:$RECEIVER_PORT/hook"
export SESAME_OTP__IP_MAX_SENDS=100000000 SESAME_OTP__CLIENT_MAX_SENDS=100000000 SESAME_OTP__AUTO_CREATE_ACCOUNTS=true
start_sesame

flows() { "$CARGO_TARGET_DIR/release/examples/flow" "$BASE" "$RECEIVER_PORT" "$CONCURRENCY" "$DURATION_S" signin | awk '/^flows\/s/ {print $2}'; }

echo "database: ${BENCH_DB:-sqlite}   concurrency: $CONCURRENCY   duration: ${DURATION_S}s"
empty=$(flows)
echo "empty database:                 $empty flows/s"
sleep 5

started=$(date +%s)
if [[ -n "${SCHEMA:-}" ]]; then
  PGOPTIONS="-c search_path=$SCHEMA -c client_min_messages=warning" psql "$BENCH_DB" -q <<SQL
INSERT INTO users (id, username, username_key, email, email_key, email_verified, phone_verified,
                   first_name, last_name, metadata, is_admin, disabled, created_at, updated_at)
SELECT md5('u' || i), 'pre_' || i, 'pre_' || i, 'pre' || i || '@example.org', md5('e' || i), 1, 0,
       '', '', '{}', 0, 0, 1700000000, 1700000000
FROM generate_series(1, $ACCOUNTS) AS i;
INSERT INTO audit_events (id, at, event, client_id, user_id, ident_key, ip, detail)
SELECT lpad(i::text, 29, '0'), extract(epoch FROM now())::bigint - 86400 + i / 1000, 'code_sent', 'demo',
       md5('u' || (i % $ACCOUNTS)), md5('k' || i), '127.0.0.1', NULL
FROM generate_series(1, $AUDIT_EVENTS) AS i;
VACUUM ANALYZE users;
VACUUM ANALYZE audit_events;
CHECKPOINT;
SQL
else
  python3 - "$WORK/bench.db" "$ACCOUNTS" "$AUDIT_EVENTS" <<'PY'
import hashlib, sqlite3, sys, time
path, accounts, events = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
db = sqlite3.connect(path, timeout=60)
db.execute("PRAGMA synchronous = OFF")
with db:
    db.executemany(
        "INSERT INTO users (id, username, username_key, email, email_key, email_verified, phone_verified,"
        " first_name, last_name, metadata, is_admin, disabled, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 1, 0, '', '', '{}', 0, 0, 1700000000, 1700000000)",
        ((md5(f"u{i}"), f"pre_{i}", f"pre_{i}", f"pre{i}@example.org", md5(f"e{i}")) for i in range(1, accounts + 1)))
now = int(time.time())
with db:
    db.executemany(
        "INSERT INTO audit_events (id, at, event, client_id, user_id, ident_key, ip, detail)"
        " VALUES (?, ?, 'code_sent', 'demo', ?, ?, '127.0.0.1', NULL)",
        ((f"{i:029d}", now - 86400 + i // 1000, md5(f"u{i % accounts}"), md5(f"k{i}")) for i in range(1, events + 1)))
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
PY
fi
echo "preloaded $ACCOUNTS accounts and $AUDIT_EVENTS audit events in $(( $(date +%s) - started )) s"
# Measured in the steady state: after the load's checkpoint, not during it.
sleep 15
big=$(flows)
echo "big tables:                     $big flows/s"
python3 -c "print(f'ratio:                          {$big / $empty * 100:.0f} % of the empty-database rate (target: 90 %)')"
echo "sesame peak RSS:                $(peak_rss)"

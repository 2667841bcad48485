#!/usr/bin/env bash
# Stop the PostgreSQL started by start-local-postgres.sh (fast shutdown). Idempotent; the data stay in place.
set -uo pipefail
PG_DIR="${SWEEP_PG_DIR:-/var/tmp/sweep-postgres}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$BIN" ] || BIN="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"
if [ ! -s "$PG_DIR/data/postmaster.pid" ]; then echo "[stop-local-postgres] not running"; exit 0; fi
if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop
else
    "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop
fi

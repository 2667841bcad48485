#!/usr/bin/env bash
# Start a loopback-only PostgreSQL for sweep's storage tests and local sweeps, and print its URL.
# Idempotent: installs PostgreSQL only if missing (apt, as root), creates the cluster once, starts it only if it
# is not running, and creates the role/database only if absent. Runs as user postgres when started by root,
# else as the calling user (then PostgreSQL must already be installed).
#
# Environment:
#   SWEEP_PG_DIR        cluster folder (data/, run/ socket, log)  (default /var/tmp/sweep-postgres)
#   SWEEP_PG_PORT       TCP port on 127.0.0.1                     (default 54329)
#   SWEEP_PG_USER / SWEEP_PG_PASSWORD / SWEEP_PG_DB              (default sweep / sweep / sweep_test)
# Prints on its last line: postgresql://USER:PASSWORD@127.0.0.1:PORT/DB
set -euo pipefail

PG_DIR="${SWEEP_PG_DIR:-/var/tmp/sweep-postgres}"
PORT="${SWEEP_PG_PORT:-54329}"
DB_USER="${SWEEP_PG_USER:-sweep}"
DB_PASSWORD="${SWEEP_PG_PASSWORD:-sweep}"
DB_NAME="${SWEEP_PG_DB:-sweep_test}"
DATA="$PG_DIR/data"
SOCK="$PG_DIR/run"

log() { echo "[start-local-postgres] $*" >&2; }
die() { echo "[start-local-postgres] ERROR: $*" >&2; exit 1; }

find_bindir() {
    # The newest installed server version's binaries (Debian keeps them out of PATH).
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
    return 1
}

install_postgres() {
    find_bindir >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get"
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends postgresql >/dev/null; } \
        || die "apt-get install postgresql failed"
}

# as_owner CMD...: run a command as the cluster's OS user (postgres under root: initdb refuses to run as root).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

owner_name() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }

init_cluster() {
    local bin="$1"
    [ -s "$DATA/PG_VERSION" ] && return 0
    log "creating cluster in $DATA"
    mkdir -p "$DATA" "$SOCK"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$PG_DIR"
    chmod 700 "$DATA"
    as_owner "$bin/initdb" -D "$DATA" -U "$(owner_name)" --auth-local=peer --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null 2>"$PG_DIR/initdb.err" \
        || as_owner "$bin/initdb" -D "$DATA" -U "$(owner_name)" --auth-local=peer --auth-host=scram-sha-256 \
            -E UTF8 --no-locale >/dev/null 2>>"$PG_DIR/initdb.err" \
        || die "initdb failed: $(tail -n 5 "$PG_DIR/initdb.err")"
    cat >> "$DATA/postgresql.conf" <<CONF
# sweep: loopback only, own socket folder, non-default port; small footprint
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

is_running() { as_owner "$1/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start_server() {
    local bin="$1"
    mkdir -p "$SOCK"; [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$SOCK" "$PG_DIR"
    if is_running "$bin"; then log "already running on 127.0.0.1:$PORT"; return 0; fi
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null \
        || die "pg_ctl start failed; $PG_DIR/postgres.log:
$(tail -n 20 "$PG_DIR/postgres.log" 2>/dev/null)"
}

psql_admin() { as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres -tA "$@"; }

create_role_and_db() {
    # CREATEDB lets the test fixtures give each test a fresh database; CREATEROLE lets the secrets tests make a
    # throw-away role with a random password (tests/study/test_security_secrets.py).
    if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]; then
        log "creating role $DB_USER"
        psql_admin -c "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB CREATEROLE PASSWORD '$DB_PASSWORD'"
    else
        psql_admin -c "ALTER ROLE \"$DB_USER\" CREATEROLE"
    fi
    if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
        log "creating database $DB_NAME"
        psql_admin -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\""
    fi
}

check_url() {
    PGPASSWORD="$DB_PASSWORD" psql -X -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d "$DB_NAME" -tA -c 'SELECT 1' \
        >/dev/null || die "cannot log in as $DB_USER over TCP on 127.0.0.1:$PORT"
}

main() {
    local bin
    install_postgres
    bin="$(find_bindir)" || die "no initdb found after install"
    init_cluster "$bin"
    start_server "$bin"
    create_role_and_db
    check_url
    echo "postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"
}

main "$@"

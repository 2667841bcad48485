#!/usr/bin/env bash
# Start the services that sweep's integration tests use, as far as this machine allows: a single-node SLURM
# (needs root), a loopback PostgreSQL (needs root or an installed PostgreSQL) and a headless chromium for the
# report-rendering test (installed with apt when root). A service that cannot start is reported, never fatal: its
# tests skip with the reason. Writes the environment the tests read to
# .ci/services.env (SWEEP_TEST_POSTGRES_URL), which scripts/test.sh sources.
#
#   bash launchers/start-test-services.sh [--no-slurm] [--no-postgres] [--no-chromium]
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
ENV_FILE="${SWEEP_SERVICES_ENV:-$ROOT/.ci/services.env}"
WANT_SLURM=1; WANT_PG=1; WANT_CHROMIUM=1
for arg in "$@"; do
    case "$arg" in
        --no-slurm) WANT_SLURM=0 ;;
        --no-postgres) WANT_PG=0 ;;
        --no-chromium) WANT_CHROMIUM=0 ;;
        *) echo "unknown argument '$arg' (allowed: --no-slurm, --no-postgres, --no-chromium)" >&2; exit 2 ;;
    esac
done

summary=()

start_slurm() {
    if [ "$(id -u)" -ne 0 ]; then summary+=("slurm: skipped (needs root; uid $(id -u))"); return; fi
    local t0=$SECONDS
    if bash "$HERE/slurm/start-local-slurm.sh"; then
        summary+=("slurm: up in $((SECONDS - t0)) s")
    else
        summary+=("slurm: FAILED (see the messages above); SLURM tests will skip")
    fi
}

start_postgres() {
    local t0=$SECONDS url
    if url="$(bash "$HERE/postgres/start-local-postgres.sh")"; then
        url="$(echo "$url" | tail -n 1)"
        mkdir -p "$(dirname "$ENV_FILE")"
        echo "SWEEP_TEST_POSTGRES_URL=$url" > "$ENV_FILE"
        summary+=("postgres: up in $((SECONDS - t0)) s at $url (written to $ENV_FILE)")
    else
        rm -f "$ENV_FILE"
        summary+=("postgres: FAILED (see the messages above); PostgreSQL tests will skip")
    fi
}

# tests/selection/test_report_render.py renders the HTML report in it (screenshot, no console errors)
install_chromium() {
    if command -v chromium >/dev/null 2>&1; then summary+=("chromium: present"); return; fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        summary+=("chromium: skipped (not installed; installing it needs root and apt-get)"); return
    fi
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y -q chromium fonts-dejavu-core >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium fonts-dejavu-core >/dev/null 2>&1; }; then
        summary+=("chromium: installed in $((SECONDS - t0)) s")
    else
        summary+=("chromium: FAILED to install (apt-get install chromium); the report-rendering test will skip")
    fi
}

[ "$WANT_SLURM" = 1 ] && start_slurm
[ "$WANT_PG" = 1 ] && start_postgres
[ "$WANT_CHROMIUM" = 1 ] && install_chromium
echo "test services:"
for line in "${summary[@]}"; do echo "  $line"; done
exit 0

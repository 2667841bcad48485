#!/usr/bin/env bash
# Stop the single-node SLURM started by start-local-slurm.sh, by the pids in its pid files: slurmd, slurmctld,
# and with --all also slurmdbd, its MariaDB and munged (munged may serve other programs, so not by default).
# Idempotent; state and job records stay under SWEEP_SLURM_DIR for the next start.
set -uo pipefail

STATE_DIR="${SWEEP_SLURM_DIR:-/var/tmp/sweep-slurm}"

log() { echo "[stop-local-slurm] $*"; }

stop_pidfile() {
    local name="$1" file="$2" pid
    if [ ! -s "$file" ] || ! kill -0 "$(cat "$file")" 2>/dev/null; then
        log "$name not running"; return 0
    fi
    pid="$(cat "$file")"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }; sleep 0.2; done
    log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
    ""|--all) ;;
    *) echo "unknown argument '$1' (allowed: --all)" >&2; exit 2 ;;
esac
stop_pidfile slurmd "$STATE_DIR/run/slurmd.pid"
stop_pidfile slurmctld "$STATE_DIR/run/slurmctld.pid"
if [ "${1:-}" = "--all" ]; then
    stop_pidfile slurmdbd "$STATE_DIR/run/slurmdbd.pid"
    stop_pidfile mariadbd "$STATE_DIR/mariadb-run/mariadbd.pid"
    stop_pidfile munged /run/munge/munged.pid
fi

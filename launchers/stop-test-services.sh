#!/usr/bin/env bash
# Stop what start-test-services.sh started (SLURM daemons, PostgreSQL); each step is independent.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/slurm/stop-local-slurm.sh"
bash "$HERE/postgres/stop-local-postgres.sh"

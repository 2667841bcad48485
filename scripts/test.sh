#!/usr/bin/env bash
# The README's test command: start the local test services this machine can run (a single-node SLURM and a
# loopback PostgreSQL, when root with apt), then run every test that can run here. Tests whose service is
# missing skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x launchers/start-test-services.sh ] || [ -f launchers/start-test-services.sh ]; then
    bash launchers/start-test-services.sh || echo "test services: some could not start; their tests will skip"
fi
[ -f .ci/services.env ] && set -a && . .ci/services.env && set +a
python -m pytest "$@"

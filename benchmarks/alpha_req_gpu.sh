#!/usr/bin/env bash
# The alpha-ReQ authors' protocol on a GPU machine: Barlow Twins on CIFAR-10, 10 lambdas x 8 projector widths
# (80 configs, conf/search_space/alpha_req_barlow_grid.yaml over conf/experiment/alpha_req_cifar10.yaml), every
# config read out with a linear probe, then the selection benchmark on the real table (label-free policies
# against the oracle and against random readouts at the same budget).
#
#   bash benchmarks/alpha_req_gpu.sh /path/with/cifar-10-batches-py [OUT_DIR] [extra Hydra overrides...]
#
# Environment: LAUNCHER=local (default; GPUS="0,1,..." trials share the listed GPUs, one trial per GPU) or
# LAUNCHER=slurm (PARTITION=..., PARALLEL=16 array jobs at once, TIMEOUT_MIN=600), EPOCHS (default 100),
# BACKBONE (resnet50, the authors'; resnet18 halves the time). Nothing is downloaded: CIFAR-10 must be on disk.
# Re-running the same command resumes: finished trials and readouts are never redone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    sed -n '2,12p' "$0"
    exit 2
fi
ROOT=$(cd "$1" && pwd)
OUT=$(mkdir -p "${2:-sweep_runs/alpha_req}" && cd "${2:-sweep_runs/alpha_req}" && pwd)
shift $(( $# >= 2 ? 2 : 1 ))
if [ ! -d "$ROOT/cifar-10-batches-py" ]; then
    echo "alpha_req_gpu.sh: $ROOT has no cifar-10-batches-py/ (the python version of CIFAR-10)" >&2
    exit 2
fi
chmod 700 "$OUT"
LAUNCHER=${LAUNCHER:-local}
GPUS=${GPUS:-0}
EPOCHS=${EPOCHS:-100}
BACKBONE=${BACKBONE:-resnet50}
STORAGE="sqlite:///$OUT/study.db"
STUDY=alpha_req_barlow_cifar10

launcher_args=(hydra/launcher=sweep_local "hydra.launcher.gpus=[$GPUS]" "hydra.sweeper.n_jobs=$(($(tr -cd , <<<"$GPUS" | wc -c) + 1))")
select_launcher=local
if [ "$LAUNCHER" = slurm ]; then
    launcher_args=(hydra/launcher=sweep_slurm "hydra.launcher.partition=${PARTITION:?set PARTITION}"
                   hydra.launcher.gpus_per_node=1 "hydra.launcher.timeout_min=${TIMEOUT_MIN:-600}"
                   "hydra.sweeper.n_jobs=${PARALLEL:-16}")
    select_launcher=slurm
fi

echo "1/3 sweep: 80 Barlow Twins configs on CIFAR-10 ($BACKBONE, $EPOCHS epochs) -> $OUT/sweep"
python -m sweep.train.job -m experiment=alpha_req_cifar10 "data.root=$ROOT" "backbone=$BACKBONE" "epochs=$EPOCHS" \
    hydra/sweeper=rankme_normalized hydra.sweeper.sampler.name=grid +search_space=alpha_req_barlow_grid \
    hydra.sweeper.n_trials=80 "hydra.sweeper.storage=$STORAGE" "hydra.sweeper.study_name=$STUDY" \
    "hydra.sweep.dir=$OUT/sweep" "${launcher_args[@]}" "$@"

echo "2/3 readouts of every config, policies and report -> $OUT/sweep/report"
sweep select --storage "$STORAGE" --study "$STUDY" --sweep-dir "$OUT/sweep" --launcher "$select_launcher"

echo "3/3 selection benchmark on the real table -> $OUT/selection.csv"
python benchmarks/selection.py --table "$OUT/sweep/report/tables/trials.parquet" --csv "$OUT/selection.csv" \
    | tee "$OUT/selection.txt"
echo "done: report $OUT/sweep/report/report.html, table $OUT/sweep/report/tables/trials.parquet, summary $OUT/selection.txt"

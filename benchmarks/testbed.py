"""The evidence testbed: real SSL sweeps, every trial read out, stored as a small versioned table.

    python benchmarks/testbed.py                  # the stored table: 3 methods x 48 configs + seed repeats
    python benchmarks/testbed.py --quick          # a minute: 2 configs per method, 2 epochs, to a temp folder
    python benchmarks/testbed.py --preset digits  # the same protocol on embedded digits (the "no signal" data)
    python benchmarks/testbed.py --preset converged --pilot --methods barlow_twins   # lr / wd per method, stored
    python benchmarks/testbed.py --preset converged --methods barlow_twins           # the papers' grid, resumable
    python benchmarks/testbed.py --preset converged --device cuda --parallel 8       # the same grid on one GPU
    python benchmarks/testbed.py --preset converged --dry-run                        # 2 trials, 1 epoch, temp dir

The converged preset (issue 17): trained to a plateau (40 epochs, 5% linear warm-up then cosine, AdamW with the
learning rate and weight decay fixed per method by a pilot stored with its numbers in
benchmarks/data/converged/pilot.json), the papers' own axes as fixed grids (``CONVERGED_AXES`` x 4 projector
widths, 24 configs per method, 6 of them with 2 more seeds: 108 trials), label-free metrics every 5 epochs,
linear probes also at epochs 10, 20 and 30 (30 vs 40 is the plateau check). Its resume state (settings.json and
trials.jsonl per method, small text files meant to be committed) lives in benchmarks/data/converged/work/, so a
later session on a fresh machine continues the same grid; run dirs are scratch (a temp folder), and a trial killed
mid-run is trained again from its start. ``--minutes M`` starts no trial after M minutes (parts of <= 90 min).

GPU (issue 22): ``--device cuda --parallel K`` runs K trial processes on one GPU with bf16 autocast and
channels_last, same table format, output in benchmarks/data/converged_cuda_<backbone>/ (the CPU pilot's lr / wd
are used unless that folder has its own pilot). Sizing, an ESTIMATE from the CPU profile (never run on a GPU
here): a trial is 27 steps x 40 epochs = 1080 optimiser steps of a width-16 CNN on 28x28 images, launch-bound on
a GPU at roughly 5-10 ms a step (5-11 s), plus about 6 s of CPU-side metrics and probes; with K = 8 processes on
16 cores, 108 trials take about 14 rounds of ~15 s plus ~30 s of start-up: ~4-6 min for the whole grid, inside
the 8-minute target. ``--backbone resnet18`` and ``--epochs N`` scale that up and are not sized.

Why: a label-free policy is worth exactly the evidence that its choices are good, and no synthetic generator of
metric values can stand in for real training. Every trial is a real run of the train job's loop
(``sweep.train.job``: same data splits, augmentations, model, optimiser, monitoring) with the label-free
metrics recorded at EVERY epoch, then read out with labels: linear probe (L2 chosen on val, accuracy on test),
a 10-labels-per-class few-shot linear probe, and a cosine kNN probe; linear probes also at epochs 2 and 4
(to see how the signal depends on training length). A random-init backbone is read out the same way first,
so the table says how far training moves the probe.

Configs are drawn per method from the ranges of ``conf/search_space/testbed_mnist.yaml`` with a seeded RNG
(never hand-picked); the first ``--seed-configs`` configs of each method are trained again with
``--extra-seeds`` more seeds (``repeat`` > 0) to measure seed noise. Nothing here was tuned to make any policy
win: the ranges are the papers' axes and were fixed before the first readout.

Outputs (``--out``, default benchmarks/data): ``testbed.parquet`` (one row per trial: params, final metrics,
readouts), ``testbed_curves.parquet`` (one row per trial and epoch: label-free metrics), ``testbed.json``
(versions, seeds, settings, wall time, random-init reference). Finished trials are kept in
``<work-dir>/trials.jsonl`` as they finish, so a killed run resumes where it stopped. CI never runs this.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("simclr", "barlow_twins", "vicreg")
OUT_DIMS = (16, 32, 64, 128, 256, 512)
INTERMEDIATE_EPOCHS = (2, 4)
PARAM_COLUMNS = ("lr", "weight_decay", "out_dim", "temperature", "lambd", "var_weight", "cov_weight")
FEWSHOT_PER_CLASS = 10
CURVE_METRICS = ("loss", "rankme", "rankme_normalized", "alpha", "alpha_r2", "stable_rank",
                 "participation_ratio", "nesum", "rankme_backbone", "alpha_projector", "silhouette",
                 "ami_checkpoint", "entropy", "twonn", "cluster_learnability")
PRESETS: dict[str, list[str]] = {
    "mnist5k": ["experiment=testbed_mnist"],
    "digits": ["experiment=testbed_mnist", "data=digits", "augment=digits", "metrics.alpha_window=[2,60]"],
}
QUICK_OVERRIDES = ["epochs=2", "checkpoint_every=2", "data.max_train_samples=1200", "data.max_test_samples=300",
                   "data.monitor_size=200"]


# ----------------------------------------------------------------------------- the configs
@dataclass(frozen=True)
class TrialSpec:
    """One training run of the testbed: a config of one method, trained with one seed."""

    trial: int
    method: str
    config_id: int
    seed: int
    repeat: int
    params: dict[str, float] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """Hydra overrides of this trial on top of the preset."""
        names = {"lr": "optim.lr", "weight_decay": "optim.weight_decay", "out_dim": "method.projector.out_dim",
                 "temperature": "method.temperature", "lambd": "method.lambd",
                 "var_weight": "method.var_weight", "cov_weight": "method.cov_weight",
                 "hidden_dim": "method.projector.hidden_dims"}
        out = [f"method={self.method}", f"seed={self.seed}"]
        for key, value in self.params.items():
            text = int(value) if key == "out_dim" else f"[{int(value)}]" if key == "hidden_dim" else repr(float(value))
            out.append(f"{names[key]}={text}")
        return out


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _zero_or_log_uniform(rng: np.random.Generator, lo: float, hi: float, p_zero: float = 0.2) -> float:
    """VICReg weights: exactly 0 (the term switched off) with probability ``p_zero``, else log-uniform."""
    return 0.0 if rng.random() < p_zero else _log_uniform(rng, lo, hi)


def draw_params(method: str, rng: np.random.Generator) -> dict[str, float]:
    """One config of ``method`` from the testbed's ranges (conf/search_space/testbed_mnist.yaml)."""
    params = {"lr": _log_uniform(rng, 1e-4, 1e-2), "weight_decay": _log_uniform(rng, 1e-6, 1e-2),
              "out_dim": float(rng.choice(OUT_DIMS))}
    if method == "simclr":
        params["temperature"] = _log_uniform(rng, 0.05, 2.0)
    elif method == "barlow_twins":
        params["lambd"] = _log_uniform(rng, 1e-4, 1e-1)
    elif method == "vicreg":
        params["var_weight"] = _zero_or_log_uniform(rng, 0.5, 50.0)
        params["cov_weight"] = _zero_or_log_uniform(rng, 0.01, 5.0)
    return params


def trial_specs(methods: Sequence[str], n_configs: int, seed_configs: int, extra_seeds: int,
                seed: int) -> list[TrialSpec]:
    """Primary trials (``repeat`` 0, seed 0) of every method, then the seed repeats of the first configs."""
    specs: list[TrialSpec] = []
    configs: dict[str, list[dict[str, float]]] = {}
    for m, method in enumerate(methods):
        rng = np.random.default_rng([seed, m])
        configs[method] = [draw_params(method, rng) for _ in range(n_configs)]
        for c, params in enumerate(configs[method]):
            specs.append(TrialSpec(len(specs), method, m * 1000 + c, 0, 0, params))
    for m, method in enumerate(methods):
        for c in range(min(seed_configs, n_configs)):
            for r in range(1, extra_seeds + 1):
                specs.append(TrialSpec(len(specs), method, m * 1000 + c, r, r, configs[method][c]))
    return specs


# ----------------------------------------------------------------------------- readouts
def fewshot_rows(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` rows of every class (fewer when a class has fewer), seeded and sorted."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def readouts(feats: dict[str, np.ndarray], labels: dict[str, np.ndarray], cfg: Any, full: bool,
             fewshot_seed: int = 0) -> dict[str, float]:
    """Linear probe (val picks the L2, test reports); with ``full`` also few-shot and kNN probes."""
    from sweep.readout import knn_probe, linear_probe

    grid, iters = list(cfg.readout.l2_grid), int(cfg.readout.max_iter)
    probe = linear_probe(feats["train"], labels["train"], feats["val"], labels["val"], feats["test"],
                         labels["test"], l2_grid=grid, max_iter=iters, device="cpu")
    out = {"val_accuracy": probe.val_accuracy, "test_accuracy": probe.test_accuracy}
    if not full:
        return out
    few = fewshot_rows(labels["train"], FEWSHOT_PER_CLASS, fewshot_seed)
    shot = linear_probe(feats["train"][few], labels["train"][few], feats["val"], labels["val"], feats["test"],
                        labels["test"], l2_grid=grid, max_iter=iters, device="cpu")
    out.update(fewshot_val_accuracy=shot.val_accuracy, fewshot_test_accuracy=shot.test_accuracy,
               knn_accuracy=knn_probe(feats["train"], labels["train"], feats["test"], labels["test"],
                                      k=int(cfg.readout.knn_k), device="cpu"))
    return out


def backbone_features(trial: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Backbone features and labels of the probe splits, in memory (no feature files)."""
    from sweep.train.epoch_metrics import extract

    feats, labels = {}, {}
    for split in ("train", "val", "test"):
        f, _, _ = extract(trial.model, trial.images[split], trial.cfg.metrics.extract_batch_size, trial.device)
        feats[split] = f.numpy().astype(np.float64)
        labels[split] = trial.labels[split].numpy()
    return feats, labels


class IntermediateReadouts:
    """The train loop's reporter hook: reads out the backbone at chosen epochs, never stops the run."""

    def __init__(self, trial: Any, epochs: Sequence[int]) -> None:
        self.trial, self.epochs = trial, set(epochs)
        self.values: dict[str, float] = {}

    def report_metrics(self, row: dict[str, Any], epoch: int) -> None:
        if epoch in self.epochs and epoch < self.trial.cfg.epochs:
            feats, labels = backbone_features(self.trial)
            probe = readouts(feats, labels, self.trial.cfg, full=False)
            self.values.update({f"{k}_e{epoch}": v for k, v in probe.items()})
        return None


# ----------------------------------------------------------------------------- one trial (a worker process)
def _compose(overrides: Sequence[str], run_dir: Path) -> Any:
    from omegaconf import OmegaConf

    from sweep.train.config_check import validate_train_config
    from sweep.config.compose import compose_train_config

    cfg = compose_train_config(list(overrides), run_dir=str(run_dir))
    validate_train_config(cfg)
    return OmegaConf.to_object(cfg)


def _build(overrides: Sequence[str], run_dir: Path) -> Any:
    """One trial on the device its config names (``device=cuda`` for the GPU testbed), one CPU thread."""
    import torch

    from sweep.train.job import build_trial, resolve_device

    torch.set_num_threads(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = _compose(overrides, run_dir)
    return build_trial(cfg, resolve_device(cfg.device), run_dir)


def random_init_reference(base: Sequence[str], work: Path, seed: int) -> dict[str, float]:
    """Readouts of the untrained backbone (seed ``seed``): the floor that training must clear."""
    trial = _build([*base, "method=simclr", f"seed={seed}"], work / f"random_init_seed{seed}")
    feats, labels = backbone_features(trial)
    return readouts(feats, labels, trial.cfg, full=True)


def run_trial(spec: TrialSpec, base: Sequence[str], work: Path,
              intermediate: Sequence[int] = INTERMEDIATE_EPOCHS) -> dict[str, Any]:
    """Train one config with the label-free metrics at each monitoring epoch, read it out (linear probes also at
    the ``intermediate`` epochs); failures (NaN, collapse) are rows too."""
    from sweep.train.job import fit, run_status

    t0 = time.perf_counter()
    trial = _build([*base, *spec.overrides()], work / f"trial_{spec.trial:04d}")
    hook = IntermediateReadouts(trial, intermediate)
    reason = fit(trial, hook)
    train_s = time.perf_counter() - t0
    row: dict[str, Any] = {**asdict(spec), "state": "COMPLETE" if reason is None else "FAIL",
                           "status": run_status(reason), "failure_reason": reason, "epochs": trial.cfg.epochs,
                           "epochs_completed": trial.progress.epoch, **hook.values}
    last = trial.progress.history[-1] if trial.progress.history else {}
    row.update({k: last.get(k) for k in CURVE_METRICS})
    if reason is None:
        feats, labels = backbone_features(trial)
        row.update(readouts(feats, labels, trial.cfg, full=True))
    row.update(train_s=train_s, total_s=time.perf_counter() - t0,
               epochs_s=trial.progress.timings["train_s"], metrics_s=trial.progress.timings["metrics_s"])
    row["curve"] = [{"epoch": h["epoch"], **{k: h.get(k) for k in CURVE_METRICS}} for h in trial.progress.history]
    return row


def _worker_init() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ["OMP_NUM_THREADS"] = "1"


# ----------------------------------------------------------------------------- tables
def _finite_or_nan(value: Any) -> Any:
    return np.nan if value is None else value


def to_tables(rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """(trials table, curves table), sorted by trial (and epoch)."""
    import pandas as pd

    flat, curves = [], []
    names = [*PARAM_COLUMNS, *(["hidden_dim"] if any("hidden_dim" in r.get("params", {}) for r in rows) else [])]
    for row in sorted(rows, key=lambda r: r["trial"]):
        params = row.get("params", {})
        base = {k: v for k, v in row.items() if k not in ("params", "curve")}
        flat.append({**base, **{k: params.get(k, np.nan) for k in names}})
        for point in row["curve"]:
            curves.append({"trial": row["trial"], "method": row["method"], "repeat": row["repeat"], **point})
    table = pd.DataFrame(flat).map(_finite_or_nan)
    curves = pd.DataFrame(curves).map(_finite_or_nan)
    return with_clid(table, ["method"]), with_clid(curves, ["method", "epoch"])


def with_clid(frame: Any, groups: list[str]) -> Any:
    """Add ``clid`` = z(cluster_learnability) + z(twonn) within each group (a method's runs; per epoch for the
    curves): CLID ranks the runs compared together (sweep.metrics.clid_scores), it has no value for one run."""
    from sweep.metrics import clid_scores

    if frame.empty or not {"cluster_learnability", "twonn"} <= set(frame.columns):
        return frame
    frame = frame.copy()
    frame["clid"] = np.nan
    ok = frame["state"] == "COMPLETE" if "state" in frame.columns else np.ones(len(frame), bool)
    for _, part in frame[ok].groupby(groups):
        frame.loc[part.index, "clid"] = clid_scores(part["cluster_learnability"].to_numpy(float),
                                                    part["twonn"].to_numpy(float))
    return frame


def versions() -> dict[str, str]:
    import numpy
    import optuna
    import pandas
    import sklearn
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True, check=False).stdout.strip() != ""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "scikit-learn": sklearn.__version__, "optuna": optuna.__version__,
            "git_commit": commit, "git_dirty": str(dirty), "machine": f"{platform.machine()} {os.cpu_count()} cores"}


def _load_done(path: Path) -> dict[int, dict[str, Any]]:
    """Finished trials of an earlier (possibly killed) run; a torn last line is ignored."""
    done: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[int(row["trial"])] = row
    return done


def _settings_key(args: argparse.Namespace, base: Sequence[str]) -> dict[str, Any]:
    return {"preset": args.preset, "base_overrides": list(base), "configs": args.configs,
            "seed_configs": args.seed_configs, "extra_seeds": args.extra_seeds, "seed": args.seed,
            "methods": list(args.methods)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    base = [*PRESETS[args.preset], *(QUICK_OVERRIDES if args.quick else []), *args.override]
    from sweep.safety import secure_dir

    # the resume log is read back into the table: a folder another user could write (e.g. a /tmp default planted
    # in advance) is refused, not trusted
    work = secure_dir(Path(args.work_dir).resolve())
    settings = _settings_key(args, base)
    key_path = work / "settings.json"
    if key_path.exists() and json.loads(key_path.read_text()) != settings:
        raise SystemExit(f"testbed: {work} holds a run with other settings ({key_path}); use another --work-dir")
    key_path.write_text(json.dumps(settings, indent=1))
    specs = trial_specs(args.methods, args.configs, args.seed_configs, args.extra_seeds, args.seed)
    done_path = work / "trials.jsonl"
    done = _load_done(done_path)
    todo = [s for s in specs if s.trial not in done]
    print(f"testbed: {len(specs)} trials ({len(done)} already done), {args.workers} workers; work dir {work}",
          flush=True)
    t0 = time.perf_counter()
    reference = [random_init_reference(base, work, s) for s in range(1 + args.extra_seeds)]
    context = multiprocessing.get_context("spawn")  # no fork of a process that already ran torch
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_worker_init) as pool, done_path.open("a") as log:
        futures = {pool.submit(run_trial, s, base, work): s for s in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="testbed trials", unit="trial"):
            row = fut.result()
            log.write(json.dumps(row, default=float) + "\n")
            log.flush()
            done[row["trial"]] = row
    wall = time.perf_counter() - t0
    return {"settings": settings, "rows": list(done.values()), "reference": reference, "wall_s": wall}


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    table, curves = to_tables(result["rows"])
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "testbed.parquet", out / "testbed_curves.parquet", out / "testbed.json"]
    table.to_parquet(paths[0], index=False)
    curves.to_parquet(paths[1], index=False)
    reference = {k: float(np.mean([r[k] for r in result["reference"]])) for k in result["reference"][0]}
    meta = {"settings": result["settings"], "versions": versions(), "wall_s_this_run": result["wall_s"],
            "trial_compute_s": float(table["total_s"].sum()), "n_trials": len(table),
            "random_init_reference_mean_over_seeds": reference, "random_init_reference": result["reference"],
            "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    paths[2].write_text(json.dumps(meta, indent=1, default=float))
    return paths


# ----------------------------------------------------------------------------- the converged preset (issue 17)
# Fixed before any converged readout: the training length, schedule, grids, seed subset and pilot candidates.
CONVERGED_DIR = REPO / "benchmarks" / "data" / "converged"
CONVERGED_EPOCHS = 40
CONVERGED_WIDTHS = (64, 128, 256, 512)  # projector width: hidden layer and output (the alpha-ReQ protocol)
CONVERGED_AXES: dict[str, dict[str, tuple[float, ...]]] = {
    "barlow_twins": {"lambd": tuple(float(v) for v in np.geomspace(1e-4, 1e-1, 6))},
    "vicreg": {"var_weight": (0.0, 5.0, 25.0), "cov_weight": (0.0, 1.0)},
    "simclr": {"temperature": tuple(float(v) for v in np.geomspace(0.05, 2.0, 6))},
}
PILOT_CENTRE: dict[str, dict[str, float]] = {  # each method's usual setting, width 256: where lr / wd are picked
    "barlow_twins": {"lambd": CONVERGED_AXES["barlow_twins"]["lambd"][3], "out_dim": 256.0, "hidden_dim": 256.0},
    "vicreg": {"var_weight": 25.0, "cov_weight": 1.0, "out_dim": 256.0, "hidden_dim": 256.0},
    "simclr": {"temperature": CONVERGED_AXES["simclr"]["temperature"][2], "out_dim": 256.0, "hidden_dim": 256.0},
}
PILOT_LRS = (1e-3, 3e-3, 1e-2)
PILOT_WDS = (1e-4, 1e-2)
SEED_CONFIGS, EXTRA_SEEDS = 6, 2
GPU_OVERRIDES = ["device=cuda", "precision=bf16", "channels_last=true"]
DRY_RUN_OVERRIDES = ["epochs=1", "checkpoint_every=1", "optim.warmup_epochs=0", "metrics.every_n_epochs=1",
                     *QUICK_OVERRIDES[2:]]


def converged_schedule(epochs: int) -> tuple[list[str], tuple[int, ...]]:
    """(base overrides, readout epochs) for ``epochs``: warm-up 5% + cosine, metrics every epochs/8, linear
    probes also at 1/4, 1/2 and 3/4 of the run (3/4 vs the end is the plateau check)."""
    every = max(1, epochs // 8)
    warmup = max(1, round(0.05 * epochs))
    marks = tuple(sorted({max(every, every * round(epochs * f / every)) for f in (0.25, 0.5, 0.75)} - {epochs}))
    base = ["experiment=testbed_mnist", f"epochs={epochs}", "optim.name=adamw", "optim.scheduler=cosine",
            f"optim.warmup_epochs={warmup}", f"metrics.every_n_epochs={every}", f"checkpoint_every={epochs}"]
    return base, marks


def grid_params(method: str) -> list[dict[str, float]]:
    """The method's grid, axes in order (first axis slowest), projector width fastest."""
    import itertools

    axes = CONVERGED_AXES[method]
    out = []
    for values in itertools.product(*axes.values()):
        for width in CONVERGED_WIDTHS:
            out.append({**dict(zip(axes, values)), "out_dim": float(width), "hidden_dim": float(width)})
    return out


def seed_config_indexes(n: int, k: int = SEED_CONFIGS) -> list[int]:
    """k configs spread evenly over the grid order (both ends included): the seed-noise subset, fixed a priori."""
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def converged_specs(method: str, lr: float, weight_decay: float, extra_seeds: int = EXTRA_SEEDS,
                    seed_configs: int = SEED_CONFIGS) -> list[TrialSpec]:
    """The method's grid at seed 0, then ``extra_seeds`` more seeds of ``seed_configs`` of its configs. Trial ids
    are global (method index * 1000 + n) so the methods' tables can be run apart and joined."""
    m = METHODS.index(method)
    fixed = {"lr": float(lr), "weight_decay": float(weight_decay)}
    grid = grid_params(method)
    specs = [TrialSpec(m * 1000 + c, method, m * 1000 + c, 0, 0, {**fixed, **p}) for c, p in enumerate(grid)]
    for c in seed_config_indexes(len(grid), seed_configs):
        for r in range(1, extra_seeds + 1):
            specs.append(TrialSpec(m * 1000 + 500 + len(specs) - len(grid), method, m * 1000 + c, r, r,
                                   {**fixed, **grid[c]}))
    return specs


def pilot_specs(method: str, choice: Optional[int] = None) -> list[TrialSpec]:
    """Pilot phase 1: every (lr, wd) candidate at the method's centre config, seed 0; with ``choice`` (the index of
    the picked candidate) phase 2 adds seeds 1 and 2 of it, for the plateau check against seed noise."""
    import itertools

    m = METHODS.index(method)
    candidates = list(itertools.product(PILOT_LRS, PILOT_WDS))
    specs = [TrialSpec(m * 100 + i, method, m * 100 + i, 0, 0, {"lr": lr, "weight_decay": wd, **PILOT_CENTRE[method]})
             for i, (lr, wd) in enumerate(candidates)]
    if choice is not None:
        specs += [TrialSpec(m * 100 + 50 + r, method, m * 100 + choice, r, r, specs[choice].params)
                  for r in range(1, EXTRA_SEEDS + 1)]
    return specs


def pick_pilot(rows: Sequence[dict[str, Any]]) -> int:
    """Index of the candidate with the best final validation accuracy (labels are allowed in the pilot only);
    ties go to the earlier candidate (smaller lr)."""
    scores = [(-(r.get("val_accuracy") or -1.0), int(r["trial"]) % 100) for r in rows if r["repeat"] == 0]
    return min(scores)[1]


def plateau_check(rows: Sequence[dict[str, Any]], last: int, mark: int) -> dict[str, Any]:
    """Test accuracy at the last epoch vs at ``mark`` (3/4 of the run) per seed, against the seed noise (std over
    seeds of the last-epoch accuracy): plateau when |mean difference| < that std."""
    finals = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
    marks = [r.get(f"test_accuracy_e{mark}") for r in rows]
    diffs = [f - m for f, m in zip(finals, marks) if m is not None]
    noise = float(np.std(finals, ddof=1)) if len(finals) > 1 else float("nan")
    mean_diff = float(np.mean(diffs)) if diffs else float("nan")
    return {"epochs": [mark, last], "seeds": len(finals), "test_accuracy_last": finals,
            f"test_accuracy_e{mark}": marks, "mean_last_minus_mark": mean_diff,
            "max_abs_last_minus_mark": float(np.max(np.abs(diffs))) if diffs else float("nan"),
            "seed_std_last": noise, "plateau": bool(abs(mean_diff) < noise)}


@dataclass
class Job:
    """One trial to run and the resume log its row goes to."""

    spec: TrialSpec
    base: list[str]
    intermediate: tuple[int, ...]
    log: Path


def run_jobs(jobs: Sequence[Job], runs: Path, workers: int, deadline: Optional[float]) -> list[dict[str, Any]]:
    """Run jobs ``workers`` at a time (spawned processes, one thread each), appending each finished row to its
    job's log at once. After ``deadline`` (time.monotonic) no new trial starts (the running ones finish): one part
    of a long, resumable run."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    if not jobs:
        return rows
    context = multiprocessing.get_context("spawn")  # no fork of a process that already ran torch; CUDA-safe
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        pending = list(jobs)
        running: dict[Any, Job] = {}
        bar = tqdm(total=len(jobs), desc="testbed trials", unit="trial")
        while pending or running:
            while pending and len(running) < workers and (deadline is None or time.monotonic() < deadline):
                job = pending.pop(0)
                running[pool.submit(run_trial, job.spec, job.base, runs, job.intermediate)] = job
            if not running:
                break
            done = next(as_completed(running))
            job = running.pop(done)
            row = done.result()
            with job.log.open("a") as log:
                log.write(json.dumps(row, default=float) + "\n")
            rows.append(row)
            bar.update(1)
        bar.close()
        if pending:
            print(f"testbed: time limit reached, {len(pending)} trial(s) left for the next part", flush=True)
    return rows


def _state(folder: Path, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The finished rows of a resumable run in ``folder`` (its settings must match: never mix two grids)."""
    from sweep.safety import secure_dir

    secure_dir(folder)
    key = folder / "settings.json"
    if key.exists() and json.loads(key.read_text()) != settings:
        raise SystemExit(f"testbed: {folder} holds a run with other settings ({key}); use another --out")
    key.write_text(json.dumps(settings, indent=1))
    return _load_done(folder / "trials.jsonl")


def _pilot_choice(root: Path, method: str) -> Optional[dict[str, float]]:
    """The stored pilot's (lr, weight_decay) for ``method``: ``root``'s pilot, else the CPU testbed's."""
    for path in (root / "pilot.json", CONVERGED_DIR / "pilot.json"):
        if path.exists():
            choice = json.loads(path.read_text()).get(method, {}).get("choice")
            if choice:
                return {"lr": float(choice["lr"]), "weight_decay": float(choice["weight_decay"])}
    return None


def reuse_pilot(pilot_log: Path, specs: Sequence[TrialSpec], done: dict[int, dict[str, Any]], log: Path,
                base: Sequence[str]) -> dict[int, dict[str, Any]]:
    """Grid trials the pilot already ran (same method, seed, params and base overrides: the same run) are copied
    into the grid's log under the grid's trial id instead of being trained again; returns them by trial id."""
    settings = pilot_log.with_name("settings.json")
    if not pilot_log.exists() or json.loads(settings.read_text()).get("base_overrides") != list(base):
        return {}
    pilot = list(_load_done(pilot_log).values())
    reused: dict[int, dict[str, Any]] = {}
    for spec in specs:
        if spec.trial in done:
            continue
        same = [r for r in pilot if r["method"] == spec.method and r["seed"] == spec.seed and r["params"] == spec.params]
        if same:
            row = {**same[0], **{k: getattr(spec, k) for k in ("trial", "config_id", "repeat")},
                   "reused_from": f"pilot trial {same[0]['trial']}"}  # text: never read as a metric
            with log.open("a") as out:
                out.write(json.dumps(row, default=float) + "\n")
            reused[spec.trial] = row
    return reused


def converged_base(args: argparse.Namespace) -> tuple[list[str], tuple[int, ...]]:
    base, marks = converged_schedule(args.epochs)
    if args.device == "cuda":
        base += GPU_OVERRIDES
    if args.backbone != "small_cnn":
        base.append(f"backbone={args.backbone}")
    if args.dry_run:
        base, marks = base + DRY_RUN_OVERRIDES, ()
    return base + list(args.override), marks


def run_pilot(args: argparse.Namespace, root: Path, runs: Path) -> Path:
    """Phase 1 (lr x wd at the centre config), pick by val accuracy, phase 2 (two more seeds of the pick);
    writes ``root/pilot.json`` with every number and the plateau check."""
    base, marks = converged_base(args)
    path = root / "pilot.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    for method in args.methods:
        folder = root / "pilot" / method
        done = _state(folder, {"preset": "converged-pilot", "method": method, "base_overrides": base,
                               "centre": PILOT_CENTRE[method], "lrs": list(PILOT_LRS), "wds": list(PILOT_WDS)})
        phase1 = pilot_specs(method)
        run_jobs([Job(s, base, marks, folder / "trials.jsonl") for s in phase1 if s.trial not in done], runs,
                 args.workers, args.deadline)
        done = _load_done(folder / "trials.jsonl")
        if not all(s.trial in done for s in phase1):
            print(f"testbed pilot: {method} phase 1 incomplete; run the same command again to resume", flush=True)
            continue
        choice = pick_pilot([done[s.trial] for s in phase1])
        phase2 = pilot_specs(method, choice)[len(phase1):]
        run_jobs([Job(s, base, marks, folder / "trials.jsonl") for s in phase2 if s.trial not in done], runs,
                 args.workers, args.deadline)
        done = _load_done(folder / "trials.jsonl")
        seeds = [done[t] for t in (phase1[choice].trial, *(s.trial for s in phase2)) if t in done]
        summary = {k: v for k, v in phase1[choice].params.items() if k in ("lr", "weight_decay")}
        stored[method] = {
            "centre": PILOT_CENTRE[method], "picked_by": "final val_accuracy (seed 0)",
            "choice": summary if len(seeds) == 1 + EXTRA_SEEDS else None,
            "candidates": [{**{k: done[s.trial]["params"][k] for k in ("lr", "weight_decay")},
                            **{k: v for k, v in done[s.trial].items() if "accuracy" in k},
                            "status": done[s.trial]["status"], "total_s": done[s.trial]["total_s"]} for s in phase1],
            "plateau": plateau_check(seeds, args.epochs, max(marks)) if marks else None,
            "rows": [done[t] for t in sorted(done)]}
        tmp = path.with_suffix(".json.tmp")  # a run killed while writing leaves the previous pilot.json intact
        tmp.write_text(json.dumps(stored, indent=1, default=float))
        tmp.replace(path)
        print(f"testbed pilot: {method} -> {summary}, plateau {stored[method]['plateau']}", flush=True)
    print(f"wrote {path}")
    return path


def run_grid(args: argparse.Namespace, root: Path, runs: Path) -> dict[str, Any]:
    """The methods' grids, resumable (``root/work/<method>/trials.jsonl``), then the table of every finished trial."""
    base, marks = converged_base(args)
    jobs, plan, settings = [], {}, {}
    missing = [m for m in args.methods if not args.dry_run and _pilot_choice(root, m) is None]
    for method in missing:  # the grid of a method runs only at its pilot's lr / wd, never at a guess
        print(f"testbed: no pilot for {method}: skipped; run first:\n  python benchmarks/testbed.py --preset "
              f"converged --pilot --methods {method}", flush=True)
    args.methods = [m for m in args.methods if m not in missing]
    if not args.methods:
        raise SystemExit("testbed: no method with a stored pilot (benchmarks/data/converged/pilot.json)")
    for method in args.methods:
        choice = _pilot_choice(root, method) or {"lr": PILOT_LRS[0], "weight_decay": PILOT_WDS[0]}  # dry run
        specs = converged_specs(method, choice["lr"], choice["weight_decay"])[: 2 if args.dry_run else None]
        settings[method] = {"preset": "converged", "method": method, "base_overrides": base, **choice,
                            "grid": [s.params for s in specs if s.repeat == 0],
                            "seed_configs": sorted({s.config_id for s in specs if s.repeat}),
                            "extra_seeds": 0 if args.dry_run else EXTRA_SEEDS}
        folder = root / "work" / method
        done = _state(folder, settings[method])
        done.update(reuse_pilot(root / "pilot" / method / "trials.jsonl", specs, done, folder / "trials.jsonl", base))
        plan[method] = len(specs)
        jobs += [Job(s, base, marks, folder / "trials.jsonl") for s in specs if s.trial not in done]
    print(f"testbed converged: {sum(plan.values())} trials planned, {len(jobs)} to run, {args.workers} at a time; "
          f"resume state {root / 'work'}; run dirs {runs}", flush=True)
    t0 = time.perf_counter()
    base_ref = [b for b in base if not b.startswith(("device=", "precision=", "channels_last="))]
    reference = [random_init_reference(base_ref, runs, s) for s in range(1 + EXTRA_SEEDS)]
    run_jobs(jobs, runs, args.workers, args.deadline)
    rows = [row for m in args.methods for row in _load_done(root / "work" / m / "trials.jsonl").values()]
    progress = {m: {"done": sum(r["method"] == m for r in rows), "planned": plan[m]} for m in args.methods}
    return {"settings": {"preset": "converged", "methods": settings, "progress": progress,
                         "complete": all(p["done"] == p["planned"] for p in progress.values())},
            "rows": rows, "reference": reference, "wall_s": time.perf_counter() - t0}


def converged_main(args: argparse.Namespace) -> int:
    """``--preset converged``: the pilot, the grid, or the dry run; prints where everything is and what next."""
    tmp = Path(tempfile.gettempdir())
    if args.dry_run:
        args.methods = args.methods[:1]  # two trials of the first method
    default_root = CONVERGED_DIR if args.device == "cpu" and args.backbone == "small_cnn" and \
        args.epochs == CONVERGED_EPOCHS else REPO / "benchmarks" / "data" / f"converged_{args.device}_{args.backbone}"
    root = (args.out or (tmp / "sweep_testbed_converged_dry_run" if args.dry_run else default_root)).resolve()
    runs = (args.work_dir or tmp / f"sweep_testbed_converged_runs_{args.device}").resolve()
    if args.pilot:
        run_pilot(args, root, runs / "pilot")
        print(f"next: python benchmarks/testbed.py --preset converged --methods {' '.join(args.methods)}")
        return 0
    result = run_grid(args, root, runs)
    paths = write_outputs(result, root)
    print("\n".join(f"wrote {p}" for p in paths))
    print(f"progress: {result['settings']['progress']}")
    if result["settings"]["complete"]:
        print(f"next: python benchmarks/conditions.py --table {paths[0]} --md {root / 'conditions.md'}")
    else:
        print(f"next (resume): python benchmarks/testbed.py --preset converged --methods {' '.join(args.methods)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted([*PRESETS, "converged"]), default="mnist5k")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--configs", type=int, default=48, help="configs per method (seed 0)")
    parser.add_argument("--seed-configs", type=int, default=6, help="configs per method trained with more seeds")
    parser.add_argument("--extra-seeds", type=int, default=2, help="extra seeds of those configs")
    parser.add_argument("--seed", type=int, default=0, help="seeds the config draws")
    parser.add_argument("--workers", type=int, default=2, help="trials at once (1 thread each)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/data; "
                        "--quick: a temporary folder)")
    parser.add_argument("--work-dir", type=Path, default=None, help="run dirs and the resume log")
    parser.add_argument("--quick", action="store_true", help="2 configs per method, 2 epochs, small splits")
    parser.add_argument("--pilot", action="store_true", help="converged: pick lr / wd per method (stored)")
    parser.add_argument("--dry-run", action="store_true", help="converged: 2 trials of 1 epoch, small splits")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="converged: cuda = one GPU, "
                        "bf16 autocast, channels_last")
    parser.add_argument("--parallel", type=int, default=None, help="converged: trials at once (= --workers)")
    parser.add_argument("--backbone", choices=("small_cnn", "resnet18"), default="small_cnn")
    parser.add_argument("--epochs", type=int, default=CONVERGED_EPOCHS, help="converged: training length")
    parser.add_argument("--minutes", type=float, default=None, help="converged: start no trial after this "
                        "many minutes (a part of a resumable run)")
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every trial")
    args = parser.parse_args(argv)
    if args.parallel is not None:
        args.workers = args.parallel
    args.deadline = None if args.minutes is None else time.monotonic() + 60.0 * args.minutes  # one for the command
    if args.preset == "converged":
        return converged_main(args)
    if args.quick:
        args.configs, args.seed_configs, args.extra_seeds = 2, 1, 1
    tmp = Path(tempfile.gettempdir())
    args.work_dir = args.work_dir or tmp / f"sweep_testbed_{args.preset}{'_quick' if args.quick else ''}"
    out = args.out or (tmp / "sweep_testbed_quick_out" if args.quick else REPO / "benchmarks" / "data")
    if args.preset != "mnist5k" and args.out is None and not args.quick:
        out = REPO / "benchmarks" / "data" / args.preset
    result = run(args)
    paths = write_outputs(result, out)
    print("\n".join(f"wrote {p}" for p in paths))
    print(f"next: python benchmarks/selection.py --table {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())

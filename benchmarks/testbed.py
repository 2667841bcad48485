"""The evidence testbed: real SSL sweeps, every trial read out, stored as a small versioned table.

    python benchmarks/testbed.py                  # the stored table: 3 methods x 48 configs + seed repeats
    python benchmarks/testbed.py --quick          # a minute: 2 configs per method, 2 epochs, to a temp folder
    python benchmarks/testbed.py --preset digits  # the same protocol on embedded digits (the "no signal" data)

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
FEWSHOT_PER_CLASS = 10
CURVE_METRICS = ("loss", "rankme", "rankme_normalized", "alpha", "alpha_r2", "stable_rank",
                 "participation_ratio", "nesum", "rankme_backbone", "alpha_projector", "silhouette",
                 "ami_checkpoint", "entropy")
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
                 "var_weight": "method.var_weight", "cov_weight": "method.cov_weight"}
        out = [f"method={self.method}", f"seed={self.seed}"]
        for key, value in self.params.items():
            out.append(f"{names[key]}={int(value) if key == 'out_dim' else repr(float(value))}")
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
    from sweep.train.monitor import extract

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

    from sweep.train.validate import validate_train_config
    from sweep.config.compose import compose_train_config

    cfg = compose_train_config(list(overrides), run_dir=str(run_dir))
    validate_train_config(cfg)
    return OmegaConf.to_object(cfg)


def _build(overrides: Sequence[str], run_dir: Path) -> Any:
    import torch

    from sweep.train.job import build_trial

    torch.set_num_threads(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    return build_trial(_compose(overrides, run_dir), torch.device("cpu"), run_dir)


def random_init_reference(base: Sequence[str], work: Path, seed: int) -> dict[str, float]:
    """Readouts of the untrained backbone (seed ``seed``): the floor that training must clear."""
    trial = _build([*base, "method=simclr", f"seed={seed}"], work / f"random_init_seed{seed}")
    feats, labels = backbone_features(trial)
    return readouts(feats, labels, trial.cfg, full=True)


def run_trial(spec: TrialSpec, base: Sequence[str], work: Path) -> dict[str, Any]:
    """Train one config with metrics at every epoch, read it out; failures (NaN, collapse) are rows too."""
    from sweep.train.job import fit, run_status

    t0 = time.perf_counter()
    trial = _build([*base, *spec.overrides()], work / f"trial_{spec.trial:04d}")
    hook = IntermediateReadouts(trial, INTERMEDIATE_EPOCHS)
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
    row.update(train_s=train_s, total_s=time.perf_counter() - t0)
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
    for row in sorted(rows, key=lambda r: r["trial"]):
        params = row.get("params", {})
        base = {k: v for k, v in row.items() if k not in ("params", "curve")}
        flat.append({**base, **{k: params.get(k, np.nan) for k in
                                ("lr", "weight_decay", "out_dim", "temperature", "lambd", "var_weight",
                                 "cov_weight")}})
        for point in row["curve"]:
            curves.append({"trial": row["trial"], "method": row["method"], "repeat": row["repeat"], **point})
    table = pd.DataFrame(flat).map(_finite_or_nan)
    return table, pd.DataFrame(curves).map(_finite_or_nan)


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="mnist5k")
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
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every trial")
    args = parser.parse_args(argv)
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

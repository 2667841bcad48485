"""Risk jobs: the Dubois et al. (2023) risk decomposition of each trial, from its saved features.

Splits (see :mod:`sweep.readout._risk`): a trial pretrains on ``train`` + ``val`` and its probe fits
``train``, so S_fit = ``train``, S_held = ``val``, T = ``test``. The supervised reference
(:mod:`sweep.train.reference`) is trained once per (data, backbone, recipe) under
``<sweep_dir>/risk/reference/<digest>/`` and shared by the matching trials. Results live in
``<sweep_dir>/risk/trial_<n>.json``; like readout jobs, a risk job never raises (it records ``status: failed``
with the error, and a later run retries it) and reuses a completed record made with the same reference and L2.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sweep.errors import SweepError
from sweep.config.schema import RiskConfig
from sweep.jsonio import write_json_atomic
from sweep.train.reference import (
    REFERENCE_FILE,
    check_labels,
    load_reference,
    missing_trainer_config,
    reference_dir,
    reference_done,
    reference_job,
)
from sweep.selection.policies import usable_trials
from sweep.selection.readout_jobs import feature_files, load_readout, readout_settings, record_path_of

RISK_DIRNAME = "risk"
REFERENCE_DIRNAME = "reference"
COMPONENTS = ("approximation", "usability", "probe_generalization", "encoder_generalization")
TABLE_COLUMNS = ["trial", "method", *COMPONENTS, "total"]


class RiskJobError(SweepError, ValueError):
    """A trial's record, features or reference cannot be used; the message names the file or field."""


@dataclass
class RiskRecord:
    trial: int
    status: str  # completed | failed
    method: str = ""
    approximation: float = math.nan
    usability: float = math.nan
    probe_generalization: float = math.nan
    encoder_generalization: float = math.nan
    total: float = math.nan
    sup_seen_seen: float = math.nan  # the four measured risks the components are differences of
    ssl_seen_seen: float = math.nan
    ssl_fit_heldout: float = math.nan
    ssl_fit_test: float = math.nan
    loss: str = ""
    l2: float = math.nan
    reference_dir: str = ""
    reference_train_accuracy: float = math.nan  # an undertrained reference inflates the approximation error
    error: Optional[str] = None
    elapsed_s: float = 0.0


RISK_COLUMNS = list(RiskRecord.__dataclass_fields__)


def risk_dir(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / RISK_DIRNAME


def risk_path(sweep_dir: str | Path, trial: int) -> Path:
    return risk_dir(sweep_dir) / f"trial_{int(trial)}.json"


def references_root(sweep_dir: str | Path) -> Path:
    return risk_dir(sweep_dir) / REFERENCE_DIRNAME


# ----------------------------------------------------------------------------- one trial
def _load_arrays(files: Mapping[str, tuple[Path, Path]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, paths in files.items():
        for path in paths:
            if not path.is_file():
                raise RiskJobError(f"feature file not found: {path}")
        out[split] = (np.load(paths[0]), np.load(paths[1]))
    return out


def _reference_arrays(ref_dir: Path) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The completed reference record and its (features, labels) per split."""
    record = load_reference(ref_dir)
    if record is None or record.get("status") != "completed":
        why = "missing" if record is None else f"status {record.get('status')!r}: {record.get('error')}"
        raise RiskJobError(f"supervised reference in {ref_dir} is not usable ({why}); "
                           "run `sweep risk` to train it")
    files = {s: (Path(e["backbone"]), Path(e["labels"])) for s, e in record["features"].items()}
    return record, _load_arrays(files)


def _readout_settings(record: Mapping[str, Any], l2: Optional[float]) -> dict[str, Any]:
    """L2 / loss / max_iter / tol / device of the risk probes: arguments, else the trial's readout settings
    (:func:`sweep.selection.readout_jobs.readout_settings`, the rule its readout follows)."""
    readout = readout_settings(record)
    return {
        "l2": float(l2 if l2 is not None else readout["risk_l2"]),
        "loss": str(readout["risk_loss"]),
        "max_iter": int(readout["max_iter"]),
        "tol": float(readout["tol"]),
        "device": str(readout["device"]),
    }


def decompose_trial(trial: int, record_path: Path, ref_dir: Path, l2: Optional[float]) -> RiskRecord:
    """Load the trial's backbone features and the reference's, check the rows match, decompose."""
    from sweep.readout import risk_decomposition

    record = json.loads(record_path.read_text())
    base = Path(record.get("run_dir") or record_path.parent)
    try:
        ssl = _load_arrays(feature_files(record, "backbone", base))
    except ValueError as exc:
        raise RiskJobError(f"{record_path}: {exc}") from exc
    ref, sup = _reference_arrays(ref_dir)
    check_labels({s: ssl[s][1] for s in ssl}, Path(ref["features"]["train"]["labels"]).parent)
    settings = _readout_settings(record, l2)
    (tx, ty), (vx, vy), (sx, sy) = ssl["train"], ssl["val"], ssl["test"]
    result = risk_decomposition(tx, ty, vx, vy, sx, sy, sup["train"][0], sup["val"][0], **settings)
    return RiskRecord(trial=trial, status="completed", method=str(record.get("method", "")),
                      **result.components(), total=result.total, **result.risks, loss=result.loss,
                      l2=result.l2, reference_dir=str(ref_dir),
                      reference_train_accuracy=float(ref.get("train_accuracy", math.nan)))


def _reusable(previous: Optional[dict[str, Any]], ref_dir: str, record_path: Path,
              l2: Optional[float]) -> bool:
    if previous is None or previous.get("status") != "completed" or previous.get("reference_dir") != ref_dir:
        return False
    try:
        wanted = _readout_settings(json.loads(record_path.read_text()), l2)["l2"]
    except (OSError, ValueError):
        return False
    return float(previous.get("l2", math.nan)) == wanted


def risk_job(trial: int, record_path: str, reference_dir: str, out_path: str,
             l2: Optional[float] = None) -> dict[str, Any]:
    """One trial's risk decomposition, written to ``out_path``; ``l2=None`` uses the trial's
    ``readout.risk_l2``. Never raises: a failure is recorded with its error. Runs inside any executor."""
    previous = load_readout(out_path)
    if _reusable(previous, str(reference_dir), Path(record_path), l2):
        assert previous is not None
        return previous
    start = time.perf_counter()
    try:
        out = decompose_trial(int(trial), Path(record_path), Path(reference_dir), l2)
    except Exception as exc:  # noqa: BLE001 - recorded, retried on the next run
        out = RiskRecord(trial=int(trial), status="failed", reference_dir=str(reference_dir),
                         error=f"{type(exc).__name__}: {exc}")
    out.elapsed_s = time.perf_counter() - start
    payload = asdict(out)
    write_json_atomic(Path(out_path), payload)
    return payload


def risk_many(jobs: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Several trials' risk jobs in one executor job, one after another."""
    return [risk_job(*arguments) for arguments in jobs]


def load_risks(sweep_dir: str | Path) -> pd.DataFrame:
    """All stored risk records of a sweep, one row per trial, sorted by trial (empty when there are none)."""
    stored = (load_readout(p) for p in sorted(risk_dir(sweep_dir).glob("trial_*.json")))
    rows = [r for r in stored if r is not None]
    frame = pd.DataFrame(rows, columns=RISK_COLUMNS)
    return frame.sort_values("trial", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- a sweep
def trial_config(row: pd.Series) -> dict[str, Any]:
    """The trial's resolved config: ``<run_dir>/config.yaml`` (sweep train's), else the ``config`` of its
    result record, else the ``.hydra/config.yaml`` Hydra writes for any app (a bring-your-own trainer's)."""
    run_dir = row.get("run_dir")
    if isinstance(run_dir, str) and (Path(run_dir) / "config.yaml").is_file():
        config = OmegaConf.load(Path(run_dir) / "config.yaml")
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    record = json.loads(record_path_of(row).read_text())
    if record.get("config"):
        return dict(record["config"])
    hydra_config = Path(str(run_dir or record_path_of(row).parent)) / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        return OmegaConf.to_container(OmegaConf.load(hydra_config), resolve=False)  # type: ignore[return-value]
    raise RiskJobError("no config.yaml in its run dir, no 'config' in its record and no .hydra/config.yaml: "
                       "the supervised reference is built from the trial's data and backbone configs")


@dataclass(frozen=True)
class RiskPlan:
    """Which reference each trial uses, and one config per reference to train it from."""

    trial_refs: dict[int, str]  # trial -> reference folder
    references: dict[str, dict[str, Any]]  # reference folder -> a matching trial's config
    errors: dict[int, str]  # trials whose config could not be read


def plan_references(trials: pd.DataFrame, sweep_dir: str | Path, trial_ids: Optional[Sequence[int]] = None,
                    epochs: Optional[int] = None, risk_cfg: Optional[RiskConfig] = None) -> RiskPlan:
    """Group the usable trials (optionally a subset) by reference key: one reference per distinct key."""
    rows = usable_trials(trials)
    if trial_ids is not None:
        rows = rows[rows["trial"].astype(int).isin({int(t) for t in trial_ids})]
    trial_refs: dict[int, str] = {}
    references: dict[str, dict[str, Any]] = {}
    errors: dict[int, str] = {}
    for _, row in rows.iterrows():
        try:
            config = trial_config(row)
            why_not = missing_trainer_config(config)
            if why_not is not None:
                raise RiskJobError(why_not)
            folder = str(reference_dir(references_root(sweep_dir), config, epochs, risk_cfg))
        except Exception as exc:  # noqa: BLE001 - reported per trial, the others go on
            errors[int(row["trial"])] = str(exc) if isinstance(exc, RiskJobError) else f"{type(exc).__name__}: {exc}"
            continue
        trial_refs[int(row["trial"])] = folder
        references.setdefault(folder, config)
    return RiskPlan(trial_refs, references, errors)


def _run_jobs(executor: Any, fn: Any, args: list[tuple[Any, ...]], many: Any, max_parallel: Optional[int],
              outputs: Sequence[Path], desc: str) -> None:
    """Every ``fn(*a)`` through the executor: k long-lived jobs with ``max_parallel=k``, else one job each
    (one job array on SLURM); a bar counts the ``outputs`` written since the start (a job may do several)."""
    if not args:
        return
    if max_parallel:
        width = min(int(max_parallel), len(args))
        jobs = [executor.submit(many, args[i::width]) for i in range(width)]
    else:
        jobs = executor.map_array(fn, *zip(*args))
    _wait_counting(jobs, outputs, desc)
    for job in jobs:
        job.result()


def _wait_counting(jobs: Sequence[Any], outputs: Sequence[Path], desc: str, poll_s: float = 0.5) -> None:
    """A progress bar (sweep.progress_bar: a terminal only) of the output files rewritten since the start."""
    from sweep.progress_bar import progress

    bar = progress(total=len(outputs), desc=desc, unit="job")
    if bar.disable:
        return
    start = time.time() - 1.0

    def written() -> int:
        return sum(1 for p in outputs if p.is_file() and p.stat().st_mtime >= start)

    try:
        while not all(getattr(job, "done", lambda: True)() for job in jobs):
            bar.update(written() - bar.n)
            time.sleep(poll_s)
        bar.update(written() - bar.n)
    finally:
        bar.close()


def _references_many(jobs: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [reference_job(*arguments) for arguments in jobs]


def _pending_references(plan: RiskPlan, epochs: Optional[int], risk_cfg: Optional[RiskConfig]
                        ) -> list[tuple[dict[str, Any], str]]:
    """(config, folder) of the references not yet trained: a rerun trains none twice."""
    return [(config, folder) for folder, config in plan.references.items()
            if not reference_done(config, folder, epochs, risk_cfg)]


def _pending_trials(plan: RiskPlan, rows: pd.DataFrame, sweep_dir: str | Path, l2: Optional[float]
                    ) -> tuple[list[tuple[Any, ...]], int]:
    """Risk-job arguments of the trials without a reusable record, and how many were reused."""
    args, reused = [], 0
    for t, folder in sorted(plan.trial_refs.items()):
        record_path, out = record_path_of(rows.loc[t]), risk_path(sweep_dir, t)
        if _reusable(load_readout(out), folder, record_path, l2):
            reused += 1
            continue
        args.append((t, str(record_path), folder, str(out), l2))
    return args, reused


def run_risk(trials: pd.DataFrame, sweep_dir: str | Path, executor: Any,
             trial_ids: Optional[Sequence[int]] = None, reference_epochs: Optional[int] = None,
             l2: Optional[float] = None, risk_cfg: Optional[RiskConfig] = None,
             max_parallel: Optional[int] = None) -> pd.DataFrame:
    """Train the references not yet trained, then decompose the trials without a completed record; returns
    the table of this run's trials (one row each, TABLE_COLUMNS first). Says what it does before each step."""
    plan = plan_references(trials, sweep_dir, trial_ids, reference_epochs, risk_cfg)
    risk = dataclasses.asdict(risk_cfg) if risk_cfg is not None else None
    refs = _pending_references(plan, reference_epochs, risk_cfg)
    if refs:
        print(f"[risk] training {len(refs)} supervised reference(s) under {references_root(sweep_dir)} "
              f"({len(plan.references) - len(refs)} reused)", flush=True)
    _run_jobs(executor, reference_job, [(c, f, reference_epochs, risk) for c, f in refs], _references_many,
              max_parallel, [Path(f) / REFERENCE_FILE for _, f in refs], "references")
    rows = usable_trials(trials).set_index("trial", drop=False)
    args, reused = _pending_trials(plan, rows, sweep_dir, l2)
    if plan.trial_refs:
        print(f"[risk] decomposing {len(args)} trial(s) into {risk_dir(sweep_dir)} ({reused} already done, "
              "reused)", flush=True)
    _run_jobs(executor, risk_job, args, risk_many, max_parallel, [Path(a[3]) for a in args], "risk")
    for trial, error in plan.errors.items():
        failed = RiskRecord(trial=trial, status="failed", error=error)
        write_json_atomic(risk_path(sweep_dir, trial), asdict(failed))
    stored = load_risks(sweep_dir)
    wanted = set(plan.trial_refs) | set(plan.errors)
    return stored[stored["trial"].astype(int).isin(wanted)].reset_index(drop=True)


def risk_table(frame: pd.DataFrame) -> pd.DataFrame:
    """TABLE_COLUMNS first, then the rest (measured risks, reference, errors)."""
    rest = [c for c in frame.columns if c not in TABLE_COLUMNS]
    return frame[[*TABLE_COLUMNS, *rest]]


def write_risk_table(frame: pd.DataFrame, sweep_dir: str | Path) -> dict[str, Path]:
    """``<sweep_dir>/risk/risk.csv`` and ``risk.parquet``; returns their paths."""
    folder = risk_dir(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "risk.csv", "parquet": folder / "risk.parquet"}
    table = risk_table(frame)
    table.to_csv(paths["csv"], index=False)
    table.to_parquet(paths["parquet"], index=False)
    return paths

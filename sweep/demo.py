"""The offline demo, end to end: sweep -> readouts -> selection policies -> comparison report.

The sweep itself is an ordinary Hydra multirun of the train job with our Optuna sweeper, started as a
subprocess exactly as a user would type it (so the demo exercises the real command line); readouts and the
report run here through the same launchers.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from sweep.config.schema import ReadoutConfig, SelectionConfig

STUDY_NAME = "demo"
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # experiment diff, search space, default trial count
    "default": {"experiment": "demo", "search_space": "testbed_mnist", "n_trials": 16},
    "tiny": {"experiment": "demo_tiny", "search_space": "testbed_mnist", "n_trials": 4},
}


def storage_url(out_dir: Path) -> str:
    """The demo's SQLite study: inside the output folder, so re-running the demo resumes/tops up."""
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def sweep_command(out_dir: Path, size: str = "default", n_trials: Optional[int] = None, n_jobs: int = 2,
                  launcher: str = "sweep_local") -> list[str]:
    """The Hydra multirun command line of the demo sweep (printed, so users can rerun or modify it)."""
    preset = DEMO_PRESETS[size]
    sweep_dir = (out_dir / "sweep").resolve()
    return [
        sys.executable, "-m", "sweep.train.job", "-m",
        f"experiment={preset['experiment']}",
        "hydra/sweeper=rankme_normalized_alpha",  # NSGA-II on (RankMe / min(N, D) up, |alpha - 1| down)
        "+hydra.sweeper.sampler.options.population_size=8",
        f"hydra/launcher={launcher}",
        f"+search_space={preset['search_space']}",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.storage={storage_url(out_dir)}",
        f"hydra.sweeper.study_name={STUDY_NAME}",
        f"hydra.sweeper.n_trials={n_trials or preset['n_trials']}",
        f"hydra.sweeper.n_jobs={n_jobs}",
    ]


def run_sweep(out_dir: Path, **kwargs: Any) -> None:
    """Run the sweep; a non-zero exit (e.g. the failure ratio was exceeded) stops the demo with its message."""
    command = sweep_command(out_dir, **kwargs)
    print("$ " + shlex.join(command), flush=True)
    finished = subprocess.run(command, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"sweep demo: the sweep exited with status {finished.returncode} (see its output above)")


def readout_executor(launcher: str, folder: Path) -> Any:
    """A submitit executor of the given launcher kind, for readout jobs."""
    from sweep.launch import make_executor

    return make_executor({"kind": launcher}, folder)


def select_and_report(storage: str, study_name: str, sweep_dir: Path, launcher: str = "local",
                      out: Optional[Path] = None, max_parallel: Optional[int] = None) -> Path:
    """Read out every completed trial (the oracle needs them all; each policy reports how many it used),
    then build the comparison report."""
    from sweep.selection.pipeline import run_readouts
    from sweep.selection.report import build_report, policy_table
    from sweep.selection.risk import load_risks
    from sweep.study.results import trials_dataframe

    sweep_dir = Path(sweep_dir)
    trials = trials_dataframe(storage, study_name)
    executor = readout_executor(launcher, sweep_dir / ".readout_jobs")
    readouts = run_readouts(trials, sweep_dir, executor, ReadoutConfig(), max_parallel=max_parallel)
    cfg = SelectionConfig()
    print_policy_summary(policy_table(trials, readouts, cfg))
    risk = load_risks(sweep_dir)  # only what `sweep risk` stored: the demo never computes it
    return build_report(trials, readouts, out or sweep_dir / "report", cfg,
                        title=f"Label-free selection: study {study_name!r}", risk=risk if len(risk) else None,
                        readout_problems=readouts.attrs.get("readout_problems"))


def print_policy_summary(policies: pd.DataFrame) -> None:
    """The headline table on stdout: what each policy chose, at what readout cost and regret."""
    columns = [c for c in ("policy", "readouts_used", "chosen_trial", "test_accuracy", "regret", "p_within_tol",
                           "mean_readouts_over_orders") if c in policies.columns]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(policies[columns].to_string(index=False), flush=True)
    from sweep.selection.report import policy_notes

    for note in policy_notes(policies):  # why a policy read or chose nothing
        print(f"note: {note}", flush=True)


def run_demo(out_dir: Path, n_trials: Optional[int] = None, n_jobs: int = 2, size: str = "default",
             launcher: str = "sweep_local") -> Path:
    """The README's first command: a small label-free sweep with the testbed's settings (mnist5k), then selection
    and report."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_sweep(out_dir, size=size, n_trials=n_trials, n_jobs=n_jobs, launcher=launcher)
    readout_kind = "inprocess" if launcher == "sweep_inprocess" else "local"
    return select_and_report(storage_url(out_dir), STUDY_NAME, out_dir / "sweep", readout_kind,
                             out_dir / "report", max_parallel=n_jobs)

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

from sweep.launch import kind_of_plugin
from sweep.selection.pipeline import select_and_report

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


def run_demo(out_dir: Path, n_trials: Optional[int] = None, n_jobs: int = 2, size: str = "default",
             launcher: str = "sweep_local") -> Path:
    """The README's first command: a small label-free sweep with the testbed's settings (mnist5k), then selection
    and report."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_sweep(out_dir, size=size, n_trials=n_trials, n_jobs=n_jobs, launcher=launcher)
    readout_kind = kind_of_plugin(launcher)  # readouts run where the trials ran
    return select_and_report(storage_url(out_dir), STUDY_NAME, out_dir / "sweep", readout_kind,
                             out_dir / "report", max_parallel=n_jobs)

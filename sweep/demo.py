"""The offline demo, end to end: sweep -> readouts -> selection policies -> comparison report.

The sweep itself is an ordinary Hydra multirun of the train job with our Optuna sweeper, started as a
subprocess exactly as a user would type it (so the demo exercises the real command line); readouts and the
report run here through the same launchers.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from sweep.launch import kind_of_plugin
from sweep.selection.pipeline import select_and_report

STUDY_NAME = "demo"
EXIT_INTERRUPTED = 128 + signal.SIGINT
# the demo's sweeper: NSGA-II on (RankMe / min(N, D) up, |alpha - 1| down), every method of the space equally often
MULTI_METHOD_SWEEPER = ("hydra/sweeper=rankme_normalized_alpha", "+hydra.sweeper.sampler.options.population_size=8",
                        "+hydra.sweeper.sampler.options.stratify=method")
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # experiment diff, search space, sweeper overrides, default trial count; a new preset is one entry here
    "default": {"experiment": "demo", "search_space": "testbed_mnist", "sweeper": MULTI_METHOD_SWEEPER,
                "n_trials": 12, "help": "3 methods, 8 epochs, 12 trials (4 per method)"},
    "tiny": {"experiment": "demo_tiny", "search_space": "testbed_mnist", "sweeper": MULTI_METHOD_SWEEPER,
             "n_trials": 4, "help": "the seconds-long variant the tests use"},
    # the papers' regime (README "Evidence", converged testbed): Barlow Twins trained to a plateau (40 epochs),
    # lambda x projector width, maximising raw RankMe, which ranked that grid's configs (Spearman +0.86)
    "converged": {"experiment": "converged_barlow", "search_space": "converged_barlow",
                  "sweeper": ("hydra/sweeper=rankme",), "n_trials": 8,
                  "help": "Barlow Twins trained to a plateau, lambda x width, 8 trials on RankMe (~10 min)"},
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
        *preset["sweeper"],
        f"hydra/launcher={launcher}",
        f"+search_space={preset['search_space']}",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.storage={storage_url(out_dir)}",
        f"hydra.sweeper.study_name={STUDY_NAME}",
        f"hydra.sweeper.n_trials={n_trials or preset['n_trials']}",
        f"hydra.sweeper.n_jobs={n_jobs}",
    ]


def run_sweep(out_dir: Path, **kwargs: Any) -> None:
    """Run the sweep; a non-zero exit (no trial completed, the failure ratio exceeded) stops the demo with its
    message, and an interrupted sweep (it printed how to resume) ends the demo with the same status."""
    command = sweep_command(out_dir, **kwargs)
    print("$ " + shlex.join(command), flush=True)
    code = run_forwarding_interrupts(command)
    if code in (EXIT_INTERRUPTED, -signal.SIGINT, 128 + signal.SIGTERM):
        raise SystemExit(code if code > 0 else EXIT_INTERRUPTED)  # the driver's own line said how to resume
    if code != 0:
        raise SystemExit(f"sweep demo: the sweep exited with status {code} (see its output above)")


def run_forwarding_interrupts(command: list[str]) -> int:
    """Run ``command`` in its own session (a terminal's Ctrl-C reaches this process only); on Ctrl-C or SIGTERM
    forward SIGINT once and wait for the driver to cancel and requeue its trials, however long that takes:
    killing it first (what ``subprocess.run`` does) would leave trials RUNNING. The child dies with us."""
    from sweep.launch.local import die_with_parent

    main_thread = threading.current_thread() is threading.main_thread()  # handlers can be set there only
    proc = subprocess.Popen(command, start_new_session=main_thread, preexec_fn=die_with_parent)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        return proc.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # later Ctrl-Cs wait too: the driver is cleaning up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        if main_thread and signal.getsignal(signal.SIGTERM) is _raise_interrupt:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    """SIGTERM on the demo is handled as Ctrl-C: forwarded to the sweep, which stops cleanly."""
    raise KeyboardInterrupt


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

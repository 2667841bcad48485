"""The bare-submitit floor as a researcher would write it: one script, an Optuna ask/tell loop on submitit.

    python benchmarks/submitit_floor.py --backend local|slurm --trials 16 --parallel 4 \\
        --storage sqlite:////tmp/study.db --study NAME --folder /tmp/jobs

benchmarks/overhead.py runs it as a subprocess, as it runs our sweeper, so both walls include what a user pays
to start either: the interpreter, importing optuna and submitit, opening the storage and creating the study.
It keeps ``--parallel`` jobs in flight and starts a trial as soon as one ends; the trial does no work
(``noop_trial``), so everything between Optuna's start and complete of a trial is orchestration. The storage is
opened as the sweeper opens it (``sweep.study.storage.make_storage``: the same URLs, journal files included, and
the same engine settings), so the two differ in orchestration only.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
import submitit

from sweep.study.storage import make_storage

POLL_S = 0.05  # the loop's poll interval: what a hand-written loop would pick


def noop_trial(x: float) -> float:
    """The trial body: nothing to do (shipped by value: this script is the job's __main__)."""
    return x * x


def make_executor(backend: str, folder: Path, parallel: int) -> submitit.Executor:
    if backend == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=10)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=10, cpus_per_task=1, slurm_array_parallelism=parallel)
    return executor


def ask_tell_loop(study: optuna.Study, executor: submitit.Executor, trials: int, parallel: int) -> None:
    """Async ask/tell: keep ``parallel`` jobs in flight; tell each as soon as its job is done."""
    running: dict[submitit.Job, optuna.Trial] = {}
    asked = 0
    while asked < trials or running:
        while asked < trials and len(running) < parallel:
            trial = study.ask()
            running[executor.submit(noop_trial, trial.suggest_float("x", -1.0, 1.0))] = trial
            asked += 1
        for job in [j for j in running if j.done()]:
            study.tell(running.pop(job), job.result())
        time.sleep(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("local", "slurm"), required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--parallel", type=int, required=True)
    parser.add_argument("--storage", required=True, help="a storage URL as hydra.sweeper.storage takes it")
    parser.add_argument("--study", required=True)
    parser.add_argument("--folder", type=Path, required=True, help="submitit's job folder")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=args.study, storage=make_storage(args.storage))
    ask_tell_loop(study, make_executor(args.backend, args.folder, args.parallel), args.trials, args.parallel)


if __name__ == "__main__":
    main()

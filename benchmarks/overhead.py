"""Per-trial orchestration overhead of a sweep (driver + launcher + storage), measured on no-op trials.

A no-op trial does no work, so all between Optuna's ``ask`` (trial start) and ``tell`` (trial complete) is
orchestration: submitting the job, starting Python on the worker, unpickling, writing and polling the result,
and the storage round trips. The numbers are read back from the study's storage, so every driver is measured
the same way:

* ``latency``: mean/median/p90 of (complete - start) per trial: what each trial pays on top of its work;
* ``wall/trial``: the sweep's wall time (driver start-up included) / trials, with ``--parallel`` in flight;
* ``fraction``: mean latency / ``--typical-trial-s`` (default DEFAULT_TYPICAL_TRIAL_S, stated in the output).

Drivers:

* ``sweeper``: our ``hydra/sweeper=sweep_optuna`` on the no-op Hydra app benchmarks/noop_app.py, with
  ``hydra/launcher=sweep_local`` / ``sweep_slurm``, run as a subprocess;
* ``submitit``: the floor our sweeper is judged against: benchmarks/submitit_floor.py, a minimal ask/tell loop
  straight on submitit as a researcher would write it, run as a subprocess like ours, so both walls include
  starting Python, the imports and creating the study;
* ``loop``: that same loop run inside this process, with its modules imported and its study created before the
  clock starts: a lower bound without any start-up, shown for reference (its wall ratio is printed, not judged).

SLURM rows are skipped, with the reason, when ``sinfo`` does not answer.

    python benchmarks/overhead.py --trials 16[,256] --parallel 4 [--backends local,slurm]
        [--drivers sweeper,submitit] [--typical-trial-s S]

With several ``--trials`` sizes a second table puts the per-trial cost at each size side by side (does it stay
flat as the study grows: storage size, journal replay, the trial list read per tell?), and a third checks the
issue-21 targets per backend and size: sweeper latency <= submitit's + LATENCY_MARGIN_S and sweeper wall per
trial <= WALL_RATIO x submitit's.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from sweep.study.storage import make_storage

# Wall time of one tiny trial, `python -m sweep.train.job experiment=tiny` (2 epochs on digits, 1 thread):
# 13.6-17.3 s measured on the 2-core dev machine under load (3.3-4.2 s of it training + metrics, the rest
# Python/torch start-up). The yardstick for "fraction of a typical trial"; override with --typical-trial-s.
DEFAULT_TYPICAL_TRIAL_S = 15.0
BACKENDS = ("local", "slurm")
DRIVERS = ("sweeper", "submitit", "loop")
LATENCY_MARGIN_S, WALL_RATIO = 0.5, 1.2  # issue 21's targets for the sweeper against the submitit floor


@dataclass(frozen=True)
class OverheadResult:
    """One measured configuration; times in seconds."""

    driver: str
    backend: str
    trials: int
    parallel: int
    wall_s: float
    latencies_s: tuple[float, ...]

    @property
    def mean_latency_s(self) -> float:
        return statistics.fmean(self.latencies_s)

    @property
    def wall_per_trial_s(self) -> float:
        return self.wall_s / self.trials

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile: the smallest latency with a share >= q of the trials at or below it."""
        ordered = sorted(self.latencies_s)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ----------------------------------------------------------------------------- measurement from the storage
def trial_latencies(study: optuna.Study) -> tuple[float, ...]:
    """(complete - start) of every finished trial, in trial order."""
    finished = [t for t in study.trials if t.datetime_start is not None and t.datetime_complete is not None]
    return tuple((t.datetime_complete - t.datetime_start).total_seconds() for t in finished)


# ----------------------------------------------------------------------------- drivers: the submitit floor
FLOOR_SCRIPT = Path(__file__).with_name("submitit_floor.py")


def _floor_module():
    """benchmarks/submitit_floor.py as a module (this file may be loaded by path, without benchmarks/ on
    sys.path), its functions shipped to the jobs by value: they cannot import it by name."""
    import cloudpickle

    name = "sweep_bench_submitit_floor"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FLOOR_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        cloudpickle.register_pickle_by_value(module)
    return sys.modules[name]


def run_submitit_driver(backend: str, trials: int, parallel: int, storage: str,
                        workdir: Path) -> OverheadResult:
    """The floor script as a user runs it: ``python benchmarks/submitit_floor.py ...`` in a subprocess."""
    name = f"overhead-submitit-{backend}-{time.time_ns()}"
    cmd = [sys.executable, str(FLOOR_SCRIPT), "--backend", backend, "--trials", str(trials),
           "--parallel", str(parallel), "--storage", storage, "--study", name, "--folder", str(workdir / "jobs")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"submitit floor failed (exit {proc.returncode}):\n{' '.join(cmd)}\n"
                           f"{proc.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    return OverheadResult("submitit", backend, trials, parallel, wall, trial_latencies(study))


def run_loop_driver(backend: str, trials: int, parallel: int, storage: str, workdir: Path) -> OverheadResult:
    """The floor's loop in this process; only the loop is timed (no start-up, no study creation)."""
    floor = _floor_module()
    name = f"overhead-loop-{backend}-{time.time_ns()}"
    study = optuna.create_study(storage=make_storage(storage), study_name=name)
    executor = floor.make_executor(backend, workdir / "jobs", parallel)
    start = time.perf_counter()
    floor.ask_tell_loop(study, executor, trials, parallel)
    wall = time.perf_counter() - start
    return OverheadResult("loop", backend, trials, parallel, wall, trial_latencies(study))


# ----------------------------------------------------------------------------- driver: our sweeper
NOOP_APP = Path(__file__).with_name("noop_app.py")


def run_sweeper_driver(backend: str, trials: int, parallel: int, storage: str,
                       workdir: Path) -> OverheadResult:
    """Our Hydra sweeper on the no-op app (benchmarks/noop_app.py), one multirun per configuration."""
    study_name = f"overhead-sweeper-{backend}-{time.time_ns()}"
    cmd = [sys.executable, str(NOOP_APP), "--multirun", f"hydra/launcher=sweep_{backend}",
           f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.n_jobs={parallel}",
           f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.study_name={study_name}",
           f"hydra.sweep.dir='{workdir / 'multirun'}'"]
    if backend == "slurm":
        cmd += ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sweeper run failed (exit {proc.returncode}):\n{' '.join(cmd)}\n"
                           f"{proc.stderr[-3000:]}")
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    return OverheadResult("sweeper", backend, trials, parallel, wall, trial_latencies(study))


DRIVER_FUNCS: dict[str, Callable[..., OverheadResult]] = {
    "sweeper": run_sweeper_driver,
    "submitit": run_submitit_driver,
    "loop": run_loop_driver,
}


# ----------------------------------------------------------------------------- availability, report, CLI
def backend_unavailable_reason(backend: str) -> str | None:
    if backend != "slurm":
        return None
    if shutil.which("sinfo") is None:
        return "sinfo not found"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()[:200]}"
    if not {"idle", "mixed"} & set(out.stdout.split()):
        return f"no idle/mixed node (states: {out.stdout.split()})"
    return None


def driver_unavailable_reason(driver: str) -> str | None:
    if driver != "sweeper":
        return None
    try:
        from hydra_plugins.sweep_plugins import sweep_optuna_sweeper  # noqa: F401
    except ImportError as err:
        return f"our sweeper is not importable ({err})"
    if not NOOP_APP.exists():
        return f"{NOOP_APP} is missing"
    return None


def format_table(results: list[OverheadResult], typical_s: float) -> str:
    head = (f"{'driver':<9} {'backend':<7} {'trials':>6} {'par':>3} {'wall s':>7} {'wall/trial s':>12} "
            f"{'latency mean':>12} {'p50':>6} {'p90':>6} {'fraction':>9}")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r.driver:<9} {r.backend:<7} {r.trials:>6} {r.parallel:>3} {r.wall_s:>7.2f} "
                    f"{r.wall_per_trial_s:>12.3f} {r.mean_latency_s:>12.3f} {r.quantile(0.5):>6.2f} "
                    f"{r.quantile(0.9):>6.2f} {r.mean_latency_s / typical_s:>8.1%}")
    return "\n".join(rows)


def format_scaling(results: list[OverheadResult]) -> str:
    """Per-trial cost of each driver/backend at each study size, side by side, and its growth from the
    smallest size to the largest (1.00x: flat)."""
    sizes = sorted({r.trials for r in results})
    head = f"{'driver':<9} {'backend':<7} " + " ".join(f"{f'lat@{n}':>9} {f'wall@{n}':>9}" for n in sizes)
    head += f" {'lat growth':>10} {'wall growth':>11}"
    rows = [head, "-" * len(head)]
    for driver, backend in dict.fromkeys((r.driver, r.backend) for r in results):
        by_size = {r.trials: r for r in results if (r.driver, r.backend) == (driver, backend)}
        cells = " ".join(f"{by_size[n].mean_latency_s:>9.3f} {by_size[n].wall_per_trial_s:>9.3f}" if n in by_size
                         else f"{'-':>9} {'-':>9}" for n in sizes)
        first, last = by_size[min(by_size)], by_size[max(by_size)]
        rows.append(f"{driver:<9} {backend:<7} {cells} {last.mean_latency_s / first.mean_latency_s:>9.2f}x "
                    f"{last.wall_per_trial_s / first.wall_per_trial_s:>10.2f}x")
    return "\n".join(rows)


def target_verdicts(results: list[OverheadResult]) -> list[str]:
    """One line per backend and size with both drivers: each issue-21 target MET / NOT MET, with the numbers."""
    lines = []
    for backend, trials in dict.fromkeys((r.backend, r.trials) for r in results):
        found = {r.driver: r for r in results if (r.backend, r.trials) == (backend, trials)}
        ours, floor, loop = found.get("sweeper"), found.get("submitit"), found.get("loop")
        if ours is None or floor is None:
            continue
        lat_ok = ours.mean_latency_s <= floor.mean_latency_s + LATENCY_MARGIN_S
        ratio = ours.wall_per_trial_s / floor.wall_per_trial_s
        line = (f"{backend} {trials} trials: latency {ours.mean_latency_s:.3f} s vs floor "
                f"{floor.mean_latency_s:.3f} s + {LATENCY_MARGIN_S} -> {'MET' if lat_ok else 'NOT MET'}; "
                f"wall/trial {ratio:.2f}x floor (target <= {WALL_RATIO}x) -> "
                f"{'MET' if ratio <= WALL_RATIO else 'NOT MET'}")
        if loop is not None:
            line += (f" (for reference, not judged: {ours.wall_per_trial_s / loop.wall_per_trial_s:.2f}x the "
                     f"in-process loop, which pays no start-up)")
        lines.append(line)
    return lines


def _sizes(value: str) -> list[int]:
    """``16,256`` -> [16, 256] (each >= 1)."""
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trials: {value!r} is not a comma-separated list of counts") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--trials: {value!r}: every size must be >= 1")
    return sizes


def _csv(value: str, allowed: tuple[str, ...], name: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{name}: {bad or value!r} not allowed "
                                         f"(allowed: {', '.join(allowed)})")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=_sizes, default=[16],
                        help="study sizes, comma-separated (e.g. 16,256): one run per size")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--backends", type=lambda v: _csv(v, BACKENDS, "--backends"), default=list(BACKENDS))
    parser.add_argument("--drivers", type=lambda v: _csv(v, DRIVERS, "--drivers"), default=list(DRIVERS))
    parser.add_argument("--storage", default=None,
                        help="storage URL as hydra.sweeper.storage takes it "
                             "(default: a fresh SQLite file per row)")
    parser.add_argument("--typical-trial-s", type=float, default=DEFAULT_TYPICAL_TRIAL_S)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given; else a temporary folder")
    args = parser.parse_args(argv)
    if args.parallel < 1 or args.typical_trial_s <= 0:
        parser.error("--parallel must be >= 1 and --typical-trial-s > 0")
    return args


def main(argv: list[str] | None = None) -> list[OverheadResult]:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="sweep-overhead-", dir="/var/tmp"))
    results: list[OverheadResult] = []
    skipped = {(d, b): driver_unavailable_reason(d) or backend_unavailable_reason(b)
               for d in args.drivers for b in args.backends}
    for (driver, backend), reason in skipped.items():
        if reason:
            print(f"skip {driver}/{backend}: {reason}")
    for trials in args.trials:
        for driver in args.drivers:
            for backend in args.backends:
                if skipped[(driver, backend)]:
                    continue
                workdir = root / f"{driver}-{backend}-{trials}"
                workdir.mkdir(parents=True, exist_ok=True)
                storage = args.storage or f"sqlite:///{workdir / 'study.db'}"
                results.append(DRIVER_FUNCS[driver](backend, trials, args.parallel, storage, workdir))
    print(f"no-op trials; fraction = mean latency / typical trial of {args.typical_trial_s:g} s"
          f"{' (default: the tiny trial, experiment=tiny)' if args.typical_trial_s == DEFAULT_TYPICAL_TRIAL_S else ''}")
    print(format_table(results, args.typical_trial_s))
    if len(args.trials) > 1 and results:
        print("\nper-trial cost as the study grows (seconds: mean latency, wall per trial)")
        print(format_scaling(results))
    verdicts = target_verdicts(results)
    if verdicts:
        print("\ntargets (issue 21):\n" + "\n".join(verdicts))
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()

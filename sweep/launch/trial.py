"""Running one trial as Hydra runs a job: compose in the driver, ``run_job`` in the worker.

The payload holds what the worker needs (as hydra-submitit-launcher pickles its launcher): the Hydra context,
the task function, the composed trial config, Hydra's singleton state (ConfigStore, plugins) and the trial's
pruning reporter. The worker
returns a ``TrialOutcome`` value; it never lets an exception cross the process boundary.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from sweep.errors import SweepError
from sweep.launch.outcome import TrialOutcome, outcome_from_exception, outcome_from_return
from sweep.reporting import Reporter, as_record, use_reporter

JOB_DIR_KEY, JOB_SUBDIR_KEY = "hydra.sweep.dir", "hydra.sweep.subdir"


@dataclass
class TrialPayload:
    hydra_context: Any
    task_function: Callable[[Any], Any]
    config: DictConfig
    singleton_state: Optional[dict[Any, Any]] = None  # set when the job runs in another process
    env: dict[str, str] = field(default_factory=dict)
    frozen_run_dir: Optional[str] = None  # set by the driver once composed (``freeze_run_dir``)
    # the trial's pruning reporter as data (pickled by reference to its class, never holding a connection or a
    # password); None without a pruner, so the worker imports no study code
    reporter: Optional[Reporter] = None

    @property
    def run_dir(self) -> str:
        return self.frozen_run_dir if self.frozen_run_dir is not None else trial_run_dir(self.config)

    def freeze_run_dir(self) -> str:
        """Resolve the run dir once: the driver reads it for the intent, the handle and the job id attrs, and
        the worker for its lock, all the same folder."""
        self.frozen_run_dir = trial_run_dir(self.config)
        return self.frozen_run_dir


def pinned_sweep_dir_override(config: DictConfig) -> str:
    """``hydra.sweep.dir=<resolved once>``: the default dir holds ``${now:...}``, which would resolve differently
    in each worker and on each requeue; pinned, a trial's run dir is stable."""
    return f"hydra.sweep.dir='{_escape(str(Path(str(config.hydra.sweep.dir)).absolute()))}'"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def compose_trial_config(hydra_context: Any, config: DictConfig, overrides: list[str], idx: int) -> DictConfig:
    """The trial's full config (Hydra's own composition: config groups, struct checks) with job num/id = idx."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config.hydra.job) as job:
        job.id = f"trial_{idx}"
        job.num = idx
    return sweep_config


def redact_config(config: DictConfig) -> DictConfig:
    """Mask every ``scheme://user:password@`` in the config (the storage URL, the Hydra overrides that set it),
    in place: the trial config reaches payload pickles and each run dir's ``.hydra/hydra.yaml``."""
    from sweep.safety import redact_text

    plain = OmegaConf.to_container(config, resolve=False)
    for parent_path, key, value in _string_leaves(plain, ()):
        masked = redact_text(value)
        if masked != value:
            parent = config
            for part in parent_path:
                parent = parent[part] if isinstance(parent, ListConfig) else parent._get_node(part)
            with read_write(parent), open_dict(parent) if isinstance(parent, DictConfig) else _nothing():
                parent[key] = masked
    return config


def _string_leaves(node: Any, path: tuple) -> list[tuple[tuple, Any, str]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, value in items:
        if isinstance(value, str):
            found.append((path, key, value))
        elif isinstance(value, (dict, list)):
            found.extend(_string_leaves(value, (*path, key)))
    return found


def _nothing() -> Any:
    from contextlib import nullcontext

    return nullcontext()


_PLAIN_HYDRA_REF = re.compile(r"\$\{hydra\.[\w.]+\}")  # resolved inside the config, no resolver involved


def trial_run_dir(config: DictConfig) -> str:
    """``<hydra.sweep.dir>/<hydra.sweep.subdir>`` of a composed trial config (resolved without HydraConfig).
    Only an interpolation other than ``${hydra.<key>}`` (``${hydra:...}``, a user key) needs the config set as HydraConfig (which copies it, ~25 ms)."""
    from hydra.core.hydra_config import HydraConfig

    raw = " ".join(str(config.hydra.sweep._get_node(key)._value()) for key in ("dir", "subdir"))
    if _PLAIN_HYDRA_REF.sub("", raw).count("${") == 0:  # at most ${hydra.job.num}-style references
        return str(Path(str(OmegaConf.select(config, JOB_DIR_KEY))) / str(OmegaConf.select(config, JOB_SUBDIR_KEY)))
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        return str(Path(str(OmegaConf.select(config, JOB_DIR_KEY))) / str(OmegaConf.select(config, JOB_SUBDIR_KEY)))
    finally:
        if previous is not None:
            HydraConfig.instance().cfg = previous


def execute_trial(payload: TrialPayload) -> TrialOutcome:
    """Run the task like Hydra does (output dir, HydraConfig, callbacks) and turn whatever happens into an outcome."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals

    if payload.singleton_state is not None:
        Singleton.set_state(payload.singleton_state)
    setup_globals()
    saved = {k: os.environ.get(k) for k in payload.env}
    os.environ.update(payload.env)
    lock: Optional[RunDirLock] = None
    secondary = is_secondary_task()
    try:
        if not secondary:  # the tasks of one multi-GPU trial share its run dir; rank 0 is its one writer
            lock = RunDirLock(payload.run_dir).acquire()
        with use_reporter(payload.reporter):  # the job is handed its reporter, never opens the study itself
            ret = run_job(hydra_context=payload.hydra_context, task_function=payload.task_function,
                          config=payload.config, job_dir_key=JOB_DIR_KEY, job_subdir_key=JOB_SUBDIR_KEY)
        if ret.status == JobStatus.COMPLETED:
            outcome = outcome_from_return(as_record(ret.return_value))
        else:
            outcome = outcome_from_exception(ret._return_value)
    except SystemExit as err:
        if os.environ.get("SLURM_JOB_ID"):
            raise  # submitit ends a preempted / timed-out job with sys.exit after requeueing it: let it
        outcome = outcome_from_exception(err)
    except BaseException as err:  # noqa: BLE001 - a trial must come back as a value (KeyboardInterrupt too)
        outcome = outcome_from_exception(err)
    finally:
        _restore_env(saved)
        if lock is not None:
            lock.release()
    return outcome if secondary else with_record_file(outcome, payload.run_dir)


def is_secondary_task(env: Optional[Mapping[str, str]] = None) -> bool:
    """Task 1.. of a SLURM job with several tasks (one per GPU of a DDP trial): it trains, but rank 0 alone
    holds the run dir's writer lock, writes the files and is the job's result (submitit returns task 0's)."""
    env = os.environ if env is None else env
    try:
        return int(env.get("SLURM_NTASKS", "1")) > 1 and int(env.get("SLURM_PROCID", "0")) > 0
    except ValueError:
        return False


class RunDirBusyError(SweepError, RuntimeError):
    """Another process still writes this run dir (a job of a lost driver): two writers would corrupt it."""


class RunDirLock:
    """An exclusive ``flock`` on ``<run_dir>/.writer.lock`` for the whole trial: never two writers in one run
    dir (flock also holds across hosts on NFSv4). Waits up to ``SWEEP_RUN_DIR_WAIT_S`` (default 120 s) for a
    previous writer to end, then fails the trial naming that writer."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".writer.lock"
        self._fd: Optional[int] = None

    def acquire(self, wait_s: Optional[float] = None) -> "RunDirLock":
        import fcntl
        import socket
        import time

        wait_s = float(os.environ.get("SWEEP_RUN_DIR_WAIT_S", 120)) if wait_s is None else wait_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RunDirBusyError(f"run dir {self.path.parent} is still being written by {holder} "
                                          f"(waited {wait_s:.0f} s); refusing to start a second writer") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()} job {os.environ.get('SLURM_JOB_ID', '-')}\n"
                  .encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def write_text_atomic(path: Path, text: str) -> None:
    """Write-then-rename: a reader (or a crash) never sees half a file."""
    from sweep.safety import unique_suffix

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _restore_env(saved: Mapping[str, Optional[str]]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def with_record_file(outcome: TrialOutcome, run_dir: str) -> TrialOutcome:
    """Every trial with a record gets ``<run_dir>/result.json`` (the train job writes its own; foreign tasks
    get one written here), so ``record_path`` always points at a file."""
    has_record = bool(outcome.record)
    outcome.record.setdefault("run_dir", run_dir)
    path = Path(outcome.record.get("record_path") or Path(run_dir) / "result.json")
    if has_record and not path.exists():
        try:
            write_text_atomic(path, json.dumps(outcome.record, indent=1, default=str, allow_nan=True))
        except OSError as err:  # a full disk: the trial cannot be read out later, so it is not a success
            failed = outcome_from_exception(err, prefix=f"cannot write {path}")
            outcome.status, outcome.failure_reason = failed.status, failed.failure_reason
            return outcome
    if path.exists():
        outcome.record["record_path"] = str(path)
    return outcome

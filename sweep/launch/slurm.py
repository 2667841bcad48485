"""SLURM launcher on submitit: trials as SLURM jobs, the first ``n_jobs`` as ONE job array.

The job callable (``TrialJob``, in ``sweep.launch.slurm_job``) is a ``submitit.helpers.Checkpointable``: on
preemption or timeout submitit calls its ``checkpoint`` and requeues the same payload; the trial config (pinned
sweep dir, job num = trial number) gives the same run dir, where the train job finds ``checkpoints/last.pt`` and
resumes.

Each trial records its job id and submitit folder (``adoption``), so a driver started after this one was lost
re-attaches to the job (``adopt_job``) instead of running the trial a second time; before ``sbatch`` it records
the job name the submission carries, so a driver lost in between is found by name (``adopt_intent``).
submitit's own pickles (``*_submitted.pkl``, ``*_result.pkl``) are not signed: they are only read from a
folder whose whole chain ``check_folder_chain`` accepts, re-checked right before each read (the driver in
``SubmititHandle.result``, which reads the result through a handle on the checked folder; the node in
``sweep.launch.guard``), see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import submitit

from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.guard import static_folder
from sweep.launch.kinds import LAUNCHERS, LauncherKind
from sweep.launch.outcome import DISK_FULL, TrialOutcome, names_disk_full, outcome_from_exception
from sweep.launch.slurm_job import TrialJob
from sweep.launch.submit_retry import submit_with_retries
from sweep.launch.trial import TrialPayload
from sweep.safety import UnsafeFolderError, check_folder_chain, read_private, secure_dir

log = logging.getLogger(__name__)
FAILED_STATES = ("FAILED", "OUT_OF_MEMORY", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                 "DEADLINE", "INTERRUPTED")


class SubmititHandle:
    def __init__(self, job: submitit.Job, run_dir: str, results_timeout_s: float) -> None:
        self.job, self.run_dir = job, run_dir
        self.results_timeout_s = results_timeout_s  # how long a finished job's result file may take to show

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def done(self) -> bool:
        return self.job.done()

    def result(self) -> TrialOutcome:
        try:  # submitit unpickles from these folders: re-checked right before every read, not only at the start
            check_folder_chain(static_folder(self.job._paths._folder))
            check_folder_chain(self.job.paths.folder)
        except (UnsafeFolderError, FileNotFoundError) as err:
            return outcome_from_exception(err, prefix="refused")
        try:
            value = _task_result(self.job.task(0), self.results_timeout_s)  # a multi-GPU trial: task 0's result
        except UnsafeFolderError as err:  # opened up or swapped for a link since the check above: not read
            return outcome_from_exception(err, prefix="refused")
        except Exception as err:  # noqa: BLE001 - FailedJobError/UncompletedJobError: the job died outside Python
            state = _safe_state(self.job)
            outcome = outcome_from_exception(err)
            outcome.failure_reason = f"crashed: job {self.job_id} state {state}; {outcome.failure_reason}"[:600]
            full = names_disk_full(str(err)) or _no_space_left(self.job.paths.folder)
            if full and not outcome.failure_reason.startswith(DISK_FULL):  # the job's own writes hit it (its log
                outcome.failure_reason = f"{DISK_FULL}: {outcome.failure_reason}"  # too, so it could not say so)
            return outcome
        return value if isinstance(value, TrialOutcome) else outcome_from_exception(
            TypeError(f"job returned {type(value).__name__}, expected TrialOutcome"))

    def cancel(self) -> None:
        self.job.cancel(check=False)

    @property
    def adoption(self) -> dict[str, str]:
        """Trial user attrs from which another driver re-attaches to this job (``adopt_job``)."""
        return {"launcher": "slurm", "job_folder": str(self.job._paths._folder)}


def _task_result(task: submitit.Job, timeout_s: float) -> Any:
    """The value a finished task returned, from its ``*_result.pkl`` read through a handle on its folder
    checked once (``read_private``: ours, private, no symlink), so a folder swapped after the check is not the
    one read. A task without a result pickle is left to submitit, which raises with the job's log."""
    import cloudpickle

    path = task.paths.result_pickle
    deadline = time.monotonic() + timeout_s  # a slow shared file system shows the file late
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        blob = read_private(path)
    except FileNotFoundError:
        task._results_timeout_s = 0.0  # waited above already: submitit only words the error from the job's log
        return task.result()
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink where the folder was
            raise UnsafeFolderError(f"{path.parent}: a symlink or file, not the job's folder; its result is "
                                    f"not read") from None
        raise
    status, value = cloudpickle.loads(blob)
    if status == "error":  # submitit stores the job's traceback as text
        raise submitit.core.utils.FailedJobError(f"Job (task=0) failed during processing with trace:\n{value}")
    return value


LOW_SPACE_BYTES = 1 << 20  # less than this free on the job's log folder: its result and log could not be written


def _no_space_left(folder: Path) -> bool:
    """Whether the file system of a job's submitit folder is full: a job that died without a result there
    could not write its log either, so nothing else would name the full disk."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < LOW_SPACE_BYTES


def adopt_job(folder: str, job_id: str, run_dir: str, results_timeout_s: float = 5.0) -> SubmititHandle:
    """A handle on a job submitted by a driver that is gone: its state comes from squeue/sacct and its result
    from the submitit folder (checked private first), as for a job of our own."""
    secure_dir(static_folder(folder))
    return SubmititHandle(submitit.SlurmJob(folder=folder, job_id=job_id), run_dir, results_timeout_s)


def find_jobs_by_name(name: str) -> list[str]:
    """Ids (``123``, or ``123_4`` for an array task) of the jobs named ``name``: live ones from ``squeue -r``,
    finished ones from ``sacct`` (where accounting is on). Empty when neither answers."""
    found: set[str] = set()
    commands = (["squeue", "-h", "-r", "-n", name, "-o", "%i"],
                ["sacct", "-n", "-X", "-P", "--name", name, "-o", "JobID", "-S", "now-14days"])
    for command in commands:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            found |= {line.strip() for line in out.stdout.split() if line.strip() and "[" not in line}
    return sorted(found)


def adopt_intent(intent: Mapping[str, str], results_timeout_s: float = 5.0) -> Optional[SubmititHandle]:
    """The job of a trial whose driver died between ``sbatch`` and storing the job id, found by the job name
    it recorded before submitting; None when no such job exists. A job whose pickle submitit never moved into
    place (the kill fell between the two) cannot run: it is cancelled, and None returned."""
    ids = find_jobs_by_name(str(intent["job_name"]))
    index = intent.get("array_index")
    wanted = [i for i in ids if (i.endswith(f"_{index}") if index is not None else "_" not in i)]
    adopted: Optional[SubmititHandle] = None
    for job_id in sorted(wanted, key=_job_number, reverse=True):  # the newest first: earlier tries were refused
        handle = adopt_job(str(intent["job_folder"]), job_id, str(intent.get("run_dir") or ""), results_timeout_s)
        if adopted is None and handle.job.paths.submitted_pickle.exists():
            adopted = handle
            continue
        log.warning("job %s was queued but its pickle never reached %s: cancelling it", job_id,
                    handle.job.paths.submitted_pickle)
        handle.cancel()
    return adopted


def _job_number(job_id: str) -> tuple[int, int]:
    head, _, index = job_id.partition("_")
    return int(head) if head.isdigit() else -1, int(index) if index.isdigit() else -1


def _safe_state(job: submitit.Job) -> str:
    try:
        return str(job.state)
    except Exception:  # noqa: BLE001 - sacct unreachable: the state is only for the message
        return "UNKNOWN"


def slurm_parameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Our launcher fields -> submitit AutoExecutor parameters (None = leave submitit's default)."""
    mapping = {
        "timeout_min": "timeout_min", "mem_gb": "mem_gb", "cpus_per_task": "cpus_per_task",
        "gpus_per_node": "gpus_per_node", "nodes": "nodes", "tasks_per_node": "tasks_per_node",
        "partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
        "array_parallelism": "slurm_array_parallelism", "additional_parameters": "slurm_additional_parameters",
        "setup": "slurm_setup", "signal_delay_s": "slurm_signal_delay_s", "constraint": "slurm_constraint",
        "exclude": "slurm_exclude", "srun_args": "slurm_srun_args", "name": "name",
    }
    params = {mapping[k]: _plain(v) for k, v in cfg.items() if k in mapping and v is not None}
    if cfg.get("preempt_signal"):
        # NCCL uses SIGUSR1; submitit reads SUBMITIT_PREEMPT_SIGNAL in the job to know which signal to trap.
        setup = list(params.get("slurm_setup") or [])
        params["slurm_setup"] = [f"export SUBMITIT_PREEMPT_SIGNAL={cfg['preempt_signal']}", *setup]
    return params


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


GUARDED_PYTHON = f"{sys.executable} -m sweep.launch.guard"  # re-checks the folders on the node (guard.py)


def build_executor(folder: Path | str, cluster: Optional[str], params: Mapping[str, Any],
                   max_num_timeout: int = 3, guarded: bool = False) -> submitit.AutoExecutor:
    """``guarded``: the SLURM job starts with ``sweep.launch.guard``, which re-checks the folder chain right
    before submitit reads the job's pickle."""
    extra = {"slurm_python": GUARDED_PYTHON} if guarded else {}
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=max_num_timeout,
                                     **extra)
    if executor.cluster != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    return executor


class SlurmLauncher(TrialLauncher):
    def __init__(self, cluster: Optional[str] = "slurm", submitit_folder: Optional[str] = None,
                 max_num_timeout: int = 3, results_timeout_s: float = 5.0, **params: Any) -> None:
        super().__init__()
        self.cluster, self.submitit_folder = cluster, submitit_folder
        self.max_num_timeout, self.results_timeout_s = max_num_timeout, results_timeout_s
        self.params = slurm_parameters(params)
        self._executor: Optional[submitit.AutoExecutor] = None
        self._job_name: Optional[str] = None  # set by intents() for the next _start()

    @property
    def executor(self) -> submitit.AutoExecutor:
        if self._executor is None:
            folder = self.submitit_folder or str(self.sweep_dir / ".submitit" / "%j")
            secure_dir(static_folder(folder))  # submitit unpickles what it finds there
            self._executor = build_executor(folder, self.cluster, self.params, self.max_num_timeout, guarded=True)
        return self._executor

    def intents(self, payloads: list[TrialPayload], idxs: list[int]) -> list[dict[str, str]]:
        """The job name this submission will carry (unique: a token per ``sbatch``), its folder and each trial's
        array index: a driver started after this one died in the submit window finds the jobs by that name."""
        self._job_name = f"{self.params.get('name') or 'sweep'}.{secrets.token_hex(6)}"
        folder = self.submitit_folder or str(self.sweep_dir / ".submitit" / "%j")
        array = len(payloads) > 1
        return [{"run_dir": p.run_dir, "launcher": "slurm", "job_name": self._job_name, "job_folder": folder,
                 **({"array_index": str(i)} if array else {})} for i, p in enumerate(payloads)]

    def _start(self, payloads: list[TrialPayload], idxs: list[int]) -> list[TrialHandle]:
        executor = self.executor
        name, self._job_name = self._job_name, None
        name = name or f"{self.params.get('name') or 'sweep'}.{secrets.token_hex(6)}"
        executor.update_parameters(name=name)
        jobs = submit_with_retries(lambda: _submit_jobs(executor, payloads), lambda: cancel_jobs_named(name))
        log.info("submitted trials %s as job(s) %s", idxs, [j.job_id for j in jobs])
        return [SubmititHandle(j, p.run_dir, self.results_timeout_s) for j, p in zip(jobs, payloads)]


def _submit_jobs(executor: submitit.AutoExecutor, payloads: list[TrialPayload]) -> list[submitit.Job]:
    """One ``sbatch``: a single job, or one job array for several payloads."""
    if len(payloads) == 1:
        return [executor.submit(TrialJob(), payloads[0])]
    with executor.batch():
        pending = [executor.submit(TrialJob(), p) for p in payloads]
    return list(pending)


def cancel_jobs_named(name: str) -> list[str]:
    """Cancel every job queued under ``name`` and return their ids: after a refused ``sbatch`` no job of that
    name holds its pickle, so none could run a trial (a retry submits them again)."""
    ids = find_jobs_by_name(name)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60, check=False)
    return ids


def slurm_executor(launcher_cfg: Mapping[str, Any], folder: Path) -> submitit.AutoExecutor:
    """Plain function jobs on the cluster of the launcher config (its SLURM parameters, without the trial-only
    keys)."""
    skip = {"_target_", "kind", "cluster", "submitit_folder", "max_num_timeout", "results_timeout_s"}
    params = slurm_parameters({k: v for k, v in launcher_cfg.items() if k not in skip})
    return build_executor(folder, launcher_cfg.get("cluster", "slurm"), params,
                          int(launcher_cfg.get("max_num_timeout") or 3))


LAUNCHERS.register("slurm", LauncherKind(SlurmLauncher, slurm_executor, plugin="sweep_slurm", front="SlurmLauncher"))

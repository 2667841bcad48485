"""Local launcher: one real subprocess per trial (``python -m sweep.launch.worker``), no polling delay.

Unlike submitit's LocalExecutor it does not give every job ``CUDA_VISIBLE_DEVICES=0``: with ``gpus`` set, each
trial gets the least busy GPU of the list (round-robin among equals), and the variable is left alone otherwise.
Workers die with the driver (PR_SET_PDEATHSIG), so a killed driver leaves no orphan trial running; they run in
their own session, so a Ctrl-C in the terminal reaches the driver alone, which cancels and requeues them.
Payload and result pickles carry the driver's HMAC and live in 0700 folders (``sweep.safety``).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import submitit

from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.kinds import LAUNCHERS, LauncherKind
from sweep.launch.outcome import FAILED, TrialOutcome, outcome_from_exit
from sweep.launch.trial import TrialPayload
from sweep.launch.worker import EXIT_UNTRUSTED, RESULT_FILE
from sweep.safety import (
    UntrustedPickleError,
    pickle_signed,
    secure_dir,
    unpickle_signed,
    worker_env,
    write_private,
)

log = logging.getLogger(__name__)
SUBMIT_DIR = ".submitted"  # under the sweep dir: payloads, results and worker logs, one folder per trial
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the driver dies (Linux; no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class GpuPool:
    """Assigns each new trial the GPU with the fewest running trials; ties go round-robin."""

    def __init__(self, gpus: Sequence[Any]) -> None:
        self.gpus = [str(g) for g in gpus]
        self.busy: Counter[str] = Counter()
        self._next = 0

    def acquire(self) -> Optional[str]:
        if not self.gpus:
            return None
        order = self.gpus[self._next:] + self.gpus[:self._next]
        gpu = min(order, key=lambda g: self.busy[g])
        self._next = (self.gpus.index(gpu) + 1) % len(self.gpus)
        self.busy[gpu] += 1
        return gpu

    def release(self, gpu: Optional[str]) -> None:
        if gpu is not None and self.busy[gpu] > 0:
            self.busy[gpu] -= 1


class LocalHandle:
    def __init__(self, proc: subprocess.Popen, folder: Path, run_dir: str, pool: GpuPool, gpu: Optional[str]):
        self.proc, self.folder, self.run_dir, self.gpu = proc, folder, run_dir, gpu
        self.job_id = str(proc.pid)
        self._pool, self._outcome = pool, None

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self) -> TrialOutcome:
        if self._outcome is None:
            code = self.proc.wait()
            self._pool.release(self.gpu)
            self._outcome = self._read_result(code)
        return self._outcome

    def _read_result(self, code: int) -> TrialOutcome:
        path = self.folder / RESULT_FILE
        if not path.exists():
            if code == EXIT_UNTRUSTED:
                return TrialOutcome(FAILED, {}, f"refused: {_tail(self.folder / 'stderr.log').strip()[-400:]}")
            return outcome_from_exit(code, _tail(self.folder / "stderr.log"))
        try:
            return unpickle_signed(path)
        except UntrustedPickleError as err:
            return TrialOutcome(FAILED, {}, f"refused: {err}")

    @property
    def adoption(self) -> dict[str, str]:
        """A local worker dies with its driver (nothing to re-attach to); recorded for the record."""
        import socket

        return {"launcher": "local", "job_host": socket.gethostname()}

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _tail(path: Path, n_bytes: int = 4000) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - n_bytes))
        return fh.read().decode(errors="replace")


class LocalLauncher(TrialLauncher):
    def __init__(self, gpus: Optional[Sequence[Any]] = None, python: Optional[str] = None,
                 env: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        self.pool = GpuPool(list(gpus or []))
        self.python = python or sys.executable
        self.extra_env = {str(k): str(v) for k, v in (env or {}).items()}

    def _start(self, payloads: list[TrialPayload], idxs: list[int]) -> list[TrialHandle]:
        return [self._spawn(p, idx) for p, idx in zip(payloads, idxs)]

    def _spawn(self, payload: TrialPayload, idx: int) -> LocalHandle:
        secure_dir(self.sweep_dir)
        folder = secure_dir(self.sweep_dir / SUBMIT_DIR / f"trial_{idx}")
        for stale in (RESULT_FILE, "stderr.log", "stdout.log"):
            (folder / stale).unlink(missing_ok=True)
        write_private(folder / "payload.pkl", pickle_signed(payload))
        gpu = self.pool.acquire()
        env = self._env(gpu)
        with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
            proc = subprocess.Popen([self.python, "-m", "sweep.launch.worker", str(folder / "payload.pkl")],
                                    stdout=out, stderr=err, env=env, preexec_fn=die_with_parent,
                                    start_new_session=True)  # Ctrl-C reaches the driver only: it cancels
        log.debug("trial %d: pid %d%s", idx, proc.pid, f" on GPU {gpu}" if gpu is not None else "")
        return LocalHandle(proc, folder, payload.run_dir, self.pool, gpu)

    def _env(self, gpu: Optional[str]) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, **worker_env()}
        paths = [p for p in (_script_dir(), env.get("PYTHONPATH")) if p]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)  # the app's own modules import in the worker too
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return env


def _script_dir() -> Optional[str]:
    """The folder of a driver started as a script (``python app.py``), whose sibling modules the pickled task
    may import. None for ``python -m pkg.mod``: the package is importable already, and putting its own folder
    on the path would let a subpackage shadow a standard module (``sweep/ssl`` hides ``ssl``)."""
    main = sys.modules.get("__main__")
    if getattr(main, "__spec__", None) is not None:
        return None
    path = getattr(main, "__file__", None)
    return str(Path(path).resolve().parent) if path else None


def local_executor(launcher_cfg: Mapping[str, Any], folder: Path) -> submitit.LocalExecutor:
    """Plain function jobs as local subprocesses (submitit's LocalExecutor)."""
    executor = submitit.LocalExecutor(folder=str(folder))
    gpus = launcher_cfg.get("gpus") or []
    executor.update_parameters(timeout_min=int(launcher_cfg.get("timeout_min") or 60 * 24), gpus_per_node=len(gpus))
    return executor


LAUNCHERS.register("local", LauncherKind(LocalLauncher, local_executor, plugin="sweep_local", front="LocalLauncher"))

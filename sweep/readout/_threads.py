"""How many CPU threads one readout may use, and a context that applies it to torch and to numpy's BLAS.

Why this matters: the probes are many small GEMMs. With more threads than free cores, OpenMP / BLAS threads
spin-wait on each other at every operation: on a 2-core machine whose cores are busy, a probe on the demo's
946 x 64 features took 19.9 s with torch's default 2 threads and 1.2 s with one. So the default is

* ``threads`` argument (an integer >= 1), if given; else
* ``$SWEEP_READOUT_THREADS``, if set (the job runner or the user fixes it); else
* 1 for a small problem (fewer than ``SMALL_WORK`` multiply-adds per pass over the data); else
* cores available to this process (CPU affinity, i.e. a SLURM allocation) // concurrent readout jobs
  (``$SWEEP_READOUT_JOBS``, default 1), further capped by the cores not busy with other processes right now
  (runnable tasks in ``/proc/loadavg`` minus this process's own) and by ``torch.get_num_threads()``.

Thread counts change only the summation order inside BLAS: results agree to float64 round-off.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch

from sweep.readout._inputs import ReadoutInputError

THREADS_ENV = "SWEEP_READOUT_THREADS"
JOBS_ENV = "SWEEP_READOUT_JOBS"
SMALL_WORK = 1 << 22  # multiply-adds per pass (N * D * classes): below this one thread is fastest


def _env_int(name: str) -> Optional[int]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ReadoutInputError(f"${name}={raw!r} is not an integer >= 1") from None
    if value < 1:
        raise ReadoutInputError(f"${name}={raw!r} is not an integer >= 1")
    return value


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: a SLURM or taskset allocation), else cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _own_running_threads() -> int:
    try:
        names = os.listdir("/proc/self/task")
    except OSError:  # pragma: no cover - not Linux
        return 1
    running = 0
    for tid in names:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        running += state == "R"
    return max(1, running)


def busy_cores() -> int:
    """Runnable tasks of other processes right now (Linux ``/proc/loadavg``; 0 where unavailable)."""
    try:
        with open("/proc/loadavg") as fh:
            runnable = int(fh.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux
        return 0
    return max(0, runnable - _own_running_threads())


def readout_threads(work: float, threads: Optional[int] = None) -> int:
    """Thread count for a readout whose passes over the data cost ``work`` multiply-adds (see module doc)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ReadoutInputError(f"threads must be None (automatic) or an integer >= 1; got {threads!r}")
        return int(threads)
    fixed = _env_int(THREADS_ENV)
    if fixed is not None:
        return fixed
    if work < SMALL_WORK:
        return 1
    cores = available_cores()
    jobs = _env_int(JOBS_ENV) or 1
    share = max(1, cores // jobs)
    free = max(1, cores - busy_cores())
    return max(1, min(share, free, torch.get_num_threads()))


@contextlib.contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op pool and numpy's BLAS with ``n`` threads; restore both afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            yield
        else:
            with threadpool_limits(limits=n, user_api="blas"):
                yield
    finally:
        torch.set_num_threads(before)

"""Polling helper shared by the tests that wait on real processes (drivers, workers, SLURM jobs)."""
from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.2 s until it holds; fail naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

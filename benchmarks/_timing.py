"""Side-by-side timing shared by the benchmarks (run as scripts: ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import time
from typing import Any, Callable


def interleaved_best(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Best wall time (and output) of each contender over ``repeats`` rounds that run every contender once, in
    turn, so that load from other processes on a shared machine hits all of them alike."""
    best: dict[str, tuple[float, Any]] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - t0
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, out)
    return best

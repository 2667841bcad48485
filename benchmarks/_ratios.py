"""Side-by-side ratios with their spread, for benchmarks on a shared, noisy machine.

Every round runs each contender once, in turn; a ratio is taken within a round (both sides saw the same load),
and the report is the median of the per-round ratios with their min and max, so a reader sees the spread
instead of one lucky best-of time.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def interleaved_times(contenders: dict[str, Callable[[], Any]], repeats: int,
                      clock: Callable[[], float] = time.perf_counter,
                      ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """({name: time of each round}, {name: output of the last round}) over ``repeats`` rounds; ``clock``:
    wall time by default, or ``time.thread_time`` for single-threaded contenders (CPU time of the calling
    thread, which excludes the time other processes held the core: steadier on a loaded machine)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = clock()
            outputs[name] = fn()
            times[name].append(clock() - t0)
    return times, outputs


def round_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """num / den of each round."""
    return [a / b for a, b in zip(num, den)]


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(values: Sequence[float], digits: int = 2) -> str:
    """'median [min-max]'."""
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"

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


def interleaved_times(contenders: dict[str, Callable[[], Any]], repeats: int
                      ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """({name: wall time of each round}, {name: output of the last round}) over ``repeats`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
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

"""Seconds per guided selection on a stored 48-config table, beside the time of one scikit-learn GP fit.

    python benchmarks/guided_speed.py [--table benchmarks/data/testbed.parquet] [--repeats 3]

Target (issue: label-efficient selection): one selection of a 48-config table (every GP fit on <= 50 points)
under 2 s. Prints one line per method scope: readouts, GP fits, seconds per selection (median of
``--repeats``), and the ratio to the 2 s target; the last line says whether every scope met it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Optional

from sweep.selection.guided import GuidedSettings, guided
from sweep.selection.pipeline import TableReadout
from sweep.selection.table import TableColumns, load_for_command

TARGET_S = 2.0


def main(argv: Optional[Sequence[str]] = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="benchmarks/data/testbed.parquet")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    (trials, readouts), _ = load_for_command(args.table, TableColumns(), None)
    val = TableReadout(readouts, "val_accuracy")
    ok = True
    for method, rows in trials.groupby("method", sort=True):
        for metrics in (True, False):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                res = guided(rows, val, GuidedSettings(metrics=metrics))
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            ok &= median < TARGET_S
            label = "hyperparameters + metrics" if metrics else "hyperparameters only"
            print(f"{method} (N = {len(rows)}), {label}: {res.readouts_used} readouts, {median:.2f} s per selection "
                  f"({median / TARGET_S:.2f} of the {TARGET_S:g} s target)", flush=True)
    print(f"every selection under {TARGET_S:g} s: {'MET' if ok else 'NOT MET'}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)

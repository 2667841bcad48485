"""Cost of the row metrics (TwoNN intrinsic dimension, cluster learnability) at 2048 x 512 on one core.

    python benchmarks/metrics_intrinsic.py [--n 2048] [--d 512] [--repeats 3]

Why: the train job computes them at every monitoring step and ``LabelFreeMonitor`` on up to 2048 rows per
epoch, so they must stay cheap next to an epoch of training. Target (issue 17): each <= 1 s for 2048 x 512 on
one core. Inputs are float32 features with a decaying spectrum plus a cluster structure (what a trained
backbone gives); best of R runs is reported, with the agreement of TwoNN with scikit-dimension when installed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / torch load their BLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sweep.metrics import cluster_learnability, twonn_dimension  # noqa: E402

TARGET_S = 1.0


def features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 rows: 10 cluster centres plus noise with a power-law spectrum (k^-1)."""
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1) ** -0.5
    centres = rng.normal(size=(10, d)) * scales * 3.0
    x = centres[rng.integers(0, 10, n)] + rng.normal(size=(n, d)) * scales
    return x.astype(np.float32)


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(best seconds, value) of ``repeats`` calls."""
    times, value = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    x = features(args.n, args.d)
    rows = []
    for name, fn in (("twonn", lambda: twonn_dimension(x)), ("cluster_learnability", lambda: cluster_learnability(x))):
        seconds, value = best_of(fn, args.repeats)
        rows.append((name, seconds, value))
        print(f"{name:22s} {args.n} x {args.d}, 1 thread: {seconds:.3f} s (target <= {TARGET_S} s) "
              f"value {value:.6g} {'OK' if seconds <= TARGET_S else 'OVER'}", flush=True)
    try:
        import skdim

        t0 = time.perf_counter()
        ref = float(skdim.id.TwoNN().fit(x.astype(np.float64)).dimension_)
        print(f"scikit-dimension TwoNN: {ref:.6g} in {time.perf_counter() - t0:.3f} s; "
              f"|ours - reference| = {abs(rows[0][2] - ref):.2e}")
    except ImportError:
        print("scikit-dimension not installed (pip install -e '.[dev]'): no reference comparison")
    print("next: python -m pytest tests/metrics/test_metrics_intrinsic.py -q   (known answers and the oracle)")
    return 0 if all(s <= TARGET_S for _, s, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""One progress line per finished trial: counts by state and the best trial so far."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep.study.resume import is_counted


def best_trials(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """Single objective: the best COMPLETE trial; several: the Pareto front (non-dominated COMPLETE trials)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    if not done:
        return []
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]
    keyed = [(t, [s * v for s, v in zip(signs, t.values)]) for t in done]
    if len(signs) == 1:
        return [min(keyed, key=lambda kv: (kv[1][0], kv[0].number))[0]]
    return [t for t, v in keyed if not any(_dominates(w, v) for _, w in keyed)]


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def progress_line(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection],
                  labels: Sequence[str], n_trials: int | None) -> str:
    """``[sweep] 5/20 finished | running 2, done 4, failed 1, pruned 0 | best #3: rankme=12.1``."""
    counted = [t for t in trials if is_counted(t)]
    counts = Counter(t.state for t in counted)
    finished = counts[TrialState.COMPLETE] + counts[TrialState.FAIL] + counts[TrialState.PRUNED]
    line = (f"[sweep] {finished}/{n_trials if n_trials is not None else '?'} finished | running {counts[TrialState.RUNNING]}, "
            f"done {counts[TrialState.COMPLETE]}, failed {counts[TrialState.FAIL]}, "
            f"pruned {counts[TrialState.PRUNED]}")
    best = best_trials(counted, directions)
    if len(best) == 1:
        vals = ", ".join(f"{label}={v:.4g}" for label, v in zip(labels, best[0].values))
        line += f" | best #{best[0].number}: {vals}"
    elif best:
        line += f" | Pareto front: trials {sorted(t.number for t in best)}"
    return line

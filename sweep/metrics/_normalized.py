"""Width-normalised RankMe: RankMe / min(N, D), comparable across embedding widths.

RankMe is an effective rank, so its ceiling is min(N, D). When the projector width D is itself a
hyperparameter, an optimiser that maximises raw RankMe is rewarded for picking the widest projector rather
than a better representation; dividing by the ceiling puts every width on the same [0, 1] scale (up to the
1e-7 smoothing of RankMe's distribution).
"""
from __future__ import annotations

import math
import numbers

from ._inputs import MetricInputError


def normalized_rankme(rankme: float, n: int, d: int) -> float:
    """``rankme / min(n, d)`` for RankMe computed on ``n`` rows of a ``d``-wide embedding.

    A NaN RankMe stays NaN (the caller decides what a missing value means); bad sizes raise
    :class:`MetricInputError` naming the field.
    """
    for name, value in (("n", n), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
            raise MetricInputError(f"normalized_rankme: {name} must be an integer >= 1 (rows / embedding width), "
                                   f"got {name}={value!r}")
    value = float(rankme)
    if math.isinf(value):
        raise MetricInputError(f"normalized_rankme: rankme must be finite or NaN, got {rankme!r}")
    return value / min(int(n), int(d))

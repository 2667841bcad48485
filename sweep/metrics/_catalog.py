"""``METRICS``: the label-free metrics of a monitoring row, by the name of their column.

A metric is a pure function of an (N, D) array (the monitoring split's backbone features or projector embeddings)
returning a float. The built-in spectral ones are registered with ``streamed=True``: the train job computes them
through :class:`~sweep.metrics.SpectralAccumulator` (same definition, O(D^2) memory) and the function stays the
reference to re-run on saved embeddings. Every other registered metric is computed by the train job at each
monitoring step with :func:`registered_row`, lands in the record's ``metrics`` and so can be a sweep objective::

    @register_metric("feature_norm", on="backbone")
    def feature_norm(x): return float(np.linalg.norm(np.asarray(x), axis=1).mean())
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweep.registry import Registry

from ._inputs import ArrayLike
from ._intrinsic import cluster_learnability, twonn_dimension
from ._spectral import nesum, participation_ratio, rankme, stable_rank

ON = ("backbone", "projector")


@dataclass(frozen=True)
class Metric:
    fn: Callable[[ArrayLike], float]
    on: str = "backbone"  # which embeddings it reads: backbone features or projector embeddings
    streamed: bool = False  # True: the train job gets it from the streaming accumulator, not from ``fn``


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, on: str = "backbone", streamed: bool = False
                    ) -> Callable[[Callable[[ArrayLike], float]], Callable[[ArrayLike], float]]:
    """``@register_metric("name", on="projector")`` on ``f(x: (N, D)) -> float``."""
    if on not in ON:
        raise ValueError(f"register_metric({name!r}): on={on!r}; allowed {list(ON)}")

    def add(fn: Callable[[ArrayLike], float]) -> Callable[[ArrayLike], float]:
        METRICS.register(name, Metric(fn, on, streamed))
        return fn

    return add


def registered_row(backbone: ArrayLike, projector: ArrayLike) -> dict[str, Any]:
    """Every registered metric that is not streamed, on the embeddings it reads (``{name: value}``)."""
    inputs = {"backbone": backbone, "projector": projector}
    return {name: float(m.fn(inputs[m.on])) for name, m in METRICS.items() if not m.streamed}


register_metric("rankme", on="projector", streamed=True)(rankme)
for _name, _fn in (("stable_rank", stable_rank), ("participation_ratio", participation_ratio), ("nesum", nesum)):
    register_metric(_name, on="backbone", streamed=True)(_fn)
# geometry of the backbone features (nearest neighbours), computed on the monitoring rows at every monitoring step
register_metric("twonn", on="backbone")(twonn_dimension)
register_metric("cluster_learnability", on="backbone")(cluster_learnability)

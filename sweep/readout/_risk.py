"""SSL risk decomposition of Dubois, Hashimoto & Liang, "Evaluating Self-Supervised Learning via Risk
Decomposition" (ICML 2023), estimated with linear probes on cached features.

Splits (all labelled; the caller provides features, this module never sees images):

* ``S_fit``  -- data the SSL encoder was pretrained on; the standard probe is trained here (our ``train``).
* ``S_held`` -- data the SSL encoder was ALSO pretrained on, but held out of probe training.
* ``T``      -- data neither the encoder nor any probe saw (our ``test``).
* ``S = S_fit + S_held`` -- all labelled pretraining data (the paper's "train" set).

``R_enc(A -> B)`` is the risk (0-1 error by default) on B of a linear probe fitted on A with encoder ``enc``
(``ssl`` = the encoder under evaluation, ``sup`` = a supervised reference encoder of the same architecture
trained on S). The paper's estimators (authors' repo YannDubs/SSL-Risk-Decomposition, ``main.py``: components
``train_train``, ``train-cmplmnt-ntest_train-sbst-ntest``, ``train-cmplmnt-ntest_test``) are::

    approximation          = R_sup(S -> S)                                  architecture + linear probe
    usability              = R_ssl(S -> S)          - R_sup(S -> S)          SSL features less usable
    probe_generalization   = R_ssl(S_fit -> S_held) - R_ssl(S -> S)          finite probe-training data
    encoder_generalization = R_ssl(S_fit -> T)      - R_ssl(S_fit -> S_held) encoder saw S_held, never T
    total                  = R_ssl(S_fit -> T)                               standard probe's test error

Each component is a difference of consecutive risks in the chain R_sup(S->S), R_ssl(S->S),
R_ssl(S_fit->S_held), R_ssl(S_fit->T), so the sum telescopes:
``a + (b - a) + (c - b) + (d - c) = d = total`` (exact up to floating-point rounding, ~1e-16).
Components can be negative on small samples (estimates of differences), as in the paper. The paper reads
the approximation error off the supervised network's own train error; here a probe on the supervised
encoder's features plays that head (the same quantity for a linear head, up to the probe L2), so every
term is a probe risk.
The paper picks ``|S_held| = |T|`` so the two evaluations of the S_fit probe have equal variance; use
:func:`split_heldout` to carve such an S_held out of S when only one pretraining split is at hand.

Mapping to a trial's cached features (``features/{train,val,test}_*.npy``): S_fit = ``train``, T = ``test``;
S_held = ``val`` only if the SSL job pretrained on ``val`` too; otherwise carve S_held out of ``train`` with
:func:`split_heldout`. Never pass data the encoder did not see as S_held: encoder generalisation would be
folded into probe generalisation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sweep.config.schema import ReadoutConfig
from sweep.readout._inputs import (
    ArrayLike,
    ReadoutInputError,
    encode_labels,
    labels_tensor,
    require_positive_int,
    require_same_dim,
    require_two_classes,
    resolve_device,
    source_tensor,
)
from sweep.readout._linear import RISK_LOSSES, _check_l2, _check_tol, _fit, _risk_from_logits

_DEFAULTS = ReadoutConfig()
RISK_KEYS = ("sup_seen_seen", "ssl_seen_seen", "ssl_fit_heldout", "ssl_fit_test")


@dataclass(frozen=True)
class RiskDecomposition:
    """The four components (they sum to ``total``) and the four measured risks they come from."""

    approximation: float
    usability: float
    probe_generalization: float
    encoder_generalization: float
    total: float
    risks: dict[str, float] = field(default_factory=dict)  # keys RISK_KEYS: R_sup(S->S), R_ssl(S->S), ...
    loss: str = "error"
    l2: float = math.nan

    def components(self) -> dict[str, float]:
        return {
            "approximation": self.approximation,
            "usability": self.usability,
            "probe_generalization": self.probe_generalization,
            "encoder_generalization": self.encoder_generalization,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.components(), "total": self.total, "risks": dict(self.risks), "loss": self.loss,
                "l2": self.l2}


def decompose(sup_seen_seen: float, ssl_seen_seen: float, ssl_fit_heldout: float, ssl_fit_test: float,
              loss: str = "error", l2: float = math.nan) -> RiskDecomposition:
    """Telescoping differences of the four measured risks (pure arithmetic, see the module docstring)."""
    return RiskDecomposition(
        approximation=sup_seen_seen,
        usability=ssl_seen_seen - sup_seen_seen,
        probe_generalization=ssl_fit_heldout - ssl_seen_seen,
        encoder_generalization=ssl_fit_test - ssl_fit_heldout,
        total=ssl_fit_test,
        risks=dict(zip(RISK_KEYS, (sup_seen_seen, ssl_seen_seen, ssl_fit_heldout, ssl_fit_test))),
        loss=loss,
        l2=l2,
    )


def split_heldout(y: ArrayLike, heldout_size: int | float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit_idx, heldout_idx), both sorted, to carve S_held out of the pretraining data.

    ``heldout_size``: a count, or a fraction in (0, 1); the paper uses the test-set size.
    """
    n = int(y.shape[0]) if isinstance(y, (np.ndarray, torch.Tensor)) and y.ndim == 1 else -1
    labels = labels_tensor(y, "y", n, torch.device("cpu")).numpy()
    _check_heldout_size(heldout_size, n)
    fit_idx, held_idx = train_test_split(np.arange(labels.shape[0]), test_size=heldout_size, stratify=labels,
                                         random_state=seed)
    return np.sort(fit_idx), np.sort(held_idx)


def _check_heldout_size(heldout_size: int | float, n: int) -> None:
    if isinstance(heldout_size, bool) or not isinstance(heldout_size, (int, float, np.integer)):
        raise ReadoutInputError("heldout_size must be an int count or a float fraction; "
                                f"got {heldout_size!r}")
    is_count = isinstance(heldout_size, (int, np.integer))
    ok = 1 <= heldout_size < n if is_count else 0.0 < heldout_size < 1.0
    if not ok:
        raise ReadoutInputError(f"heldout_size={heldout_size!r} is not allowed; use a count in [1, {n - 1}] "
                                "or a fraction in (0, 1)")


def _check_loss(loss: str) -> None:
    if loss not in RISK_LOSSES:
        raise ReadoutInputError(f"loss={loss!r} is not allowed; use one of {RISK_LOSSES}")


def risk_decomposition(
    ssl_fit_x: ArrayLike,
    fit_y: ArrayLike,
    ssl_heldout_x: ArrayLike,
    heldout_y: ArrayLike,
    ssl_test_x: ArrayLike,
    test_y: ArrayLike,
    supervised_fit_x: ArrayLike,
    supervised_heldout_x: ArrayLike,
    *,
    l2: float = _DEFAULTS.risk_l2,
    loss: str = _DEFAULTS.risk_loss,
    max_iter: int = _DEFAULTS.max_iter,
    tol: float = _DEFAULTS.tol,
    device: str = _DEFAULTS.device,
    threads: Optional[int] = None,
) -> RiskDecomposition:
    """Estimate the Dubois et al. (2023) components with four linear probes (formulas: module docstring).

    ``ssl_fit_x`` / ``ssl_heldout_x`` / ``ssl_test_x``: the SSL encoder's features on S_fit (probe-training
    data, seen in pretraining), S_held (seen in pretraining, not in probe training) and T (never seen).
    ``supervised_fit_x`` / ``supervised_heldout_x``: a supervised reference encoder's features on the SAME
    rows of S_fit / S_held (labels ``fit_y`` / ``heldout_y`` are shared). Every probe uses the same ``l2`` and
    standardises with its own fit split; with ``l2 = linear_probe(...).best_l2`` and S_fit = the probe's train
    split, ``total`` equals ``1 - test_accuracy`` of that linear probe. Label ids are arbitrary non-negative
    integers; with ``loss="log_loss"`` a row whose class a probe never saw in its fit split costs inf.
    """
    _check_loss(loss)
    l2 = _check_l2(l2)
    tol = _check_tol(tol)
    require_positive_int(max_iter, "max_iter")
    dev = resolve_device(device)
    x, y = _load(ssl_fit_x, fit_y, ssl_heldout_x, heldout_y, ssl_test_x, test_y, supervised_fit_x,
                 supervised_heldout_x, dev)
    classes = torch.unique(torch.cat(list(y.values())))
    seen_y = torch.cat([y["fit"], y["heldout"]])

    def risk(fit_z: torch.Tensor, fit_labels: torch.Tensor, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]
             ) -> list[float]:
        model = _fit(fit_z, fit_labels, classes, l2, max_iter, tol, threads)
        return [_risk_from_logits(model._logits(model._rescale(z)), encode_labels(classes, labels), loss,
                                  classes.numel()) for z, labels in pairs]

    sup_seen = torch.cat([x["sup_fit"], x["sup_heldout"]])
    ssl_seen = torch.cat([x["ssl_fit"], x["ssl_heldout"]])
    (r_sup,) = risk(sup_seen, seen_y, [(sup_seen, seen_y)])
    (r_ssl_seen,) = risk(ssl_seen, seen_y, [(ssl_seen, seen_y)])
    r_held, r_test = risk(x["ssl_fit"], y["fit"],
                          [(x["ssl_heldout"], y["heldout"]), (x["ssl_test"], y["test"])])
    return decompose(r_sup, r_ssl_seen, r_held, r_test, loss=loss, l2=l2)


def _load(ssl_fit_x: ArrayLike, fit_y: ArrayLike, ssl_heldout_x: ArrayLike, heldout_y: ArrayLike,
          ssl_test_x: ArrayLike, test_y: ArrayLike, supervised_fit_x: ArrayLike,
          supervised_heldout_x: ArrayLike, dev: torch.device
          ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Validate every input, naming the argument; supervised features must align row-for-row with S."""
    x = {
        "ssl_fit": source_tensor(ssl_fit_x, "ssl_fit_x", dev),
        "ssl_heldout": source_tensor(ssl_heldout_x, "ssl_heldout_x", dev),
        "ssl_test": source_tensor(ssl_test_x, "ssl_test_x", dev),
        "sup_fit": source_tensor(supervised_fit_x, "supervised_fit_x", dev),
        "sup_heldout": source_tensor(supervised_heldout_x, "supervised_heldout_x", dev),
    }
    y = {
        "fit": labels_tensor(fit_y, "fit_y", x["ssl_fit"].shape[0], dev),
        "heldout": labels_tensor(heldout_y, "heldout_y", x["ssl_heldout"].shape[0], dev),
        "test": labels_tensor(test_y, "test_y", x["ssl_test"].shape[0], dev),
    }
    for split, labels in y.items():
        require_two_classes(labels, f"{split} split ({split}_y)")
    _require_rows(x["sup_fit"], "supervised_fit_x", x["ssl_fit"].shape[0], "ssl_fit_x")
    _require_rows(x["sup_heldout"], "supervised_heldout_x", x["ssl_heldout"].shape[0], "ssl_heldout_x")
    require_same_dim({"ssl_fit_x": x["ssl_fit"], "ssl_heldout_x": x["ssl_heldout"],
                      "ssl_test_x": x["ssl_test"]})
    require_same_dim({"supervised_fit_x": x["sup_fit"], "supervised_heldout_x": x["sup_heldout"]})
    return x, y


def _require_rows(z: torch.Tensor, name: str, n_rows: int, ref: str) -> None:
    if z.shape[0] != n_rows:
        raise ReadoutInputError(f"{name} has {z.shape[0]} rows but {ref} has {n_rows}; the supervised "
                                "reference features must be of the same samples, in the same order")

"""Labelled readouts on cached features: linear probe, kNN probe, SSL risk decomposition (Dubois et al. 2023).

These are the only places where labels enter the sweep: they score trials after the label-free selection.
Defaults come from :class:`sweep.config.schema.ReadoutConfig`.
"""
from sweep.readout._inputs import ReadoutInputError, resolve_device
from sweep.readout._knn import knn_predict, knn_probe
from sweep.readout._linear import (
    LinearClassifier,
    ProbeResult,
    fit_linear_classifier,
    linear_probe,
    select_l2,
)
from sweep.readout._risk import RISK_KEYS, RiskDecomposition, decompose, risk_decomposition, split_heldout
from sweep.readout._threads import JOBS_ENV, THREADS_ENV, readout_threads

__all__ = [
    "JOBS_ENV",
    "RISK_KEYS",
    "THREADS_ENV",
    "LinearClassifier",
    "ProbeResult",
    "ReadoutInputError",
    "RiskDecomposition",
    "decompose",
    "fit_linear_classifier",
    "knn_predict",
    "knn_probe",
    "linear_probe",
    "readout_threads",
    "resolve_device",
    "risk_decomposition",
    "select_l2",
    "split_heldout",
]

"""sweep: label-free hyperparameter selection for self-supervised learning.

The public face: what a user imports from ``sweep`` directly (docs/ARCHITECTURE.md, "The public face"). Each name
is loaded on first use (PEP 562), so ``import sweep`` stays free of torch, Optuna and pandas: every module of the
package imports this file first, the sweep driver and the trial workers included.

    from sweep import LabelFreeMonitor, rankme, alpha_req, linear_probe, trials_dataframe, select_and_report
"""
from __future__ import annotations

from sweep._lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it, by layer: monitor your own loop, metrics, probes, study results, selection
PUBLIC: dict[str, str] = {
    "LabelFreeMonitor": "sweep.integrations.monitor",
    "LabelFreeCallback": "sweep.integrations.lightning",
    "rankme": "sweep.metrics",
    "alpha_req": "sweep.metrics",
    "fit_power_law": "sweep.metrics",
    "spectral_metrics": "sweep.metrics",
    "metric_suite": "sweep.metrics",
    "SpectralAccumulator": "sweep.metrics",
    "linear_probe": "sweep.readout",
    "knn_probe": "sweep.readout",
    "risk_decomposition": "sweep.readout",
    "load_study": "sweep.study.results",
    "trials_dataframe": "sweep.study.results",
    "select": "sweep.selection.pipeline",
    "select_and_report": "sweep.selection.pipeline",
    "build_report": "sweep.selection.report",
    "load_metrics_table": "sweep.selection.table",
    "POLICIES": "sweep.selection.policies",
    "SweepError": "sweep.errors",
}
__all__ = [*PUBLIC, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, PUBLIC, globals())

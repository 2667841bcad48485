"""Label-free representation-quality metrics (see docs/ARCHITECTURE.md, "sweep.metrics").

Every metric is a pure function of an (N, D) numpy array or torch tensor (never mutated); the
spectral ones also have a streaming form, :class:`SpectralAccumulator`, that agrees with the
full-matrix :func:`spectral_metrics` to float64 round-off.
"""
from ._alpha import DEFAULT_ALPHA_WINDOW, AlphaFit, AlphaWindowWarning, fit_power_law
from ._clustering import checkpoint_agreement, clustering_agreement, kmeans_silhouette, monitoring_metrics
from ._entropy import ENTROPY_ESTIMATORS, embedding_entropy
from ._inputs import MetricInputError
from ._intrinsic import TWONN_DISCARD_FRACTION, clid_scores, cluster_learnability, twonn_dimension
from ._lidar import LIDAR_DELTA, LIDAR_EPS, lidar
from ._normalized import normalized_rankme
from ._catalog import METRICS, Metric, register_metric, registered_row
from ._spectral import alpha_req, nesum, participation_ratio, rankme, rankme_centered, rankme_sq, stable_rank
from ._spectrum import RANKME_EPS
from ._streaming import SPECTRAL_KEYS, SpectralAccumulator, spectral_metrics
from ._suite import metric_suite, row_suite, spectral_suite
from ._inputs import ROW_METRICS_MAX_ROWS

__all__ = [
    "AlphaFit",
    "AlphaWindowWarning",
    "DEFAULT_ALPHA_WINDOW",
    "ENTROPY_ESTIMATORS",
    "LIDAR_DELTA",
    "LIDAR_EPS",
    "METRICS",
    "Metric",
    "MetricInputError",
    "RANKME_EPS",
    "ROW_METRICS_MAX_ROWS",
    "SPECTRAL_KEYS",
    "SpectralAccumulator",
    "TWONN_DISCARD_FRACTION",
    "alpha_req",
    "checkpoint_agreement",
    "clid_scores",
    "cluster_learnability",
    "clustering_agreement",
    "embedding_entropy",
    "fit_power_law",
    "kmeans_silhouette",
    "lidar",
    "metric_suite",
    "monitoring_metrics",
    "nesum",
    "normalized_rankme",
    "participation_ratio",
    "rankme",
    "rankme_centered",
    "rankme_sq",
    "register_metric",
    "registered_row",
    "row_suite",
    "spectral_metrics",
    "spectral_suite",
    "stable_rank",
    "twonn_dimension",
]

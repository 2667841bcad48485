"""Probabilistic surrogates of a readout over the configs of one sweep: the guided reader's model.

Why: a readout (a labelled linear probe) is the expensive, label-using step; a model of validation accuracy
as a function of what is known WITHOUT labels for every config (its hyperparameters and, as a switch, its
label-free metrics) lets a reader spend readouts where they can still change the answer, say when it may stop,
and predict the accuracy of configs it never read.

Features (:func:`config_features`), one row per config of the sweep, computed from the whole sweep (known
without labels):
- hyperparameters: a study's ``params_*`` columns, else the known hyperparameter names of a metrics table
  (:data:`HYPERPARAMETERS`); a positive column spanning at least a decade is taken in log10 (``lr`` 1e-4..1e-2),
  a non-negative one with zeros and a decade of positive values in log10(x + smallest positive) (VICReg's
  weights switched off at 0); every column is standardised over the sweep (constant ones dropped), and a value
  that does not apply to a config (NaN: another method's parameter) becomes 0, the column mean;
- several methods: one 0/1 column per method (accuracy levels differ between methods);
- label-free metrics (optional): standardised WITHIN each method (RankMe is only comparable within one).

Surrogates (registered in :data:`SURROGATES`; scikit-learn fits them, nothing here is hand-fitted), all on
accuracy in points: ``gp`` (Gaussian process, constant x Matern-5/2 kernel with one length scale per feature
(ARD) bounded below by 0.5 standardised units, plus a learnt white-noise term; a long length scale switches a
feature off), ``ard`` (scikit-learn's ARDRegression: Bayesian linear regression whose per-feature priors prune
irrelevant features) and ``bayes_ridge`` (BayesianRidge: one shared prior). Each returns the joint posterior of
the noise-free accuracy (:class:`Prediction`) and the learnt readout-noise variance, so intervals for an unread
config's readout add the noise and comparisons between configs do not.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np
import pandas as pd

from sweep.errors import SweepError
from sweep.registry import Registry

# hyperparameter columns of a metrics table (a study's are ``params_*``), in display order
HYPERPARAMETERS = ("lr", "learning_rate", "weight_decay", "out_dim", "proj_dim", "hidden_dim", "temperature",
                   "lambd", "var_weight", "cov_weight", "inv_weight", "batch_size", "momentum",
                   "warmup_epochs")
# label-free metrics known to the package, in display order (others numeric columns follow, see below)
KNOWN_METRICS = (
    "rankme", "rankme_normalized", "rankme_centered", "rankme_sq", "rankme_backbone", "alpha",
    "abs_alpha_minus_1", "alpha_r2", "alpha_projector", "stable_rank", "participation_ratio", "nesum",
    "lidar", "silhouette", "ami", "ami_checkpoint", "entropy", "loss",
)
# numeric columns that are not label-free metrics: ids, hyperparameters, cost, readouts
NOT_METRICS = (
    "trial", "number", "config_id", "seed", "repeat", "epochs", "lr", "learning_rate", "weight_decay",
    "out_dim", "proj_dim", "hidden_dim", "temperature", "lambd", "var_weight", "cov_weight", "inv_weight",
    "batch_size", "momentum", "warmup_epochs", "train_s", "total_s", "duration", "val_accuracy", "test_accuracy",
    "best_l2", "l2", "monitor_rows", "epochs_completed", "reused_from",
)
READOUT_MARKERS = ("accuracy", "acc_", "_acc", "knn", "fewshot", "probe", "risk", "error", "epoch")
LOG_SPAN = 10.0  # a positive column whose max / min reaches this is taken in log10


class SurrogateError(SweepError, ValueError):
    """A surrogate or feature set that cannot be built; the message names the setting and allowed values."""


# ----------------------------------------------------------------------------- features
def param_columns(trials: pd.DataFrame) -> dict[str, str]:
    """Hyperparameter column -> short label: a study's ``params_*`` (last dotted part when that is unique),
    else the known hyperparameter names a metrics table uses. The method has its own column."""
    study = [c for c in trials.columns if isinstance(c, str) and c.startswith("params_")]
    if not study:
        return {c: c for c in HYPERPARAMETERS if c in trials.columns}
    short = [c.removeprefix("params_").rsplit(".", 1)[-1] for c in study]
    labels = {c: (s if short.count(s) == 1 else c.removeprefix("params_"))
              for c, s in zip(study, short, strict=True)}
    return {c: label for c, label in labels.items() if not (label == "method" and "method" in trials.columns)}


def label_free_metrics(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Numeric columns with a finite value that are label-free metrics: the known ones first, then any
    other numeric column that is not an id, hyperparameter (``params_*`` too), timing or readout column."""
    excluded = set(NOT_METRICS) | set(exclude)

    def is_metric(name: str) -> bool:
        low = name.lower()
        return not (name in excluded or low.startswith(("params_", "user_attrs_", "table_"))
                    or low.endswith("_s") or any(m in low for m in READOUT_MARKERS))

    def numeric(name: str) -> bool:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            return False
        return bool(np.isfinite(col.to_numpy(float)).any())

    known = [c for c in KNOWN_METRICS if c in frame.columns and c not in exclude and numeric(c)]
    others = [c for c in frame.columns
              if isinstance(c, str) and c not in known and is_metric(c) and numeric(c)]
    return known + sorted(others)


def encode_scale(values: np.ndarray) -> np.ndarray:
    """log10 where the column spans a decade (see the module docstring), else the values unchanged."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if len(positive) == 0 or finite.min() < 0:
        return values
    if finite.min() > 0 and positive.max() / positive.min() >= LOG_SPAN:
        return np.log10(values)
    if finite.min() == 0 and positive.max() / positive.min() >= LOG_SPAN:
        return np.log10(values + positive.min())
    return values


def _standardise(values: np.ndarray) -> Optional[np.ndarray]:
    """z-scores over the finite values, NaN -> 0; None for a column with fewer than 2 distinct values."""
    finite = values[np.isfinite(values)]
    if len(np.unique(finite)) < 2:
        return None
    z = (values - finite.mean()) / finite.std()
    return np.where(np.isfinite(z), z, 0.0)


def _numeric(column: pd.Series) -> Optional[np.ndarray]:
    """The column as floats, or None when it holds text (a categorical parameter: one-hot instead)."""
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().sum() > column.isna().sum():
        return None
    return values.to_numpy(dtype=float)


def _one_hot(column: pd.Series, prefix: str) -> dict[str, np.ndarray]:
    """0/1 column per level (two or more levels only)."""
    levels = sorted(column.dropna().astype(str).unique())
    if len(levels) < 2:
        return {}
    text = column.astype(str)
    return {f"{prefix}={level}": (text == level).to_numpy(dtype=float) for level in levels}


@dataclass(frozen=True)
class Features:
    """The design matrix of one sweep: ``values[i]`` describes ``trials[i]``."""

    trials: tuple[int, ...]
    names: tuple[str, ...]
    values: np.ndarray

    def rows(self, trial_ids: Sequence[int]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.trials)}
        return self.values[[index[int(t)] for t in trial_ids]]


def config_features(
    trials: pd.DataFrame, metrics: Sequence[str] = (), method_column: Optional[str] = "method"
) -> Features:
    """The feature matrix of the module docstring for every row of ``trials`` (usable rows only, please)."""
    columns: dict[str, np.ndarray] = {}
    for column, label in param_columns(trials).items():
        numeric = _numeric(trials[column])
        if numeric is None:
            columns.update(_one_hot(trials[column], label))
            continue
        z = _standardise(encode_scale(numeric))
        if z is not None:
            columns[label] = z
    has_method = method_column is not None and method_column in trials.columns
    if has_method:
        columns.update(_one_hot(trials[method_column], "method"))
    for metric in metrics:
        if metric not in trials.columns:
            raise SurrogateError(f"metric feature {metric!r} is not a column of the trials table; "
                                 f"present: {sorted(map(str, trials.columns))}")
        values = pd.to_numeric(trials[metric], errors="coerce").to_numpy(dtype=float)
        z = _within_method(values, trials[method_column] if has_method else None)
        if z is not None:
            columns[metric] = z
    ids = tuple(int(t) for t in trials["trial"])
    matrix = np.column_stack(list(columns.values())) if columns else np.zeros((len(ids), 0))
    return Features(ids, tuple(columns), matrix)


def _within_method(values: np.ndarray, method: Optional[pd.Series]) -> Optional[np.ndarray]:
    """z-scores of a metric within each method (NaN -> 0); None when no method varies it."""
    if method is None:
        return _standardise(values)
    out = np.zeros_like(values)
    varied = False
    labels = method.astype(str).to_numpy()
    for level in np.unique(labels):
        mask = labels == level
        z = _standardise(values[mask])
        if z is not None:
            out[mask], varied = z, True
    return out if varied else None


# ----------------------------------------------------------------------------- surrogates
@dataclass(frozen=True)
class Prediction:
    """Posterior of the noise-free readout (points) at some configs, and the readout noise variance."""

    mean: np.ndarray
    cov: np.ndarray  # joint covariance of the noise-free readouts
    noise_var: float  # variance a single readout adds (split sampling, probe fitting)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def interval(self, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval of a NEW readout of each config (noise included), in points."""
        from scipy import stats

        half = stats.norm.ppf(0.5 + level / 2.0) * np.sqrt(np.diag(self.cov).clip(0.0) + self.noise_var)
        return self.mean - half, self.mean + half


class Surrogate(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray) -> "Surrogate": ...

    def predict(self, x: np.ndarray) -> Prediction: ...


SURROGATES: Registry[Callable[[int], Surrogate]] = Registry("surrogate", field="surrogate")


def make_surrogate(name: str, n_features: int) -> Surrogate:
    """A fresh surrogate by registered name; unknown names list the allowed ones."""
    return SURROGATES.get(name)(n_features)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """scikit-learn warns when a bound or the iteration limit is reached: expected with 3-8 points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class GaussianProcessSurrogate:
    """sklearn's GaussianProcessRegressor on accuracy in points, centred on the mean readout: a linear trend
    (DotProduct) plus an ARD Matern-5/2 residual plus white readout noise, with bounds that act as priors
    stated in points, so 3-8 readouts cannot shrink the uncertainty below what readouts show: configs differ
    by at least ``amplitude_bounds[0]`` pt^2 of variance (and at least as much as the readouts seen), a readout
    has at least ``noise_bounds[0]`` pt^2 of noise (a probe's accuracy on ~700-1000 images has 1.0-1.2 pt of
    binomial error; on a larger split this floor is conservative: the reader reads more), and a length scale below
    ``length_bounds[0]`` standardised units (wiggles between neighbouring configs) is not allowed."""

    def __init__(self, n_features: int, restarts: int = 0, amplitude_bounds: tuple[float, float] = (1.0, 400.0),
                 noise_bounds: tuple[float, float] = (1.0, 100.0),
                 length_bounds: tuple[float, float] = (0.5, 100.0), linear: bool = True,
                 observed_floor: bool = True) -> None:
        from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

        self._linear = linear
        scales = np.ones(max(1, n_features))
        kernel = ConstantKernel(10.0, amplitude_bounds) * Matern(scales, length_bounds, nu=2.5)
        if linear:
            kernel = kernel + ConstantKernel(1.0, (1e-2, 100.0)) * DotProduct(1.0, "fixed")
        self._kernel = kernel + WhiteKernel(max(1.0, noise_bounds[0]), noise_bounds)
        self._restarts = restarts
        self._observed_floor = observed_floor
        self._gp: Any = None
        self._offset = 0.0
        self._inflation = 1.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> "GaussianProcessSurrogate":
        from sklearn.gaussian_process import GaussianProcessRegressor

        x = x if x.shape[1] else np.zeros((len(x), 1))
        y = np.asarray(y, float)
        self._offset = float(np.mean(y))
        kernel = self._kernel
        if self._observed_floor and len(y) > 1:  # configs vary at least as much as the read ones do
            low, high = kernel.k1.k1.k1.constant_value_bounds if self._linear else kernel.k1.k1.constant_value_bounds
            floor = float(np.clip(np.var(y), low, high * 0.99))
            kernel = kernel.clone_with_theta(kernel.theta)
            amplitude = kernel.k1.k1.k1 if self._linear else kernel.k1.k1
            amplitude.constant_value_bounds = (floor, high)
            amplitude.constant_value = max(floor * 1.01, amplitude.constant_value)
        self._gp = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=self._restarts,
                                            random_state=0)
        with _quiet():
            self._gp.fit(x, y - self._offset)
        self._inflation = loo_inflation(self._gp.kernel_(x), y - self._offset)
        return self

    def predict(self, x: np.ndarray) -> Prediction:
        x = x if x.shape[1] else np.zeros((len(x), 1))
        mean, cov = self._gp.predict(x, return_cov=True)
        noise = float(self._gp.kernel_.k2.noise_level)
        cov = np.atleast_2d(cov) - noise * np.eye(len(x))  # the white term is readout noise, not config
        return Prediction(np.asarray(mean, float) + self._offset, cov * self._inflation, noise * self._inflation)


def loo_inflation(k: np.ndarray, y: np.ndarray) -> float:
    """max(1, mean squared standardised leave-one-out residual) of a GP with kernel matrix ``k`` (noise
    included) and targets ``y``: by the closed form (Sundararajan & Keerthi 2001) the LOO residual of point i
    is [K^-1 y]_i / [K^-1]_ii with variance 1 / [K^-1]_ii. Hyperparameters fitted by maximum likelihood on
    3-8 points are overconfident; scaling the posterior (co)variance by this factor makes the held-out
    readouts as surprising as the model says they should be (never narrower than the fit)."""
    if len(y) < 3:
        return 1.0
    inv = np.linalg.pinv(k)
    diag = np.diag(inv)
    if np.any(diag <= 0):
        return 1.0
    z2 = (inv @ y) ** 2 / diag  # residual^2 / variance = ([K^-1 y]_i / d_i)^2 * d_i
    return float(max(1.0, np.mean(z2)))


class BayesianLinearSurrogate:
    """sklearn's ARDRegression or BayesianRidge: y ~ N(x w + b, 1/alpha), Gaussian prior on w."""

    def __init__(self, n_features: int, ard: bool) -> None:
        from sklearn.linear_model import ARDRegression, BayesianRidge

        self._model = ARDRegression() if ard else BayesianRidge()
        self._ard = ard

    def fit(self, x: np.ndarray, y: np.ndarray) -> "BayesianLinearSurrogate":
        with _quiet():
            self._model.fit(x if x.shape[1] else np.zeros((len(x), 1)), y)
        return self

    def predict(self, x: np.ndarray) -> Prediction:
        x = x if x.shape[1] else np.zeros((len(x), 1))
        model = self._model
        mean = model.predict(x)
        kept = x[:, model.lambda_ < model.threshold_lambda] if self._ard else x
        cov = kept @ model.sigma_ @ kept.T  # sklearn's own predictive variance, here jointly
        return Prediction(np.asarray(mean, float), cov, float(1.0 / model.alpha_))


SURROGATES.register("gp", GaussianProcessSurrogate)
SURROGATES.register("ard", lambda d: BayesianLinearSurrogate(d, ard=True))
SURROGATES.register("bayes_ridge", lambda d: BayesianLinearSurrogate(d, ard=False))


# ----------------------------------------------------------------------------- decisions
def expected_improvement(mean: np.ndarray, std: np.ndarray, incumbent: float) -> np.ndarray:
    """E[max(f - incumbent, 0)] for f ~ N(mean, std^2), elementwise (0 where std is 0 and mean <= incumbent)."""
    from scipy import stats

    gain = mean - incumbent
    safe = np.where(std > 0, std, 1.0)
    z = gain / safe
    ei = gain * stats.norm.cdf(z) + safe * stats.norm.pdf(z)
    return np.where(std > 0, ei, np.maximum(gain, 0.0))


def prob_beaten(pred: Prediction, best_index: int, tol: float, draws: int = 4000, seed: int = 0) -> float:
    """P(some config other than ``best_index`` has a noise-free readout above ``best_index``'s by > ``tol``),
    from joint posterior draws (seeded): the stopping rule's quantity."""
    n = len(pred.mean)
    if n <= 1:
        return 0.0
    jitter = 1e-9 * max(1.0, float(np.abs(np.diag(pred.cov)).max()))
    cov = (pred.cov + pred.cov.T) / 2.0 + jitter * np.eye(n)
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    samples = pred.mean + np.random.default_rng(seed).standard_normal((draws, n)) @ root.T
    others = np.delete(samples, best_index, axis=1)
    return float(np.mean(others.max(axis=1) - samples[:, best_index] > tol))


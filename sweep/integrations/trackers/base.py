"""What every experiment tracker shares: the ``TRACKERS`` registry, the ``tracking`` settings resolved once, and
a finished run's record turned into what a tracker logs (parameters, per-epoch curves, tags, files).

A tracker is a :class:`Tracker` subclass registered under the name ``tracking.kind`` takes; it logs through its
backend's own API (MLflow's client, torch's SummaryWriter), never by writing files itself.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sweep.errors import SweepError
from sweep.registry import Registry
from sweep.safety import password_span, redact_text, register_secret

if TYPE_CHECKING:
    import optuna
    import pandas as pd

log = logging.getLogger("sweep.trackers")

FIELD = "tracking"  # the config node (sweep.config.schema.TrackingConfig)
TRACKING_ATTR = "tracking"  # study user attr: the resolved settings (never a password), read by `sweep select`
# The trial environment every launcher sets (sweep.study.pruning, a layer above: tests check the names match).
ENV_STUDY, ENV_TRIAL_NUMBER = "SWEEP_STUDY_NAME", "SWEEP_TRIAL_NUMBER"
DEFAULT_EXPERIMENT = "sweep"
INSTALL_HINT = "pip install -e '.[trackers]'"
RUN_FILES = ("config.yaml", "monitor.csv")  # files of the run dir logged beside the record
NOT_PARAMS = ("tracking", "run_dir")  # config keys that say where a run went, not how it trained
OBJECTIVE_PREFIX = "objective/"


class TrackingError(SweepError, ValueError):
    """The tracking settings cannot work (a password in the URI, a URI the backend refuses, its package
    missing): raised before a run trains or a sweep submits anything."""


@dataclass(frozen=True)
class TrackingSettings:
    """``tracking`` resolved: an absolute location and an experiment name, the same in a driver and its jobs."""

    kind: str
    uri: str
    experiment: str

    def as_attr(self) -> dict[str, str]:
        """The settings as a study attr: nothing secret (a URI with a password is refused earlier)."""
        return dataclasses.asdict(self)


@dataclass
class RunLog:
    """What a finished run hands a tracker, read from its result record."""

    name: str  # the trial number in a sweep, else the run dir's name
    status: str  # completed | pruned | failed
    params: dict[str, str]  # flattened config, as MLflow shows params
    curves: list[tuple[int, dict[str, float]]]  # (epoch, finite metrics of that monitoring row)
    tags: dict[str, str]
    record: dict[str, Any]
    files: list[Path]


class Tracker(ABC):
    """One tracking backend: subclass, implement the three ``log_*`` steps, ``@TRACKERS.register("<kind>")``."""

    requires: tuple[str, ...] = ()  # modules the backend imports (checked up front, with the install hint)

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings

    @classmethod
    def default_uri(cls, base: Path) -> str:
        """Where the backend logs when ``tracking.uri`` is unset (``base``: the directory the user started in)."""
        return str(base)

    @classmethod
    def resolve_uri(cls, uri: str, base: Path) -> str:
        """``uri`` made absolute against ``base`` (a job may run elsewhere), or ``TrackingError``."""
        return uri

    def prepare(self) -> None:
        """Create what concurrent jobs would race to create (the store, the experiment); the driver calls it
        once before the first job starts."""

    @abstractmethod
    def log_run(self, run: RunLog) -> dict[str, Any]:
        """Log one finished run; returns the link a study-level step finds it by (kept in the record)."""

    @abstractmethod
    def log_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, objectives: Sequence[str],
                  link: Mapping[str, Any]) -> None:
        """Log a told trial's searched parameters, objective values and state, into its run when linked."""

    @abstractmethod
    def log_selection(self, policies: pd.DataFrame, report_dir: Optional[Path]) -> dict[str, Any]:
        """Log a selection's policy table (one row per policy) and its report files; returns the link."""

    # ------------------------------------------------------------------ the steps callers use
    def log_record(self, record: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        """``{"tracking": link}`` after logging the run of ``record`` (the train job merges it into the record);
        a tracker that fails is a warning, never a failed run."""
        return {FIELD: self.guarded("run", lambda: self.log_run(run_log(record, Path(run_dir))))}

    def guarded(self, what: str, step: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``step(*args)``; an error becomes a warning and a link that says why (URI passwords masked)."""
        try:
            return step(*args) or {}
        except Exception as err:  # noqa: BLE001 - an unreachable tracker must not fail a trial or a sweep
            message = redact_text(f"{type(err).__name__}: {err}".splitlines()[0])
            log.warning("[sweep] tracking.kind=%s: %s not logged (%s)", self.settings.kind, what, message)
            return {"kind": self.settings.kind, "error": message}


TRACKERS: Registry[type[Tracker]] = Registry("tracker", field="tracking.kind")


# ----------------------------------------------------------------------------- settings
def resolve_settings(tracking: Any, study_name: Optional[str] = None) -> TrackingSettings:
    """The settings of a ``tracking`` node (``TrackingConfig``, DictConfig, mapping or None), checked: the kind
    is registered, its package imports, the URI holds no password; the experiment defaults to the study."""
    plain = _plain(tracking)
    kind = str(plain.get("kind") or "none")
    cls = TRACKERS.get(kind)  # UnknownNameError: "tracking.kind='x': unknown tracker; allowed [...]"
    _check_installed(kind, cls.requires)
    uri = plain.get("uri")
    _refuse_password(uri)
    base = launch_dir()
    uri = cls.default_uri(base) if uri in (None, "") else cls.resolve_uri(str(uri), base)
    experiment = plain.get("experiment") or study_name or os.environ.get(ENV_STUDY) or DEFAULT_EXPERIMENT
    return TrackingSettings(kind, uri, str(experiment))


def open_tracker(tracking: Any, study_name: Optional[str] = None) -> Tracker:
    """The tracker ``tracking`` names, checked (see :func:`resolve_settings`); the train job calls this before
    it trains, so a bad setting fails in seconds."""
    settings = resolve_settings(tracking, study_name)
    return TRACKERS.get(settings.kind)(settings)


def _plain(tracking: Any) -> dict[str, Any]:
    if tracking is None:
        return {}
    if dataclasses.is_dataclass(tracking) and not isinstance(tracking, type):
        return dataclasses.asdict(tracking)
    from omegaconf import OmegaConf

    if OmegaConf.is_config(tracking):
        return dict(OmegaConf.to_container(tracking, resolve=True))  # type: ignore[arg-type]
    return dict(tracking)


def _check_installed(kind: str, modules: Sequence[str]) -> None:
    import importlib.util
    import sys

    # in sys.modules: imported already (optuna_integration's lazy module has no __spec__ then)
    missing = [m for m in modules if m not in sys.modules and importlib.util.find_spec(m) is None]
    if missing:
        raise TrackingError(f"tracking.kind={kind!r} needs {', '.join(missing)}, not installed: {INSTALL_HINT}")


def _refuse_password(uri: Any) -> None:
    """A password in ``tracking.uri`` would be saved in every run's config.yaml: refused, shown masked."""
    span = password_span(str(uri)) if uri else None
    if span is None:
        return
    register_secret(str(uri)[span[0]:span[1]])  # every later message masks it too
    raise TrackingError(f"tracking.uri={redact_text(str(uri))!r}: holds a password, which would be written to "
                        f"every run's config.yaml; drop it from the URI and set MLFLOW_TRACKING_PASSWORD (an "
                        f"MLflow server) or PGPASSWORD / ~/.pgpass (a PostgreSQL store) instead")


def launch_dir() -> Path:
    """The directory the user started in: Hydra's original cwd inside a job (it may run elsewhere), else cwd."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf.errors import OmegaConfBaseException

        runtime_error: tuple[type[BaseException], ...] = (ValueError, AttributeError, OmegaConfBaseException)
    except ImportError:
        return Path.cwd()
    try:  # not set outside a Hydra job; set but without a runtime after an in-process compose (tests, notebooks)
        return Path(HydraConfig.get().runtime.cwd)
    except runtime_error:
        return Path.cwd()


# ----------------------------------------------------------------------------- a run's record -> RunLog
def run_log(record: Mapping[str, Any], run_dir: Path) -> RunLog:
    """What the trackers log of a finished run, from its result record (``sweep.train.records``)."""
    config = {k: v for k, v in (record.get("config") or {}).items() if k not in NOT_PARAMS}
    return RunLog(name=run_name(run_dir), status=str(record.get("status") or "completed"),
                  params=flat_params(config), curves=curves(record), tags=run_tags(record, run_dir),
                  record=dict(record), files=[run_dir / f for f in RUN_FILES if (run_dir / f).is_file()])


def run_name(run_dir: Path) -> str:
    """The trial number in a sweep (as optuna-integration names a trial's run), else the run dir's name."""
    return os.environ.get(ENV_TRIAL_NUMBER) or Path(run_dir).name


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim.lr": "0.001", ...}``: nested keys joined by dots, values as ``str`` (as MLflow logs a trial's
    params, so a searched value and its config entry read the same), lists as JSON."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = redact_text(json.dumps(value) if isinstance(value, (list, tuple)) else str(value))
    return out


def curves(record: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """One point per monitoring row (step = its epoch); the record's final metrics that no row holds (a user's
    app without a curve) join the last point."""
    points = [(int(row.get("epoch", i + 1)), numbers_of(row, skip=("epoch",)))
              for i, row in enumerate(record.get("monitor") or [])]
    seen = set().union(*(p[1] for p in points)) if points else set()
    extra = {k: v for k, v in numbers_of(record.get("metrics") or {}).items() if k not in seen}
    if extra and points:
        points[-1][1].update(extra)
    elif extra:
        points.append((int(record.get("epochs_completed") or 0), extra))
    return points


def numbers_of(row: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, float]:
    """The finite real numbers of a row, numpy scalars included (no bools, no None / NaN / NA: a metric that
    could not be computed)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()
        if key not in skip and isinstance(value, numbers.Real) and not isinstance(value, bool) \
                and math.isfinite(value):
            out[str(key)] = float(value)
    return out


def run_tags(record: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """What a run is beside its params: status, why it stopped, where its files are, its study and trial."""
    tags = {"sweep.status": record.get("status"), "sweep.failure_reason": record.get("failure_reason"),
            "sweep.method": record.get("method"), "sweep.run_dir": str(run_dir),
            "sweep.epochs_completed": record.get("epochs_completed"),
            "sweep.study": os.environ.get(ENV_STUDY), "sweep.trial_number": os.environ.get(ENV_TRIAL_NUMBER)}
    return {k: redact_text(str(v)) for k, v in tags.items() if v is not None}


def objective_labels(study: optuna.Study) -> list[str]:
    """Metric names of the study's objectives (``objective/rankme``, ``objective/_alpha-1_``): the sweeper's
    labels, with the characters MLflow refuses replaced; ``objective/value_<i>`` when the study has none."""
    labels = study.user_attrs.get("objectives") or []
    if len(labels) != len(study.directions):
        labels = [f"value_{i}" for i in range(len(study.directions))]
    return [OBJECTIVE_PREFIX + safe_name(str(label)) for label in labels]


def safe_name(text: str) -> str:
    """A metric / folder name both backends accept (letters, digits, ``_ - . /`` and spaces)."""
    return re.sub(r"[^\w\-. /]", "_", text)


"""Value checks on a composed train config, run before any job starts.

Hydra's struct mode already rejects unknown keys and wrong types; this module rejects values that type-check
but make no sense (negative learning rates, probabilities above 1, unknown names, empty windows). It reads
the config only -- nothing is built or run -- so the sweeper can call it on every trial before submitting.
Every problem found is listed in one :class:`ConfigError`, each naming the field path, the value and what
is allowed.

The names a config may use (methods, backbones, data sets, optimisers) are not known here: they are the entries
of the registries next to the implementations, in higher layers. The caller passes them in (``names``);
:func:`sweep.train.config_check.validate_train_config` is the full check with every registry's names.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweep.errors import SweepError
from sweep.config import schema
from sweep.registry import unknown_name_message

# groups whose ``name`` picks a registry entry -> what an entry is called in messages
NAMED_GROUPS = {"method": "method", "backbone": "backbone", "data": "dataset", "optim": "optimizer"}

SCHEDULERS = ("cosine", "constant")
READOUT_FEATURES = ("backbone", "projector")
RISK_LOSSES = ("error", "log_loss")
PRECISIONS = ("auto", "fp32", "bf16")  # train job autocast; auto = bf16 on a CUDA device that supports it
DISTRIBUTED_MODES = ("auto", "off")  # train job: DDP when torchrun / several SLURM tasks started it, or never
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_NAMES = "auto, cpu, mps, cuda or cuda:N"
_MISSING = object()


class ConfigError(SweepError, ValueError):
    """A config value outside its allowed range; ``problems`` lists one message per bad field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid train config:\n  " + "\n  ".join(self.problems))


class _Checker:
    """Collects problems while reading fields by dotted path."""

    def __init__(self, cfg: DictConfig, names: Mapping[str, Sequence[str]]) -> None:
        self.cfg = cfg
        self.names = names
        self.problems: list[str] = []

    def get(self, path: str) -> Any:
        value = OmegaConf.select(self.cfg, path, default=_MISSING, throw_on_missing=False)
        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
        return value

    def has(self, path: str) -> bool:
        return self.get(path) is not _MISSING

    def fail(self, path: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{path}={value!r}: allowed {allowed}")

    def check(self, path: str, ok: Callable[[Any], bool], allowed: str, optional: bool = False) -> None:
        """Record a problem unless ``ok(value)``; absent fields are skipped, None passes when ``optional``."""
        value = self.get(path)
        if value is _MISSING or (optional and value is None):
            return
        try:
            good = value is not None and bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            self.fail(path, value, allowed)


# ----------------------------------------------------------------------------- predicates
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: Any) -> bool:
    return _finite(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _finite(v) and v >= 0


def _probability(v: Any) -> bool:
    return _finite(v) and 0.0 <= v <= 1.0


def _int_at_least(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _device_name(v: Any) -> bool:
    return isinstance(v, str) and bool(_DEVICE_RE.match(v))


def _one_of(names: Sequence[str]) -> Callable[[Any], bool]:
    return lambda v: v in names


def _pair(ok: Callable[[float, float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v) and ok(v[0], v[1])


def _int_list(lo: int, min_len: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) >= min_len and all(_int_at_least(lo)(x) for x in v)


# ----------------------------------------------------------------------------- groups
def _check_name(c: _Checker, group: str) -> None:
    """``<group>.name`` must be a registered name; the message suggests the closest one."""
    allowed = list(c.names[group])
    value = c.get(f"{group}.name")
    if value is not _MISSING and value not in allowed:
        c.problems.append(unknown_name_message(NAMED_GROUPS[group], value, allowed, f"{group}.name"))


def _check_method(c: _Checker) -> None:
    _check_name(c, "method")
    c.check("method.projector.hidden_dims", _int_list(1, 0), "a list of ints >= 1")
    c.check("method.projector.out_dim", _int_at_least(2), "an int >= 2 (spectral metrics need D >= 2)")
    c.check("method.temperature", _positive, "a float > 0")
    c.check("method.lambd", _positive, "a float > 0")
    c.check("method.scale_loss", _positive, "a float > 0")
    for w in ("sim_weight", "var_weight", "cov_weight"):
        c.check(f"method.{w}", _non_negative, "a float >= 0")
    c.check("method.predictor_hidden_dim", _int_at_least(1), "an int >= 1")
    c.check("method.queue_size", _int_at_least(1), "an int >= 1")
    c.check("method.momentum", lambda v: _finite(v) and 0.0 <= v < 1.0, "a float in [0, 1)")


def _check_backbone(c: _Checker) -> None:
    _check_name(c, "backbone")
    c.check("backbone.hidden_dims", _int_list(1, 1), "a non-empty list of ints >= 1")
    c.check("backbone.width", _int_at_least(1), "an int >= 1")


def _check_data(c: _Checker) -> None:
    _check_name(c, "data")
    c.check("data.image_size", _int_at_least(1), "None or an int >= 1", optional=True)
    c.check("data.val_fraction", lambda v: _finite(v) and 0.0 < v < 1.0, "a float in (0, 1)")
    c.check("data.monitor_size", _int_at_least(2), "an int >= 2")
    c.check("data.max_train_samples", _int_at_least(1), "None or an int >= 1", optional=True)
    c.check("data.max_test_samples", _int_at_least(1), "None or an int >= 1", optional=True)
    c.check("data.split_seed", _int_at_least(0), "an int >= 0")
    c.check("data.num_workers", _int_at_least(0), "an int >= 0")
    c.check("data.unlabeled", lambda v: isinstance(v, bool), "true or false")
    if c.get("data.unlabeled") is True and c.get("data.name") != "stl10":
        c.fail("data.unlabeled", True, "true only with data.name='stl10' (its unlabeled_X.bin), else false")
    c.check("data.classes_file", lambda v: isinstance(v, str) and v != "", "None or a file path", optional=True)
    if c.get("data.classes_file") not in (None, _MISSING) and c.get("data.name") != "image_folder":
        c.fail("data.classes_file", c.get("data.classes_file"), "None unless data.name='image_folder'")
    c.check("data.cache_dir", lambda v: isinstance(v, str) and v != "", "None or a directory path", optional=True)
    c.check("data.test_dir", lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v,
            "a folder name under data.root (e.g. 'test', 'val')")
    if c.get("data.name") == "image_folder":
        c.check("data.root", lambda v: isinstance(v, str) and v != "",
                "a directory path (required for image_folder)")


def _check_augment(c: _Checker) -> None:
    c.check("augment.crop_scale", _pair(lambda lo, hi: 0.0 < lo <= hi <= 1.0),
            "[lo, hi] with 0 < lo <= hi <= 1")
    c.check("augment.crop_ratio", _pair(lambda lo, hi: 0.0 < lo <= hi), "[lo, hi] with 0 < lo <= hi")
    for p in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
        c.check(f"augment.{p}", _probability, "a probability in [0, 1]")
    c.check("augment.jitter_strength", _non_negative, "a float >= 0")
    c.check("augment.blur_sigma", _pair(lambda lo, hi: 0.0 < lo <= hi), "[lo, hi] with 0 < lo <= hi")
    c.check("augment.noise_std", _non_negative, "a float >= 0")


def _check_optim(c: _Checker) -> None:
    _check_name(c, "optim")
    c.check("optim.lr", _positive, "a float > 0")
    c.check("optim.weight_decay", _non_negative, "a float >= 0")
    c.check("optim.momentum", lambda v: _finite(v) and 0.0 <= v < 1.0, "a float in [0, 1)")
    c.check("optim.warmup_epochs", _int_at_least(0), "an int >= 0")
    c.check("optim.scheduler", _one_of(SCHEDULERS), f"one of {list(SCHEDULERS)}")
    c.check("optim.grad_clip", _positive, "None or a float > 0", optional=True)
    c.check("optim.trust_coefficient", _positive, "a float > 0")
    warmup, epochs = c.get("optim.warmup_epochs"), c.get("epochs")
    if isinstance(warmup, int) and isinstance(epochs, int) and warmup > epochs:
        c.fail("optim.warmup_epochs", warmup, f"an int in [0, epochs={epochs}]")


def _check_metrics(c: _Checker) -> None:
    c.check("metrics.every_n_epochs", _int_at_least(0), "an int >= 0 (0 = only at the end)")
    c.check(
        "metrics.alpha_window",
        _pair(lambda lo, hi: int(lo) == lo and int(hi) == hi and 1 <= lo and hi >= lo + 2),
        "[lo, hi] 1-based integer ranks with 1 <= lo and hi >= lo + 2 (3 points for the fit)",
    )
    c.check("metrics.kmeans_clusters", _int_at_least(2), "an int >= 2")
    c.check("metrics.kmeans_seeds", _int_list(0, 1), "a non-empty list of ints >= 0")
    c.check("metrics.lidar_views", lambda v: _int_at_least(0)(v) and v != 1, "0 (off) or an int >= 2")
    c.check("metrics.lidar_samples", _int_at_least(2), "an int >= 2")
    c.check("metrics.collapse_rankme", _non_negative, "a float >= 0")
    c.check("metrics.extract_batch_size", _int_at_least(1), "an int >= 1")
    k, m = c.get("metrics.kmeans_clusters"), c.get("data.monitor_size")
    if isinstance(k, int) and isinstance(m, int) and m <= k:
        c.fail("data.monitor_size", m,
               f"an int > metrics.kmeans_clusters={k} (k-means needs more points than clusters)")


def _check_readout(c: _Checker) -> None:
    c.check("readout.l2_grid",
            lambda v: isinstance(v, list) and len(v) > 0 and all(_non_negative(x) for x in v),
            "a non-empty list of floats >= 0")
    c.check("readout.max_iter", _int_at_least(1), "an int >= 1")
    c.check("readout.knn_k", _int_at_least(1), "an int >= 1")
    c.check("readout.features", _one_of(READOUT_FEATURES), f"one of {list(READOUT_FEATURES)}")
    c.check("readout.device", _device_name, DEVICE_NAMES)
    c.check("readout.tol", _positive, "a float > 0")
    c.check("readout.knn_temperature", _positive, "None or a float > 0", optional=True)
    c.check("readout.knn_chunk_size", _int_at_least(1), "an int >= 1")
    c.check("readout.risk_l2", _non_negative, "a float >= 0")
    c.check("readout.risk_loss", _one_of(RISK_LOSSES), f"one of {list(RISK_LOSSES)}")


def _check_top(c: _Checker) -> None:
    c.check("epochs", _int_at_least(1), "an int >= 1")
    c.check("batch_size", _int_at_least(2), "an int >= 2 (contrastive losses need pairs)")
    c.check("seed", _int_at_least(0), "an int >= 0")
    c.check("device", _device_name, DEVICE_NAMES)
    c.check("num_threads", _int_at_least(1), "None or an int >= 1", optional=True)
    c.check("checkpoint_every", _int_at_least(1), "an int >= 1")
    c.check("precision", _one_of(PRECISIONS), f"one of {list(PRECISIONS)}")
    c.check("distributed", _one_of(DISTRIBUTED_MODES), f"one of {list(DISTRIBUTED_MODES)}")
    for flag in ("channels_last", "compile"):
        c.check(flag, lambda v: isinstance(v, bool), "true or false")


def _schema_fields(node: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(node)}


def _check_unknown_keys(c: _Checker) -> None:
    """Keys that no schema declares (e.g. slipped in with Hydra's ``+key=`` append syntax)."""
    groups: dict[str, Any] = {"": schema.TrainConfig, **schema.GROUP_SCHEMAS}
    method = schema.METHOD_SCHEMAS.get(c.get("method.name"))
    if method is not None:
        groups["method"] = method
        groups["method.projector"] = schema.ProjectorConfig
    for path, node in groups.items():
        value = c.get(path) if path else OmegaConf.to_container(c.cfg, resolve=False)
        if not isinstance(value, dict):
            continue
        for key in sorted(set(value) - _schema_fields(node) - ({"hydra"} if not path else set())):
            full = f"{path}.{key}" if path else key
            c.problems.append(f"{full}: unknown key; allowed keys: {sorted(_schema_fields(node))}")


def value_problems(cfg: DictConfig, names: Mapping[str, Sequence[str]]) -> list[str]:
    """Every value problem in ``cfg`` (empty when valid); one message per field. ``names`` maps each group of
    ``NAMED_GROUPS`` to its registered names (``sweep.train.config_check.registered_names()``)."""
    missing = [g for g in NAMED_GROUPS if g not in names]
    if missing:
        raise ValueError(f"value_problems: names lacks the group(s) {missing}; pass one list per {list(NAMED_GROUPS)}")
    c = _Checker(cfg, names)
    _check_unknown_keys(c)
    if not c.has("method.name"):
        c.fail("method", None, f"a method group: one of {list(names['method'])}")
    for check in (_check_top, _check_method, _check_backbone, _check_data, _check_augment, _check_optim,
                  _check_metrics, _check_readout):
        check(c)
    return c.problems

"""The full check of a train config, run before any job starts: the value checks of
:mod:`sweep.config.validate` with the allowed names read from the registries (``METHODS``, ``BACKBONES``,
``DATASETS``, ``OPTIMIZERS``). It lives here because the training layer is the lowest one that sees every
implementation, so a method registered in its own module is allowed without editing a name list.
"""
from __future__ import annotations

from omegaconf import DictConfig

from sweep.config.validate import ConfigError, value_problems
from sweep.data import DATASETS
from sweep.ssl.backbones import BACKBONES
from sweep.ssl.methods import METHODS
from sweep.train.optim import OPTIMIZERS

__all__ = ["ConfigError", "config_problems", "registered_names", "validate_train_config"]


def registered_names() -> dict[str, list[str]]:
    """Group -> the names its ``name`` field may take, as registered now."""
    return {"method": METHODS.names(), "backbone": BACKBONES.names(), "data": DATASETS.names(),
            "optim": OPTIMIZERS.names()}


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem in ``cfg`` (empty when valid); one message per field."""
    return value_problems(cfg, registered_names())


def validate_train_config(cfg: DictConfig) -> DictConfig:
    """Raise :class:`ConfigError` listing every bad value (field path, value, allowed); return ``cfg``."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg

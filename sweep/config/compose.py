"""Compose the train config outside ``@hydra.main``: for tests, the sweeper and the demo."""
from __future__ import annotations

import datetime as _dt
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from sweep.config.paths import conf_dir
from sweep.config.store import register_configs

CONFIG_NAME = "train"


def default_run_dir(root: str | Path = "outputs") -> str:
    """A fresh run directory like Hydra's default ``outputs/<date>/<time>`` (absolute)."""
    now = _dt.datetime.now()
    return str(Path(root).resolve() / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f"))


@contextmanager
def _own_global_hydra() -> Iterator[None]:
    """Set aside an initialised GlobalHydra (we may run inside a Hydra app) and put it back afterwards."""
    gh = GlobalHydra.instance()
    previous = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        yield
    finally:
        gh = GlobalHydra.instance()  # initialize_config_dir may have swapped the singleton object
        gh.clear()
        if previous is not None:
            gh.initialize(previous)


def compose_train_config(overrides: Sequence[str] = (), run_dir: Optional[str | Path] = None) -> DictConfig:
    """The composed ``train`` config with Hydra override strings applied (struct mode kept).

    ``run_dir`` in ``train.yaml`` points at Hydra's job output dir, which only exists inside a Hydra run;
    here it is set from the ``run_dir`` argument, a ``run_dir=`` override, or a fresh ``outputs/...`` path.
    """
    register_configs()
    with _own_global_hydra():
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="sweep_compose"):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    if run_dir is not None:
        cfg.run_dir = str(run_dir)
    elif not any(o.lstrip("+~").startswith("run_dir=") for o in overrides):
        cfg.run_dir = default_run_dir()
    return cfg


def to_plain(cfg: DictConfig) -> dict:
    """Resolved plain-dict copy (for records and YAML dumps)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

"""``make_executor(launcher_cfg, folder)``: a submitit Executor for plain function jobs (readouts, analyses),
chosen by the same launcher config the sweep uses, so readout jobs run where the trials ran. The kinds are the
entries of ``LAUNCHERS`` (``sweep.launch.kinds``), registered by the backend modules imported here."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from submitit.core.core import Executor

from sweep.launch import inprocess, local, slurm  # noqa: F401 - each registers its kind in LAUNCHERS
from sweep.launch.inprocess import InProcessExecutor
from sweep.launch.kinds import LAUNCHERS
from sweep.launch.slurm import static_folder

__all__ = ["InProcessExecutor", "launcher_kind", "make_executor"]


def launcher_kind(launcher_cfg: Mapping[str, Any]) -> str:
    """``kind`` if given, else the kind whose Hydra front is ``_target_`` (our launcher plugins)."""
    kind = launcher_cfg.get("kind")
    if kind is None:
        target = str(launcher_cfg.get("_target_", ""))
        kind = next((name for name, k in LAUNCHERS.items() if k.front and target.endswith(f".{k.front}")), None)
    if kind not in LAUNCHERS:
        raise ValueError(f"launcher kind={kind!r} (from kind/_target_={launcher_cfg.get('_target_')!r}): "
                         f"allowed values are {LAUNCHERS.names()}")
    return str(kind)


def make_executor(launcher_cfg: Mapping[str, Any], folder: str | Path) -> Executor:
    """The folder is made private first (``secure_dir``): submitit unpickles the job results it finds there."""
    from sweep.safety import secure_dir

    kind = launcher_kind(launcher_cfg)
    secure_dir(static_folder(folder))
    return LAUNCHERS.get(kind).executor(launcher_cfg, Path(folder))

"""``LAUNCHERS``: launcher kind -> how it runs trials (a :class:`~sweep.launch.base.TrialLauncher`) and plain
function jobs such as readouts (a submitit Executor). Each backend module registers itself
(``sweep.launch.inprocess``, ``.local``, ``.slurm``); ``make_executor``, the Hydra launcher fronts, ``sweep
select`` / ``sweep risk`` and the demo look kinds up here, so a new backend is a module plus a registration.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.registry import Registry

ExecutorBuilder = Callable[[Mapping[str, Any], Path], Any]  # (launcher config, folder) -> submitit Executor


@dataclass(frozen=True)
class LauncherKind:
    launcher: type  # a TrialLauncher subclass, built with the Hydra launcher config's parameters
    executor: ExecutorBuilder  # plain function jobs (readouts, risk) run where the trials ran
    plugin: str  # its Hydra option: ``hydra/launcher=<plugin>``
    front: str = ""  # class name of its Hydra front in hydra_plugins.sweep_plugins.sweep_launchers, if any


LAUNCHERS: Registry[LauncherKind] = Registry("launcher")


def kind_of_plugin(plugin: str) -> str:
    """The kind whose Hydra option is ``plugin`` (``sweep_local`` -> ``local``)."""
    for name, kind in LAUNCHERS.items():
        if kind.plugin == plugin:
            return name
    return LAUNCHERS.check(plugin)  # not a plugin name: a kind itself, or an error naming the kinds

"""``hydra/launcher=sweep_inprocess|sweep_local|sweep_slurm``: Hydra launchers that also ``submit`` single trials.

Thin fronts (Hydra only instantiates classes defined under hydra_plugins); the implementation of ``kind`` is
looked up in ``sweep.launch.LAUNCHERS`` in ``setup``, so plugin discovery stays cheap. ``SweepLauncher`` serves any
registered kind named by its ``kind`` parameter (``conf/hydra/launcher/<name>.yaml``: ``_target_`` and ``kind``)."""
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.sweep_plugins import config  # noqa: F401 - registers the configs


class _TrialLauncherFront(Launcher):
    kind = ""  # the implementation's name in sweep.launch.LAUNCHERS

    def __init__(self, **params: Any) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) or
                       type(v).__name__ == "ListConfig" else v for k, v in params.items()}
        self.impl: Optional[Any] = None

    def setup(self, *, hydra_context: HydraContext, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        from sweep.launch import LAUNCHERS

        self.impl = LAUNCHERS.get(self.kind).launcher(**self.params)
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self._ready().launch(job_overrides, initial_job_idx)

    def submit(self, job_overrides: Sequence[str], idx: int, env: Optional[Mapping[str, str]] = None,
               on_intent: Optional[Callable[[Any], None]] = None, reporter: Any = None) -> Any:
        """One trial -> a handle with done(), result(), job_id, run_dir, cancel()."""
        return self._ready().submit(job_overrides, idx, env, on_intent=on_intent, reporter=reporter)

    def submit_batch(self, jobs: Sequence[Any], envs: Optional[Sequence[Mapping[str, str]]] = None,
                     on_intent: Optional[Callable[[Any], None]] = None,
                     reporters: Optional[Sequence[Any]] = None) -> list[Any]:
        return self._ready().submit_batch(jobs, envs, on_intent=on_intent, reporters=reporters)

    @property
    def sweep_dir(self) -> Path:
        return self._ready().sweep_dir

    def _ready(self) -> Any:
        if self.impl is None:
            raise RuntimeError(f"{type(self).__name__} used before setup()")
        return self.impl


class SweepLauncher(_TrialLauncherFront):
    """Any registered kind: ``kind`` picks it, the other parameters go to its launcher."""

    def __init__(self, kind: str, **params: Any) -> None:
        super().__init__(**params)
        self.kind = kind


class InProcessLauncher(_TrialLauncherFront):
    kind = "inprocess"


class LocalLauncher(_TrialLauncherFront):
    kind = "local"


class SlurmLauncher(_TrialLauncherFront):
    kind = "slurm"

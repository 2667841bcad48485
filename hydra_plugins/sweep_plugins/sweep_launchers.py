"""``hydra/launcher=sweep_inprocess|sweep_local|sweep_slurm``: Hydra launchers that also ``submit`` single trials.

Thin fronts (Hydra only instantiates classes defined under hydra_plugins); the implementations in sweep.launch
are imported in ``setup``, so plugin discovery stays cheap."""
import importlib
from typing import Any, Callable, Mapping, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.sweep_plugins import config  # noqa: F401 - registers the configs


class _TrialLauncherFront(Launcher):
    _impl_path = ""  # "module:Class" of the implementation

    def __init__(self, **params: Any) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) or
                       type(v).__name__ == "ListConfig" else v for k, v in params.items()}
        self.impl: Optional[Any] = None

    def setup(self, *, hydra_context: HydraContext, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        module, cls = self._impl_path.split(":")
        self.impl = getattr(importlib.import_module(module), cls)(**self.params)
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self._ready().launch(job_overrides, initial_job_idx)

    def submit(self, job_overrides: Sequence[str], idx: int, env: Optional[Mapping[str, str]] = None) -> Any:
        """One trial -> a handle with done(), result(), job_id, run_dir, cancel()."""
        return self._ready().submit(job_overrides, idx, env)

    def submit_batch(self, jobs: Sequence[Any], envs: Optional[Sequence[Mapping[str, str]]] = None) -> list[Any]:
        return self._ready().submit_batch(jobs, envs)

    def _ready(self) -> Any:
        if self.impl is None:
            raise RuntimeError(f"{type(self).__name__} used before setup()")
        return self.impl


class InProcessLauncher(_TrialLauncherFront):
    _impl_path = "sweep.launch.inprocess:InProcessLauncher"


class LocalLauncher(_TrialLauncherFront):
    _impl_path = "sweep.launch.local:LocalLauncher"


class SlurmLauncher(_TrialLauncherFront):
    _impl_path = "sweep.launch.slurm:SlurmLauncher"

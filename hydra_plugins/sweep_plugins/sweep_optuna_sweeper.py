"""``hydra/sweeper=sweep_optuna``: asynchronous Optuna ask/tell sweeps (implementation in sweep.study.sweeper)."""
from typing import Any, Callable, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext
from omegaconf import DictConfig

from hydra_plugins.sweep_plugins import config  # noqa: F401 - registers the configs


class SweepOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self._impl: Optional[Any] = None

    def setup(self, *, hydra_context: HydraContext, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        """Settings are read here, not in __init__: interpolations such as ``${hydra:runtime.cwd}`` in
        ``storage`` resolve only once the run's HydraConfig is set."""
        from hydra.core.hydra_config import HydraConfig

        from sweep.config.sweeper import SweepSettings
        from sweep.study.sweeper import AskTellSweeper

        HydraConfig.instance().set_config(config)
        self._impl = AskTellSweeper(SweepSettings.from_config(config.hydra.sweeper))
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        if self._impl is None:
            raise RuntimeError("SweepOptunaSweeper.sweep() called before setup()")
        return self._impl.sweep(arguments)

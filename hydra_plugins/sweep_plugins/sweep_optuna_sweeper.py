"""``hydra/sweeper=sweep_optuna``: asynchronous Optuna ask/tell sweeps (implementation in sweep.study.sweeper)."""
import os
import sys
from typing import Any, Callable, List, NoReturn, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext
from omegaconf import DictConfig

from hydra_plugins.sweep_plugins import config  # noqa: F401 - registers the configs

EXIT_CONFIG, EXIT_STOPPED = 2, 1


class SweepOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self._impl: Optional[Any] = None

    def setup(self, *, hydra_context: HydraContext, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        """Settings are read here, not in __init__: interpolations such as ``${hydra:runtime.cwd}`` in
        ``storage`` resolve only once the run's HydraConfig is set."""
        from hydra.core.hydra_config import HydraConfig

        from sweep.config.sweeper_settings import SweepSettings
        from sweep.study.sweeper import AskTellSweeper

        HydraConfig.instance().set_config(config)
        try:
            self._impl = AskTellSweeper(SweepSettings.from_config(config.hydra.sweeper))
        except Exception as err:  # noqa: BLE001 - only the kinds one_line_exit knows are shortened
            one_line_exit(err)
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        if self._impl is None:
            raise RuntimeError("SweepOptunaSweeper.sweep() called before setup()")
        try:
            return self._impl.sweep(arguments)
        except Exception as err:  # noqa: BLE001 - only the kinds one_line_exit knows are shortened
            one_line_exit(err)


def one_line_exit(err: Exception) -> NoReturn:
    """A config error (exit 2) or a sweep stopped for a reason it names (exit 1) is one line on stderr, not a
    traceback; ``HYDRA_FULL_ERROR=1`` keeps the traceback. Anything else is raised as it is (a bug)."""
    from sweep.config.sweeper_settings import SweepConfigError
    from sweep.safety import UnsafeFolderError, one_line_message
    from sweep.study.journal import JournalCorruptError
    from sweep.study.resume import DriverConflictError
    from sweep.study.storage import StorageError
    from sweep.study.stopping import DriverSupersededError, SweepAbortedError, SweepEnvironmentError

    config_errors = (SweepConfigError, StorageError)
    stops = (SweepEnvironmentError, SweepAbortedError, DriverConflictError, DriverSupersededError,
             JournalCorruptError, UnsafeFolderError)
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(err, (*config_errors, *stops)):
        raise err
    kind = "config error" if isinstance(err, config_errors) else "stopped"
    print(f"[sweep] {kind}: {one_line_message(err)}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG if isinstance(err, config_errors) else EXIT_STOPPED) from None

"""Launchers (in-process, local subprocess, SLURM via submitit; registered in ``LAUNCHERS``), what a trial job
comes back with (``TrialOutcome``) and ``make_executor`` for plain function jobs.

The names are imported on first use (PEP 562): a trial worker (``python -m sweep.launch.worker``) imports this
package first and must not pay for submitit and every backend (~40 ms of each trial's start-up). ``LAUNCHERS``
taken from here has every backend registered."""
from importlib import import_module

from sweep._lazy import lazy_exports

_EXPORTS = {
    "TrialHandle": "base", "TrialLauncher": "base", "TrialSubmitter": "base",
    "InProcessExecutor": "executors", "launcher_kind": "executors", "make_executor": "executors",
    "LAUNCHERS": "kinds", "LauncherKind": "kinds", "kind_of_plugin": "kinds",
    "TrialOutcome": "outcome",
}

__all__ = ["LAUNCHERS", "InProcessExecutor", "LauncherKind", "TrialHandle", "TrialLauncher", "TrialOutcome",
           "TrialSubmitter", "kind_of_plugin", "launcher_kind", "make_executor"]




def _register_backends(module: str) -> None:
    if module.endswith((".kinds", ".executors")):
        import_module(f"{__name__}.executors")  # registers every backend in LAUNCHERS


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), before=_register_backends)

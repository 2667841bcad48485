"""Launchers (in-process, local subprocess, SLURM via submitit; registered in ``LAUNCHERS``), what a trial job
comes back with (``TrialOutcome``) and ``make_executor`` for plain function jobs."""
from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.executors import InProcessExecutor, launcher_kind, make_executor
from sweep.launch.kinds import LAUNCHERS, LauncherKind, kind_of_plugin
from sweep.launch.outcome import TrialOutcome

__all__ = ["LAUNCHERS", "InProcessExecutor", "LauncherKind", "TrialHandle", "TrialLauncher", "TrialOutcome",
           "kind_of_plugin", "launcher_kind", "make_executor"]

"""Launchers (in-process, local subprocess, SLURM via submitit) and ``make_executor`` for plain function jobs."""
from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.executors import InProcessExecutor, launcher_kind, make_executor

__all__ = ["InProcessExecutor", "TrialHandle", "TrialLauncher", "launcher_kind", "make_executor"]

"""``make_executor(launcher_cfg, folder)``: a submitit Executor for plain function jobs (readouts, analyses),
chosen by the same launcher config the sweep uses, so readout jobs run where the trials ran."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import submitit
from submitit.core.core import Executor
from submitit.local.debug import DebugExecutor, DebugJob

from sweep.launch.slurm import build_executor, slurm_parameters, static_folder

KINDS = ("inprocess", "local", "slurm")
_TARGET_KINDS = {"InProcessLauncher": "inprocess", "LocalLauncher": "local", "SlurmLauncher": "slurm"}


class InProcessJob(DebugJob):
    """DebugJob without the pdb post-mortem on failure: the exception is simply raised by ``result()``."""

    def results(self) -> list[Any]:
        self._check_not_cancelled()
        error = getattr(self, "_error", None)
        if error is not None:
            raise error
        if not self._submission.done():
            try:
                self._submission.result()
            except Exception as err:  # noqa: BLE001 - kept and re-raised to every caller
                self._error = err
                raise
        return [self._submission._result]

    def exception(self) -> Optional[BaseException]:  # type: ignore[override]
        try:
            self.results()
        except Exception as err:  # noqa: BLE001
            return err
        return None

    def done(self, force_check: bool = False) -> bool:  # noqa: ARG002
        self.exception()
        return True


class InProcessExecutor(DebugExecutor):
    """Runs each job in this process on first ``done()``/``result()`` (submitit's DebugExecutor, no debugger)."""

    job_class = InProcessJob

    def _internal_process_submissions(self, delayed_submissions: list[Any]) -> list[Any]:
        return [InProcessJob(self.folder, ds) for ds in delayed_submissions]


def launcher_kind(launcher_cfg: Mapping[str, Any]) -> str:
    """``kind`` if given, else from ``_target_`` (our three Hydra launcher plugins)."""
    kind = launcher_cfg.get("kind")
    if kind is None:
        target = str(launcher_cfg.get("_target_", ""))
        kind = next((k for name, k in _TARGET_KINDS.items() if target.endswith(name)), None)
    if kind not in KINDS:
        raise ValueError(f"launcher kind={kind!r} (from kind/_target_={launcher_cfg.get('_target_')!r}): "
                         f"allowed values are {KINDS}")
    return kind


def make_executor(launcher_cfg: Mapping[str, Any], folder: str | Path) -> Executor:
    """The folder is made private first (``secure_dir``): submitit unpickles the job results it finds there."""
    from sweep.safety import secure_dir

    kind = launcher_kind(launcher_cfg)
    secure_dir(static_folder(folder))
    if kind == "inprocess":
        return InProcessExecutor(folder)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        gpus = launcher_cfg.get("gpus") or []
        executor.update_parameters(timeout_min=int(launcher_cfg.get("timeout_min") or 60 * 24),
                                   gpus_per_node=len(gpus))
        return executor
    skip = {"_target_", "kind", "cluster", "submitit_folder", "max_num_timeout", "results_timeout_s"}
    params = slurm_parameters({k: v for k, v in launcher_cfg.items() if k not in skip})
    return build_executor(folder, launcher_cfg.get("cluster", "slurm"), params,
                          int(launcher_cfg.get("max_num_timeout") or 3))

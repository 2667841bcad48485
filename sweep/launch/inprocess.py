"""In-process launcher: each trial runs in the driver's process when submitted (debugging, tiny sweeps).

One trial at a time by construction (Hydra's HydraConfig and the working directory are process-global);
``n_jobs > 1`` gains nothing here - use ``sweep_local`` for parallel trials. ``InProcessExecutor`` does the same
for plain function jobs (readouts) under ``make_executor({"kind": "inprocess"}, folder)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from submitit.local.debug import DebugExecutor, DebugJob

from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.kinds import LAUNCHERS, LauncherKind
from sweep.launch.outcome import TrialOutcome
from sweep.launch.trial import TrialPayload, execute_trial


@dataclass
class FinishedHandle:
    job_id: str
    run_dir: str
    outcome: TrialOutcome

    def done(self) -> bool:
        return True

    def result(self) -> TrialOutcome:
        return self.outcome

    def cancel(self) -> None:
        """Nothing to cancel: the trial ran during submit."""


class InProcessLauncher(TrialLauncher):
    in_process = True

    def _start(self, payloads: list[TrialPayload], idxs: list[int]) -> list[TrialHandle]:
        return [FinishedHandle(f"inprocess_{idx}", p.run_dir, execute_trial(p)) for p, idx in zip(payloads, idxs)]


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


def inprocess_executor(launcher_cfg: Mapping[str, Any], folder: Path) -> InProcessExecutor:  # noqa: ARG001
    return InProcessExecutor(folder)


LAUNCHERS.register("inprocess", LauncherKind(InProcessLauncher, inprocess_executor, plugin="sweep_inprocess",
                                             front="InProcessLauncher"))

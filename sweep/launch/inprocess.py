"""In-process launcher: each trial runs in the driver's process when submitted (debugging, tiny sweeps).

One trial at a time by construction (Hydra's HydraConfig and the working directory are process-global);
``n_jobs > 1`` gains nothing here - use ``sweep_local`` for parallel trials.
"""
from __future__ import annotations

from dataclasses import dataclass

from sweep.launch.base import TrialHandle, TrialLauncher
from sweep.launch.trial import TrialPayload, execute_trial
from sweep.study.outcome import TrialOutcome


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

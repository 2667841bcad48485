"""``TrialJob``: the callable a SLURM trial job runs, in a module of its own.

Unpickling the job on the node imports the module its class lives in; here that is submitit (loaded already by
submitit's entry point) and ``sweep.launch.trial`` (needed to run the trial anyway), not the driver side of
``sweep.launch.slurm`` (the launcher, sbatch retries, adoption, the launcher registry): ~25 ms less per job
start (docs/ARCHITECTURE.md, "Per-trial overhead"). ``sweep.launch.slurm.TrialJob`` is this same class, so
jobs pickled by an older driver under that name still load.
"""
from __future__ import annotations

import submitit

from sweep.launch.outcome import TrialOutcome
from sweep.launch.trial import TrialPayload, execute_trial


class TrialJob(submitit.helpers.Checkpointable):
    """What runs on the node. ``checkpoint`` (inherited) resubmits ``self`` with the same payload."""

    def __call__(self, payload: TrialPayload) -> TrialOutcome:
        return execute_trial(payload)

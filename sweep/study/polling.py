"""How long the driver sleeps between polls of its running trials (docs/ARCHITECTURE.md, "Per-trial overhead")."""
from __future__ import annotations


class PollBackoff:
    """Sleeps between polls of the running trials: from ``first_s`` (1 ms) doubling up to ``max_s``
    (``poll_interval_s``), back to ``first_s`` once a trial ends. A short trial is seen ending within a few
    ms instead of up to a whole interval later; a long one is polled no more often than before. A poll is
    ``handle.done()`` only (a process poll or submitit's cached SLURM state), no storage round trip."""

    def __init__(self, max_s: float, first_s: float = 0.001) -> None:
        self.max_s, self.first_s = max(float(max_s), 0.0), min(float(first_s), max(float(max_s), 0.0))
        self._current = self.first_s

    def next(self) -> float:
        """The sleep before the next poll."""
        current = self._current
        self._current = min(self._current * 2, self.max_s)
        return current

    def reset(self) -> None:
        self._current = self.first_s

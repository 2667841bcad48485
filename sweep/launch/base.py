"""The launcher side of the asynchronous sweep: ``submit(job_overrides, idx) -> TrialHandle``.

Hydra's ``Launcher.launch`` runs a batch and returns when all of it is done (a barrier). Our launchers also
``submit`` single trials and hand back a handle the sweeper polls, so a new trial starts as soon as any one ends.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig

from sweep.launch.compose import ComposeCache
from sweep.launch.trial import TrialPayload, pinned_sweep_dir_override, redact_config
from sweep.launch.outcome import COMPLETED, TrialOutcome
from sweep.reporting import Reporter

log = logging.getLogger(__name__)
IntentCallback = Callable[[list[dict[str, str]]], None]


@runtime_checkable
class TrialHandle(Protocol):
    job_id: str
    run_dir: str

    def done(self) -> bool: ...
    def result(self) -> TrialOutcome: ...
    def cancel(self) -> None: ...


@runtime_checkable
class TrialSubmitter(Protocol):
    """What the sweep driver asks of a launcher to keep trials in flight without a batch barrier: every launcher
    of ours (``TrialLauncher``) and its Hydra front (``hydra_plugins.sweep_plugins.sweep_launchers``) implement
    it; a foreign Hydra launcher does not, and runs batch by batch through Hydra's ``launch``."""

    @property
    def sweep_dir(self) -> Path: ...

    def submit(self, job_overrides: Sequence[str], idx: int, env: Mapping[str, str] | None = None,
               on_intent: IntentCallback | None = None, reporter: Reporter | None = None) -> TrialHandle: ...

    def submit_batch(self, jobs: Sequence[tuple[Sequence[str], int]],
                     envs: Sequence[Mapping[str, str]] | None = None,
                     on_intent: IntentCallback | None = None,
                     reporters: Sequence[Reporter | None] | None = None) -> list[TrialHandle]: ...


class TrialLauncher(Launcher):
    """Shared Hydra plumbing; a backend implements ``_start(payloads) -> handles``."""

    in_process = False  # the payload needs Hydra's singleton state only in another process

    def __init__(self) -> None:
        self.hydra_context: Any = None
        self.task_function: Optional[Callable[[Any], Any]] = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: Any, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.composer = ComposeCache(hydra_context, config)  # one Hydra composition per search-space shape
        self._state_cache: tuple[Any, Any, dict[Any, Any]] | None = None

    @property
    def sweep_dir(self) -> Path:
        assert self.config is not None, "launcher used before setup()"
        return Path(str(self.config.hydra.sweep.dir)).absolute()

    def payload(self, job_overrides: Sequence[str], idx: int, env: Mapping[str, str] | None = None,
                reporter: Reporter | None = None) -> TrialPayload:
        assert self.config is not None and self.task_function is not None, "launcher used before setup()"
        overrides = [pinned_sweep_dir_override(self.config), *job_overrides]
        if getattr(self, "composer", None) is None:  # a subclass that set itself up without ``setup``
            self.composer = ComposeCache(self.hydra_context, self.config)
        cfg = redact_config(self.composer.compose(overrides, idx))
        state = None
        if not self.in_process:
            state = self._singleton_state()
        payload = TrialPayload(self.hydra_context, self.task_function, cfg, state, dict(env or {}), reporter=reporter)
        payload.freeze_run_dir()  # resolved once here, not on every read (each resolution copies the config)
        return payload

    def _singleton_state(self) -> dict[Any, Any]:
        """Hydra's singleton state, taken and redacted once while the driver's singletons stay the same:
        ``Singleton.get_state`` deep-copies them all and redacting copies HydraConfig's config (~50 ms a
        trial together). Taken again when HydraConfig holds another config, a singleton is replaced or a
        resolver is registered."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.singleton import Singleton
        from omegaconf.basecontainer import BaseContainer

        current = getattr(HydraConfig.instance(), "cfg", None)
        key = (tuple(sorted(id(v) for v in Singleton._instances.values())), len(BaseContainer._resolvers))
        cached = getattr(self, "_state_cache", None)  # holds `current`: its id cannot be reused meanwhile
        if cached is None or cached[0] is not current or cached[1] != key:
            cached = (current, key, _redacted_singleton_state())
            self._state_cache = cached
        return cached[2]

    def submit(self, job_overrides: Sequence[str], idx: int, env: Mapping[str, str] | None = None,
               on_intent: IntentCallback | None = None, reporter: Reporter | None = None) -> TrialHandle:
        return self.submit_batch([(job_overrides, idx)], [env or {}], on_intent=on_intent, reporters=[reporter])[0]

    def submit_batch(self, jobs: Sequence[tuple[Sequence[str], int]],
                     envs: Sequence[Mapping[str, str]] | None = None,
                     on_intent: IntentCallback | None = None,
                     reporters: Sequence[Reporter | None] | None = None) -> list[TrialHandle]:
        """Submit several trials at once (one SLURM job array for the SLURM launcher). ``on_intent`` gets, before
        anything is started, what a later driver needs to find each job should this one die before the job ids
        are stored (its run dir; for SLURM the job name, array index and folder)."""
        envs = list(envs) if envs is not None else [{} for _ in jobs]
        reporters = list(reporters) if reporters is not None else [None for _ in jobs]  # each goes in its payload
        payloads = [self.payload(overrides, idx, env, reporter)
                    for (overrides, idx), env, reporter in zip(jobs, envs, reporters)]
        idxs = [idx for _, idx in jobs]
        if on_intent is not None:
            on_intent(self.intents(payloads, idxs))
        return self._start(payloads, idxs)

    def intents(self, payloads: list[TrialPayload], idxs: list[int]) -> list[dict[str, str]]:
        """Per trial: how to find its job again; the run dir always (a finished result is read from there)."""
        return [{"run_dir": p.run_dir} for p in payloads]

    def _start(self, payloads: list[TrialPayload], idxs: list[int]) -> list[TrialHandle]:
        raise NotImplementedError

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's batch API (used by plain ``-m`` sweeps with other sweepers): submit all, wait for all."""
        from sweep.safety import secure_dir

        secure_dir(self.sweep_dir)
        handles = self.submit_batch([(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)])
        return [_job_return(list(o), h.result()) for o, h in zip(job_overrides, handles)]


def _redacted_singleton_state() -> dict[Any, Any]:
    """Hydra's singleton state for the worker, with the copy of the driver's config that HydraConfig holds
    masked too (it carries the storage URL; the worker sets HydraConfig from the trial config anyway)."""
    import copy

    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton

    state = dict(Singleton.get_state())
    instances = dict(state["instances"])
    current = instances.get(HydraConfig)
    if current is not None and getattr(current, "cfg", None) is not None:
        masked = HydraConfig.__new__(HydraConfig)
        masked.cfg = redact_config(copy.deepcopy(current.cfg))
        instances[HydraConfig] = masked
    state["instances"] = instances
    return state


def _job_return(overrides: list[str], outcome: TrialOutcome) -> JobReturn:
    ret = JobReturn(overrides=overrides)
    if outcome.status == COMPLETED:
        ret.status, ret.return_value = JobStatus.COMPLETED, outcome.record
    else:
        ret.status, ret.return_value = JobStatus.FAILED, RuntimeError(outcome.failure_reason or outcome.status)
    return ret

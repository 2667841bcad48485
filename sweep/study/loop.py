"""The ask -> submit -> poll -> tell loop of one driver run (``_Loop``), started by ``AskTellSweeper.sweep``.

Keeps ``n_jobs`` trials in flight and asks a new one as soon as any finishes; polling backs off from
milliseconds and never touches the storage; a failure outside the trial requeues it uncounted and ends the run
naming the reason; a stop cancels and requeues the trials in flight.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import Trial, TrialState

from sweep.config.sweeper_settings import SweepConfigError
from sweep.launch.base import TrialSubmitter
from sweep.launch.outcome import (
    COMPLETED,
    DISK_FULL,
    FAILED,
    PRUNED,
    TrialOutcome,
    outcome_from_exception,
    outcome_from_return,
)
from sweep.launch.trial import (
    with_record_file,
)
from sweep.progress_bar import logging_beside, progress
from sweep.study import resume
from sweep.study.adoption import (
    FinishedHandle,
    _record_intents,
    finished_outcome,
    move_run_dir,
    not_trial_fault,
)
from sweep.study import attrs as schema
from sweep.study.objectives import (
    Objective,
    ObjectiveError,
    objective_values,
    unknown_metrics,
)
from sweep.study.polling import PollBackoff
from sweep.study.progress import progress_line
from sweep.study.pruning import TrialContext, TrialReporter, trial_reporter
from sweep.study.results import METRIC_PREFIX, warm_export_imports
from sweep.study.search_space import (
    SearchSpace,
    format_override_value,
    to_overrides,
)
from sweep.study.stopping import (
    DriverStopped,
    DriverSupersededError,
    SweepAbortedError,
    SweepEnvironmentError,
    _ignore_further_stops,
    _install_stop_handlers,
    _moved_text,
    _restore_handlers,
    _stop_code,
    _stop_name,
    deferred_stop_signals,
)
from sweep.study.storage import (
    mask_url,
    split_password,
    storage_full,
)

log = logging.getLogger("sweep.study")


@dataclass
class _Running:
    trial: Trial
    handle: Any
    params: dict[str, Any]


class _Loop:
    """The ask -> submit -> poll -> tell loop of one driver run."""

    def __init__(self, sweeper: Any, study: optuna.Study, storage_url: str, space: SearchSpace,
                 objectives: list[Objective], fixed: list[str], n_trials: int,
                 heartbeat: Optional[resume.Heartbeat] = None,
                 adopted: Sequence[tuple[Trial, Any, dict[str, Any]]] = ()) -> None:
        self.sweeper, self.settings, self.study = sweeper, sweeper.settings, study
        self.storage_url, self.space, self.objectives, self.fixed = storage_url, space, objectives, fixed
        self.n_trials, self.launcher, self.heartbeat = n_trials, sweeper.launcher, heartbeat
        self.running: dict[int, _Running] = {t.number: _Running(t, h, p) for t, h, p in adopted}
        self.labels = [o.label for o in objectives]
        self.finished = resume.finished_params(study.get_trials(deepcopy=False))
        self.budget = n_trials - sum(1 for t in study.get_trials(deepcopy=False)
                                     if resume.is_counted(t) and t.state != TrialState.WAITING)
        # a user's app is checked against its first result (the train job's metrics were checked up front)
        self.first_result_checked = bool(self.finished) or runs_train_job(sweeper.task_function)
        self.halted: Optional[str] = None  # why no more trials are submitted in this run (not their fault)
        self.not_run = 0  # trials requeued in this run for a reason outside them
        from sweep.integrations.trackers import (
            StudyTracking,  # here: sweep.integrations imports torch
        )

        self.tracking = StudyTracking.for_sweep(sweeper.config, study, SweepConfigError)  # tracking.*, checked now

    def run(self) -> None:
        if self.budget <= 0 and not self.running:
            log.info("[sweep] study '%s' already has %d trials (n_trials=%d): nothing to run",
                     self.study.study_name, self.n_trials - self.budget, self.n_trials)
            return
        previous = _install_stop_handlers()
        self.bar = progress(total=self.n_trials, initial=self.n_trials - self.budget - len(self.running),
                            desc=f"sweep {self.study.study_name}", unit="trial")
        try:
            with logging_beside(self.bar):
                if isinstance(self.launcher, TrialSubmitter):
                    self._run_async()
                else:
                    self._run_batches()
            if self.halted:
                raise SweepEnvironmentError(
                    f"{self.not_run} trial(s) could not run: {self.halted}. They are requeued and not counted "
                    f"towards n_trials: fix that and rerun the same command")
        except DriverSupersededError:
            self.running.clear()  # its jobs belong to the driver that took over
            raise
        except BaseException as err:
            if not isinstance(err, (DriverStopped, KeyboardInterrupt)):
                if storage_full(err):
                    raise self._stop_on_full_storage(err) from None
                self._requeue_running()
                raise
            _ignore_further_stops()  # a second Ctrl-C must not cut the cancel-and-requeue short
            n_running = len(self.running)
            moved = self._requeue_running()
            log.warning("[sweep] driver stopping (%s): cancelling %d running trial(s)%s; no trial is left "
                        "RUNNING: rerun the same command to resume", _stop_name(err), n_running, _moved_text(moved))
            raise DriverStopped(_stop_code(err)) from None
        finally:
            self.bar.close()
            _restore_handlers(previous)

    def _check_superseded(self) -> None:
        if self.heartbeat is not None and self.heartbeat.superseded.is_set():
            raise DriverSupersededError(
                f"study '{self.study.study_name}' was taken over by another driver (this one missed its "
                f"heartbeats for over {self.settings.driver_timeout_s:.0f} s): stopping without touching its jobs")

    # --------------------------------------------------------------- async (our launchers)
    def _run_async(self) -> None:
        self._fill(initial=not self.running)
        if self.settings.export_results:  # its imports load while the first trials run, not after the last
            warm_export_imports()
        wait = PollBackoff(self.settings.poll_interval_s)
        while self.running or (self.budget > 0 and not self.halted):
            self._check_superseded()
            self._fill(initial=False)  # a no-op while every slot is busy
            finished = [num for num, r in self.running.items() if r.handle.done()]
            if not finished:
                time.sleep(wait.next())
                continue
            wait.reset()  # a new trial starts now: its end is looked for again from milliseconds up
            for num in finished:
                run = self.running.pop(num)
                self._tell(run, _safe_result(run.handle))
            self._check_failures()

    def _fill(self, initial: bool) -> None:
        """Ask trials for the free slots; the first fill goes out as one batch (one SLURM array)."""
        asked: list[tuple[Trial, dict[str, Any]]] = []
        while self.budget > 0 and not self.halted and len(self.running) + len(asked) < self.settings.n_jobs:
            item = self._ask()
            if item is not None:
                asked.append(item)
        if not asked:
            return
        jobs = [([*self.fixed, *to_overrides(params), *self._resume_overrides(trial)], trial.number)
                for trial, params in asked]
        contexts = [self._trial_env(trial) for trial, _ in asked]
        envs = [context.to_env() for context in contexts]
        reporters = [self._reporter(context) for context in contexts]
        try:
            with deferred_stop_signals():  # a stop in here waits until the job ids are stored, then cancels them
                self._submit(asked, jobs, envs, initial, reporters)
        except Exception as err:  # noqa: BLE001 - sbatch refused, unsafe folder, full disk: not the trials' fault
            outcome = outcome_from_exception(err, prefix="submit failed")
            for trial, params in asked:
                if trial.number not in self.running:
                    self._not_trial_fault(_Running(trial, None, params), outcome)
            return
        log.info(progress_line(self.study.get_trials(deepcopy=False), self.study.directions, self.labels,
                               self.n_trials))

    def _submit(self, asked: list[tuple[Trial, dict[str, Any]]], jobs: list[tuple[list[str], int]],
                envs: list[dict[str, str]], initial: bool,
                reporters: Optional[list[Optional[TrialReporter]]] = None) -> None:
        """Submit (the first fill as one batch), recording each trial's intent before and its job id after."""
        groups = [list(range(len(asked)))] if initial else [[i] for i in range(len(asked))]
        for group in groups:
            items = [asked[i] for i in group]
            handles = self.launcher.submit_batch([jobs[i] for i in group], [envs[i] for i in group],
                                                 on_intent=lambda intents, items=items: _record_intents(items, intents),
                                                 reporters=[reporters[i] for i in group] if reporters else None)
            for (trial, params), handle in zip(items, handles):
                # what a later driver needs to re-attach to this job: one storage round trip
                schema.set_user_attrs(self.study, trial, {schema.JOB_ID: str(handle.job_id),
                                                          schema.RUN_DIR: str(handle.run_dir),
                                                          **(getattr(handle, "adoption", None) or {})})
                self.running[trial.number] = _Running(trial, handle, params)

    def _resume_overrides(self, trial: Trial) -> list[str]:
        """A requeued trial resumes from its lost predecessor's checkpoint. With the default numbering
        (``<sweep dir>/<trial number>``) the predecessor's folder is renamed to the new number, so trial 10
        lives in ``10/``; otherwise (a custom ``hydra.sweep.subdir``, or a writer still in that folder) the
        trial runs in the predecessor's folder, whose writer lock keeps the two apart."""
        source = trial.user_attrs.get(schema.REQUEUED_FROM)
        if source is None or not isinstance(self.launcher, TrialSubmitter):
            return []
        sweep_dir = self.launcher.sweep_dir
        old_dir = self.study.get_trials(deepcopy=False)[int(source)].user_attrs.get(schema.RUN_DIR)
        if not old_dir or Path(old_dir).parent != Path(sweep_dir):
            return []
        trial.set_user_attr(schema.RESUMED_RUN_DIR, old_dir)
        if Path(old_dir).name == str(source) and move_run_dir(Path(old_dir), Path(sweep_dir) / str(trial.number)):
            return []  # the default subdir (the trial number) now holds the predecessor's files
        return [f"hydra.sweep.subdir={format_override_value(Path(old_dir).name)}"]

    def _ask(self) -> Optional[tuple[Trial, dict[str, Any]]]:
        """One new trial, or None when its params duplicate a COMPLETE trial (then told with that result)."""
        trial = self.study.ask()
        self.budget -= 1
        trial.set_user_attr(schema.DRIVER, self.sweeper.me.id)  # before suggest: a lost driver's mark
        params = self.space.suggest(trial)
        if "method" in params:
            trial.set_user_attr(schema.METHOD, str(params["method"]))
        twin = self.finished.get(resume.params_key(params)) if self.settings.dedupe else None
        if twin is None:
            return trial, params
        log.warning("[sweep] trial %d duplicates finished trial %d: reusing its result", trial.number, twin.number)
        for key, value in twin.user_attrs.items():
            if key != schema.DRIVER:
                trial.set_user_attr(key, value)
        trial.set_user_attr(schema.DUPLICATE_OF, twin.number)
        self.study.tell(trial, twin.values)
        return None

    def _trial_env(self, trial: Trial) -> TrialContext:
        pruner: Optional[dict[str, Any]] = self.settings.pruner_dict()
        if pruner["name"] in (None, "none"):
            pruner = None  # the job then gets no reporter
        storage = split_password(self.storage_url)[0]  # the password reaches workers through their environment
        return TrialContext(storage, self.study.study_name, schema.trial_id_of(trial), trial.number, pruner)

    def _reporter(self, context: TrialContext) -> Optional[TrialReporter]:
        """The trial's pruning reporter, which goes into its signed payload as data: None without a pruner (the
        worker then imports no study code); with one objective the job reports that objective itself at each
        monitoring step (RankMe, |alpha - target|, ...), scored by the same ``Objective`` the tell uses."""
        return trial_reporter(context, self.objectives[0] if len(self.objectives) == 1 else None)

    # --------------------------------------------------------------- batches (foreign launchers)
    def _run_batches(self) -> None:
        """Hydra's batch ``launch``: a barrier per batch of n_jobs (the best a foreign launcher allows)."""
        while self.budget > 0:
            self._check_superseded()
            asked = [item for item in (self._ask() for _ in range(min(self.settings.n_jobs, self.budget))) if item]
            if not asked:
                continue
            for trial, params in asked:
                trial.set_user_attr(schema.SUBMITTED, True)  # a foreign launcher gives no job id to record
                self.running[trial.number] = _Running(trial, None, params)
            job_overrides = [[*self.fixed, *to_overrides(params)] for _, params in asked]
            returns = self.launcher.launch(job_overrides, initial_job_idx=asked[0][0].number)
            for (trial, params), ret in zip(asked, returns):
                self._tell(self.running.pop(trial.number), _outcome_from_job_return(ret))
            self._check_failures()

    # --------------------------------------------------------------- tell
    def _tell(self, run: _Running, outcome: TrialOutcome) -> None:
        if outcome.status == FAILED and not_trial_fault(outcome.failure_reason):
            self._not_trial_fault(run, outcome)
            return
        self._check_first_result(run, outcome)
        try:
            state = self._store_outcome(run.trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:  # another driver took over and settled it already
            log.warning("[sweep] trial %d was already finished by another driver: not told again", run.trial.number)
            return
        if state == TrialState.COMPLETE:
            self.finished[resume.params_key(run.params)] = schema.fresh_trial(self.study, run.trial)
        self.tracking.trial_finished(self.study, run.trial.number, outcome.record)  # params + objectives, if on
        detail = "" if state == TrialState.COMPLETE else f" ({outcome.failure_reason})"
        log.info("[sweep] trial %d %s%s", run.trial.number, state.name, detail)
        line = progress_line(self.study.get_trials(deepcopy=False), self.study.directions, self.labels,
                             self.n_trials)
        log.info(line)
        bar = getattr(self, "bar", None)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(line.split(" | ", 1)[-1], refresh=False)

    def _not_trial_fault(self, run: _Running, outcome: TrialOutcome) -> None:
        """A failure outside the trial (full disk, unsafe folder, refused submission): the trial is requeued and
        not counted, and this run submits nothing more (the next would fail alike); the end says why."""
        finished = self._finished_anyway(run)
        if finished is not None:
            log.warning("[sweep] trial %d: %s, but its result is complete in its run dir: told from there",
                        run.trial.number, outcome.failure_reason)
            self._tell(run, finished)
            return
        reason = str(outcome.failure_reason or outcome.status)
        for key, value in _record_attrs(outcome).items():
            if key != schema.FAILURE_REASON:
                run.trial.set_user_attr(key, value)
        frozen = schema.fresh_trial(self.study, run.trial)
        if frozen.state != TrialState.RUNNING:
            return
        new = resume.requeue(self.study, frozen, why=f"{resume.NOT_TRIAL_FAULT} ({reason[:400]})")
        self.not_run += 1
        self.halted = self.halted or reason
        log.warning("[sweep] trial %d could not run (%s): not counted, requeued as trial %d; no more trials are "
                    "submitted in this run", run.trial.number, reason, new)

    def _finished_anyway(self, run: _Running) -> Optional[TrialOutcome]:
        """The completed record a job wrote to its run dir before a failure outside it (a full disk that ate
        submitit's result pickle and the job's log): the trial did its work, so it is told, not run again."""
        run_dir = getattr(run.handle, "run_dir", None)
        if not run_dir or isinstance(run.handle, FinishedHandle):  # no job ran (a refused submission)
            return None
        return finished_outcome(str(run_dir), schema.fresh_trial(self.study, run.trial).datetime_start)

    def _check_first_result(self, run: _Running, outcome: TrialOutcome) -> None:
        """A user's app: its first result must hold every objective's metric, else the sweep stops here with
        the metrics it does report, instead of running every trial to fail each with missing_metric."""
        if self.first_result_checked or outcome.status != COMPLETED:
            return
        self.first_result_checked = True
        unknown = unknown_metrics(self.objectives, outcome.metrics)
        if unknown is None:
            return
        frozen = schema.fresh_trial(self.study, run.trial)
        resume.requeue(self.study, frozen, why=f"{resume.NOT_TRIAL_FAULT} (objective metric not reported)")
        raise SweepConfigError(f"{unknown} (the metrics of trial {run.trial.number}'s result); the sweep stopped "
                               f"after this first result instead of running every trial: fix "
                               f"hydra.sweeper.objectives and rerun")

    def _store_outcome(self, trial: Trial, outcome: TrialOutcome) -> TrialState:
        """Record attrs (one storage round trip), then tell; returns the state told."""
        attrs = _record_attrs(outcome)
        state, values = TrialState.FAIL, None
        if outcome.status == COMPLETED:
            try:
                values = objective_values(self.objectives, outcome.record)
                state = TrialState.COMPLETE
            except ObjectiveError as err:
                outcome.failure_reason = str(err)
        elif outcome.status == PRUNED:
            state = TrialState.PRUNED
        if state != TrialState.COMPLETE:
            attrs[schema.FAILURE_REASON] = outcome.failure_reason or outcome.status
        schema.set_user_attrs(self.study, trial, attrs)
        self.study.tell(trial, values, state=state)
        return state

    def _check_failures(self) -> None:
        trials = [t for t in self.study.get_trials(deepcopy=False) if resume.is_counted(t)]
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
        failed = [t for t in done if t.state == TrialState.FAIL]
        if len(done) < self.settings.min_finished_before_abort or not done:
            return
        ratio = len(failed) / len(done)
        if ratio <= self.settings.max_failure_ratio:
            return
        self._cancel_running("cancelled: sweep aborted (max_failure_ratio)")
        reasons = [f"#{t.number}: {t.user_attrs.get(schema.FAILURE_REASON)}" for t in failed[-3:]]
        raise SweepAbortedError(
            f"sweep aborted: {len(failed)} of {len(done)} finished trials failed ({ratio:.0%}) > "
            f"hydra.sweeper.max_failure_ratio={self.settings.max_failure_ratio}; last failures: {'; '.join(reasons)}")

    def _cancel_running(self, reason: str) -> None:
        for run in self.running.values():
            if run.handle is not None:
                run.handle.cancel()
            run.trial.set_user_attr(schema.FAILURE_REASON, reason)
            self.study.tell(run.trial, state=TrialState.FAIL)
        self.running.clear()

    def _stop_on_full_storage(self, err: BaseException) -> SweepEnvironmentError:
        """The study storage cannot be written (its disk is full), so nothing more is asked, told or requeued.
        The jobs in flight finish and leave their results in their run dirs, which the rerun tells (none runs
        twice); a stop meanwhile cancels them instead (the rerun requeues them)."""
        where, handles = mask_url(self.storage_url), [r.handle for r in self.running.values() if r.handle]
        log.warning("[sweep] %s: cannot write the study storage %s; no more trials are submitted; waiting for %d "
                    "running trial(s) to finish (their results stay in their run dirs; Ctrl-C cancels them)",
                    DISK_FULL, where, len(handles))
        fate = f"{len(handles)} trial(s) in flight finished, their results kept in their run dirs for the rerun"
        try:
            while not all(_safe_done(h) for h in handles):
                time.sleep(self.settings.poll_interval_s)
        except (DriverStopped, KeyboardInterrupt):
            for handle in handles:
                handle.cancel()
            fate = f"{len(handles)} trial(s) in flight cancelled, rerun from their checkpoints by the rerun"
        self.running.clear()
        head = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        return SweepEnvironmentError(f"{DISK_FULL}: cannot write the study storage {where} ({head}); {fate}: "
                                     f"free space there and rerun the same command")

    def _requeue_running(self) -> list[tuple[int, int]]:
        """The driver stops with trials in flight (Ctrl-C, error): cancel them all first (their jobs stop
        together), then requeue their params; returns (old, new) trial numbers."""
        for run in self.running.values():
            if run.handle is not None:
                run.handle.cancel()
        moved = []
        for num, run in list(self.running.items()):
            frozen = schema.fresh_trial(self.study, run.trial)
            if frozen.state == TrialState.RUNNING:
                new = resume.requeue(self.study, frozen)
                log.debug("[sweep] driver stopping: trial %d requeued as trial %d", num, new)
                moved.append((num, new))
        self.running.clear()
        return moved


def _safe_done(handle: Any) -> bool:
    try:
        return bool(handle.done())
    except Exception:  # noqa: BLE001 - squeue unreachable: its result is in its run dir either way
        return True


def _safe_result(handle: Any) -> TrialOutcome:
    try:
        return handle.result()
    except Exception as err:  # noqa: BLE001 - a launcher bug must not stop the sweep
        return outcome_from_exception(err)


def _outcome_from_job_return(ret: Any) -> TrialOutcome:
    from hydra.core.utils import JobStatus

    from sweep.reporting import as_record

    outcome = (outcome_from_return(as_record(ret.return_value)) if ret.status == JobStatus.COMPLETED
               else outcome_from_exception(ret._return_value))
    run_dir = outcome.record.get("run_dir") or getattr(ret, "working_dir", None)
    return with_record_file(outcome, str(run_dir)) if run_dir else outcome


def _record_attrs(outcome: TrialOutcome) -> dict[str, Any]:
    """User attrs from a record: every metric (non-finite -> None), record_path, run_dir, method."""
    record = outcome.record or {}
    attrs: dict[str, Any] = {}
    for name, value in outcome.metrics.items():
        attrs[METRIC_PREFIX + name] = _json_number(value)
    for key in (schema.RECORD_PATH, schema.RUN_DIR, schema.METHOD):  # record fields kept as trial attrs
        if record.get(key) is not None:
            attrs[key] = str(record[key])
    if outcome.status == FAILED and outcome.failure_reason:
        attrs[schema.FAILURE_REASON] = outcome.failure_reason
    return attrs


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return value if isinstance(value, (str, list, dict)) else str(value)


def runs_train_job(task_function: Any) -> bool:
    """Whether the sweep's task is our train job (``sweep train`` or ``python -m sweep.train.job``, where its
    module is ``__main__``): judged by the file its code lives in."""
    import inspect

    target = inspect.unwrap(task_function) if callable(task_function) else None
    try:
        source = inspect.getsourcefile(target) if target is not None else None
    except TypeError:
        return False
    train_job = importlib.util.find_spec("sweep.train.job")
    return bool(source and train_job and train_job.origin
                and Path(source).resolve() == Path(train_job.origin).resolve())

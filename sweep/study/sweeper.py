"""The asynchronous ask/tell sweep driver behind ``hydra/sweeper=sweep_optuna``.

Keeps ``n_jobs`` trials in flight and asks a new one as soon as ANY finishes (no batch barrier); failed trials
are told FAIL with their reason and never stop the sweep unless the failure ratio is exceeded; ``n_trials`` is
the study's TOTAL (a re-run tops up); the still-running SLURM jobs of a lost driver are adopted, its other
trials failed and requeued (see ``resume``). A driver stopped by SIGTERM / SIGHUP / SIGINT cancels its jobs and
requeues their trials before it exits; a stop that arrives during a submission waits until the job ids are
stored, and each trial records how to find its job before it is submitted (``_record_intents``), so no job of
the submit window is lost even to kill -9. A failure that is not the trial's fault (full disk, unsafe folder,
refused submission) requeues it uncounted and ends the run naming the reason.
Everything that can be wrong with the space, the objectives (``sweep train``'s metric names; a user's app on its
first result) or the composed configs is checked before the first job is submitted.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import Trial, TrialState

from sweep.config.sweeper import DEFAULT_VALIDATE_FN, SweepConfigError, SweepSettings
from sweep.launch.trial import compose_trial_config, trial_run_dir, with_record_file, write_text_atomic
from sweep.progress_bar import logging_beside, progress
from sweep.safety import secure_dir
from sweep.study import resume
from sweep.study.objectives import (
    Objective,
    ObjectiveError,
    ObjectiveWarning,
    directions,
    objective_values,
    parse_objectives,
    train_job_metrics,
    unknown_metrics,
    width_warning,
)
from sweep.launch.outcome import (
    COMPLETED,
    DISK_FULL,
    FAILED,
    PRUNED,
    TrialOutcome,
    outcome_from_exception,
    outcome_from_return,
)
from sweep.study.progress import progress_line
from sweep.study.pruning import TrialContext
from sweep.study.results import METRIC_PREFIX, export_results
from sweep.study.samplers import SamplerConfigError, derive_seed, make_pruner, make_sampler
from sweep.study.search_space import SearchSpace, format_override_value, parse_search_space, to_overrides
from sweep.study.storage import (
    PASSWORD_ENV,
    make_storage,
    mask_url,
    normalize_storage_url,
    redact_text,
    split_password,
)

log = logging.getLogger("sweep.study")
SWEEP_INFO_FILE = "sweep_study.json"


class SweepAbortedError(RuntimeError):
    """Too many trials failed (``max_failure_ratio``)."""


class DriverStopped(SystemExit):
    """SIGTERM/SIGHUP reached the driver (scancel, a SLURM time limit, a closed terminal): exit 128+signal
    after the running trials are cancelled and requeued."""


class SweepEnvironmentError(RuntimeError):
    """The sweep cannot go on for a reason outside the trials (a full disk, an unsafe folder, refused
    submissions): nothing is lost, the trials it could not run are requeued for the next run."""


class DriverSupersededError(RuntimeError):
    """Another driver holds the study now (this one was judged lost): stop without touching its jobs."""


@dataclass
class _Running:
    trial: Trial
    handle: Any
    params: dict[str, Any]


class AskTellSweeper:
    """Hydra sweeper implementation (the plugin front delegates here)."""

    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings
        self.hydra_context: Any = None
        self.task_function: Optional[Callable[[Any], Any]] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.me = resume.DriverInfo.current()

    def setup(self, *, hydra_context: Any, task_function: Callable[[Any], Any], config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    # ------------------------------------------------------------------ checks before anything runs
    def prepare(self, arguments: Sequence[str]) -> tuple[list[str], SearchSpace, list[Objective]]:
        fixed = fixed_overrides(arguments)
        s = self.settings
        split_password(s.storage or "")  # remembered: every message and file from here on masks it
        try:
            space = parse_search_space(s.search_space)
            objectives = parse_objectives(s.objective_dicts())
            sampler, pruner = s.sampler_dict(), s.pruner_dict()
            make_sampler(sampler["name"], sampler["seed"], sampler["options"], space, len(objectives))
            make_pruner(pruner["name"], pruner["options"])
        except (ValueError, SamplerConfigError) as err:
            raise SweepConfigError(str(err)) from None
        clash = sorted({o.split("=", 1)[0].lstrip("+~") for o in fixed} & set(space.names))
        if clash:
            raise SweepConfigError(f"override(s) {clash} are also in the search space; remove them from the "
                                   f"command line or from hydra.sweeper.search_space")
        if len(objectives) > 1 and s.pruner_dict()["name"] not in (None, "none"):
            raise SweepConfigError("hydra.sweeper.pruner: Optuna cannot prune multi-objective studies; "
                                   "use pruner.name=none with several objectives")
        warn_width_objective(objectives, space)
        if runs_train_job(self.task_function):  # a user's app is checked on its first result (_Loop)
            unknown = unknown_metrics(objectives, train_job_metrics())
            if unknown:
                raise SweepConfigError(f"{unknown} (the metrics a sweep train record holds)")
        if s.validate_configs:
            self.validate_trial_configs(fixed, space)
        return fixed, space, objectives

    def validate_trial_configs(self, fixed: list[str], space: SearchSpace) -> int:
        """Compose (and validate with the hook) one config per categorical combination at both numeric ends."""
        path = self.settings.validate_fn
        if path == DEFAULT_VALIDATE_FN and not runs_train_job(self.task_function):
            path = None  # the default checks `sweep train`'s config; a user's own app has its own schema
        hook = load_validate_fn(path)
        count = 0
        for assignment in space.boundary_assignments():
            overrides = [*fixed, *to_overrides(assignment)]
            try:
                cfg = compose_trial_config(self.hydra_context, self.config, overrides, idx=0)
            except Exception as err:  # noqa: BLE001 - Hydra raises several types; all mean "cannot compose"
                raise SweepConfigError(_compose_error(assignment, overrides, err, space)) from None
            if hook is not None:
                task_cfg = job_config(cfg)
                try:
                    hook(task_cfg)
                except Exception as err:  # noqa: BLE001 - a validator's ValueError/ConfigError
                    raise SweepConfigError(f"trial config for {assignment} rejected by "
                                           f"{self.settings.validate_fn}: {err}") from None
            count += 1
        log.info("[sweep] validated %d composed trial configs before submitting", count)
        return count

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: Sequence[str]) -> optuna.Study:
        """The whole driver run; Ctrl-C anywhere ends it with one line and exit 130 (no traceback)."""
        try:
            study = self._sweep(arguments)
        except KeyboardInterrupt:  # outside the trial loop (it turns Ctrl-C into DriverStopped itself)
            _ignore_further_stops()
            log.warning("[sweep] interrupted (SIGINT) before or after the trials ran; no trial is left RUNNING: "
                        "rerun the same command to resume")
            raise DriverStopped(EXIT_INTERRUPTED) from None
        check_some_completed(study)
        return study

    def _sweep(self, arguments: Sequence[str]) -> optuna.Study:
        assert self.config is not None, "sweeper used before setup()"
        fixed, space, objectives = self.prepare(arguments)
        sweep_dir = _secure_sweep_dir(Path(str(self.config.hydra.sweep.dir)).absolute())  # before anything lands
        study, storage_url = self.open_study(objectives)
        heartbeat = resume.Heartbeat(lambda: make_storage(storage_url), study.study_name, self.me,
                                     self.settings.driver_heartbeat_s).start()
        try:
            sampler_cfg = self.settings.sampler_dict()
            n_existing = len(study.get_trials(deepcopy=False))
            study.sampler = make_sampler(sampler_cfg.get("name", "tpe"),
                                         derive_seed(sampler_cfg.get("seed"), n_existing),
                                         sampler_cfg.get("options"), space, len(objectives))
            study.set_user_attr("sampler", type(study.sampler).__name__)
            n_trials = self.capped_n_trials(space)
            self.launcher = self._instantiate_launcher()
            self._write_sweep_info(sweep_dir, storage_url, study.study_name)
            study.set_user_attr("sweep_dir", str(sweep_dir))  # `sweep progress/results` print the select command
            adopted = self.recover_lost(study)
            self.settings.n_jobs, why = in_flight(self.settings.n_jobs, self.config)
            announce_start(study.study_name, storage_url, sweep_dir, n_trials, self.settings.n_jobs, why)
            loop = _Loop(self, study, storage_url, space, objectives, fixed, n_trials, heartbeat, adopted)
            loop.run()
        finally:
            heartbeat.stop()
            if not heartbeat.superseded.is_set():
                resume.release_study(study, self.me)
            if self.settings.export_results:
                _export_quietly(study, sweep_dir)
        announce_end(study, storage_url, sweep_dir, self.settings.export_results)
        return study

    def open_study(self, objectives: list[Objective]) -> tuple[optuna.Study, str]:
        assert self.config is not None
        base_dir = _original_cwd(self.config)
        storage_url = normalize_storage_url(self.settings.storage, base_dir)
        name = self.settings.study_name or default_study_name(self.config)
        study = optuna.create_study(study_name=name, storage=make_storage(storage_url), load_if_exists=True,
                                    directions=directions(objectives))
        wanted = [d.upper() for d in directions(objectives)]
        have = [d.name for d in study.directions]
        if have != wanted:
            raise SweepConfigError(f"study '{name}' in {mask_url(storage_url)} has directions {have}, the "
                                   f"objectives ask for {wanted}; use another hydra.sweeper.study_name")
        resume.claim_study(study, self.me, self.settings.driver_timeout_s, self.settings.claim_settle_s)
        study.set_user_attr("objectives", [o.label for o in objectives])
        study.set_user_attr("n_trials", self.settings.n_trials)
        password = split_password(storage_url)[1]
        if password:  # workers (pruning reports) connect without it in any file: they inherit it from here
            os.environ[PASSWORD_ENV] = password
        return study, storage_url

    def recover_lost(self, study: optuna.Study) -> list[tuple[Trial, Any, dict[str, Any]]]:
        """Trials RUNNING under a lost driver: re-attach to their jobs where they can be found (SLURM; the
        job goes on or its finished result is told), else fail and requeue them (resumed in the same run dir).
        Never leaves a second writer: a trial is only requeued when no job of it can still run."""
        adopted = []
        for frozen in resume.lost_trials(study, self.me, self.settings.driver_timeout_s):
            attrs = frozen.user_attrs
            intent = attrs.get(SUBMITTING_ATTR)
            if not attrs.get("job_id") and not attrs.get("submitted") and not intent:
                # lost between ask and submit: its params may be partial and no job ever ran
                resume.drop_unsubmitted(study, frozen)
                log.warning("[sweep] trial %d was asked but never submitted by a lost driver: failed, not "
                            "requeued (nothing ran)", frozen.number)
                continue
            handle = _adopt(attrs) if attrs.get("job_id") else _adopt_intent(intent)
            if handle is None:
                run_dir = str(attrs.get("run_dir") or (intent or {}).get("run_dir") or "")
                finished = finished_outcome(run_dir, frozen.datetime_start)
                if finished is not None:  # its job ended and left its result: told, never thrown away
                    log.warning("[sweep] trial %d: its lost job finished (%s): telling that result",
                                frozen.number, finished.record.get("record_path"))
                    handle = FinishedHandle(finished, run_dir)
                else:
                    new = resume.requeue(study, frozen)
                    log.warning("[sweep] trial %d was RUNNING under a lost driver: failed and requeued as trial "
                                "%d", frozen.number, new)
                    continue
            elif not attrs.get("job_id"):
                study._storage.set_trial_user_attr(frozen._trial_id, "job_id", str(handle.job_id))
                for key, value in (getattr(handle, "adoption", None) or {}).items():
                    study._storage.set_trial_user_attr(frozen._trial_id, key, value)
            previous = attrs.get(resume.DRIVER_ATTR)
            study._storage.set_trial_user_attr(frozen._trial_id, resume.DRIVER_ATTR, self.me.id)
            study._storage.set_trial_user_attr(frozen._trial_id, "adopted_from", str(previous))
            log.warning("[sweep] trial %d: adopted job %s of lost driver %s", frozen.number, handle.job_id, previous)
            adopted.append((Trial(study, frozen._trial_id), handle, dict(frozen.params)))
        return adopted

    def capped_n_trials(self, space: SearchSpace) -> int:
        n = self.settings.n_trials
        if self.settings.sampler_dict()["name"] == "grid" and n > space.grid_size():
            log.warning("[sweep] n_trials=%d > grid size %d: running the grid once", n, space.grid_size())
            return space.grid_size()
        return n

    def _instantiate_launcher(self) -> Any:
        from hydra.core.plugins import Plugins

        return Plugins.instance().instantiate_launcher(hydra_context=self.hydra_context,
                                                       task_function=self.task_function, config=self.config)

    def _write_sweep_info(self, sweep_dir: Path, storage_url: str, study_name: str) -> None:
        """``multirun.yaml`` and ``sweep_study.json``, passwords masked (the URL says ``***``: give the password
        through PGPASSWORD, ~/.pgpass or SWEEP_STORAGE_PASSWORD when reading the study later). A full disk
        stops the sweep with one line naming ENOSPC and the file, before any job is submitted."""
        secure_dir(sweep_dir)
        info = {"storage": mask_url(storage_url), "study_name": study_name, **self.me.as_attrs()}
        for name, text in (("multirun.yaml", redact_text(OmegaConf.to_yaml(self.config))),
                           (SWEEP_INFO_FILE, json.dumps(info, indent=1))):
            try:
                write_text_atomic(sweep_dir / name, text)
            except OSError as err:
                raise SweepEnvironmentError(f"cannot write {sweep_dir / name}: {_os_error(err)}; nothing was "
                                            f"submitted: free space (or fix the folder) and rerun") from None


class _Loop:
    """The ask -> submit -> poll -> tell loop of one driver run."""

    def __init__(self, sweeper: AskTellSweeper, study: optuna.Study, storage_url: str, space: SearchSpace,
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
        from sweep.integrations.trackers import StudyTracking  # here: sweep.integrations imports torch

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
                if hasattr(self.launcher, "submit_batch"):
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
        while self.running or (self.budget > 0 and not self.halted):
            self._check_superseded()
            self._fill(initial=False)  # a no-op while every slot is busy
            finished = [num for num, r in self.running.items() if r.handle.done()]
            if not finished:
                time.sleep(self.settings.poll_interval_s)
                continue
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
        envs = [self._trial_env(trial).to_env() for trial, _ in asked]
        try:
            with deferred_stop_signals():  # a stop in here waits until the job ids are stored, then cancels them
                self._submit(asked, jobs, envs, initial)
        except Exception as err:  # noqa: BLE001 - sbatch refused, unsafe folder, full disk: not the trials' fault
            outcome = outcome_from_exception(err, prefix="submit failed")
            for trial, params in asked:
                if trial.number not in self.running:
                    self._not_trial_fault(_Running(trial, None, params), outcome)
            return
        log.info(progress_line(self.study.get_trials(deepcopy=False), self.study.directions, self.labels,
                               self.n_trials))

    def _submit(self, asked: list[tuple[Trial, dict[str, Any]]], jobs: list[tuple[list[str], int]],
                envs: list[dict[str, str]], initial: bool) -> None:
        """Submit (the first fill as one batch), recording each trial's intent before and its job id after."""
        groups = [list(range(len(asked)))] if initial else [[i] for i in range(len(asked))]
        for group in groups:
            items = [asked[i] for i in group]
            handles = self.launcher.submit_batch([jobs[i] for i in group], [envs[i] for i in group],
                                                 on_intent=lambda intents, items=items: _record_intents(items, intents))
            for (trial, params), handle in zip(items, handles):
                trial.set_user_attr("job_id", str(handle.job_id))
                trial.set_user_attr("run_dir", str(handle.run_dir))
                for key, value in (getattr(handle, "adoption", None) or {}).items():
                    trial.set_user_attr(key, value)  # what a later driver needs to re-attach to this job
                self.running[trial.number] = _Running(trial, handle, params)

    def _resume_overrides(self, trial: Trial) -> list[str]:
        """A requeued trial resumes from its lost predecessor's checkpoint. With the default numbering
        (``<sweep dir>/<trial number>``) the predecessor's folder is renamed to the new number, so trial 10
        lives in ``10/``; otherwise (a custom ``hydra.sweep.subdir``, or a writer still in that folder) the
        trial runs in the predecessor's folder, whose writer lock keeps the two apart."""
        source = trial.user_attrs.get("requeued_from")
        sweep_dir = getattr(self.launcher, "sweep_dir", None) or getattr(getattr(self.launcher, "impl", None),
                                                                          "sweep_dir", None)
        if source is None or sweep_dir is None:
            return []
        old_dir = self.study.get_trials(deepcopy=False)[int(source)].user_attrs.get("run_dir")
        if not old_dir or Path(old_dir).parent != Path(sweep_dir):
            return []
        trial.set_user_attr("resumed_run_dir", old_dir)
        if Path(old_dir).name == str(source) and move_run_dir(Path(old_dir), Path(sweep_dir) / str(trial.number)):
            return []  # the default subdir (the trial number) now holds the predecessor's files
        return [f"hydra.sweep.subdir={format_override_value(Path(old_dir).name)}"]

    def _ask(self) -> Optional[tuple[Trial, dict[str, Any]]]:
        """One new trial, or None when its params duplicate a COMPLETE trial (then told with that result)."""
        trial = self.study.ask()
        self.budget -= 1
        trial.set_user_attr(resume.DRIVER_ATTR, self.sweeper.me.id)
        params = self.space.suggest(trial)
        if "method" in params:
            trial.set_user_attr("method", str(params["method"]))
        twin = self.finished.get(resume.params_key(params)) if self.settings.dedupe else None
        if twin is None:
            return trial, params
        log.warning("[sweep] trial %d duplicates finished trial %d: reusing its result", trial.number, twin.number)
        for key, value in twin.user_attrs.items():
            if key != resume.DRIVER_ATTR:
                trial.set_user_attr(key, value)
        trial.set_user_attr("duplicate_of", twin.number)
        self.study.tell(trial, twin.values)
        return None

    def _trial_env(self, trial: Trial) -> TrialContext:
        pruner: Optional[dict[str, Any]] = self.settings.pruner_dict()
        if pruner["name"] in (None, "none"):
            pruner = None  # the job then looks for no reporter
        elif len(self.objectives) == 1:
            # the job reports the objective itself at each monitoring step (RankMe, |alpha - target|, ...)
            objective = self.objectives[0]
            pruner = {**pruner, "objective": {"metric": objective.metric, "target": objective.target}}
        storage = split_password(self.storage_url)[0]  # the password reaches workers through their environment
        return TrialContext(storage, self.study.study_name, trial._trial_id, trial.number, pruner)

    # --------------------------------------------------------------- batches (foreign launchers)
    def _run_batches(self) -> None:
        """Hydra's batch ``launch``: a barrier per batch of n_jobs (the best a foreign launcher allows)."""
        while self.budget > 0:
            self._check_superseded()
            asked = [item for item in (self._ask() for _ in range(min(self.settings.n_jobs, self.budget))) if item]
            if not asked:
                continue
            for trial, params in asked:
                trial.set_user_attr("submitted", True)  # a foreign launcher gives no job id to record
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
            self.finished[resume.params_key(run.params)] = self.study._storage.get_trial(run.trial._trial_id)
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
        reason = str(outcome.failure_reason or outcome.status)
        for key, value in _record_attrs(outcome).items():
            if key != resume.FAILURE_REASON:
                run.trial.set_user_attr(key, value)
        frozen = self.study._storage.get_trial(run.trial._trial_id)
        if frozen.state != TrialState.RUNNING:
            return
        new = resume.requeue(self.study, frozen, why=f"{resume.NOT_TRIAL_FAULT} ({reason[:400]})")
        self.not_run += 1
        self.halted = self.halted or reason
        log.warning("[sweep] trial %d could not run (%s): not counted, requeued as trial %d; no more trials are "
                    "submitted in this run", run.trial.number, reason, new)

    def _check_first_result(self, run: _Running, outcome: TrialOutcome) -> None:
        """A user's app: its first result must hold every objective's metric, else the sweep stops here with
        the metrics it does report, instead of running every trial to fail each with missing_metric."""
        if self.first_result_checked or outcome.status != COMPLETED:
            return
        self.first_result_checked = True
        unknown = unknown_metrics(self.objectives, outcome.metrics)
        if unknown is None:
            return
        frozen = self.study._storage.get_trial(run.trial._trial_id)
        resume.requeue(self.study, frozen, why=f"{resume.NOT_TRIAL_FAULT} (objective metric not reported)")
        raise SweepConfigError(f"{unknown} (the metrics of trial {run.trial.number}'s result); the sweep stopped "
                               f"after this first result instead of running every trial: fix "
                               f"hydra.sweeper.objectives and rerun")

    def _store_outcome(self, trial: Trial, outcome: TrialOutcome) -> TrialState:
        """Record attrs, then tell; returns the state told."""
        for key, value in _record_attrs(outcome).items():
            trial.set_user_attr(key, value)
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
            trial.set_user_attr(resume.FAILURE_REASON, outcome.failure_reason or outcome.status)
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
        reasons = [f"#{t.number}: {t.user_attrs.get(resume.FAILURE_REASON)}" for t in failed[-3:]]
        raise SweepAbortedError(
            f"sweep aborted: {len(failed)} of {len(done)} finished trials failed ({ratio:.0%}) > "
            f"hydra.sweeper.max_failure_ratio={self.settings.max_failure_ratio}; last failures: {'; '.join(reasons)}")

    def _cancel_running(self, reason: str) -> None:
        for run in self.running.values():
            if run.handle is not None:
                run.handle.cancel()
            run.trial.set_user_attr(resume.FAILURE_REASON, reason)
            self.study.tell(run.trial, state=TrialState.FAIL)
        self.running.clear()

    def _requeue_running(self) -> list[tuple[int, int]]:
        """The driver stops with trials in flight (Ctrl-C, error): cancel them all first (their jobs stop
        together), then requeue their params; returns (old, new) trial numbers."""
        for run in self.running.values():
            if run.handle is not None:
                run.handle.cancel()
        moved = []
        for num, run in list(self.running.items()):
            frozen = self.study._storage.get_trial(run.trial._trial_id)
            if frozen.state == TrialState.RUNNING:
                new = resume.requeue(self.study, frozen)
                log.debug("[sweep] driver stopping: trial %d requeued as trial %d", num, new)
                moved.append((num, new))
        self.running.clear()
        return moved


# ----------------------------------------------------------------------------- helpers
SUBMITTING_ATTR = "submitting"  # trial user attr written before sbatch: how to find its job (see _record_intents)
NOT_TRIAL_FAULT_MARKERS = (DISK_FULL, "refused:", "submit failed:", "UnsafeFolderError", "UntrustedPickleError")


def not_trial_fault(reason: Optional[str]) -> bool:
    """A failure the trial did not cause: a full disk (whichever write hit it), a folder or pickle refused as
    unsafe, a refused submission. Such trials are requeued, not counted."""
    text = str(reason or "")
    return any(text.startswith(m) or f": {m}" in text for m in NOT_TRIAL_FAULT_MARKERS)


def _record_intents(items: Sequence[tuple[Trial, Any]], intents: Sequence[Mapping[str, str]]) -> None:
    """Before the launcher starts anything: per trial, how a later driver finds its job (job name, array
    index, folder) and its run dir (where a finished result is read): the submit window loses no job."""
    for (trial, _), intent in zip(items, intents):
        trial.set_user_attr(SUBMITTING_ATTR, dict(intent))
        if intent.get("run_dir"):
            trial.set_user_attr("run_dir", str(intent["run_dir"]))


@contextmanager
def deferred_stop_signals() -> Iterator[None]:
    """SIGTERM / SIGHUP / SIGINT that arrive during a submission are held until it returns and its job ids
    are stored, then delivered: the stop that follows cancels those jobs too (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (*STOP_SIGNALS, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


class FinishedHandle:
    """A lost trial whose job already ended with its result in the run dir: told as if it had just finished."""

    def __init__(self, outcome: TrialOutcome, run_dir: str) -> None:
        self.outcome, self.run_dir, self.job_id = outcome, run_dir, "finished"

    def done(self) -> bool:
        return True

    def result(self) -> TrialOutcome:
        return self.outcome

    def cancel(self) -> None:
        """Nothing runs."""


def finished_outcome(run_dir: str, started: Optional[Any] = None) -> Optional[TrialOutcome]:
    """The completed result a lost trial's job left in ``<run_dir>/result.json`` (JSON, never a pickle), or
    None when there is none, it is not a completed record, or it is older than the trial (``started``, a
    datetime: a file left by an earlier sweep in the same folder is not this trial's result)."""
    path = Path(run_dir) / "result.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    if started is not None and path.stat().st_mtime < started.timestamp() - 2.0:  # 2 s: clocks of two hosts
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    outcome = outcome_from_return(record)
    if outcome.status != COMPLETED:
        return None
    outcome.record.setdefault("run_dir", run_dir)
    outcome.record["record_path"] = str(path)
    return outcome


def _adopt_intent(intent: Optional[Mapping[str, Any]]) -> Any:
    """The job a lost driver submitted but never recorded the id of (SLURM: found by its job name)."""
    if not intent or intent.get("launcher") != "slurm" or not intent.get("job_name"):
        return None
    from sweep.launch.slurm import adopt_intent

    try:
        return adopt_intent(intent)
    except Exception as err:  # noqa: BLE001 - squeue/sacct or the folder unreadable: requeue instead
        log.warning("[sweep] cannot look up job %s (%s): requeueing its trial", intent.get("job_name"), err)
        return None


def _secure_sweep_dir(path: Path) -> Path:
    """``secure_dir`` of the sweep dir; a full disk there is one line naming ENOSPC."""
    try:
        return secure_dir(path)
    except OSError as err:
        if isinstance(err, PermissionError):
            raise
        raise SweepEnvironmentError(f"cannot create {path}: {_os_error(err)}; nothing was submitted") from None


def _os_error(err: OSError) -> str:
    """``disk full (ENOSPC): [Errno 28] ...`` for a full disk, else the error's type and text."""
    import errno

    head = f"{type(err).__name__}: {err}"
    return f"{DISK_FULL}: {head}" if err.errno == errno.ENOSPC else head


GENERIC_JOB_NAMES = ("job", "train", "main", "app", "my_app")


def default_study_name(config: DictConfig) -> str:
    """The experiment and search-space names (``demo``, ``testbed_mnist-grid_lr``): a name a user can guess
    and retype, where Hydra's job name is ``job`` for every ``sweep train -m``. Falls back to the job name
    when it says something, else ``sweep``."""
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    parts = [str(choices[key]).replace("/", "-") for key in ("experiment", "search_space") if choices.get(key)]
    if parts:
        return "-".join(dict.fromkeys(parts))
    job = str(OmegaConf.select(config, "hydra.job.name", default="") or "")
    return job if job and job not in GENERIC_JOB_NAMES else "sweep"


def check_some_completed(study: optuna.Study) -> None:
    """A study without one completed trial has nothing to select from: the driver exits non-zero, naming the
    last failures, instead of 0 (``SweepAbortedError`` -> exit 1 through the plugin's one-line exit)."""
    trials = [t for t in study.get_trials(deepcopy=False) if resume.is_counted(t)]
    if not trials or any(t.state == TrialState.COMPLETE for t in trials):
        return
    ended = [t for t in trials if t.state in (TrialState.FAIL, TrialState.PRUNED)]
    reasons = "; ".join(f"#{t.number}: {t.user_attrs.get(resume.FAILURE_REASON) or t.state.name.lower()}"
                        for t in ended[-3:])
    raise SweepAbortedError(f"no trial completed ({len(ended)} of {len(trials)} ended failed or pruned); last: "
                            f"{reasons or 'none finished'}")


def in_flight(n_jobs: int, config: DictConfig) -> tuple[int, str]:
    """Trials kept in flight, and why when a launcher's ``array_parallelism`` says otherwise: n_jobs left at its
    default (1, not given) takes the array's parallelism, since a user who set ``array_parallelism=16`` means
    16 at once; a given n_jobs below it wins, and the start line says that it limits the array."""
    parallelism = OmegaConf.select(config, "hydra.launcher.array_parallelism", default=None)
    if not isinstance(parallelism, int) or parallelism <= n_jobs:
        return n_jobs, ""
    overrides = OmegaConf.select(config, "hydra.overrides.hydra", default=None) or []
    given = n_jobs != 1 or any(str(o).lstrip("+~").startswith("hydra.sweeper.n_jobs=") for o in overrides)
    if given:
        return n_jobs, (f"; hydra.sweeper.n_jobs={n_jobs} limits hydra.launcher.array_parallelism={parallelism}: "
                        "raise n_jobs for more")
    return parallelism, f" (hydra.launcher.array_parallelism={parallelism}; hydra.sweeper.n_jobs caps it)"


def announce_start(study_name: str, storage_url: str, sweep_dir: Path, n_trials: int, n_jobs: int,
                   why: str = "") -> None:
    """Where the sweep's study and runs are, before the first trial (what every follow-up command needs)."""
    print(f"[sweep] study {study_name!r} in {mask_url(storage_url)}\n"
          f"[sweep] runs in {sweep_dir} | {n_trials} trials, {n_jobs} at a time{why} "
          "(rerun the same command to resume)", flush=True)


def announce_end(study: optuna.Study, storage_url: str, sweep_dir: Path, exported: bool) -> None:
    """The outcome in counts, where the table is, and the next commands."""
    import shlex

    states = [t.state for t in study.get_trials(deepcopy=False) if resume.is_counted(t)]
    counts = ", ".join(f"{sum(s == state for s in states)} {label}" for state, label in
                       ((TrialState.COMPLETE, "completed"), (TrialState.FAIL, "failed"),
                        (TrialState.PRUNED, "pruned")))
    flags = shlex.join(["--storage", mask_url(storage_url), "--study", study.study_name])
    table = f"\n[sweep] trials table: {sweep_dir / 'trials.parquet'} (+ .csv)" if exported else ""
    print(f"[sweep] study {study.study_name!r} finished: {counts}{table}\n"
          f"[sweep] next: sweep progress {flags}\n"
          f"[sweep]       sweep select {flags} --sweep-dir {shlex.quote(str(sweep_dir))}", flush=True)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, what a shell reports for Ctrl-C


def move_run_dir(old: Path, new: Path) -> bool:
    """Rename a requeued trial's folder to its new trial number (its checkpoint goes with it); False, and
    nothing moved, when the new folder exists or another writer still holds the old one's lock."""
    from sweep.launch.trial import RunDirBusyError, RunDirLock

    if new.exists():
        return False
    if not old.is_dir():
        return True  # nothing to resume from: the new trial starts fresh in its own folder
    try:
        lock = RunDirLock(old).acquire(wait_s=0)
    except RunDirBusyError:
        log.warning("[sweep] %s is still being written: the requeued trial runs there", old)
        return False
    try:
        os.rename(old, new)
    except OSError as err:
        log.warning("[sweep] cannot rename %s to %s (%s): the requeued trial runs in %s", old, new, err, old)
        return False
    finally:
        lock.release()
    log.info("[sweep] resuming %s in %s", old.name, new)
    return True


def _ignore_further_stops() -> None:
    """After the first stop signal, later ones (a second Ctrl-C) are ignored while the driver cleans up."""
    if threading.current_thread() is threading.main_thread():
        for sig in (*STOP_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


def _stop_code(err: BaseException) -> int:
    """128 + the signal: 130 for Ctrl-C, 143 for SIGTERM."""
    if isinstance(err, SystemExit) and isinstance(err.code, int):
        return err.code
    return EXIT_INTERRUPTED


def _moved_text(moved: Sequence[tuple[int, int]]) -> str:
    if not moved:
        return ""
    return " (requeued as " + ", ".join(f"{old} -> {new}" for old, new in moved) + ")"


def _on_stop_signal(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    for sig in STOP_SIGNALS:  # a second signal must not interrupt the cancel-and-requeue that follows
        signal.signal(sig, signal.SIG_IGN)
    raise DriverStopped(128 + signum)


def _install_stop_handlers() -> dict[int, Any]:
    """SIGTERM/SIGHUP -> ``DriverStopped`` (as Ctrl-C -> KeyboardInterrupt), main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_stop_signal) for sig in STOP_SIGNALS}


def _restore_handlers(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _stop_name(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT"
    code = err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 0
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"exit {code}"


def _adopt(attrs: Mapping[str, Any]) -> Any:
    """A handle on a lost trial's job when it can still be found, else None (then the trial is requeued)."""
    if attrs.get("launcher") != "slurm" or not attrs.get("job_folder") or not attrs.get("job_id"):
        return None
    from sweep.launch.slurm import adopt_job

    try:
        return adopt_job(str(attrs["job_folder"]), str(attrs["job_id"]), str(attrs.get("run_dir") or ""))
    except Exception as err:  # noqa: BLE001 - an unreadable folder: requeue instead (the run dir lock guards)
        log.warning("[sweep] cannot re-attach to job %s (%s): requeueing its trial", attrs.get("job_id"), err)
        return None


def _export_quietly(study: optuna.Study, sweep_dir: Path) -> None:
    """trials.parquet/csv at the end; a failure here (a full disk) loses nothing - every trial is in the
    storage - so it is logged with the command that redoes it, not raised."""
    try:
        export_results(study._storage, study.study_name, sweep_dir)
    except OSError as err:
        log.error("[sweep] could not write %s/trials.parquet (%s); all trials are in the storage: rerun "
                  "`sweep results --storage URL --study %s --out %s`", sweep_dir, err, study.study_name, sweep_dir)


def fixed_overrides(arguments: Sequence[str]) -> list[str]:
    """Command-line overrides applied to every trial; sweep syntax belongs in the search space."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(arguments))
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps:
        raise SweepConfigError(f"sweep override(s) {sweeps} are not supported by hydra/sweeper=sweep_optuna: "
                               f"declare them in hydra.sweeper.search_space (or +search_space=<name>)")
    return [o.input_line for o in parsed]


def varied_params(space: SearchSpace) -> list[str]:
    """Search-space keys that take more than one value (a one-choice categorical is a constant)."""
    return [p.name for p in space.params if p.type != "categorical" or len(set(p.choices)) > 1]


def warn_width_objective(objectives: Sequence[Objective], space: SearchSpace) -> Optional[str]:
    """Warn (Python warning + log) before anything is submitted when raw RankMe is optimised over a space that
    varies the embedding width; returns the message, or None when there is nothing to say."""
    message = width_warning(objectives, varied_params(space))
    if message is not None:
        log.warning("[sweep] %s", message)
        warnings.warn(message, ObjectiveWarning, stacklevel=2)
    return message


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
    return bool(source and train_job and train_job.origin and Path(source).resolve() == Path(train_job.origin).resolve())


def load_validate_fn(path: Optional[str]) -> Optional[Callable[[DictConfig], Any]]:
    """``module.attr`` (or ``module:attr``) -> callable. The default hook is skipped when its module is absent."""
    if not path:
        return None
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if path == DEFAULT_VALIDATE_FN and err.name and DEFAULT_VALIDATE_FN.startswith(err.name):
            log.warning("[sweep] %s not importable: composed configs are checked by Hydra only", path)
            return None
        raise SweepConfigError(f"hydra.sweeper.validate_fn={path!r}: cannot import {module_name} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SweepConfigError(f"hydra.sweeper.validate_fn={path!r}: {module_name} has no callable '{attr}'")
    return fn


def job_config(cfg: DictConfig) -> DictConfig:
    """The task's view of a composed config: interpolations resolved as in the job, the ``hydra`` node removed."""
    from hydra.core.hydra_config import HydraConfig

    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = trial_run_dir(cfg)
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    finally:
        HydraConfig.instance().cfg = previous
    plain.pop("hydra", None)
    return OmegaConf.create(plain)


def _compose_error(assignment: Mapping[str, Any], overrides: list[str], err: Exception, space: SearchSpace) -> str:
    text = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    choices = {p.name: list(p.choices) for p in space.params if p.type == "categorical"}
    return (f"cannot compose the trial config for {dict(assignment)} (overrides {overrides}): "
            f"{' '.join(text[:12])}. Categorical choices in the space: {choices}; a param that exists only for "
            f"some choices needs when: {{<categorical>: [...]}}")


def _original_cwd(config: DictConfig) -> str:
    try:
        return str(config.hydra.runtime.cwd)
    except Exception:  # noqa: BLE001 - outside a Hydra run
        return "."


def _safe_result(handle: Any) -> TrialOutcome:
    try:
        return handle.result()
    except Exception as err:  # noqa: BLE001 - a launcher bug must not stop the sweep
        return outcome_from_exception(err)


def _outcome_from_job_return(ret: Any) -> TrialOutcome:
    from hydra.core.utils import JobStatus

    from sweep.launch.outcome import outcome_from_return
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
    for key in ("record_path", "run_dir", "method"):
        if record.get(key) is not None:
            attrs[key] = str(record[key])
    if outcome.status == FAILED and outcome.failure_reason:
        attrs[resume.FAILURE_REASON] = outcome.failure_reason
    return attrs


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return value if isinstance(value, (str, list, dict)) else str(value)

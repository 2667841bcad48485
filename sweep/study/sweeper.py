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
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import Trial, TrialState

from sweep.config.sweeper_settings import DEFAULT_VALIDATE_FN, SweepConfigError, SweepSettings
from sweep.launch.outcome import (
    DISK_FULL,
)
from sweep.launch.trial import (
    compose_trial_config,
    trial_run_dir,
    write_text_atomic,
)
from sweep.safety import secure_dir
from sweep.study import attrs as schema
from sweep.study import resume
from sweep.study.adoption import (
    FinishedHandle,
    _adopt,
    _adopt_intent,
    finished_outcome,
)
from sweep.study.loop import _Loop, runs_train_job
from sweep.study.objectives import (
    Objective,
    ObjectiveWarning,
    directions,
    parse_objectives,
    train_job_metrics,
    unknown_metrics,
    width_warning,
)
from sweep.study.results import export_results
from sweep.study.samplers import (
    SamplerConfigError,
    derive_seed,
    make_pruner,
    make_sampler,
)
from sweep.study.search_space import (
    SearchSpace,
    parse_search_space,
    to_overrides,
)
from sweep.study.stopping import (
    EXIT_INTERRUPTED,
    DriverStopped,
    SweepAbortedError,
    SweepEnvironmentError,
    _ignore_further_stops,
)
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
            study.set_user_attr(schema.SAMPLER, type(study.sampler).__name__)
            n_trials = self.capped_n_trials(space)
            self.launcher = self._instantiate_launcher()
            self._write_sweep_info(sweep_dir, storage_url, study.study_name)
            study.set_user_attr(schema.SWEEP_DIR, str(sweep_dir))  # `sweep progress/results` print the select command
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
        study.set_user_attr(schema.OBJECTIVES, [o.label for o in objectives])
        study.set_user_attr(schema.N_TRIALS, self.settings.n_trials)
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
            intent = attrs.get(schema.SUBMITTING)
            if not attrs.get(schema.JOB_ID) and not attrs.get(schema.SUBMITTED) and not intent:
                # lost between ask and submit: its params may be partial and no job ever ran
                resume.drop_unsubmitted(study, frozen)
                log.warning("[sweep] trial %d was asked but never submitted by a lost driver: failed, not "
                            "requeued (nothing ran)", frozen.number)
                continue
            handle = _adopt(attrs) if attrs.get(schema.JOB_ID) else _adopt_intent(intent)
            if handle is None:
                run_dir = str(attrs.get(schema.RUN_DIR) or (intent or {}).get("run_dir") or "")
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
            elif not attrs.get(schema.JOB_ID):
                schema.set_trial_attr(study, frozen, schema.JOB_ID, str(handle.job_id))
                for key, value in (getattr(handle, "adoption", None) or {}).items():
                    schema.set_trial_attr(study, frozen, key, value)
            previous = attrs.get(schema.DRIVER)
            schema.set_trial_attr(study, frozen, schema.DRIVER, self.me.id)
            schema.set_trial_attr(study, frozen, schema.ADOPTED_FROM, str(previous))
            log.warning("[sweep] trial %d: adopted job %s of lost driver %s", frozen.number, handle.job_id, previous)
            adopted.append((schema.live_trial(study, frozen), handle, dict(frozen.params)))
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




# ----------------------------------------------------------------------------- helpers














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
    reasons = "; ".join(f"#{t.number}: {t.user_attrs.get(schema.FAILURE_REASON) or t.state.name.lower()}"
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






















def _export_quietly(study: optuna.Study, sweep_dir: Path) -> None:
    """trials.parquet/csv at the end; a failure here (a full disk) loses nothing - every trial is in the
    storage - so it is logged with the command that redoes it, not raised."""
    try:
        export_results(schema.storage_of(study), study.study_name, sweep_dir)
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











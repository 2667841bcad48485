"""One launcher suite run against every launcher (in-process, local subprocesses, SLURM through submitit's local
backend, and a real SLURM cluster when one answers), as tests/study/test_storage.py does for storages.

Each launcher runs one real sweep of the no-op app (a driver subprocess) whose trials are scripted: some succeed,
one raises, and one is killed with SIGKILL where the launcher isolates trials from the driver. The tests then
check what every launcher must leave in the study: states, records, failure reasons, job ids. A second test
stops the driver (SIGTERM) while a trial runs: every launcher that runs trials outside the driver cancels the job
and requeues the trial.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from sweep.launch import LAUNCHERS
from sweep.study.resume import is_counted

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from _waiting import wait_for
from runner import APPS, app_command, app_env, base_overrides, load, run_app

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class LauncherCase:
    kind: str  # its name in sweep.launch.LAUNCHERS
    overrides: tuple[str, ...]
    isolated: bool  # a trial killed by a signal leaves the driver running (not so in-process)
    records_launcher: bool  # the handle records ``launcher`` in the trial (what a later driver re-attaches by)


CASES = {
    "inprocess": LauncherCase("inprocess", ("hydra/launcher=sweep_inprocess",), False, False),
    "local": LauncherCase("local", ("hydra/launcher=sweep_local",), True, True),
    "slurm_submitit_local": LauncherCase(
        "slurm", ("hydra/launcher=sweep_slurm", "hydra.launcher.cluster=local", "hydra.launcher.results_timeout_s=0"),
        True, True),
    "slurm": LauncherCase("slurm", ("hydra/launcher=sweep_slurm", "hydra.launcher.cpus_per_task=1",
                                    "hydra.launcher.timeout_min=5"), True, True),
}
PARAMS = [pytest.param(name, marks=[pytest.mark.slurm] if name == "slurm" else [], id=name) for name in CASES]


def cluster_overrides(request: pytest.FixtureRequest, name: str) -> tuple[str, ...]:
    """The real SLURM case runs on the default partition of the cluster that answers (else it is skipped)."""
    if name != "slurm":
        return ()
    cluster = request.getfixturevalue("slurm_cluster")  # skips with the reason when no controller answers
    return (f"hydra.launcher.partition={cluster.partition}",)


@dataclass
class Swept:
    case: LauncherCase
    modes: list[str]
    trials: list[FrozenTrial]
    stderr: str

    def of_mode(self, mode: str) -> list[FrozenTrial]:
        return [t for t, m in zip(self.trials, self.modes) if m == mode]


@pytest.fixture(scope="module", params=PARAMS)
def swept(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    """One sweep per launcher, shared by the tests below: trials scripted ok, raise, ok (and exit137)."""
    case = CASES[request.param]
    extra = cluster_overrides(request, request.param)
    tmp = tmp_path_factory.mktemp(f"launcher_{request.param}")
    storage = f"sqlite:///{tmp / 'study.db'}"
    modes = ["ok", "raise", "ok"] + (["exit137"] if case.isolated else [])
    study = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    for i, mode in enumerate(modes):
        study.enqueue_trial({"x": i / 10, "method": "byol", "mode": mode})
    proc = run_app(*base_overrides(tmp, storage), "+search_space=demo", *case.overrides, *extra,
                   f"hydra.sweeper.n_trials={len(modes)}", "hydra.sweeper.n_jobs=2",
                   "hydra.sweeper.max_failure_ratio=1.0",
                   "+hydra.sweeper.search_space.mode={type: categorical, choices: [ok, raise, exit137]}",
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield Swept(case, modes, sorted(load(storage).get_trials(), key=lambda t: t.number), proc.stderr)


def test_the_suite_covers_every_registered_launcher() -> None:
    assert {case.kind for case in CASES.values()} == set(LAUNCHERS.names())


def test_every_trial_finishes_with_a_job_id_and_its_run_dir(swept: Swept) -> None:
    assert len(swept.trials) == len(swept.modes)
    for trial in swept.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.FAIL)
        assert trial.user_attrs["job_id"]
        assert Path(trial.user_attrs["run_dir"]).name == str(trial.number)


def test_a_completed_trial_carries_its_record_and_objective(swept: Swept) -> None:
    for trial in swept.of_mode("ok"):
        assert trial.state == TrialState.COMPLETE
        record = json.loads(Path(trial.user_attrs["record_path"]).read_text())
        assert record["status"] == "completed" and record["metrics"]["rankme"] == pytest.approx(trial.values[0])
        assert trial.values[0] == pytest.approx(10.0 + trial.params["x"])  # rankme = 10 + x + y (y = 0)


def test_a_raised_exception_fails_the_trial_with_its_reason(swept: Swept) -> None:
    (trial,) = swept.of_mode("raise")
    assert trial.state == TrialState.FAIL
    assert "RuntimeError: boom: injected failure" in trial.user_attrs["failure_reason"]


def test_a_killed_trial_fails_with_the_crash_named_and_the_sweep_goes_on(swept: Swept) -> None:
    if not swept.case.isolated:
        pytest.skip("in-process trials share the driver's process: a SIGKILL ends the sweep itself")
    (trial,) = swept.of_mode("exit137")
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure_reason"].startswith("crashed: ")
    assert all(t.state == TrialState.COMPLETE for t in swept.of_mode("ok"))


def test_the_launcher_is_recorded_for_a_later_driver(swept: Swept) -> None:
    launchers = {t.user_attrs.get("launcher") for t in swept.trials}
    assert launchers == ({swept.case.kind} if swept.case.records_launcher else {None})


@pytest.mark.parametrize("name", [p for p in PARAMS if CASES[p.values[0]].isolated])
def test_a_stopped_driver_cancels_its_running_trial_and_requeues_it(name: str, request: pytest.FixtureRequest,
                                                                    tmp_path: Path) -> None:
    """SIGTERM (scancel of the driver, a time limit): the running job is cancelled and its trial requeued (failed,
    not counted), so a rerun runs it again."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    driver = subprocess.Popen(
        app_command(*base_overrides(tmp_path, storage), "+search_space=demo", *CASES[name].overrides,
                    *cluster_overrides(request, name), "sleep=60", "hydra.sweeper.n_trials=2",
                    "hydra.sweeper.n_jobs=1"),
        cwd=APPS, env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _started(storage, tmp_path), 120, "one trial running its task")
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=90)
    finally:
        driver.kill()
    assert driver.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "driver stopping (SIGTERM): cancelling 1 running trial(s)" in output
    stopped, requeued = load(storage).get_trials()
    assert stopped.state == TrialState.FAIL and not is_counted(stopped)
    assert requeued.state == TrialState.WAITING and requeued.user_attrs["requeued_from"] == stopped.number


def _started(storage: str, tmp: Path) -> bool:
    """A trial with a job id whose task has started (its Hydra output dir holds .hydra/)."""
    try:
        trials = load(storage).get_trials()
    except Exception:  # noqa: BLE001 - the study is not created yet
        return False
    return any(t.state == TrialState.RUNNING and t.user_attrs.get("job_id")
               and (tmp / "out" / str(t.number) / ".hydra").is_dir() for t in trials)

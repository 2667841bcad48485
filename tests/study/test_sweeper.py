"""The sweeper end to end: the no-op Hydra app as a real multirun, real SQLite/Journal storage, real subprocesses."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import base_overrides, load, run_app  # noqa: E402

from sweep.study.results import trials_dataframe  # noqa: E402

pytestmark = pytest.mark.slow  # each test starts a driver and worker subprocesses (a few seconds)
SPACE = ["+search_space=demo"]


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_async_with_unequal_durations(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    import optuna

    from sweep.study.storage import make_storage

    study = optuna.create_study(study_name="t", storage=make_storage(storage), direction="maximize")
    study.enqueue_trial({"x": 0.1, "method": "byol", "sleep": 6.0})
    for x in (0.2, 0.3, 0.4):
        study.enqueue_trial({"x": x, "method": "byol", "sleep": 0.0})
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                   "+hydra.sweeper.search_space.sleep={type: float, low: 0.0, high: 5.0}")
    _ok(proc)
    records = {t.number: json.loads(Path(t.user_attrs["record_path"]).read_text()) for t in load(storage).get_trials()}
    slow = records[0]
    # trial 2 is asked only once trial 1 has ended, and yet it runs (start to end) while the slow trial 0 runs:
    # no batch barrier
    assert records[1]["ended"] <= records[2]["started"] + 0.5
    assert records[2]["started"] < records[2]["ended"] < slow["ended"], (slow, records[2])
    assert len({r["pid"] for r in records.values()}) == 4  # one subprocess per trial


def test_crash_nan_and_exception_recorded_and_sweep_goes_on(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    import optuna

    from sweep.study.storage import make_storage

    study = optuna.create_study(study_name="t", storage=make_storage(storage), direction="maximize")
    for mode in ("ok", "raise", "exit137", "nanloss", "ok", "bad_record"):  # a good first result: objectives hold
        study.enqueue_trial({"x": 0.5, "method": "byol", "mode": mode})
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                   "hydra.sweeper.max_failure_ratio=1.0",
                   "+hydra.sweeper.search_space.mode={type: categorical, choices: [ok, raise, exit137, nanloss, bad_record]}")
    _ok(proc)
    trials = load(storage).get_trials()
    reasons = {t.params["mode"]: (t.state, t.user_attrs.get("failure_reason")) for t in trials}
    assert reasons["raise"][0] == TrialState.FAIL and "RuntimeError: boom: injected failure" in reasons["raise"][1]
    assert reasons["exit137"] == (TrialState.FAIL, reasons["exit137"][1])
    assert reasons["exit137"][1].startswith("crashed: worker killed by SIGKILL (exit 137)")
    assert reasons["nanloss"] == (TrialState.FAIL, "nan_loss: loss is nan at epoch 1")
    assert reasons["bad_record"][1].startswith("missing_metric: the record has no value for 'rankme'")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    frame = trials_dataframe(storage, "t")
    assert frame.loc[frame.state == "COMPLETE", "rankme"].tolist() == [10.5, 10.5]
    assert frame.loc[frame.state == "FAIL", "failure_reason"].notna().all()


def test_max_failure_ratio_aborts_with_clear_message(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "mode=raise", "hydra.sweeper.n_trials=10",
                   "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_ratio=0.5",
                   "hydra.sweeper.min_finished_before_abort=3")
    assert proc.returncode != 0
    # two trials in flight can finish in the same poll: the check then sees 4 of 4 (it runs once per poll)
    aborted = re.search(r"sweep aborted: (\d+) of (\d+) finished trials failed \(100%\) > "
                        r"hydra\.sweeper\.max_failure_ratio=0\.5", proc.stderr)
    assert aborted and aborted.group(1) == aborted.group(2) and int(aborted.group(1)) in (3, 4), proc.stderr[-2000:]
    trials = load(storage).get_trials()
    assert len(trials) < 10 and not any(t.state == TrialState.RUNNING for t in trials)


@pytest.mark.parametrize("extra, fragment", [
    (["hydra.sweeper.search_space.x={type: float, low: 1.0, high: 0.0}"], "search_space.x: needs low < high"),
    (["hydra.sweeper.search_space.method.choices=[simclr,mocov2,swav]"],
     "method/swav"),
    (["+search_space=temperature_for_all"], "cannot compose the trial config for {'method': 'byol'"),
    (["+search_space=hot"], "rejected by noop_app.validate: method.temperature=2.0: allowed range (0, 1]"),
    (["x=1", "x=choice(1,2)"], "sweep override(s) ['x=choice(1,2)'] are not supported"),
    (["x=0.3"], "override(s) ['x'] are also in the search space"),
    (["hydra.sweeper.objectives=[{metric: alpha, target: 1.0, direction: maximize}]"], "direction must be minimize"),
    (["hydra.sweeper.sampler.name=bayes"], "sampler.name='bayes': allowed values are"),
])
def test_invalid_space_or_override_rejected_before_any_job(tmp_path: Path, extra: list[str], fragment: str) -> None:
    space = [] if any(e.startswith("+search_space=") for e in extra) else SPACE
    proc = run_app(*base_overrides(tmp_path), *space, *extra)
    assert proc.returncode != 0
    assert fragment in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "study.db").exists()  # no study, no trial
    assert not (tmp_path / "out" / ".submitted").exists()  # no job


def test_grid_sampler_visits_every_point_once(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), "hydra.sweeper.sampler.name=grid", "hydra.sweeper.n_trials=50",
                   "hydra.sweeper.n_jobs=2", "+hydra.sweeper.search_space.y={type: int, low: -1, high: 1}",
                   "+hydra.sweeper.search_space.x={type: float, low: 0.0, high: 1.0, grid: [0.0, 1.0]}")
    _ok(proc)
    trials = load(storage).get_trials()
    assert sorted((t.params["y"], t.params["x"]) for t in trials) == [
        (-1, 0.0), (-1, 1.0), (0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)]
    assert all(t.values == [10 + t.params["x"] + t.params["y"]] for t in trials)


def test_multi_objective_nsga2(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.sampler.name=nsgaii",
                   "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=3",
                   "hydra.sweeper.objectives=[{metric: rankme, direction: maximize},{metric: alpha, target: 1.0}]")
    _ok(proc)
    study = load(storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.user_attrs["sampler"] == "NSGAIISampler"
    for t in study.get_trials():
        x = t.params["x"]
        assert t.values == pytest.approx([10 + x, abs(1 + x / 10 - 1.0)])
    assert "Pareto front: trials [0, 1, 2, 3, 4, 5]" in proc.stdout  # rankme and |alpha-1| both grow with x
    frame = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert {"objective_0", "objective_1", "params_x", "rankme", "alpha"} <= set(frame.columns)


def test_pruned_trials_told_pruned(tmp_path: Path) -> None:
    storage = f"journal://{tmp_path / 'j.log'}"
    import optuna

    from sweep.study.storage import make_storage

    study = optuna.create_study(study_name="t", storage=make_storage(storage), direction="maximize")
    for x in (1.0, 1.0, 1.0, 0.0):  # the last one reports values below the median of the first three
        study.enqueue_trial({"x": x, "method": "byol"})
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "mode=prune", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.n_jobs=1", "hydra.sweeper.pruner.name=median",
                   "+hydra.sweeper.pruner.options.n_startup_trials=3", "+hydra.sweeper.pruner.options.n_warmup_steps=0")
    _ok(proc)
    states = [t.state for t in load(storage).get_trials()]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]


def test_rerun_tops_up_and_never_reruns_complete(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _ok(run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.n_trials=3"))
    first = {t.number: t.datetime_complete for t in load(storage).get_trials()}
    _ok(run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.n_trials=5"))
    trials = load(storage).get_trials()
    assert len(trials) == 5
    assert {t.number: t.datetime_complete for t in trials if t.number in first} == first
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(keys)) == 5  # the reseeded sampler proposed no duplicate of the first run
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra.sweeper.n_trials=5")
    _ok(proc)
    assert len(load(storage).get_trials()) == 5 and "nothing to run" in proc.stdout


def test_inprocess_launcher(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra/launcher=sweep_inprocess",
                   "hydra.sweeper.n_trials=3")
    _ok(proc)
    trials = load(storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    pids = {json.loads(Path(t.user_attrs["record_path"]).read_text())["pid"] for t in trials}
    assert len(pids) == 1  # all in the driver process
    assert all(t.user_attrs["run_dir"] == str(tmp_path / "out" / str(t.number)) for t in trials)


def test_foreign_launcher_falls_back_to_batches(tmp_path: Path) -> None:
    """Hydra's basic launcher has no submit(): the sweeper uses its batch launch() and still tells every trial."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), *SPACE, "hydra/launcher=basic", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.n_jobs=2")
    _ok(proc)
    trials = load(storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.values[0] for t in trials] == [10 + t.params["x"] for t in trials]
    assert all(Path(t.user_attrs["record_path"]).is_file() for t in trials)

"""Issue 21: the per-trial path made cheaper without changing what it produces.

Compose cache (same config as Hydra's own composition), poll backoff, batched user attrs, the plain-SELECT
trial reader behind ``sweep progress`` / ``sweep results``, the worker's lazy imports, the run dir resolved
without HydraConfig, and the overhead benchmark's size table and target verdicts.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweep.launch.compose import ComposeCache
from sweep.study.attrs import set_user_attrs
from sweep.study.polling import PollBackoff
from sweep.study.trial_rows import read_trials

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- compose cache
@pytest.fixture()
def hydra_app(tmp_path: Path):
    """A Hydra app with a config group, composed as a multirun driver composes it: (context, master config)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.utils import JobRuntime
    from hydra.types import HydraContext, RunMode

    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "app.yaml").write_text("defaults:\n  - model: a\n  - _self_\nlr: 0.1\nepochs: 3\nname: run\n"
                                   "opt:\n  momentum: 0.9\n  wd: 0.0\n")
    (conf / "model" / "a.yaml").write_text("width: 32\ndepth: 2\n")
    (conf / "model" / "b.yaml").write_text("width: 64\nheads: 4\n")
    JobRuntime.instance().set("name", "app")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf)))
    master = loader.load_configuration(config_name="app", overrides=[f"hydra.sweep.dir={tmp_path / 'out'}"],
                                       run_mode=RunMode.MULTIRUN)
    return HydraContext(config_loader=loader, callbacks=None), master


def _hydra_composed(context, master, overrides: list[str], idx: int):
    cfg = context.config_loader.load_sweep_config(master, overrides)
    with open_dict(cfg.hydra.job):
        cfg.hydra.job.id, cfg.hydra.job.num = f"trial_{idx}", idx
    return cfg


def _same(a, b) -> None:
    assert OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(b, resolve=False)
    assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
    assert OmegaConf.is_readonly(a.hydra) == OmegaConf.is_readonly(b.hydra)


def test_compose_cache_gives_hydras_config_and_composes_once_per_shape(hydra_app) -> None:
    context, master = hydra_app
    cache = ComposeCache(context, master)
    trials = [["lr=0.2", "model=b", "opt.wd=0.01"], ["lr=0.3", "model=b", "opt.wd=0.02"],
              ["lr=0.4", "model=a", "opt.wd=0.0"], ["lr=5", "model=a", "opt.wd=1e-3"],
              ["lr=0.6", "model=b", "opt.wd=0.5"]]
    for idx, overrides in enumerate(trials):
        got = cache.compose(overrides, idx)
        _same(got, _hydra_composed(context, master, overrides, idx))
        assert got.hydra.job.override_dirname == ",".join(sorted(overrides))
    assert (cache.misses, cache.hits) == (2, 3)  # one composition per model choice


def test_compose_cache_hands_out_copies(hydra_app) -> None:
    context, master = hydra_app
    cache = ComposeCache(context, master)
    first = cache.compose(["lr=0.2"], 0)
    first.lr = 99.0
    second = cache.compose(["lr=0.3"], 1)
    assert (second.lr, second.hydra.job.num, first.hydra.job.num) == (0.3, 1, 0)


@pytest.mark.parametrize("overrides", [
    ["name=other"],  # a string: part of the shape
    ["+extra=1"],  # adds a key
    ["model=b"],  # a config group
    ["lr=0.2", "lr=0.3"],  # a key set twice: order matters
    ["opt={momentum: 0.5, wd: 0.1}", "opt.wd=0.2"],  # a key under another override
])
def test_overrides_that_cannot_be_patched_go_through_hydra(hydra_app, overrides: list[str]) -> None:
    context, master = hydra_app
    cache = ComposeCache(context, master)
    for idx in range(2):
        _same(cache.compose(overrides, idx), _hydra_composed(context, master, overrides, idx))
    assert cache.hits == 1  # the identical second trial is the same shape


def test_a_changed_string_is_a_new_shape(hydra_app) -> None:
    context, master = hydra_app
    cache = ComposeCache(context, master)
    for idx, name in enumerate(("x", "y")):
        got = cache.compose([f"name={name}", "lr=0.5"], idx)
        _same(got, _hydra_composed(context, master, [f"name={name}", "lr=0.5"], idx))
    assert (cache.misses, cache.hits) == (2, 0)


def test_bad_override_still_fails_as_in_hydra(hydra_app) -> None:
    from hydra.errors import ConfigCompositionException

    context, master = hydra_app
    cache = ComposeCache(context, master)
    with pytest.raises(ConfigCompositionException):
        cache.compose(["no_such_key=1"], 0)


# ----------------------------------------------------------------------------- run dir
def test_run_dir_without_hydraconfig_matches_the_hydraconfig_path(hydra_app) -> None:
    from hydra.core.utils import setup_globals

    from sweep.launch.trial import TrialPayload, trial_run_dir

    setup_globals()  # the ${hydra:...} resolver, registered in every Hydra run
    context, master = hydra_app
    plain = _hydra_composed(context, master, ["lr=0.2"], 7)
    with_resolver = _hydra_composed(context, master, ["lr=0.2", "hydra.sweep.subdir=t${hydra:job.num}"], 7)
    assert trial_run_dir(plain) == str(Path(str(master.hydra.sweep.dir)) / "7")
    assert trial_run_dir(with_resolver) == str(Path(str(master.hydra.sweep.dir)) / "t7")
    payload = TrialPayload(context, print, plain)
    assert payload.freeze_run_dir() == payload.run_dir == trial_run_dir(plain)


# ----------------------------------------------------------------------------- polling
def test_poll_backoff_doubles_from_milliseconds_to_the_interval_and_resets() -> None:
    wait = PollBackoff(0.05)
    assert [wait.next() for _ in range(8)] == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]
    wait.reset()
    assert wait.next() == 0.001
    assert [PollBackoff(0.0).next() for _ in range(2)] == [0.0, 0.0]  # poll_interval_s=0: never sleeps


# ----------------------------------------------------------------------------- batched user attrs
@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_set_user_attrs_writes_what_set_user_attr_would(tmp_path: Path, kind: str) -> None:
    from sweep.study.storage import make_storage

    url = {"sqlite": f"sqlite:///{tmp_path / 's.db'}", "journal": f"journal://{tmp_path / 's.log'}",
           "memory": None}[kind]
    storage = make_storage(url) if url else optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.set_user_attr("run_dir", "/a")
    assert set_user_attrs(study, trial, {"job_id": "7", "run_dir": "/a", "extra": {"k": [1, 2]}}) == 2
    assert set_user_attrs(study, trial, {"job_id": "7"}) == 0  # unchanged: no round trip
    assert set_user_attrs(study, trial, {"job_id": "8"}) == 1
    stored = study._storage.get_trial(trial._trial_id).user_attrs
    assert stored == {"run_dir": "/a", "job_id": "8", "extra": {"k": [1, 2]}} == trial.user_attrs
    study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == stored


# ----------------------------------------------------------------------------- plain-SELECT reader
def _populated(url_or_storage) -> optuna.Study:
    from sweep.study.storage import make_storage

    storage = make_storage(url_or_storage) if isinstance(url_or_storage, str) else url_or_storage
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    dists = {"lr": FloatDistribution(1e-5, 1.0, log=True), "n": IntDistribution(1, 9),
             "method": CategoricalDistribution(["simclr", "vicreg", None])}
    for i in range(7):
        trial = study.ask(dists)
        trial.set_user_attr("metric_rankme", float(i) if i != 2 else None)
        trial.set_user_attr("submitting", {"run_dir": f"/r/{i}", "n": [i]})
        if i % 3 == 0:
            study.tell(trial, [float(i), math.inf if i == 3 else -float(i)])
        elif i == 4:
            trial.set_user_attr("failure_reason", "driver lost: requeued as trial 9")
            study.tell(trial, state=TrialState.FAIL)
        elif i == 5:
            study.tell(trial, state=TrialState.PRUNED)
    return study


def _comparable(trial) -> tuple:
    return (trial.number, trial.state, trial.values, trial.params, trial.user_attrs, trial.duration)


def test_rdb_reader_gives_what_optuna_reads(tmp_path: Path) -> None:
    study = _populated(f"sqlite:///{tmp_path / 's.db'}")
    rows = read_trials(study._storage, study._study_id)
    assert [type(r).__name__ for r in rows] == ["TrialRow"] * 7
    assert [_comparable(r) for r in rows] == [_comparable(t) for t in study.get_trials(deepcopy=False)]
    some = read_trials(study._storage, study._study_id, attr_keys=["failure_reason"], params=False)
    assert [r.user_attrs for r in some] == [{}] * 4 + [{"failure_reason": "driver lost: requeued as trial 9"}] + [{}] * 2
    assert all(r.params == {} for r in some)


def test_other_storages_are_read_through_optuna(tmp_path: Path) -> None:
    study = _populated(f"journal://{tmp_path / 's.log'}")
    rows = read_trials(study._storage, study._study_id)
    assert [_comparable(r) for r in rows] == [_comparable(t) for t in study.get_trials(deepcopy=False)]


def test_table_and_progress_line_are_unchanged_by_the_reader(tmp_path: Path) -> None:
    import pandas as pd

    from sweep.study.progress import progress_line
    from sweep.study.results import BASE_COLUMNS, load_study, progress_of, trial_row, trials_dataframe

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _populated(url)
    study.set_user_attr("objectives", ["rankme", "loss"])
    frame = trials_dataframe(url, "s")
    expected = pd.DataFrame([trial_row(t, 2) for t in study.get_trials(deepcopy=False)])
    pd.testing.assert_frame_equal(frame[expected.columns], expected, check_dtype=False)
    assert list(frame.columns[:3]) == BASE_COLUMNS
    line = progress_of(load_study(url, "s"))
    assert line == progress_line(study.get_trials(deepcopy=False), study.directions, ["rankme", "loss"], None)
    assert line.startswith("[sweep] 4/? finished | running 2, done 3, failed 0, pruned 1")  # 4: requeued


def test_progress_and_results_commands_on_a_stored_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _populated(url)
    study.set_user_attr("sweep_dir", str(tmp_path / "runs"))
    for command in ("progress", "results"):
        out = subprocess.run([sys.executable, "-m", "sweep.cli", command, "--storage", url, "--study", "s"],
                             capture_output=True, text=True, cwd=tmp_path, check=False)
        assert out.returncode == 0, out.stderr
        assert f"--sweep-dir {tmp_path / 'runs'}" in out.stdout.splitlines()[-1]
    missing = subprocess.run([sys.executable, "-m", "sweep.cli", "progress", "--storage", url, "--study", "nope"],
                             capture_output=True, text=True, cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr


# ----------------------------------------------------------------------------- worker imports
def test_worker_imports_neither_pandas_optuna_nor_submitit() -> None:
    code = ("import sys, sweep.launch.worker, sweep.launch.trial, sweep.launch.outcome; "
            "print(json.dumps(sorted(m for m in ('pandas', 'optuna', 'submitit') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_export_imports_are_warmed_on_a_daemon_thread() -> None:
    """The driver loads pandas / pyarrow while its first trials run, so the end-of-sweep export does not wait."""
    code = ("import json, sys; from sweep.study import results; "
            "assert not [m for m in results.EXPORT_MODULES if m in sys.modules]; "
            "t = results.warm_export_imports(); t.join(60); "
            "print(json.dumps([t.daemon, t.is_alive(), [m for m in results.EXPORT_MODULES if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, False, list(_results_module().EXPORT_MODULES)]


def test_a_module_that_will_not_import_stops_the_warm_up_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    results = _results_module()
    import threading

    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    monkeypatch.setattr(results, "EXPORT_MODULES", ("sweep_no_such_module_for_the_test", "json"))
    thread = results.warm_export_imports()
    thread.join(10)
    assert not thread.is_alive() and raised == []  # export_results names the missing module, not a thread


def _results_module():
    from sweep.study import results

    return results


def test_lazy_packages_still_export_their_names() -> None:
    from sweep import launch, study

    assert {"inprocess", "local", "slurm"} <= set(launch.LAUNCHERS.names())
    assert launch.kind_of_plugin("sweep_local") == "local"
    assert study.trials_dataframe.__module__ == "sweep.study.results"
    assert study.trial_reporter.__module__ == "sweep.study.pruning"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = study.no_such_name


# ----------------------------------------------------------------------------- overhead benchmark
def _overhead_module():
    path = ROOT / "benchmarks" / "overhead.py"
    spec = importlib.util.spec_from_file_location("sweep_bench_overhead_sizes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_overhead_sizes_table_and_target_verdicts() -> None:
    overhead = _overhead_module()
    assert overhead.parse_args(["--trials", "16,256"]).trials == [16, 256]
    with pytest.raises(SystemExit):
        overhead.parse_args(["--trials", "16,0"])
    make = overhead.OverheadResult
    results = [make("sweeper", "local", 16, 4, 8.0, (1.0,) * 16), make("submitit", "local", 16, 4, 4.0, (0.8,) * 16),
               make("sweeper", "local", 256, 4, 96.0, (1.2,) * 256),
               make("submitit", "local", 256, 4, 85.0, (0.9,) * 256)]
    table = overhead.format_scaling(results).splitlines()
    assert table[2].split() == ["sweeper", "local", "1.000", "0.500", "1.200", "0.375", "1.20x", "0.75x"]
    verdicts = overhead.target_verdicts(results)
    assert "latency 1.000 s vs floor 0.800 s + 0.5 -> MET" in verdicts[0]
    assert "wall/trial 2.00x floor (target <= 1.2x) -> NOT MET" in verdicts[0]
    assert verdicts[1].endswith("1.13x floor (target <= 1.2x) -> MET")
    with_loop = overhead.target_verdicts([*results[:2], make("loop", "local", 16, 4, 3.2, (0.7,) * 16)])
    assert with_loop[0].endswith("-> NOT MET (for reference, not judged: 2.50x the in-process loop, which pays "
                                 "no start-up)")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_overhead_floor_drivers_run_the_same_loop(tmp_path: Path, kind: str) -> None:
    """The floor as a user runs it (a subprocess) and the same loop in-process both finish every trial, on the
    storage URLs the sweeper takes."""
    overhead = _overhead_module()
    storage = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'journal.log'}"
    for run in (overhead.run_submitit_driver, overhead.run_loop_driver):
        workdir = tmp_path / run.__name__
        workdir.mkdir()
        result = run("local", 3, 2, storage, workdir)
        assert result.trials == 3 and len(result.latencies_s) == 3 and result.wall_s > 0

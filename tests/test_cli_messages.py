"""What a newcomer sees: mistyped studies, storages, groups and options get one line naming the mistake and the
valid choices (no traceback), read-only commands write nothing, sweeps name their study and say what is next."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from sweep.cli import main
from sweep.study.storage import StudyNotFoundError, find_study, make_storage
from sweep.study.sweeper import announce_end, announce_start, default_study_name


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("command", ["progress", "results"])
def test_missing_storage_file_is_named_and_not_created(tmp_path: Path, command: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such.db'}"
    assert main([command, "--storage", url, "--study", "demo"]) == 2
    err = capsys.readouterr().err
    assert f"no storage file {tmp_path / 'no' / 'such.db'}" in err and "Traceback" not in err
    assert _files(tmp_path) == set(), "a read-only command created files"


def test_missing_journal_file_is_named_and_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["progress", "--storage", f"journal:///{tmp_path / 'j' / 'study.log'}", "--study", "s"]) == 2
    assert "no storage file" in capsys.readouterr().err
    assert _files(tmp_path) == set()


def test_missing_study_lists_existing_ones_and_writes_nothing(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    for name in ("demo_a", "testbed"):
        optuna.create_study(study_name=name, storage=make_storage(url))
    before = {p: p.stat().st_mtime_ns for p in _files(tmp_path)}
    for command in (["progress"], ["results"], ["select", "--sweep-dir", str(tmp_path / "sw")]):
        assert main([command[0], "--storage", url, "--study", "demo", *command[1:]]) == 2
        err = capsys.readouterr().err
        assert "no study 'demo'" in err and "did you mean 'demo_a'?" in err, err
        assert "Studies there: 'demo_a', 'testbed'" in err
    assert {p: p.stat().st_mtime_ns for p in _files(tmp_path)} == before


def test_find_study_without_close_match_lists_all() -> None:
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="alpha_grid", storage=storage)
    with pytest.raises(StudyNotFoundError, match=r"no study 'zzz'\. Studies there: 'alpha_grid'"):
        find_study(storage, "zzz")


def test_progress_and_results_print_the_next_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="demo", storage=make_storage(url))
    study.set_user_attr("sweep_dir", str(tmp_path / "sweeps" / "demo"))
    assert main(["progress", "--storage", url, "--study", "demo"]) == 0
    out = capsys.readouterr().out
    assert f"next: sweep select --storage {url} --study demo --sweep-dir {tmp_path / 'sweeps' / 'demo'}" in out
    assert main(["results", "--storage", url, "--study", "demo"]) == 0
    assert "study 'demo' has no trials yet" in capsys.readouterr().out


def test_select_without_sweep_dir_needs_a_recorded_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="old", storage=make_storage(url))  # a study from before sweep_dir was recorded
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--storage", url, "--study", "old"])
    assert exit_info.value.code == 2
    assert "does not record its sweep dir: give --sweep-dir DIR" in capsys.readouterr().err


@pytest.mark.parametrize(("choices", "job", "expected"), [
    ({"experiment": "demo", "search_space": "demo"}, "job", "demo"),
    ({"experiment": "testbed_mnist", "search_space": "grid_lr"}, "job", "testbed_mnist-grid_lr"),
    ({"experiment": None, "search_space": "tiny"}, "job", "tiny"),
    ({}, "noop_app", "noop_app"),
    ({}, "job", "sweep"),
])
def test_default_study_name_comes_from_experiment_and_space(choices: dict, job: str, expected: str) -> None:
    config = OmegaConf.create({"hydra": {"runtime": {"choices": choices}, "job": {"name": job}}})
    assert default_study_name(config) == expected


def test_sweep_announces_where_and_what_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="demo", storage=make_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    announce_start("demo", url, tmp_path / "sw", 2, 1)
    announce_end(study, url, tmp_path / "sw", exported=True)
    out = capsys.readouterr().out
    assert f"[sweep] study 'demo' in {url}" in out and f"runs in {tmp_path / 'sw'}" in out
    assert "finished: 2 completed, 0 failed, 0 pruned" in out
    assert f"trials table: {tmp_path / 'sw' / 'trials.parquet'}" in out
    assert f"next: sweep progress --storage {url} --study demo" in out
    assert f"sweep select --storage {url} --study demo --sweep-dir {tmp_path / 'sw'}" in out


def _sweep_train(*overrides: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "sweep.cli", "train", *overrides], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize(("override", "says"), [
    ("mehtod=simclr", "no config group or key 'mehtod' (did you mean 'method'?)"),
    ("method=simclrr", "no option 'simclrr' in group 'method' (did you mean method=simclr?)"),
    ("epoch=3", "no config group or key 'epoch' (did you mean 'epochs'?)"),
    ("+search_space=dem", "(did you mean +search_space=demo?)"),
    ("hydra/sweeper=rankme_norm", "(did you mean hydra/sweeper=rankme_normalized?)"),
])
def test_mistyped_group_key_or_option_gets_did_you_mean(override: str, says: str) -> None:
    proc = _sweep_train(override)
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "_schema" not in proc.stderr


def test_module_entry_gets_did_you_mean_too() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "sweep.train.job", "data=digitz"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2 and "(did you mean data=digits?)" in proc.stderr, proc.stderr


def test_valid_overrides_pass_the_check() -> None:
    from sweep.config.suggest import override_problems

    assert override_problems(["-m", "experiment=demo", "hydra/sweeper=rankme_normalized", "+search_space=demo",
                              "method.temperature=0.2", "hydra.sweeper.n_trials=2", "optim=lars",
                              "data=mnist5k", "+extra.key=1"]) == []
    assert override_problems(["--cfg", "job", "mehtod=x"]) == []  # Hydra flags: Hydra's own messages apply


def test_default_validator_applies_only_to_the_train_job() -> None:
    """A user's own Hydra app is not checked against `sweep train`'s schema (its configs would all fail)."""
    from sweep.study.loop import runs_train_job
    from sweep.train import job

    assert runs_train_job(job.main) and runs_train_job(job.train)
    assert not runs_train_job(lambda cfg: {"rankme": 1.0})
    assert not runs_train_job(None)


def test_readout_of_a_missing_run_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["readout", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"no {tmp_path / 'nope' / 'result.json'}" in err and "Traceback" not in err
    assert _files(tmp_path) == set()

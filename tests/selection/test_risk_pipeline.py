"""Risk decomposition end to end: supervised reference encoder, risk jobs on a trial's saved features, the
``sweep risk`` command on a real tiny sweep, and the report's risk section."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from sweep.config import compose_train_config
from sweep.config.schema import RiskConfig, SelectionConfig
from sweep.readout import risk_decomposition
from sweep.train.reference import (
    ReferenceBuildError,
    load_reference,
    reference_dir,
    resolve_recipe,
    train_supervised_reference,
)
from sweep.selection.report import build_report, plot_risk
from sweep.selection.risk_jobs import (
    COMPONENTS,
    RISK_COLUMNS,
    TABLE_COLUMNS,
    load_risks,
    risk_job,
    risk_path,
)

SPLITS = ("train", "val", "test")
TINY = [
    "experiment=tiny",
    "method=simclr",
    "epochs=1",
    "data.max_train_samples=300",
    "data.max_test_samples=120",
    "data.monitor_size=48",
    "metrics.collapse_rankme=0",
]
Reference = tuple[Path, dict[str, Any]]  # (folder, record)
REFERENCE_EPOCHS = 20  # tiny small_cnn (width 8) on 202 + 50 digits: 1.0 train accuracy measured


@pytest.fixture(scope="module")
def trial_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real tiny trial (seconds): its record, with features of train / val / test on disk."""
    import sweep.train.job as job

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("trial") / "run"
    record = job.train(compose_train_config(TINY, run_dir=run_dir))
    assert record["status"] == "completed", record["failure_reason"]
    return record


@pytest.fixture(scope="module")
def reference(trial_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Reference:
    out = tmp_path_factory.mktemp("reference") / "ref"
    cfg = OmegaConf.load(Path(trial_run["run_dir"]) / "config.yaml")
    return out, train_supervised_reference(cfg, out, epochs=REFERENCE_EPOCHS)


def trial_config(trial_run: dict[str, Any]) -> Any:
    return OmegaConf.load(Path(trial_run["run_dir"]) / "config.yaml")


# ----------------------------------------------------------------------------- reference encoder
def test_reference_fits_digits_and_saves_the_trial_rows(trial_run: dict[str, Any],
                                                        reference: Reference) -> None:
    out, record = reference
    assert record["status"] == "completed"
    assert record["train_accuracy"] >= 0.95  # supervised on S: the approximation error must be small
    assert record["n_seen"] == 202 + 50 and record["n_classes"] == 10
    assert len(record["loss_by_epoch"]) == REFERENCE_EPOCHS
    assert record["loss_by_epoch"][-1] < 0.5 * record["loss_by_epoch"][0]
    for split in SPLITS:
        ours = np.load(record["features"][split]["labels"])
        theirs = np.load(trial_run["features"][split]["labels"])
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), split
        feats = np.load(record["features"][split]["backbone"])
        assert feats.shape == (theirs.shape[0], 32) and feats.dtype == np.float32  # small_cnn width 8: 4 * 8
    assert load_reference(out) == record


def test_reference_is_reused_and_deterministic(trial_run: dict[str, Any], reference: Reference,
                                               tmp_path: Path) -> None:
    out, record = reference
    stamp = (out / "train_backbone.npy").stat().st_mtime_ns
    again = train_supervised_reference(trial_config(trial_run), out, epochs=REFERENCE_EPOCHS)
    assert again == record and (out / "train_backbone.npy").stat().st_mtime_ns == stamp  # not retrained
    fresh = train_supervised_reference(trial_config(trial_run), tmp_path / "fresh", epochs=REFERENCE_EPOCHS)
    assert fresh["loss_by_epoch"] == record["loss_by_epoch"]
    for split in SPLITS:
        assert np.array_equal(np.load(fresh["features"][split]["backbone"]),
                              np.load(record["features"][split]["backbone"]))


def test_reference_rejects_rows_that_differ_from_the_trial(trial_run: dict[str, Any], tmp_path: Path) -> None:
    cfg = trial_config(trial_run)
    cfg.data.split_seed = 1  # other rows, while run_dir still names the trial's features
    with pytest.raises(ReferenceBuildError, match="train rows differ"):
        train_supervised_reference(cfg, tmp_path / "ref", epochs=1)
    assert load_reference(tmp_path / "ref") is None


def test_reference_folder_is_shared_only_by_matching_configs(trial_run: dict[str, Any]) -> None:
    cfg = trial_config(trial_run)
    root = Path("/refs")
    base = reference_dir(root, cfg)
    same = trial_config(trial_run)
    same.optim.lr, same.method.temperature, same.seed = 0.5, 0.9, 7  # SSL settings: not the reference's
    assert reference_dir(root, same) == base
    for path, value in (("backbone.width", 16), ("data.max_train_samples", 200), ("epochs", 3)):
        other = trial_config(trial_run)
        OmegaConf.update(other, path, value)
        assert reference_dir(root, other) != base, path
    assert reference_dir(root, cfg, epochs=5) != base
    assert reference_dir(root, cfg, risk_cfg=RiskConfig(reference_lr=1e-2)) != base


def test_recipe_defaults_to_the_trial_and_names_bad_fields(trial_run: dict[str, Any]) -> None:
    cfg = trial_config(trial_run)
    recipe = resolve_recipe(cfg)
    assert (recipe.epochs, recipe.batch_size, recipe.lr) == (1, 64, RiskConfig().reference_lr)
    assert resolve_recipe(cfg, risk_cfg=RiskConfig(reference_epochs=4, reference_batch_size=32)).epochs == 4
    assert resolve_recipe(cfg, epochs=9, risk_cfg=RiskConfig(reference_epochs=4)).epochs == 9
    with pytest.raises(ReferenceBuildError, match="reference epochs=0"):
        resolve_recipe(cfg, epochs=0)
    with pytest.raises(ReferenceBuildError, match="risk.reference_lr"):
        resolve_recipe(cfg, risk_cfg=RiskConfig(reference_lr=0.0))
    bad = OmegaConf.create({**OmegaConf.to_container(cfg), "backbone": {"nope": 1}})
    with pytest.raises(ReferenceBuildError, match="backbone: not a valid BackboneConfig"):
        reference_dir("/refs", bad)


# ----------------------------------------------------------------------------- risk job
def test_risk_job_components_sum_to_total_and_equal_an_independent_call(
        trial_run: dict[str, Any], reference: Reference, tmp_path: Path) -> None:
    ref_dir, ref = reference
    record_path = Path(trial_run["run_dir"]) / "result.json"
    out = risk_job(0, str(record_path), str(ref_dir), str(tmp_path / "trial_0.json"))
    assert out["status"] == "completed", out["error"]
    assert sum(out[c] for c in COMPONENTS) == pytest.approx(out["total"], abs=1e-9)
    ssl = {s: (np.load(trial_run["features"][s]["backbone"]), np.load(trial_run["features"][s]["labels"]))
           for s in SPLITS}
    sup = {s: np.load(ref["features"][s]["backbone"]) for s in ("train", "val")}
    readout = trial_run["config"]["readout"]
    expected = risk_decomposition(*ssl["train"], *ssl["val"], *ssl["test"], sup["train"], sup["val"],
                                  l2=readout["risk_l2"], loss=readout["risk_loss"],
                                  max_iter=readout["max_iter"], tol=readout["tol"], device="cpu")
    for name, value in {**expected.components(), "total": expected.total, **expected.risks}.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name
    assert out["approximation"] <= 0.05  # the reference fits S
    assert out["l2"] == readout["risk_l2"] and out["reference_train_accuracy"] == ref["train_accuracy"]
    assert json.loads((tmp_path / "trial_0.json").read_text()) == out


def test_risk_job_reuses_a_record_only_for_the_same_reference_and_l2(
        trial_run: dict[str, Any], reference: Reference, tmp_path: Path) -> None:
    ref_dir = str(reference[0])
    args = (0, str(Path(trial_run["run_dir"]) / "result.json"), ref_dir, str(tmp_path / "r.json"))
    first = risk_job(*args)
    assert risk_job(*args) == first  # same elapsed_s: read back, not recomputed
    other = risk_job(*args, l2=1e-2)
    assert other["status"] == "completed" and other["l2"] == 1e-2 and first["l2"] == 1e-4


def test_risk_job_records_failures_instead_of_raising(trial_run: dict[str, Any], reference: Reference,
                                                      tmp_path: Path) -> None:
    record_path = str(Path(trial_run["run_dir"]) / "result.json")
    missing = risk_job(0, record_path, str(tmp_path / "no_ref"), str(tmp_path / "a.json"))
    assert missing["status"] == "failed" and "not usable (missing)" in missing["error"]
    assert math.isnan(missing["total"])
    # a reference of other rows: the label check must refuse to pair them
    ref_dir, ref = reference
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    files = {}
    for split in SPLITS:
        labels = np.load(ref["features"][split]["labels"])
        np.save(wrong / f"{split}_labels.npy", labels[::-1].copy())
        np.save(wrong / f"{split}_backbone.npy", np.load(ref["features"][split]["backbone"]))
        files[split] = {kind: str(wrong / f"{split}_{kind}.npy") for kind in ("backbone", "labels")}
    (wrong / "reference.json").write_text(json.dumps({**ref, "features": files}))
    mismatch = risk_job(0, record_path, str(wrong), str(tmp_path / "b.json"))
    assert mismatch["status"] == "failed" and "rows differ" in mismatch["error"]
    gone = risk_job(0, str(tmp_path / "nope.json"), str(ref_dir), str(tmp_path / "c.json"))
    assert gone["status"] == "failed" and "FileNotFoundError" in gone["error"]


def test_load_risks_is_empty_without_records_and_sorted_with_them(tmp_path: Path) -> None:
    empty = load_risks(tmp_path)
    assert list(empty.columns) == RISK_COLUMNS and empty.empty
    for trial in (3, 1):
        risk_path(tmp_path, trial).parent.mkdir(parents=True, exist_ok=True)
        risk_path(tmp_path, trial).write_text(json.dumps({"trial": trial, "status": "failed", "error": "x"}))
    assert list(load_risks(tmp_path)["trial"]) == [1, 3]


# ----------------------------------------------------------------------------- report
def _report_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    trials = pd.DataFrame({"trial": [0, 1, 2], "state": ["COMPLETE"] * 3,
                           "method": ["simclr", "byol", "byol"], "rankme": [5.0, 7.0, 6.0],
                           "alpha": [0.9, 1.1, 1.4]})
    readouts = pd.DataFrame({"trial": [0, 1, 2], "status": ["completed"] * 3, "val_accuracy": [0.8, 0.9, 0.7],
                             "test_accuracy": [0.79, 0.88, 0.71]})
    risk = pd.DataFrame({"trial": [1, 0], "status": ["completed", "failed"], "method": ["byol", "simclr"],
                         "approximation": [0.02, math.nan], "usability": [0.05, math.nan],
                         "probe_generalization": [0.08, math.nan],
                         "encoder_generalization": [-0.03, math.nan],
                         "total": [0.12, math.nan], "reference_train_accuracy": [0.98, math.nan],
                         "error": [None, "RiskJobError: reference missing"]})
    return trials, readouts, risk


def test_report_has_a_risk_section_only_when_risk_records_exist(tmp_path: Path) -> None:
    trials, readouts, risk = _report_frames()
    cfg = SelectionConfig(n_orders=5)
    with_risk = build_report(trials, readouts, tmp_path / "with", cfg, risk=risk).read_text()
    assert "<h2>Risk decomposition (Dubois et al.)</h2>" in with_risk
    assert 'data-file="risk_decomposition.png"' in with_risk and "reference missing" in with_risk
    stored = pd.read_csv(tmp_path / "with" / "tables" / "risk.csv")
    assert list(stored["trial"]) == [1, 0] and stored.loc[0, "total"] == pytest.approx(0.12)
    assert (tmp_path / "with" / "figures" / "risk_decomposition.png").is_file()
    without = build_report(trials, readouts, tmp_path / "without", cfg).read_text()
    assert "Risk decomposition" not in without
    assert not (tmp_path / "without" / "tables" / "risk.csv").exists()
    assert not (tmp_path / "without" / "figures" / "risk_decomposition.png").exists()


def test_report_restates_the_risk_columns_exactly() -> None:
    from sweep.selection import report

    assert report.RISK_COMPONENTS == COMPONENTS and report.RISK_COLUMNS == TABLE_COLUMNS


def test_risk_plot_stacks_negative_components_below_zero(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    risk = pd.DataFrame({"trial": [4], "approximation": [0.1], "usability": [-0.02],
                         "probe_generalization": [0.2], "encoder_generalization": [-0.05], "total": [0.23]})
    bars: list[tuple[float, float]] = []
    real_save = plt.Figure.savefig

    def keep(fig: Any, *args: Any, **kwargs: Any) -> None:
        bars.extend((round(p.get_y(), 10), round(p.get_height(), 10)) for p in fig.axes[0].patches)
        real_save(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    plot_risk(risk, tmp_path / "r.png")
    # approximation 0 -> 0.1; usability 0 -> -0.02; probe 0.1 -> 0.3; encoder -0.02 -> -0.07
    assert bars == [(0.0, 0.1), (0.0, -0.02), (0.1, 0.2), (-0.02, -0.05)]
    assert (tmp_path / "r.png").is_file()


# ----------------------------------------------------------------------------- the command, on a real sweep
def test_sweep_risk_rejects_bad_epochs_and_says_when_nothing_is_done(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    from sweep.cli import main

    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=storage, study_name="e")
    study = ["risk", "--storage", storage, "--study", "e", "--sweep-dir", str(tmp_path / "sweep")]
    with pytest.raises(SystemExit, match="--reference-epochs=0 is not allowed"):
        main([*study, "--reference-epochs", "0"])
    assert main([*study, "--trials", "2", "5", "--launcher", "inprocess"]) == 1
    assert "has no completed trials among --trials 2 5" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_risk_command_on_a_tiny_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.cli import main
    from sweep.selection.pipeline import select_and_report

    storage, sweep_dir = f"sqlite:///{tmp_path / 't.db'}", tmp_path / "sweep"
    # `sweep train -m ...` runs sweep.train.job; called as a module here (`python -m sweep.cli` would put
    # sweep/ on the workers' PYTHONPATH through the local launcher, where sweep/ssl shadows the stdlib ssl)
    command = [sys.executable, "-m", "sweep.train.job", "-m", "experiment=tiny", "hydra/sweeper=sweep_optuna",
               "+search_space=tiny", "hydra/launcher=sweep_local", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=t",
               f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = ["--storage", storage, "--study", "t", "--sweep-dir", str(sweep_dir), "--reference-epochs", "15"]
    # trial 0 through local subprocesses, then both in-process: trial 0 and the reference are reused
    assert main(["risk", *study, "--trials", "0", "--launcher", "local"]) == 0
    refs = list((sweep_dir / "risk" / "reference").iterdir())
    assert len(refs) == 1  # both trials share data + backbone: one reference for the sweep
    stamp = (refs[0] / "reference.json").stat().st_mtime_ns
    first = json.loads(risk_path(sweep_dir, 0).read_text())
    capsys.readouterr()
    assert main(["risk", *study, "--launcher", "inprocess"]) == 0
    printed = capsys.readouterr().out
    assert " ".join(TABLE_COLUMNS) in " ".join(printed.split())
    assert "(1 already done, reused)" in printed and "training" not in printed  # trial 0 and the reference
    assert (refs[0] / "reference.json").stat().st_mtime_ns == stamp
    assert json.loads(risk_path(sweep_dir, 0).read_text()) == first
    table = pd.read_parquet(sweep_dir / "risk" / "risk.parquet")
    assert list(table.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS and list(table["trial"]) == [0, 1]
    assert (table["status"] == "completed").all()
    assert np.allclose(table[list(COMPONENTS)].sum(axis=1), table["total"], atol=1e-9)
    csv = pd.read_csv(sweep_dir / "risk" / "risk.csv")
    assert csv["total"].tolist() == pytest.approx(table["total"].tolist())
    report = select_and_report(storage, "t", sweep_dir, "inprocess").read_text()
    assert "Risk decomposition (Dubois et al.)" in report
    # a third run has nothing left to do: no job is submitted at all (not even one that reuses a record)
    from sweep.selection.risk_jobs import run_risk
    from sweep.study.results import trials_dataframe

    class NoJobs:
        def submit(self, *args: Any) -> None:
            raise AssertionError("a rerun submitted a job")

        map_array = submit

    again = run_risk(trials_dataframe(storage, "t"), sweep_dir, NoJobs(), reference_epochs=15)
    assert list(again["trial"]) == [0, 1] and (again["status"] == "completed").all()
    assert "[risk] decomposing 0 trial(s) into" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_risk_on_a_bring_your_own_study_says_why_in_one_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A task of its own (features named in its records, no `sweep train` data/backbone config): no reference
    can be paired with its rows, and the command says so once for all its trials, exit 1, no traceback."""
    from sweep.cli import main

    apps = Path(__file__).parents[1] / "apps"
    storage, sweep_dir = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(apps / "plain_dict_app.py"), "-m", f"hydra.sweeper.storage={storage}",
                           "hydra.sweeper.study_name=d", f"hydra.sweep.dir={sweep_dir}"], cwd=apps, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["risk", "--storage", storage, "--study", "d", "--sweep-dir", str(sweep_dir),
                 "--launcher", "inprocess"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["sweep risk: trial(s) 0, 1, 2 not decomposed: its config has no data / backbone node (not a "
                   "`sweep train` trial): the approximation term needs a supervised reference of the trial's own "
                   "architecture on its own rows, which sweep can train only from `sweep train`'s data and "
                   "backbone configs"]
    assert not (sweep_dir / "risk" / "reference").exists()  # nothing was trained for it


def test_risk_jobs_show_a_bar_of_the_records_they_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The bar counts records rewritten since the start (an old record of a retried trial does not count)."""
    from sweep.selection.risk_jobs import _wait_counting

    monkeypatch.setenv("SWEEP_PROGRESS", "1")
    old, new = tmp_path / "trial_0.json", tmp_path / "trial_1.json"
    old.write_text("{}")
    os.utime(old, (1.0, 1.0))  # written by an earlier run

    class Job:
        polls = 0

        def done(self) -> bool:
            Job.polls += 1
            if Job.polls == 2:
                new.write_text("{}")
            return Job.polls > 2

    _wait_counting([Job()], [old, new], "risk", poll_s=0.01)
    err = capsys.readouterr().err
    assert "risk: 100%" not in err and "1/2" in err.replace(" ", "")

"""benchmarks/testbed.py: the config draws, seed repeats, readouts and resume log; one real trial at tiny size.

The testbed itself (hours of training) is never run here: its table is stored in benchmarks/data/."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location("bench_testbed", Path(__file__).parents[2] / "benchmarks" / "testbed.py")
testbed = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_testbed"] = testbed  # dataclasses look their module up while the class is created
_SPEC.loader.exec_module(testbed)  # type: ignore[union-attr]

TINY = ["experiment=testbed_mnist", "data=digits", "augment=digits", "epochs=2", "checkpoint_every=2",
        "data.monitor_size=100", "backbone.width=4", "metrics.alpha_window=[2,10]", "readout.max_iter=20"]


def test_specs_cover_every_method_with_seed_repeats_of_the_same_configs() -> None:
    specs = testbed.trial_specs(["simclr", "barlow_twins", "vicreg"], n_configs=5, seed_configs=2,
                                extra_seeds=2, seed=0)
    assert len(specs) == 3 * 5 + 3 * 2 * 2
    assert [s.trial for s in specs] == list(range(len(specs)))
    primary = [s for s in specs if s.repeat == 0]
    assert {s.seed for s in primary} == {0} and len({s.config_id for s in primary}) == 15
    for rep in (s for s in specs if s.repeat > 0):
        original = next(p for p in primary if p.config_id == rep.config_id)
        assert rep.params == original.params and rep.method == original.method and rep.seed == rep.repeat
    again = testbed.trial_specs(["simclr", "barlow_twins", "vicreg"], 5, 2, 2, seed=0)
    assert again == specs


def test_draws_stay_in_the_documented_ranges() -> None:
    rng = np.random.default_rng(0)
    for method, keys in (("simclr", {"temperature"}), ("barlow_twins", {"lambd"}),
                         ("vicreg", {"var_weight", "cov_weight"})):
        draws = [testbed.draw_params(method, rng) for _ in range(300)]
        assert all(set(d) == {"lr", "weight_decay", "out_dim"} | keys for d in draws)
        lr = np.array([d["lr"] for d in draws])
        assert 1e-4 <= lr.min() and lr.max() <= 1e-2 and lr.max() / lr.min() > 30
        assert {int(d["out_dim"]) for d in draws} == set(testbed.OUT_DIMS)
    vic = [testbed.draw_params("vicreg", rng) for _ in range(500)]
    zero_var = np.mean([d["var_weight"] == 0.0 for d in vic])
    assert 0.1 < zero_var < 0.3  # the variance term is switched off in about 1 of 5 configs


def test_overrides_name_the_config_fields() -> None:
    spec = testbed.TrialSpec(3, "vicreg", 2002, 1, 1, {"lr": 0.001, "out_dim": 64.0, "var_weight": 0.0})
    assert spec.overrides() == ["method=vicreg", "seed=1", "optim.lr=0.001", "method.projector.out_dim=64",
                                "method.var_weight=0.0"]


def test_fewshot_rows_take_k_per_class() -> None:
    labels = np.repeat(np.arange(4), [30, 30, 5, 30])
    rows = testbed.fewshot_rows(labels, 10, seed=0)
    assert np.bincount(labels[rows]).tolist() == [10, 10, 5, 10]
    assert np.array_equal(rows, np.sort(rows))


def test_resume_log_ignores_a_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "trials.jsonl"
    log.write_text(json.dumps({"trial": 0, "x": 1}) + "\n" + json.dumps({"trial": 1}) + "\n" + '{"trial": 2, "x')
    assert sorted(testbed._load_done(log)) == [0, 1]


@pytest.mark.slow
def test_one_real_trial_and_the_random_init_reference(tmp_path: Path) -> None:
    spec = testbed.TrialSpec(0, "simclr", 0, 0, 0, {"lr": 2e-3, "weight_decay": 1e-5, "out_dim": 16.0,
                                                   "temperature": 0.5})
    row = testbed.run_trial(spec, TINY, tmp_path)
    assert row["state"] == "COMPLETE" and row["epochs_completed"] == 2
    assert [p["epoch"] for p in row["curve"]] == [1, 2]
    for key in ("val_accuracy", "test_accuracy", "fewshot_test_accuracy", "knn_accuracy"):
        assert 0.0 <= row[key] <= 1.0
    assert math.isclose(row["rankme_normalized"], row["rankme"] / 16.0)  # the train job's min(N=100, D=16)
    assert all(math.isclose(p["rankme_normalized"], p["rankme"] / 16.0) for p in row["curve"])
    reference = testbed.random_init_reference(TINY, tmp_path, seed=0)
    assert set(reference) == {"val_accuracy", "test_accuracy", "fewshot_val_accuracy", "fewshot_test_accuracy",
                              "knn_accuracy"}
    table, curves = testbed.to_tables([row])
    assert table.loc[0, "temperature"] == 0.5 and math.isnan(table.loc[0, "lambd"])
    assert list(curves["epoch"]) == [1, 2] and (curves["trial"] == 0).all()


def test_draws_match_the_testbed_search_space_file() -> None:
    """The script's draws and conf/search_space/testbed_mnist.yaml describe the same space (one source for the
    ranges a sweep with our sweeper would use)."""
    from omegaconf import OmegaConf

    from sweep.config.paths import conf_dir
    from sweep.study.search_space import parse_search_space

    raw = OmegaConf.to_container(OmegaConf.load(conf_dir() / "search_space" / "testbed_mnist.yaml"))
    space = {p.name: p for p in parse_search_space(raw).params}
    names = {"lr": "optim.lr", "weight_decay": "optim.weight_decay", "out_dim": "method.projector.out_dim",
             "temperature": "method.temperature", "lambd": "method.lambd", "var_weight": "method.var_weight",
             "cov_weight": "method.cov_weight"}
    assert list(space["method"].choices) == list(testbed.METHODS)
    assert [int(c) for c in space["method.projector.out_dim"].choices] == list(testbed.OUT_DIMS)
    rng = np.random.default_rng(1)
    for method in testbed.METHODS:
        for _ in range(200):
            for key, value in testbed.draw_params(method, rng).items():
                param = space[names[key]]
                if param.type != "categorical":
                    assert param.low <= value <= param.high, (key, value)


def test_work_dir_another_user_could_write_is_refused(tmp_path: Path) -> None:
    """The resume log is read back into the stored table, so a shared folder must not feed it."""
    from sweep.safety import UnsafeFolderError

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    args = testbed.argparse.Namespace(preset="mnist5k", quick=True, override=[], work_dir=shared, methods=["simclr"],
                                      configs=1, seed_configs=0, extra_seeds=0, seed=0, workers=1)
    with pytest.raises(UnsafeFolderError):
        testbed.run(args)


# ----------------------------------------------------------------------------- the converged preset (issue 17)
def test_converged_grids_are_the_papers_axes_with_seed_repeats() -> None:
    widths = set(testbed.CONVERGED_WIDTHS)
    assert len(widths) >= 4
    ids: list[int] = []
    for method in testbed.METHODS:
        specs = testbed.converged_specs(method, lr=2e-3, weight_decay=1e-4)
        primary = [s for s in specs if s.repeat == 0]
        repeats = [s for s in specs if s.repeat > 0]
        assert len(primary) >= 24 and len({s.config_id for s in repeats}) >= 6
        assert all(s.params["lr"] == 2e-3 and s.params["weight_decay"] == 1e-4 for s in specs)  # fixed per method
        assert {s.params["out_dim"] for s in primary} == widths
        assert all(s.params["hidden_dim"] == s.params["out_dim"] for s in specs)  # the whole projector's width
        for rep in repeats:
            original = next(p for p in primary if p.config_id == rep.config_id)
            assert rep.params == original.params and rep.seed == rep.repeat in (1, 2)
        ids += [s.trial for s in specs]
    assert len(ids) == len(set(ids))  # methods can be run apart and joined
    lambdas = sorted({s.params["lambd"] for s in testbed.converged_specs("barlow_twins", 1e-3, 0.0)})
    assert len(lambdas) >= 6 and math.isclose(lambdas[0], 1e-4) and math.isclose(lambdas[-1], 1e-1)
    vic = testbed.converged_specs("vicreg", 1e-3, 0.0)
    assert 0.0 in {s.params["var_weight"] for s in vic} and 0.0 in {s.params["cov_weight"] for s in vic}
    temps = sorted({s.params["temperature"] for s in testbed.converged_specs("simclr", 1e-3, 0.0)})
    assert math.isclose(temps[0], 0.05) and math.isclose(temps[-1], 2.0)
    assert testbed.seed_config_indexes(24) == [0, 5, 9, 14, 18, 23]


def test_converged_schedule_warms_up_decays_and_reads_out_at_three_quarters() -> None:
    base, marks = testbed.converged_schedule(40)
    assert {"epochs=40", "optim.scheduler=cosine", "optim.warmup_epochs=2", "metrics.every_n_epochs=5"} <= set(base)
    assert marks == (10, 20, 30)
    spec = testbed.TrialSpec(0, "barlow_twins", 0, 0, 0, {"lambd": 0.01, "out_dim": 64.0, "hidden_dim": 64.0})
    assert spec.overrides()[-2:] == ["method.projector.out_dim=64", "method.projector.hidden_dims=[64]"]


def test_pilot_picks_by_validation_and_checks_the_plateau_against_seed_noise() -> None:
    specs = testbed.pilot_specs("vicreg")
    assert len(specs) == len(testbed.PILOT_LRS) * len(testbed.PILOT_WDS)
    rows = [{"trial": s.trial, "repeat": 0, "val_accuracy": v} for s, v in zip(specs, [0.8, 0.9, 0.9, 0.7, 0.1, 0.2])]
    assert testbed.pick_pilot(rows) == 1  # best val; the tie goes to the earlier candidate
    more = testbed.pilot_specs("vicreg", choice=1)[len(specs):]
    assert [s.seed for s in more] == [1, 2] and all(s.params == specs[1].params for s in more)
    seeds = [{"test_accuracy": a, "test_accuracy_e30": b} for a, b in [(0.90, 0.89), (0.88, 0.88), (0.92, 0.90)]]
    check = testbed.plateau_check(seeds, last=40, mark=30)
    assert math.isclose(check["mean_last_minus_mark"], 0.01) and math.isclose(check["seed_std_last"], 0.02)
    assert check["plateau"] is True
    late = [{"test_accuracy": a, "test_accuracy_e30": a - 0.05} for a in (0.90, 0.91, 0.92)]
    assert testbed.plateau_check(late, 40, 30)["plateau"] is False  # still climbing by more than the noise


def test_clid_column_standardises_within_each_method() -> None:
    import pandas as pd

    frame = pd.DataFrame({"method": ["a", "a", "a", "b", "b"], "state": "COMPLETE",
                          "cluster_learnability": [0.1, 0.2, 0.3, 0.5, 0.5], "twonn": [1.0, 2.0, 3.0, 4.0, 8.0]})
    out = testbed.with_clid(frame, ["method"])
    z = math.sqrt(1.5)
    assert np.allclose(out["clid"], [-2 * z, 0.0, 2 * z, -1.0, 1.0])


@pytest.mark.slow
def test_gpu_entry_point_dry_run_on_cpu_writes_a_valid_table(tmp_path: Path) -> None:
    """``--preset converged --device cpu --parallel 2 --dry-run``: two trials of one epoch in two processes, the
    table format of the real run (issue 22 item 3's CPU check of the GPU entry point)."""
    import subprocess

    import pandas as pd

    out, runs = tmp_path / "out", tmp_path / "runs"
    script = Path(__file__).parents[2] / "benchmarks" / "testbed.py"
    done = subprocess.run([sys.executable, str(script), "--preset", "converged", "--device", "cpu", "--parallel", "2",
                           "--dry-run", "--methods", "barlow_twins", "--out", str(out), "--work-dir", str(runs)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out / 'testbed.parquet'}" in done.stdout and "next:" in done.stdout
    table = pd.read_parquet(out / "testbed.parquet")
    curves = pd.read_parquet(out / "testbed_curves.parquet")
    meta = json.loads((out / "testbed.json").read_text())
    assert len(table) == 2 and (table["state"] == "COMPLETE").all() and (table["epochs_completed"] == 1).all()
    for column in ("test_accuracy", "knn_accuracy", "rankme", "alpha", "twonn", "cluster_learnability", "clid",
                   "lambd", "out_dim", "hidden_dim", "lr", "weight_decay", "total_s"):
        assert table[column].notna().all(), column
    assert set(curves["trial"]) == set(table["trial"]) and {"twonn", "cluster_learnability"} <= set(curves.columns)
    assert meta["settings"]["complete"] and meta["n_trials"] == 2 and meta["random_init_reference"]
    assert len((out / "work" / "barlow_twins" / "trials.jsonl").read_text().splitlines()) == 2  # resume state


def test_grid_reuses_the_pilot_runs_it_contains(tmp_path: Path) -> None:
    """The pilot's centre config at the chosen lr / wd is a grid config (Barlow Twins): its three seeds are copied
    into the grid's log, not trained again; a pilot with other base overrides is never reused."""
    base, _ = testbed.converged_schedule(40)
    chosen = testbed.pilot_specs("barlow_twins", choice=2)
    pilot_dir = tmp_path / "pilot"
    pilot_dir.mkdir()
    (pilot_dir / "settings.json").write_text(json.dumps({"base_overrides": base}))
    rows = [{"trial": s.trial, "method": s.method, "seed": s.seed, "params": s.params, "test_accuracy": 0.9}
            for s in chosen]
    (pilot_dir / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs = testbed.converged_specs("barlow_twins", **{k: chosen[2].params[k] for k in ("lr", "weight_decay")})
    log = tmp_path / "grid.jsonl"
    reused = testbed.reuse_pilot(pilot_dir / "trials.jsonl", specs, {}, log, base)
    centre = {s.trial for s in specs if s.params == chosen[2].params}
    assert set(reused) == centre and len(centre) == 3  # seed 0 and the two extra seeds of a seed-subset config
    assert len(log.read_text().splitlines()) == 3
    assert testbed.reuse_pilot(pilot_dir / "trials.jsonl", specs, {}, log, [*base, "device=cuda"]) == {}


def test_conditions_plateau_and_best_signal_sections_on_a_known_table() -> None:
    """benchmarks/conditions.py's converged sections: plateau = |mean(last - e30)| < seed std; the best score is the
    metric with the largest |Spearman| with test accuracy."""
    import pandas as pd

    conditions = _conditions_module()
    acc = np.array([0.80, 0.82, 0.84, 0.86, 0.88, 0.90])
    table = pd.DataFrame({"method": "barlow_twins", "state": "COMPLETE", "config_id": [0, 0, 0, 1, 2, 3],
                          "repeat": [0, 1, 2, 0, 0, 0], "test_accuracy": acc, "test_accuracy_e30": acc - 0.001,
                          "twonn": acc * 10, "alpha": [3.0, 1.0, 2.0, 5.0, 4.0, 6.0]})
    plateau = conditions.plateau_section(table).iloc[0]
    assert plateau["mark_epoch"] == 30 and math.isclose(plateau["mean_last_minus_mark"], 0.001)
    assert math.isclose(plateau["seed_std_last"], 0.02) and plateau["plateau"]
    best = conditions.best_signal_section(table, ["alpha", "twonn"]).iloc[0]
    assert best["best_metric"] == "twonn" and best["spearman"].startswith("+1.00") and best["reaches_0.6"]


def test_grid_of_a_method_without_a_pilot_is_skipped_never_guessed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(testbed, "CONVERGED_DIR", tmp_path / "no_pilot_here")
    args = testbed.argparse.Namespace(methods=["simclr", "vicreg"], epochs=40, device="cpu", backbone="small_cnn",
                                      dry_run=False, override=[], workers=1, deadline=None)
    with pytest.raises(SystemExit, match="no method with a stored pilot"):
        testbed.run_grid(args, tmp_path / "root", tmp_path / "runs")
    out = capsys.readouterr().out
    assert "no pilot for simclr: skipped" in out and "--pilot --methods vicreg" in out


def _conditions_module():
    spec = importlib.util.spec_from_file_location("bench_conditions",
                                                  Path(__file__).parents[2] / "benchmarks" / "conditions.py")
    conditions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conditions)  # type: ignore[union-attr]
    return conditions


@pytest.mark.slow
def test_conditions_methods_filter_on_the_stored_converged_table(tmp_path: Path) -> None:
    """--methods keeps only the named methods (the complete grids); a fixed learning rate has no regime section;
    a method the table lacks is one line naming the present ones."""
    conditions = _conditions_module()
    table = Path(__file__).parents[2] / "benchmarks" / "data" / "converged" / "testbed.parquet"
    md = tmp_path / "conditions.md"
    assert conditions.main(["--table", str(table), "--methods", "barlow_twins", "--md", str(md)]) == 0
    text = md.read_text()
    assert "methods: barlow_twins (--methods)" in text
    assert "vicreg" not in text and "simclr" not in text and "barlow_twins" in text
    assert "Training regime" not in text  # the converged grid fixes lr per method
    with pytest.raises(SystemExit, match="not in the table; present"):
        conditions.main(["--table", str(table), "--methods", "mocov2"])

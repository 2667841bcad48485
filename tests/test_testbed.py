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

_SPEC = importlib.util.spec_from_file_location("bench_testbed", Path(__file__).parents[1] / "benchmarks" / "testbed.py")
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

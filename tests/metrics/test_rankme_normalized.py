"""Width-normalised RankMe: the metric, its place in monitoring rows and records, the objective and the
warning that raw RankMe over a varied projector width rewards width (no training runs here)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from sweep.config.schema import MetricsConfig
from sweep.metrics import MetricInputError, SpectralAccumulator, normalized_rankme, rankme
from sweep.study.objectives import ObjectiveWarning, objective_values, parse_objectives, width_warning
from sweep.study.search_space import parse_search_space
from sweep.study.sweeper import AskTellSweeper, SweepSettings, varied_params, warn_width_objective
from sweep.train.epoch_metrics import spectral_row
from sweep.train.records import final_metrics


def _rank_k(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """An n x d matrix with k equal non-zero singular values: RankMe = k (up to the 1e-7 smoothing)."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(n, k)))[0]
    v = np.linalg.qr(rng.normal(size=(d, k)))[0]
    return 3.0 * u @ v.T


@pytest.mark.parametrize("n, d, k", [(50, 20, 5), (8, 20, 4), (64, 64, 64), (30, 16, 1)])
def test_rank_k_matrix_gives_k_over_min_n_d(n: int, d: int, k: int) -> None:
    z = _rank_k(n, d, k)
    assert normalized_rankme(rankme(z), n, d) == pytest.approx(k / min(n, d), rel=1e-4)


def test_normalized_rankme_is_width_fair_and_validates_sizes() -> None:
    assert normalized_rankme(16.0, 1000, 32) == pytest.approx(0.5)
    assert normalized_rankme(64.0, 1000, 128) == pytest.approx(0.5)  # same fraction of a wider projector
    assert np.isnan(normalized_rankme(float("nan"), 10, 4))
    for bad, field in [((3.0, 0, 8), "n must be an integer >= 1"), ((3.0, 10, 2.5), "d must be an integer"),
                       ((3.0, True, 8), "n must be"), ((float("inf"), 10, 8), "rankme must be finite")]:
        with pytest.raises(MetricInputError, match=field):
            normalized_rankme(*bad)


def test_spectral_row_and_record_carry_rankme_normalized() -> None:
    rng = np.random.default_rng(1)
    feats, emb = rng.normal(size=(40, 12)), _rank_k(40, 6, 3, seed=2)
    backbone, projector = SpectralAccumulator(12), SpectralAccumulator(6)
    backbone.update(feats[:25]).update(feats[25:])
    projector.update(emb[:25]).update(emb[25:])
    row = spectral_row(backbone, projector, MetricsConfig(alpha_window=[1, 8]))
    assert row["rankme"] == pytest.approx(3.0, rel=1e-4)
    assert row["rankme_normalized"] == pytest.approx(row["rankme"] / 6)  # min(N=40, D=6)
    metrics = final_metrics([{"epoch": 1, **row}])
    assert metrics["rankme_normalized"] == pytest.approx(0.5, rel=1e-4)
    assert final_metrics([])["rankme_normalized"] is None  # a contract key, present even when missing


def test_rankme_normalized_is_an_objective() -> None:
    objs = parse_objectives([{"metric": "rankme_normalized"}])
    assert objs[0].direction == "maximize"
    assert objective_values(objs, {"metrics": {"rankme": 40.0, "rankme_normalized": 0.3125}}) == [0.3125]


def test_sweeper_preset_composes() -> None:
    from hydra import compose, initialize_config_dir

    from sweep.config.paths import conf_dir
    from sweep.config.store import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        preset = compose(config_name="train", overrides=["hydra/sweeper=rankme_normalized"], return_hydra_config=True)
        override = compose(config_name="train", return_hydra_config=True, overrides=[
            "hydra/sweeper=sweep_optuna", "hydra.sweeper.objectives=[{metric: rankme_normalized}]"])
    sweeper = preset.hydra.sweeper
    assert [dict(o) for o in sweeper.objectives] == [
        {"metric": "rankme_normalized", "direction": "maximize", "target": None}]
    assert sweeper.sampler.name == "tpe"
    settings = SweepSettings.from_config(override.hydra.sweeper)
    assert [o.metric for o in parse_objectives(settings.objectives)] == ["rankme_normalized"]


WIDTH = {"method.projector.out_dim": {"type": "categorical", "choices": [16, 64, 256]},
         "optim.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}


def _prepare(objectives: list[dict], space: dict) -> None:
    settings = SweepSettings(objectives=objectives, search_space=space, validate_configs=False)
    AskTellSweeper(settings).prepare([])


@pytest.mark.parametrize("objectives", [
    [{"metric": "rankme"}],
    [{"metric": "rankme", "direction": "maximize"}, {"metric": "alpha", "target": 1.0}],
])
def test_warning_fires_for_raw_rankme_over_a_varied_width(objectives: list[dict]) -> None:
    with pytest.warns(ObjectiveWarning) as caught:
        _prepare(objectives, WIDTH)
    text = str(caught[0].message)
    assert "method.projector.out_dim" in text and "rankme_normalized" in text


def test_warning_matches_any_key_ending_in_projector_out_dim() -> None:
    space = {"method.target_projector.out_dim": {"type": "int", "low": 16, "high": 256}}
    with pytest.warns(ObjectiveWarning, match="method.target_projector.out_dim"):
        _prepare([{"metric": "rankme"}], space)


@pytest.mark.parametrize("objectives, space", [
    ([{"metric": "rankme_normalized"}], WIDTH),  # the width-fair objective
    ([{"metric": "alpha", "target": 1.0}], WIDTH),  # alpha does not grow with D
    ([{"metric": "rankme"}], {"optim.lr": WIDTH["optim.lr"]}),  # width not searched
    ([{"metric": "rankme"}], {"method.projector.out_dim": {"type": "categorical", "choices": [128]}}),  # fixed
    ([{"metric": "rankme"}], {"method.projector.hidden_dim": {"type": "int", "low": 64, "high": 512}}),  # not D
])
def test_warning_stays_quiet(objectives: list[dict], space: dict, recwarn: pytest.WarningsRecorder) -> None:
    _prepare(objectives, space)
    assert not [w for w in recwarn if issubclass(w.category, ObjectiveWarning)]


def test_warning_helpers_directly() -> None:
    space = parse_search_space(WIDTH)
    assert varied_params(space) == ["method.projector.out_dim", "optim.lr"]
    assert width_warning(parse_objectives([{"metric": "rankme_normalized"}]), varied_params(space)) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = warn_width_objective(parse_objectives([{"metric": "rankme"}]), space)
    assert message is not None and len(caught) == 1 and caught[0].category is ObjectiveWarning

"""Fast unit tests of the sweep driver's pieces: settings, overrides, hooks, seeds, samplers, progress, pruning env."""
from __future__ import annotations

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sweep.study.objectives import parse_objectives
from sweep.study.progress import best_trials, progress_line
from sweep.study.pruning import TrialContext, pruned_record, trial_reporter
from sweep.study.samplers import AskTellGridSampler, SamplerConfigError, derive_seed, make_pruner, make_sampler
from sweep.study.search_space import parse_search_space
from sweep.study.sweeper import (
    DEFAULT_VALIDATE_FN,
    SweepConfigError,
    SweepSettings,
    fixed_overrides,
    load_validate_fn,
)

SPACE = parse_search_space({"x": {"type": "int", "low": 0, "high": 2}})


@pytest.mark.parametrize("fields, fragment", [
    ({"n_trials": 0}, "hydra.sweeper.n_trials=0: must be an integer >= 1"),
    ({"n_jobs": 0}, "hydra.sweeper.n_jobs=0"),
    ({"max_failure_ratio": 1.5}, "max_failure_ratio=1.5: must be in [0, 1]"),
    ({"colour": "red"}, "unknown key(s) ['colour']"),
])
def test_settings_errors_name_the_field(fields: dict, fragment: str) -> None:
    with pytest.raises(SweepConfigError) as err:
        SweepSettings.from_config(fields)
    assert fragment in str(err.value)


def test_fixed_overrides_pass_through_and_sweeps_rejected() -> None:
    assert fixed_overrides(["epochs=3", "+foo=bar", "data=cifar10"]) == ["epochs=3", "+foo=bar", "data=cifar10"]
    with pytest.raises(SweepConfigError, match=r"\['lr=range\(1,3\)'\] are not supported"):
        fixed_overrides(["epochs=3", "lr=range(1,3)"])


def test_validate_fn_loading() -> None:
    assert load_validate_fn(None) is None
    assert load_validate_fn("math.isfinite") is not None and load_validate_fn("math:isfinite") is not None
    with pytest.raises(SweepConfigError, match="cannot import no_such_module"):
        load_validate_fn("no_such_module.check")
    with pytest.raises(SweepConfigError, match="has no callable 'nope'"):
        load_validate_fn("math.nope")
    assert DEFAULT_VALIDATE_FN == "sweep.train.config_check.validate_train_config"


def test_derive_seed_changes_with_history_only() -> None:
    assert derive_seed(None, 5) is None
    assert derive_seed(3, 0) == 3
    assert derive_seed(3, 4) == derive_seed(3, 4) != derive_seed(3, 5)


def test_sampler_and_pruner_factories() -> None:
    assert type(make_sampler("nsgaii", 0, {}, SPACE, 2)).__name__ == "NSGAIISampler"
    assert isinstance(make_sampler("grid", 0, {}, SPACE, 1), AskTellGridSampler)
    with pytest.raises(SamplerConfigError, match="allowed values are"):
        make_sampler("bayes", 0, {}, SPACE, 1)
    with pytest.raises(SamplerConfigError, match="cmaes supports one objective only"):
        make_sampler("cmaes", 0, {}, SPACE, 2)
    with pytest.raises(SamplerConfigError, match="sampler.options for tpe"):
        make_sampler("tpe", 0, {"n_startup": 3}, SPACE, 1)
    assert type(make_pruner("median", {"n_startup_trials": 2})).__name__ == "MedianPruner"
    with pytest.raises(SamplerConfigError, match="pruner.name='early'"):
        make_pruner("early", {})


def test_grid_sampler_exhaustion_does_not_raise_outside_optimize() -> None:
    study = optuna.create_study(sampler=make_sampler("grid", 0, {}, SPACE, 1))
    seen = []
    for _ in range(3):
        trial = study.ask()
        seen.append(SPACE.suggest(trial)["x"])
        study.tell(trial, 0.0)  # the stock GridSampler raises here on the last point (study.stop())
    assert sorted(seen) == [0, 1, 2]


def _study_with(values: list[list[float] | None], directions: list[str]) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    for v in values:
        trial = study.ask()
        if v is None:
            trial.set_user_attr("failure_reason", "exception: boom")
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, v)
    study.ask()  # one running
    return study


def test_progress_line_single_objective() -> None:
    study = _study_with([[3.0], None, [5.0]], ["maximize"])
    labels = [o.label for o in parse_objectives([{"metric": "rankme"}])]
    line = progress_line(study.get_trials(), study.directions, labels, 10)
    assert line == "[sweep] 3/10 finished | running 1, done 2, failed 1, pruned 0 | best #2: rankme=5"


def test_pareto_front_for_two_objectives() -> None:
    dirs = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    study = _study_with([[10.0, 0.5], [12.0, 0.2], [11.0, 0.1], [9.0, 0.6]], ["maximize", "minimize"])
    assert sorted(t.number for t in best_trials(study.get_trials(), dirs)) == [1, 2]


def test_trial_env_names_the_trial_only() -> None:
    ctx = TrialContext("sqlite:///x.db", "s", 7, 3, {"name": "median", "options": {"n_startup_trials": 2}})
    assert ctx.to_env() == {"SWEEP_STUDY_NAME": "s", "SWEEP_TRIAL_NUMBER": "3"}  # trackers' tags; no reporter
    assert trial_reporter(ctx) is not None and trial_reporter(TrialContext("sqlite:///x.db", "s", 7, 3)) is None
    assert trial_reporter(TrialContext("sqlite:///x.db", "s", 7, 3, {"name": "none"})) is None
    assert pruned_record(2, 0.5)["status"] == "pruned"


def test_reporter_travels_as_data_and_opens_the_study_on_first_report(tmp_path, monkeypatch) -> None:
    import pickle

    from sweep.study.attrs import trial_id_of
    from sweep.study.storage import make_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=make_storage(url), direction="minimize")
    for value in (0.0, 0.0):  # two finished trials at 0: a later one reporting 5 is worse than their median
        done = study.ask()
        done.report(0.0, 1)
        study.tell(done, value)
    trial = study.ask()
    pruner = {"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}}
    objective = parse_objectives([{"metric": "alpha", "target": 1.0}])[0]
    reporter = trial_reporter(TrialContext(url, "s", trial_id_of(trial), trial.number, pruner), objective)
    blob = pickle.dumps(reporter)
    assert b"optuna" not in blob and reporter._trial is None  # no open study in the payload
    copy = pickle.loads(blob)
    assert copy.report_metrics({"alpha": float("nan")}, 1) is None and copy._trial is None  # not reported
    assert copy.report_metrics({"alpha": 6.0}, 1) == 5.0  # |6 - 1|, the value the tell would use
    assert study.trials[trial.number].intermediate_values == {1: 5.0}
    assert pickle.loads(pickle.dumps(copy))._trial is None  # a reporter that reported still pickles as data


def test_reporter_never_carries_the_storage_password() -> None:
    import pickle

    ctx = TrialContext("postgresql://u:s3cr3t-pw@db/x", "s", 1, 0, {"name": "median"})
    reporter = trial_reporter(ctx)
    assert "s3cr3t-pw" not in reporter.context.storage_url
    assert b"s3cr3t-pw" not in pickle.dumps(reporter)

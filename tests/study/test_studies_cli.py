"""Issue 18, items 3 and 5: `sweep studies` lists a storage's studies with trial counts by state; every command
has a description; a stratified sampler covers every method of the space in balance."""
from __future__ import annotations

import collections
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli import _build_parser, main
from sweep.study.resume import requeue
from sweep.study.samplers import SamplerConfigError, StratifiedSampler, least_used_choice, make_sampler
from sweep.study.search_space import parse_search_space
from sweep.study.storage import make_storage

SPACE = {"method": {"type": "categorical", "choices": ["simclr", "barlow_twins", "vicreg"]},
         "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def _study_with_states(url: str) -> None:
    """Study 'a': 2 complete, 1 failed, 1 pruned, 1 running requeued (-> 1 waiting); study 'b': empty."""
    storage = make_storage(url)
    study = optuna.create_study(study_name="a", storage=storage, direction="maximize")
    study.set_user_attr("n_trials", 8)
    study.set_user_attr("sweep_dir", "/sweeps/a")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state in (TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
        trial = study.ask(dist)
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    running = study.ask(dist)
    requeue(study, study._storage.get_trial(running._trial_id))
    optuna.create_study(study_name="b", storage=storage)


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_studies_lists_counts_by_state(tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if scheme == "sqlite" else f"journal:///{tmp_path / 's.log'}"
    _study_with_states(url)
    assert main(["studies", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["study", "trials", "complete", "running", "waiting", "fail", "pruned", "requeued",
                                "n_trials", "sweep_dir"]
    assert lines[1].split() == ["a", "5", "2", "0", "1", "1", "1", "1", "8", "/sweeps/a"]
    assert lines[2].split()[:8] == ["b", "0", "0", "0", "0", "0", "0", "0"]
    assert lines[3].startswith("next: sweep progress --storage") and "--study a" in lines[3]


def test_studies_on_a_missing_file_is_one_line_and_creates_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["studies", "--storage", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no storage file" in err and not (tmp_path / "typo.db").exists()


def test_every_command_has_a_description_and_a_help_line() -> None:
    parser = _build_parser()
    commands = parser._subparsers._group_actions[0]  # noqa: SLF001 - argparse keeps them only here
    helps = {action.dest: action.help for action in commands._choices_actions}
    for name, sub in commands.choices.items():
        assert helps.get(name), f"sweep {name} has no help line"
        if name != "train":  # `sweep train --help` is Hydra's own
            assert sub.description and len(sub.description) > 40, f"sweep {name} --help has no description"
            assert all(a.help for a in sub._actions), f"sweep {name}: an option without help"


def test_stratified_sampler_balances_the_methods_whatever_the_base_prefers() -> None:
    space = parse_search_space(SPACE)
    sampler = make_sampler("nsgaii", 0, {"population_size": 4, "stratify": "method"}, space, 2)
    assert isinstance(sampler, StratifiedSampler)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(12):
        trial = study.ask()
        params = space.suggest(trial)
        good = params["method"] == "barlow_twins"  # NSGA-II alone would breed barlow_twins only
        study.tell(trial, [1.0 if good else 0.0, 0.0 if good else 1.0])
    assert collections.Counter(t.params["method"] for t in study.trials) == {"simclr": 4, "barlow_twins": 4,
                                                                             "vicreg": 4}
    assert len({t.params["lr"] for t in study.trials}) == 12  # the other params are still sampled


def test_least_used_choice_counts_queued_trials_and_skips_requeued_ones() -> None:
    study = optuna.create_study()
    dist = {"method": optuna.distributions.CategoricalDistribution(["a", "b", "c"])}
    study.enqueue_trial({"method": "a"})
    study.enqueue_trial({"method": "b"})
    study.tell(study.ask(dist), 1.0)  # a
    lost = study.ask(dist)  # b
    requeue(study, study._storage.get_trial(lost._trial_id))  # b: failed (not counted) and queued again
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert least_used_choice(trials, current=99, param="method", choices=["a", "b", "c"]) == "c"
    assert least_used_choice(trials[:1], current=99, param="method", choices=["a", "b", "c"]) == "b"


def test_stratify_must_name_a_categorical_of_the_space() -> None:
    space = parse_search_space(SPACE)
    with pytest.raises(SamplerConfigError, match=r"stratify='lr': not a categorical param .* \['method'\]"):
        make_sampler("tpe", 0, {"stratify": "lr"}, space, 1)

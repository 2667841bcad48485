"""``sweep best``: the chosen trial of a real (tiny) sweep, printed as overrides and written as best.yaml, is
retrained by running exactly the printed ``sweep train`` command, and trains the same config."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweep.cli import main
from sweep.config.schema import SelectionConfig
from sweep.selection.answer import exact_value, pareto_front, accuracy_rank
from sweep.selection.best import BestError, config_text, retrain_overrides
from sweep.selection.report import build_report

SWEEP = ["experiment=demo_tiny", "hydra/sweeper=rankme_normalized", "+search_space=demo",
         "hydra/launcher=sweep_local", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}


def _sweep_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``sweep train ARGS`` as a user runs it: through the CLI entry point, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "sweep.cli", "train", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def selection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A 2-trial sweep run by `sweep train -m` and a report over it (readouts given: trial 1 is the best)."""
    from sweep.study.results import trials_dataframe

    tmp = tmp_path_factory.mktemp("best")
    storage = f"sqlite:///{tmp / 'demo.db'}"
    done = _sweep_train(["-m", *SWEEP, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=demo",
                         f"hydra.sweep.dir={tmp / 'sweep'}"], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_dataframe(storage, "demo")
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE"]
    readouts = pd.DataFrame({"trial": [0, 1], "status": "completed", "features": "backbone",
                             "val_accuracy": [0.50, 0.70], "test_accuracy": [0.52, 0.68]})
    build_report(trials, readouts, tmp / "sweep" / "report", SelectionConfig(n_orders=3), n_boot=20)
    return tmp, trials


def _printed(out: str, prefix: str) -> str:
    return next(line.strip() for line in out.splitlines() if line.strip().startswith(prefix))


def test_the_printed_command_retrains_the_same_config(selection: tuple[Path, pd.DataFrame],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    tmp, trials = selection
    assert main(["best", str(tmp / "sweep" / "report")]) == 0
    out = capsys.readouterr().out
    trial_dir = tmp / "sweep" / "1"  # the best validation readout: every policy that reads it chooses it
    assert out.startswith("trial 1, chosen by guided: val 70.0%, test 68.0%")
    lr = trials.loc[trials["trial"] == 1, "params_optim.lr"].iloc[0]
    assert f"optim.lr={float(lr)!r}" in out  # exact, not rounded
    command = _printed(out, "sweep train --config-dir")
    argv = shlex.split(command)
    assert argv[:2] == ["sweep", "train"]
    retrain = tmp / "retrain"
    done = _sweep_train([*argv[2:], "epochs=1", f"hydra.run.dir={retrain}"], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    original = yaml.safe_load((trial_dir / ".hydra" / "config.yaml").read_text())
    again = yaml.safe_load((retrain / ".hydra" / "config.yaml").read_text())
    assert again["epochs"] == 1 and original["epochs"] != 1
    for cfg in (original, again):
        cfg.pop("epochs"), cfg.pop("run_dir")
    assert again == original
    assert (retrain / "result.json").is_file()


def test_the_printed_overrides_compose_the_same_config(selection: tuple[Path, pd.DataFrame],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _ = selection
    assert main(["best", str(tmp / "sweep" / "report"), "--policy", "rankme_topk", "--out", str(tmp / "b")]) == 0
    out = capsys.readouterr().out
    line = _printed(out, "or, the same as overrides:").removeprefix("or, the same as overrides:").strip()
    argv = shlex.split(line)
    assert not any("search_space" in a for a in argv)
    composed = _sweep_train([*argv[2:], "--cfg", "job"], tmp)
    assert composed.returncode == 0, composed.stderr[-3000:]
    chosen = int(out.split()[1].rstrip(","))
    original = yaml.safe_load((tmp / "sweep" / str(chosen) / ".hydra" / "config.yaml").read_text())
    again = yaml.safe_load(composed.stdout)
    original.pop("run_dir"), again.pop("run_dir")
    assert again == original
    assert (tmp / "b" / "best.yaml").is_file()


def test_study_mode_and_errors(selection: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _ = selection
    storage = f"sqlite:///{tmp / 'demo.db'}"
    assert main(["best", "--storage", storage, "--study", "demo"]) == 0  # the recorded sweep dir's report
    assert "chosen by guided" in capsys.readouterr().out
    assert main(["best", str(tmp / "nowhere")]) == 1
    assert "run `sweep select` on the study first" in capsys.readouterr().err
    assert main(["best", str(tmp / "sweep" / "report"), "--policy", "alpha_band_x"]) == 1
    assert "policy 'alpha_band_x' chose no config here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["best"])


def test_sweep_only_overrides_are_dropped() -> None:
    kept = retrain_overrides(["experiment=demo", "+search_space=demo", "method=simclr", "optim.lr=0.001",
                              "hydra.job.chdir=false", "hydra/launcher=sweep_local"])
    assert kept == ["experiment=demo", "method=simclr", "optim.lr=0.001"]


def test_config_text_keeps_exact_values_and_group_choices() -> None:
    text = config_text(["experiment=demo", "method=simclr", "optim.lr=0.0004397123456789123",
                        "optim.weight_decay=1.4135935551752307e-05", "method.projector.out_dim=128"])
    data = yaml.safe_load(text)
    assert data["defaults"] == ["train", {"override experiment": "demo"}, {"override method": "simclr"}, "_self_"]
    assert data["optim"] == {"lr": 0.0004397123456789123, "weight_decay": 1.4135935551752307e-05}
    assert data["method"] == {"projector": {"out_dim": 128}}
    with pytest.raises(BestError, match="cannot write '~optim.lr'"):
        config_text(["~optim.lr"])


def test_exact_values_pareto_front_and_ranks() -> None:
    assert exact_value(0.1 + 0.2) == "0.30000000000000004" and exact_value(128.0) == "128"
    assert exact_value(True) == "true" and exact_value("simclr") == "simclr"
    import numpy as np

    values = np.array([[1.0, 5.0], [2.0, 4.0], [0.5, 4.5], [2.0, 5.0], [math.nan, 9.0]])
    assert pareto_front(values, [True, True]) == [3]
    assert pareto_front(values, [True, False]) == [1]
    assert pareto_front(values[:3], [True, True]) == [0, 1]
    assert accuracy_rank({1: 0.7, 2: 0.9, 3: 0.7, 4: math.nan}, 3) == 2 and accuracy_rank({1: 0.7}, 9) == 0


def test_sweep_select_prints_the_answer_first(selection: tuple[Path, pd.DataFrame],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep select` on the study (real readouts, in-process): after the readout lines, the answer comes first,
    with the study's objective by name, the exact values and the `sweep best` command for this folder."""
    import json

    tmp, trials = selection
    out = tmp / "selected"
    assert main(["select", "--storage", f"sqlite:///{tmp / 'demo.db'}", "--study", "demo", "--launcher",
                 "inprocess", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("[select]")]
    assert lines[0] == "The answer:"
    assert lines.index("What each policy chose:") > lines.index(f"  retrain it: sweep best {out}")
    answer = json.loads((out / "tables" / "answer.json").read_text())
    pick = answer["recommended"]
    row = trials.set_index("trial").loc[pick["trial"]]
    assert pick["params"]["optim.lr"] == float(row["params_optim.lr"])
    assert f"optim.lr={float(row['params_optim.lr'])!r}" in lines[3]
    assert lines[4] == f"    run dir:    {tmp / 'sweep' / str(pick['trial'])}"
    assert lines[5] == f"    checkpoint: {tmp / 'sweep' / str(pick['trial']) / 'checkpoints' / 'last.pt'}"
    assert lines[6] == (f"    features:   backbone: {tmp / 'sweep' / str(pick['trial']) / 'features'}/"
                        "{train,val,test}_backbone.npy")
    assert answer["correlations"][0]["name"] == "rankme_normalized" and answer["correlations"][0]["n"] == 2


def test_verdict_words_for_too_few_configs_and_a_pareto_front() -> None:
    from sweep.selection.answer import Answer, Correlation, Pick, verdict

    pick = Pick("guided", trial=3, readouts=2, val_accuracy=0.5, test_accuracy=0.6, rank=1, params={})
    two = Answer(2, 2, pick, correlations=[Correlation("rankme", math.nan, math.nan, math.nan, 2)],
                 optimum=[Pick("objective", 3, 0, 0.5, 0.6, 1, {})], oracle_test=0.6)
    assert verdict(two) == ("Use trial 3 (guided, validated by 2 readouts of 2 configs); do not trust the label-free "
                            "objective alone: rankme cannot be judged on 2 configs, and its optimum, trial 3, ranks "
                            "1 of 2 (60.0% test).")
    front = Answer(9, 9, pick, correlations=[Correlation("rankme_normalized", 0.5, 0.2, 0.8, 9)],
                   optimum=[Pick("objective", 4, 0, 0.5, 0.5, 5, {}), Pick("objective", 5, 0, 0.5, 0.55, 3, {})],
                   oracle_test=0.6)
    assert verdict(front).endswith("do not trust the label-free objective alone: rankme_normalized agrees with "
                                   "test accuracy (Spearman +0.50 [+0.20, +0.80]) and its optima (the Pareto "
                                   "front): trial 4 ranks 5 of 9 (50.0% test); trial 5 ranks 3 of 9 (55.0% test).")
    assert verdict(Answer(9, 0, None)) == "Nothing to recommend: no policy chose a config (each says why below)."


def test_a_study_without_a_selection_gets_the_select_command(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("sweep_dir", str(tmp_path / "sweep"))
    assert main(["best", "--storage", storage, "--study", "s"]) == 1
    err = capsys.readouterr().err
    assert f"sweep best: {tmp_path / 'sweep' / 'report' / 'tables' / 'answer.json'} does not exist" in err
    assert f"next: sweep select --storage {storage} --study s --sweep-dir {tmp_path / 'sweep'}" in err

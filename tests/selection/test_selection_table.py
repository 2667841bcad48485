"""Metrics tables from elsewhere: loading, checks, renaming, and `sweep select --table` end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _selection_tables import make_testbed

from sweep.cli import main as cli_main
from sweep.selection.policies import run_policies
from sweep.selection.report import policy_table
from sweep.selection.table import (
    TableColumns,
    TableError,
    default_query,
    default_report_dir,
    load_for_command,
    load_metrics_table,
    metrics_frames,
)

REPO = Path(__file__).parents[2]


def test_load_parquet_and_csv_give_the_report_frames(tmp_path: Path) -> None:
    frame = make_testbed(n_configs=3, repeats=2, failed=(4,))
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    for path in (tmp_path / "t.parquet", tmp_path / "t.csv"):
        trials, readouts = load_metrics_table(path, query="repeat == 0")
        assert list(trials["trial"]) == [0, 2, 4, 6, 8, 10, 12, 14, 16]
        assert list(readouts.columns) == ["trial", "status", "val_accuracy", "test_accuracy"]
        assert (readouts["status"] == "completed").all() and list(readouts["trial"]) == list(trials["trial"])
        assert "val_accuracy" not in trials.columns and "knn_accuracy" in trials.columns
        assert trials.set_index("trial").loc[4, "state"] == "FAIL"
        np.testing.assert_allclose(readouts["val_accuracy"].to_numpy()[[0, 1]],
                                   frame.loc[[0, 2], "val_accuracy"].to_numpy())


def test_renamed_columns_map_onto_the_package_names_and_shadowed_ones_are_kept() -> None:
    names = {"trial": "run", "val_accuracy": "v", "test_accuracy": "t", "method": "algo", "state": "status_"}
    frame = make_testbed(n_configs=4, methods=("simclr",)).rename(columns=names)
    columns = TableColumns(trial="run", method="algo", rankme="rankme_backbone", val="v", test="t",
                           state="status_")
    trials, readouts = metrics_frames(frame, columns)
    assert {"trial", "method", "state", "rankme", "table_rankme"} <= set(trials.columns)
    np.testing.assert_allclose(trials["rankme"], frame["rankme_backbone"])  # the chosen column is "rankme"
    np.testing.assert_allclose(trials["table_rankme"], frame["rankme"])  # the original kept, renamed
    np.testing.assert_allclose(readouts["val_accuracy"], frame["v"])
    val = dict(zip(readouts["trial"], readouts["val_accuracy"]))
    best = max(val, key=val.__getitem__)
    assert run_policies(trials, val.__getitem__)[-1].chosen_trial == best  # the frames drive the policies


def test_percent_accuracy_is_an_error_naming_column_value_and_row() -> None:
    frame = make_testbed(n_configs=4, methods=("simclr",))
    frame.loc[3, "test_accuracy"] = 87.5
    message = ("column 'test_accuracy' holds 87.5 (row trial=3): accuracies must be fractions in [0, 1]; "
               "divide percentages by 100")
    with pytest.raises(TableError, match=re.escape(message)):
        metrics_frames(frame)
    frame.loc[3, "test_accuracy"] = 0.5
    frame.loc[1, "val_accuracy"] = -0.1
    with pytest.raises(TableError, match=r"column 'val_accuracy' holds -0.1 \(row trial=1\)"):
        metrics_frames(frame)


def test_missing_column_is_an_error_listing_the_columns_present() -> None:
    frame = make_testbed(n_configs=3, methods=("simclr",)).drop(columns="test_accuracy")
    with pytest.raises(TableError, match=r"test column 'test_accuracy' is not in the table; columns present: \["):
        metrics_frames(frame)
    with pytest.raises(TableError, match="method column 'algo'.*'alpha'"):
        metrics_frames(make_testbed(n_configs=3), TableColumns(method="algo"))


def test_optional_method_and_state_columns() -> None:
    frame = make_testbed(n_configs=3, methods=("simclr",)).drop(columns=["method", "state"])
    trials, _ = metrics_frames(frame)
    assert "method" not in trials.columns and "state" not in trials.columns  # one pooled group, all complete
    other = make_testbed(n_configs=3, methods=("simclr",)).assign(state=["completed", "Complete", "fail"])
    trials, _ = metrics_frames(other)
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE", "FAIL"]
    no_alpha, _ = metrics_frames(make_testbed(n_configs=3), TableColumns(alpha=None))
    assert "alpha" not in no_alpha.columns and "table_alpha" in no_alpha.columns  # turned off, kept aside
    assert [r.policy for r in run_policies(no_alpha, lambda t: 0.5)] == ["rankme_topk", "calibrated_rank", "guided",
                                                                         "ridge_reader", "oracle"]


def test_duplicate_and_non_integer_trial_ids_are_errors() -> None:
    frame = make_testbed(n_configs=3, methods=("simclr",))
    frame.loc[2, "trial"] = 0
    with pytest.raises(TableError, match=r"column 'trial' repeats trial id\(s\) \[0\]"):
        metrics_frames(frame)
    frame["trial"] = ["a", "b", "c"]
    with pytest.raises(TableError, match="column 'trial' must hold integer trial ids; got 'a'"):
        metrics_frames(frame)


def test_query_first_and_its_errors(tmp_path: Path) -> None:
    frame = make_testbed(n_configs=2, methods=("simclr",), repeats=2)
    frame.loc[1, "test_accuracy"] = 95.0  # a repeat row: filtered out by the query before the checks
    trials, _ = metrics_frames(frame, query="repeat == 0")
    assert list(trials["trial"]) == [0, 2]
    with pytest.raises(TableError, match="query 'nope == 1' failed"):
        metrics_frames(frame, query="nope == 1")
    with pytest.raises(TableError, match="keeps none of the 4 rows"):
        metrics_frames(frame, query="repeat > 5")
    assert default_query(frame, None) == "repeat == 0" and default_query(frame, " ") is None
    assert default_query(frame.drop(columns="repeat"), None) is None
    frame.to_parquet(tmp_path / "t.parquet")
    (_, _), applied = load_for_command(tmp_path / "t.parquet", TableColumns(), None)
    assert applied == "repeat == 0"
    with pytest.raises(TableError, match=r"suffix '\.txt' is not supported"):
        load_metrics_table(tmp_path / "t.txt")
    assert default_report_dir(tmp_path / "t.parquet") == tmp_path / "t_report"


def test_band_note_in_the_policy_table() -> None:
    alphas = np.linspace(1.40, 2.03, 16)
    trials, readouts = metrics_frames(make_testbed(n_configs=16, methods=("simclr",), alphas=list(alphas)))
    from sweep.config.schema import SelectionConfig

    table = policy_table(trials, readouts, SelectionConfig(n_orders=3)).set_index("policy")
    assert table.loc["alpha_band", "note"] == (
        "alpha_band [0.8, 1.2] read nothing: all 16 usable alphas lie in [1.40, 2.03]")
    assert table.loc["rankme_topk", "note"] == ""


# ----------------------------------------------------------------------------- the command
def _sweep(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "sweep.cli", "select", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_select_table_end_to_end(tmp_path: Path, suffix: str) -> None:
    frame = make_testbed(n_configs=6, methods=("simclr", "vicreg"), repeats=2, failed=(2,),
                          alphas=[1.4, 1.6, 2.03])
    path = tmp_path / f"testbed{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    done = _sweep("--table", str(path))
    assert done.returncode == 0, done.stderr
    report = Path(re.search(r"^report: (.+)$", done.stdout, re.M).group(1))
    assert report.is_file() and report.parent == tmp_path / "testbed_report"
    assert "where repeat == 0: 12 trials, 11 complete" in done.stdout
    assert "note: alpha_band [0.8, 1.2] read nothing: all 11 usable alphas lie in [1.40, 2.03]" in done.stdout
    assert "next:" in done.stdout and f"benchmarks/selection.py --table {path}" in done.stdout
    policies = pd.read_csv(report.parent / "tables" / "policies.csv").set_index("policy")
    assert policies.loc["oracle", "readouts_used"] == 11 and policies.loc["rankme_topk", "regret"] == 0.0
    html = report.read_text()
    assert "all 11 usable alphas lie in [1.40, 2.03]" in html and "random-b" in html
    evidence = pd.read_csv(report.parent / "tables" / "evidence.csv")
    assert set(evidence["scope"]) == {"simclr", "vicreg", "pooled"}
    spearman = pd.read_csv(report.parent / "tables" / "spearman_ci.csv").set_index(["metric", "scope"])
    assert spearman.loc[("rankme", "pooled"), "spearman"] == pytest.approx(1.0)


def test_select_table_errors_exit_nonzero_with_the_reason(tmp_path: Path) -> None:
    frame = make_testbed(n_configs=3, methods=("simclr",))
    frame.loc[0, "val_accuracy"] = 71.0
    frame.to_csv(tmp_path / "bad.csv", index=False)
    done = _sweep("--table", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "column 'val_accuracy' holds 71 (row trial=0)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_select_modes_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["select", "--table", "t.csv", "--storage", "sqlite:///x.db"], "--table cannot be combined with --storage"),
        (["select"], "required: --storage, --study (or give --table FILE"),
        (["select", "--storage", "s", "--study", "x", "--sweep-dir", "d", "--query", "repeat == 0"],
         "--query only apply with --table"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_study_mode_summary_prints_the_notes(capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep select` (study mode) and `sweep demo` print the headline table, then why a policy read nothing."""
    from sweep.selection.pipeline import print_policy_summary

    note = "alpha_band [0.8, 1.2] read nothing: all 3 usable alphas lie in [1.40, 2.03]"
    print_policy_summary(pd.DataFrame({"policy": ["alpha_band", "oracle"], "readouts_used": [0, 3],
                                       "note": [note, ""]}))
    out = capsys.readouterr().out
    assert f"note: {note}" in out and "note: \n" not in out

"""The comparison report's numbers recomputed independently, and its files."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweep.config.schema import SelectionConfig
from sweep.selection.policies import adaptive_alpha_window
from sweep.selection.report import (
    budget_curve,
    build_report,
    chosen_by,
    describe_config,
    failures_table,
    load_monitoring,
    metric_correlations,
    policy_summary,
    policy_table,
    random_b_regrets,
    random_orders,
)

# 8 trials, two methods; trial 7 failed. Validation picks trial 2 (0.90) but its test is 0.80, while
# trial 5 has the best test (0.86): the oracle (by validation) is trial 2, test 0.80.
ALPHA = [0.5, 0.9, 1.05, 1.6, 2.5, 1.15, 0.7, float("nan")]
RANKME = [10.0, 30.0, 50.0, 20.0, 5.0, 40.0, 35.0, float("nan")]
METHOD = ["simclr"] * 4 + ["byol"] * 4
VAL = [0.60, 0.70, 0.90, 0.65, 0.50, 0.85, 0.72, float("nan")]
TEST = [0.61, 0.71, 0.80, 0.66, 0.52, 0.86, 0.70, float("nan")]


def make_frames(tmp_path: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.DataFrame(
        {
            "trial": range(8),
            "state": ["COMPLETE"] * 7 + ["FAIL"],
            "method": METHOD,
            "params_lr": [1e-3 * (i + 1) for i in range(8)],
            "rankme": RANKME,
            "alpha": ALPHA,
            "silhouette": [0.1, 0.2, 0.3, 0.2, 0.1, 0.4, 0.3, float("nan")],
            "lidar": [float("nan")] * 8,
        }
    )
    if tmp_path is not None:
        run_dirs = []
        for t in range(8):
            run = tmp_path / f"run{t}"
            run.mkdir()
            if t % 2 == 0:
                pd.DataFrame(
                    {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0 + t], "rankme": [1.0, 2.0, 3.0]}
                ).to_csv(run / "monitor.csv", index=False)
            else:
                (run / "result.json").write_text(
                    json.dumps({"monitor": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]})
                )
            run_dirs.append(str(run))
        trials["run_dir"] = run_dirs
        trials["record_path"] = [str(Path(r) / "result.json") for r in run_dirs]
    readouts = pd.DataFrame(
        {"trial": range(7), "status": ["completed"] * 7, "val_accuracy": VAL[:7], "test_accuracy": TEST[:7]}
    )
    return trials, readouts


def test_policy_table_regret_by_hand() -> None:
    trials, readouts = make_frames()
    cfg = SelectionConfig(batch_size=10, top_k=5, n_orders=20)
    table = policy_table(trials, readouts, cfg).set_index("policy")
    # oracle: all 7 completed read; val-best is trial 2 -> test 0.80, regret 0
    assert table.loc["oracle", "readouts_used"] == 7 and table.loc["oracle", "chosen_trial"] == 2
    assert table.loc["oracle", "regret"] == pytest.approx(0.0)
    # band [0.8, 1.2]: trials 1 (0.9), 2 (1.05), 5 (1.15) -> val-best 2
    assert table.loc["alpha_band", "readouts_used"] == 3 and table.loc["alpha_band", "chosen_trial"] == 2
    # rankme: simclr N=4 -> 2 (trials 2, 1), byol N=3 completed -> 2 (trials 5, 6); val-best 2
    assert table.loc["rankme_topk", "readouts_used"] == 4
    # batch 10 >= N: the adaptive window reads everything in its first batch = the oracle
    assert table.loc["adaptive_alpha_window", "readouts_used"] == 7
    assert table.loc["adaptive_alpha_window", "p_within_tol"] == pytest.approx(1.0)
    assert table.loc["oracle", "chosen_params"] == "SimCLR, lr 0.003"  # readable, 3 significant digits
    assert table.loc["oracle", "regret_pts"] == pytest.approx(0.0)


def test_policy_table_regret_when_policy_misses() -> None:
    trials, readouts = make_frames()
    cfg = SelectionConfig(alpha_band=[1.1, 1.7], n_orders=5)
    row = policy_table(trials, readouts, cfg).set_index("policy").loc["alpha_band"]
    # band [1.1, 1.7]: trials 3 (1.6) and 5 (1.15) -> val-best 5, test 0.86; regret 0.80 - 0.86 = -0.06
    assert row["chosen_trial"] == 5
    assert row["regret"] == pytest.approx(0.80 - 0.86)
    assert row["p_within_tol"] == pytest.approx(1.0)  # 0.86 >= 0.80 - 0.01


def test_within_probability_recomputed_over_seeded_orders() -> None:
    trials, readouts = make_frames()
    cfg = SelectionConfig(batch_size=2, top_k=1, n_orders=50, seed=3, tolerance=0.01)
    got = policy_table(trials, readouts, cfg).set_index("policy").loc["adaptive_alpha_window", "p_within_tol"]
    val, test = dict(enumerate(VAL)), dict(enumerate(TEST))
    rng = np.random.default_rng(3)
    hits = []
    for _ in range(50):
        order = [int(t) for t in rng.permutation(np.arange(8))]
        res = adaptive_alpha_window(trials, val.__getitem__, order=order, batch_size=2, top_k=1)
        hits.append(test[res.chosen_trial] >= 0.80 - 0.01)
    assert got == pytest.approx(np.mean(hits))
    assert 0.0 < got < 1.0  # this set has orders that miss trial 2


def test_random_orders_are_seeded_permutations() -> None:
    a, b = random_orders([3, 1, 2], 4, seed=7), random_orders([3, 1, 2], 4, seed=7)
    assert a == b and all(sorted(o) == [1, 2, 3] for o in a)


def test_correlations_match_scipy_per_method_and_pooled() -> None:
    trials, readouts = make_frames()
    corr = metric_correlations(trials, readouts).set_index(["metric", "method"])
    assert "lidar" not in corr.index.get_level_values(0)  # all NaN -> skipped
    assert {"rankme", "alpha", "abs_alpha_minus_1", "silhouette"} <= set(corr.index.get_level_values(0))
    x, y = np.array(RANKME[:7]), np.array(TEST[:7])
    assert corr.loc[("rankme", "pooled"), "spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert corr.loc[("rankme", "pooled"), "kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    xa = np.abs(np.array(ALPHA[4:7]) - 1.0)
    assert corr.loc[("abs_alpha_minus_1", "byol"), "spearman"] == pytest.approx(
        stats.spearmanr(xa, np.array(TEST[4:7])).statistic
    )
    assert corr.loc[("rankme", "byol"), "n"] == 3


def test_budget_curve_by_hand() -> None:
    trials, readouts = make_frames()
    curve = budget_curve(trials, readouts, SelectionConfig(n_orders=10))
    rank = curve[curve["strategy"] == "rankme"]["regret"].to_numpy()
    # round robin by RankMe rank: (simclr 2, byol 5), (simclr 1, byol 6), ...
    # b=1 reads trial 2 -> regret 0; later reads never beat its validation 0.90
    assert rank[0] == pytest.approx(0.0) and np.allclose(rank, 0.0)
    near = curve[curve["strategy"] == "abs_alpha_minus_1"]["regret"].to_numpy()
    # |alpha-1| order: 2 (0.05), 1 (0.1), 5 (0.15), ... -> trial 2 first -> 0 regret
    assert near[0] == pytest.approx(0.0)
    rnd = curve[curve["strategy"] == "random"]["regret"].to_numpy()
    assert len(rnd) == 7 and rnd[-1] == pytest.approx(0.0)  # all read -> oracle


def test_monitoring_from_csv_and_record(tmp_path: Path) -> None:
    trials, _ = make_frames(tmp_path)
    monitor = load_monitoring(trials)
    assert set(monitor["trial"]) == set(range(8))
    assert len(monitor) == 4 * 3 + 4 * 2
    assert monitor.loc[monitor["trial"] == 2, "loss"].tolist() == [3.0, 2.0, 3.0]


def test_build_report_files_and_embedded_figures(tmp_path: Path) -> None:
    trials, readouts = make_frames(tmp_path)
    out = tmp_path / "report"
    path = build_report(trials, readouts, out, SelectionConfig(n_orders=10))
    text = path.read_text()
    figures = sorted((out / "figures").glob("*.png"))
    # silhouette is no policy's input: its panels sit in a second figure behind a <details> toggle
    assert {p.name for p in figures} == {"scatter.png", "scatter_other_metrics.png", "regret_vs_budget.png",
                                         "monitoring.png"}
    assert re.search(r"<details><summary>1 other label-free metrics vs accuracy[^<]*silhouette</summary>"
                     r'<figure>.*?data-file="scatter_other_metrics.png"', text)
    for fig in figures:
        match = re.search(rf'data-file="{re.escape(fig.name)}" src="data:image/png;base64,([^"]+)"', text)
        assert match, fig.name
        assert base64.b64decode(match.group(1)) == fig.read_bytes()
    for name in ("policies", "correlations", "budget_curve", "trials"):
        csv = pd.read_csv(out / "tables" / f"{name}.csv")
        assert len(pd.read_parquet(out / "tables" / f"{name}.parquet")) == len(csv)
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched when opened offline
    policies = pd.read_csv(out / "tables" / "policies.csv")
    assert set(policies["policy"]) == {"adaptive_alpha_window", "alpha_band", "rankme_topk", "alpha_rankme",
                                       "calibrated_rank", "guided", "ridge_reader", "oracle"}
    assert not math.isnan(policies.set_index("policy").loc["oracle", "test_accuracy"])
    predicted = pd.read_csv(out / "tables" / "predictions.csv")  # the guided reader's model of every config
    assert len(predicted) == policies.set_index("policy").loc["oracle", "readouts_used"]  # every usable config
    assert predicted["read"].sum() == policies.set_index("policy").loc["guided", "readouts_used"]
    assert "Predicted accuracy of the configs never read out" in text or predicted["read"].all()


def test_report_lists_readouts_left_out(tmp_path: Path) -> None:
    trials, readouts = make_frames(tmp_path)
    problems = pd.DataFrame({"trial": [3, 5], "kind": ["failed", "unreadable"],
                             "file": ["r/trial_3.json", "r/trial_5.json"], "reason": ["nan loss", "not JSON"]})
    path = build_report(trials, readouts, tmp_path / "report", SelectionConfig(n_orders=5), n_boot=50,
                        readout_problems=problems)
    text = path.read_text()
    assert "2 left out of the selection (1 failed, 1 unreadable)" in text
    assert "Readouts left out of the selection" in text and "r/trial_5.json" in text
    assert len(pd.read_csv(tmp_path / "report" / "tables" / "readout_problems.csv")) == 2
    clean = build_report(trials, readouts, tmp_path / "clean", SelectionConfig(n_orders=5), n_boot=50).read_text()
    assert "left out" not in clean


def test_make_report_script_from_exported_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_report", Path(__file__).parents[2] / "analysis" / "make_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    trials, readouts = make_frames()
    trials.to_parquet(tmp_path / "trials.parquet")
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "readouts").mkdir(parents=True)
    for row in readouts.to_dict("records"):
        (sweep_dir / "readouts" / f"trial_{row['trial']}.json").write_text(json.dumps(row))
    path = module.main(
        [
            "--trials",
            str(tmp_path / "trials.parquet"),
            "--sweep-dir",
            str(sweep_dir),
            "--out",
            str(tmp_path / "out"),
            "--n-orders",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert path.is_file() and str(path) in out
    assert "oracle chose trial 2 (SimCLR, lr 0.003) after 7 of 7 readouts" in out  # the headline, in words
    policies = pd.read_csv(tmp_path / "out" / "tables" / "policies.csv").set_index("policy")
    assert policies.loc["oracle", "chosen_trial"] == 2 and policies.loc["oracle", "readouts_used"] == 7
    with pytest.raises(SystemExit):
        module.main(["--storage", "sqlite:///x.db", "--sweep-dir", str(sweep_dir), "--out", str(tmp_path)])


def test_report_of_a_running_study_without_readouts(tmp_path: Path) -> None:
    from sweep.selection.readout_jobs import READOUT_COLUMNS

    trials = pd.DataFrame(
        {
            "trial": [0, 1],
            "state": ["FAIL", "RUNNING"],
            "method": "simclr",
            "alpha": [float("nan"), 1.0],
            "rankme": [float("nan"), 3.0],
        }
    )
    path = build_report(trials, pd.DataFrame(columns=READOUT_COLUMNS), tmp_path, SelectionConfig(n_orders=3))
    policies = pd.read_csv(tmp_path / "tables" / "policies.csv")
    assert path.is_file() and policies["readouts_used"].eq(0).all() and policies["chosen_trial"].isna().all()


# ----------------------------------------------------------------------------- what a reader sees
def _random_b_by_enumeration(
    ids: list[int], val: dict[int, float], test: dict[int, float], best: float
) -> list[float]:
    """Mean regret over every visiting order of reading the first b and choosing by validation (ties: smaller
    id); orders whose first b have no finite validation readout are skipped."""
    means = []
    for b in range(1, len(ids) + 1):
        regrets = []
        for order in itertools.permutations(ids):
            read = [t for t in order[:b] if math.isfinite(val.get(t, math.nan))]
            if read:
                chosen = min(read, key=lambda t: (-val[t], t))
                regrets.append(best - test[chosen])
        means.append(np.mean(regrets) if regrets else math.nan)
    return means


def test_random_b_regret_is_the_exact_expectation_over_orders() -> None:
    ids = list(range(7))
    val, test = dict(enumerate(VAL[:7])), dict(enumerate(TEST[:7]))
    got = random_b_regrets(ids, val, test, 0.80)
    assert np.allclose(got, _random_b_by_enumeration(ids, val, test, 0.80))
    assert got[0] == pytest.approx(np.mean([0.80 - t for t in TEST[:7]])) and got[-1] == pytest.approx(0.0)
    # a usable config without a validation readout is read but never chosen; reading only it chooses nothing
    del val[2]
    got = random_b_regrets(ids, val, test, 0.86)
    assert np.allclose(got, _random_b_by_enumeration(ids, val, test, 0.86))


def test_budget_curve_random_is_the_exact_expectation() -> None:
    trials, readouts = make_frames()
    rnd = budget_curve(trials, readouts).query("strategy == 'random'")["regret"].to_numpy()
    assert np.allclose(rnd, _random_b_by_enumeration(list(range(7)), dict(enumerate(VAL[:7])),
                                                     dict(enumerate(TEST[:7])), 0.80))


def test_policy_table_random_b_column_matches_its_readouts() -> None:
    trials, readouts = make_frames()
    table = policy_table(trials, readouts, SelectionConfig(n_orders=3)).set_index("policy")
    curve = random_b_regrets(list(range(7)), dict(enumerate(VAL[:7])), dict(enumerate(TEST[:7])), 0.80)
    row = table.loc["alpha_band"]  # 3 readouts
    assert row["random_b_regret_pts"] == pytest.approx(100 * curve[2])
    assert str(table["chosen_trial"].dtype) == "Int64"


def test_describe_config_only_the_parameters_that_apply_rounded() -> None:
    trials = pd.DataFrame({"trial": [0, 1], "method": ["simclr", "barlow_twins"],
                           "params_method": ["simclr", "barlow_twins"],
                           "params_optim.lr": [0.00043971234567891234, 0.1],
                           "params_method.temperature": [0.12345678, math.nan],
                           "params_method.lambd": [math.nan, 0.005],
                           "params_method.projector.out_dim": [32.0, 128.0]})
    assert describe_config(trials, 0) == "SimCLR, lr 0.00044, temperature 0.123, out_dim 32"
    assert describe_config(trials, 1.0) == "Barlow Twins, lr 0.1, lambd 0.005, out_dim 128"
    assert describe_config(trials, None) == "" and describe_config(trials, 9) == ""
    table = pd.DataFrame({"trial": [3], "method": ["vicreg"], "lr": [2e-3], "lambd": [math.nan], "seed": [0]})
    assert describe_config(table, 3) == "VICReg, lr 0.002"  # a metrics table: known hyperparameter names


def _lines(text: str) -> dict[str, str]:
    return {line.split()[0]: line.strip() for line in text.splitlines()[1:-1]}


def test_policy_summary_says_what_each_policy_chose_in_points() -> None:
    trials, readouts = make_frames()
    table = policy_table(trials, readouts, SelectionConfig(alpha_band=[1.1, 1.7], n_orders=3))
    text = policy_summary(table)
    lines = _lines(text)
    assert lines["oracle"].startswith("oracle chose trial 2 (SimCLR, lr 0.003) after 7 of 7 readouts: "
                                      "test accuracy 80.0%")
    # band [1.1, 1.7] reads trials 3 and 5, chooses 5 (test 0.86 > the oracle's 0.80 on test)
    assert lines["alpha_band"].startswith("alpha_band chose trial 5 (BYOL, lr 0.006) after 2 of 7 readouts: "
                                          "test accuracy 86.0%, 6.0 points above the oracle (it chose by "
                                          "validation")
    curve = random_b_regrets(list(range(7)), dict(enumerate(VAL[:7])), dict(enumerate(TEST[:7])), 0.80)
    expected = f"2 random readouts: {100 * curve[1]:.1f} points below the oracle on average"
    assert lines["alpha_band"].endswith(expected)
    assert "points of test accuracy" not in text and "in points" in text.splitlines()[-1]
    assert not re.search(r"trial \d+\.\d", text)  # integer ids
    # read back from the CSV (ids as floats, NaN notes) it says the same
    with_csv = table.astype({"chosen_trial": float})
    assert policy_summary(with_csv) == text


def test_policy_summary_says_why_a_policy_chose_nothing() -> None:
    trials, readouts = make_frames()
    table = policy_table(trials, readouts, SelectionConfig(alpha_band=[3.0, 4.0], n_orders=3))
    line = _lines(policy_summary(table))["alpha_band"]
    note = table.set_index("policy").loc["alpha_band", "note"]
    assert note.endswith("read nothing: all 7 usable alphas lie in [0.50, 2.50]")
    assert line == f"alpha_band chose nothing after 0 of 7 readouts; note: {note}"


def test_failures_table_lists_failed_trials_and_readouts_with_reasons() -> None:
    trials, readouts = make_frames()
    trials["failure_reason"] = [None] * 7 + ["NaN loss at epoch 3"]
    readouts.loc[readouts["trial"] == 4, "status"] = "failed"
    readouts["error"] = [None] * 4 + ["probe diverged", None, None]
    failures = failures_table(trials, readouts)
    assert failures.to_dict("records") == [
        {"trial": 4, "what": "readout", "state": "failed", "reason": "probe diverged"},
        {"trial": 7, "what": "trial", "state": "FAIL", "reason": "NaN loss at epoch 3"},
    ]
    no_reason = failures_table(trials.drop(columns="failure_reason"), readouts)
    assert no_reason.loc[1, "reason"] == "no reason recorded"


def test_report_reads_in_one_minute(tmp_path: Path) -> None:
    """The answer first, then the headline, definitions, titled and captioned figures, one correlation table
    with small-n warnings, failures with reasons, settings as a table and links to the tables."""
    trials, readouts = make_frames(tmp_path)
    trials["failure_reason"] = [None] * 7 + ["NaN loss at epoch 3"]
    cfg = SelectionConfig(n_orders=5)
    text = build_report(trials, readouts, tmp_path / "report", cfg, n_boot=50).read_text()
    h2 = re.findall(r"<h2>([^<]+)</h2>", text)
    assert h2[:4] == ["The answer", "What each policy chose", "Definitions", "Policies vs oracle"]
    assert "<li>oracle chose trial 2 (SimCLR, lr 0.003) after 7 of 7 readouts" in text
    assert "7 usable configs of 8 trials; 1 trial failed (listed below)." in text
    for term in ("readout", "oracle", "regret (points)", "random-b baseline", "p_within_tol"):
        assert f"<dt>{term}</dt>" in text
    titles = re.findall(r"<figure><h3>([^<]+)</h3>", text)
    assert len(titles) == 4 and all(len(t) > 15 for t in titles)
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", text)
    assert len(captions) == 4 and not any(c.endswith(".png") for c in captions)
    assert "below 0" in text  # the budget caption explains a negative regret
    assert h2.count("Metric vs accuracy correlations") == 1 and "<h2>Spearman with bootstrap" not in text
    assert "<th>BYOL (n = 3) <span class=\"warn\">unreliable</span></th>" in text  # byol has 3 usable configs
    # rankme over the 7 usable configs: rank differences 0, -1, 1, 0, 0, -1, 1 -> 1 - 6 * 4 / (7 * 48)
    assert re.search(r"<td>rankme</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>\+0\.93 \[", text)
    assert "NaN loss at epoch 3" in text and "<h2>Failed trials and readouts</h2>" in text
    assert '"batch_size":' not in text and "<th>batch_size</th><td>10</td>" in text
    for name in ("policies", "correlations", "failures", "trials"):
        assert f'<a href="tables/{name}.csv">' in text
        assert (tmp_path / "report" / "tables" / f"{name}.csv").is_file()
    for link in re.findall(r'<a href="(tables/[^"]+)">', text):  # every table link points at a file
        assert (tmp_path / "report" / link).is_file(), link
    assert not re.search(r"<td>\d+\.0000</td>", text)  # no ids or counts printed as 1.0000
    assert "why nothing was chosen" not in text  # every policy chose a config: no empty column
    evidence_header = re.search(r"<h2>Policies vs random-b.*?<thead>(.*?)</thead>", text, re.S).group(1)
    assert re.findall(r"<th>([^<]+)</th>", evidence_header)[:3] == ["scope", "policy", "target met"]


def test_the_answer_comes_first_with_exact_values_and_evidence(tmp_path: Path) -> None:
    """make_frames: guided reads 4 configs and chooses trial 2 (val 0.90, test 0.80); RankMe's optimum is
    trial 2 too, second of 7 by test accuracy (trial 5 has 0.86)."""
    trials, readouts = make_frames(tmp_path)
    trials.loc[2, "params_lr"] = np.nextafter(0.003, 1.0)  # 0.0030000000000000005: printed "0.003" rounded
    text = build_report(trials, readouts, tmp_path / "report", SelectionConfig(n_orders=5), n_boot=50).read_text()
    block = re.search(r'<div class="answer" id="answer">(.*?)</div>', text, re.S).group(1)
    assert text.index('id="answer"') < text.index("<h2>What each policy chose</h2>")
    assert block.startswith('<p class="verdict">Use trial 2 (guided, validated by 4 readouts of 7 configs); '
                            "the label-free objective alone could be trusted here: rankme agrees with test "
                            "accuracy (Spearman +0.93 [")
    assert "its optimum, trial 2, ranks 2 of 7 (80.0% test)." in block
    assert "<code>lr=0.0030000000000000005</code>" in block  # exact, never rounded
    assert f"<code>{tmp_path / 'run2'}</code>" in block
    assert "<b>target met: no</b>" in block and "README, Evidence</a>" in block
    assert "stopped after 4 readouts" in block
    assert "Other policies: adaptive_alpha_window: trial 2, 7 readouts" in block
    answer = json.loads((tmp_path / "report" / "tables" / "answer.json").read_text())
    assert answer["recommended"]["trial"] == 2 and answer["recommended"]["params"] == {"lr": 0.0030000000000000005}
    assert [p["trial"] for p in answer["optimum"]] == [2] and answer["correlations"][0]["n"] == 7
    assert answer["correlations"][0]["rho"] == pytest.approx(1 - 6 * 4 / (7 * 48))


def test_the_answer_names_a_misleading_objective(tmp_path: Path) -> None:
    """RankMe reversed: its optimum (trial 4) has the worst test accuracy, 7 of 7, and the verdict says not to
    trust it alone."""
    trials, readouts = make_frames(tmp_path)
    trials["rankme"] = [60.0 - r for r in RANKME]
    text = build_report(trials, readouts, tmp_path / "report", SelectionConfig(n_orders=5), n_boot=50).read_text()
    verdict = re.search(r'<p class="verdict">([^<]*)</p>', text).group(1)
    assert "do not trust the label-free objective alone: rankme points away from test accuracy" in verdict
    assert verdict.endswith("its optimum, trial 4, ranks 7 of 7 (52.0% test).")


def test_chosen_configs_to_mark() -> None:
    policies = pd.DataFrame({"policy": ["a", "b", "oracle", "none"],
                             "chosen_trial": [3.0, 5.0, 3.0, math.nan]})
    assert chosen_by(policies) == {3: ["a", "oracle"], 5: ["b"]}


def test_a_nan_policy_metric_is_named_in_the_failures(tmp_path: Path) -> None:
    """A completed trial whose RankMe is NaN is hidden from the RankMe policies: failures.csv and the report
    say so (the silhouette / lidar NaNs are no policy's input and are not listed)."""
    trials, readouts = make_frames()
    trials.loc[trials["trial"] == 2, "rankme"] = float("nan")
    path = build_report(trials, readouts, tmp_path / "report", SelectionConfig(n_orders=3), n_boot=20)
    failures = pd.read_csv(tmp_path / "report" / "tables" / "failures.csv")
    metric = failures[failures["what"] == "metric"]
    assert list(metric["trial"]) == [2] and "rankme NaN or missing" in metric["reason"].iloc[0]
    assert "1 completed trial with a NaN metric" in path.read_text()
    from sweep.selection.report import nan_metric_lines

    assert nan_metric_lines(tmp_path / "report" / "tables")[0].startswith("trial 2: rankme NaN or missing")


def test_policies_table_explains_regret_zero_beside_p_within_below_one() -> None:
    """A regret of 0 on this sweep's order and p_within_tol < 1 over other orders get a note; the empty 'why
    nothing was chosen' column is left out, and kept when a policy chose nothing."""
    from sweep.selection.report import _policies_html

    cfg = SelectionConfig(n_orders=20)
    policies = pd.DataFrame({"policy": ["calibrated_rank", "guided"], "readouts_used": [4, 5],
                             "chosen_trial": pd.array([2, 2], dtype="Int64"), "chosen_params": ["", ""],
                             "val_accuracy": [0.9, 0.9], "test_accuracy": [0.8, 0.8], "regret_pts": [0.0, 0.0],
                             "random_b_regret_pts": [1.0, 1.0], "p_within_tol": [0.28, 1.0],
                             "mean_readouts_over_orders": [4.0, 5.0], "note": [None, None]})
    text = _policies_html(policies, cfg)
    assert "why nothing was chosen" not in text
    assert ("order-dependent policy (e.g. calibrated_rank) can have regret 0.0 in the order shown here" in text
            and "over 20 random visiting orders" in text)
    policies.loc[1, ["chosen_trial", "regret_pts", "note"]] = [pd.NA, math.nan, "guided read nothing"]
    text = _policies_html(policies.assign(p_within_tol=[1.0, 0.0]), cfg)
    assert "<th>why nothing was chosen</th>" in text and "order-dependent" not in text

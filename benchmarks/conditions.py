"""Where the label-free signal appears and where it vanishes, read off the stored testbed (no training).

    python benchmarks/conditions.py [--table benchmarks/data/testbed.parquet]
                                    [--curves benchmarks/data/testbed_curves.parquet]
                                    [--compare benchmarks/data/digits/testbed.parquet] [--md OUT.md]

Sections (Spearman rho with a bootstrap 95% interval over configs, per method, primary seed only):
1. Is there anything to select? Trained vs random-init readouts, the spread of test accuracy, how many configs
   lie within 1 point of the best (when most do, any policy "wins" and proves nothing), and seed noise: the
   standard deviation of test accuracy and of each metric between seeds of one config, against its spread
   between configs (a metric whose seed noise is as large as its between-config spread cannot rank configs).
2. Metric vs accuracy, per readout (linear probe, 10-shot probe, kNN): which metric ranks configs, and in
   which direction.
3. Training length: the metric at epoch e against the final accuracy (what pruning relies on), and the metric
   at epochs 2 and 4 against the probe at that same epoch (the signal of a short run).
4. Width: raw RankMe against RankMe / min(N, D), and RankMe within one projector width (out_dim strata).
5. Training regime: the same correlations within the lower and the upper half of the learning-rate range
   (split at its geometric midpoint, 1e-3: a hyperparameter, never the outcome), where runs are under- or
   well-trained after the same number of epochs.
6. Even with the direction known (post hoc, NOT a policy: the direction is read off this very table): the
   regret of reading the top b = ceil(log2 N) + 2 configs by each metric and choosing by validation.
7. Data (with ``--compare``): the same correlations on another testbed table (e.g. embedded digits).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from sweep.selection.evaluate import POOLED, bootstrap_spearman, spearman_table

DATA = Path(__file__).resolve().parent / "data"
METRICS = ("rankme", "rankme_normalized", "alpha", "abs_alpha_minus_1", "alpha_r2", "rankme_backbone",
           "stable_rank", "participation_ratio", "nesum", "silhouette", "ami_checkpoint", "entropy", "twonn",
           "cluster_learnability", "clid", "loss")
READOUTS = ("test_accuracy", "fewshot_test_accuracy", "knn_accuracy")


def _format_ci(rho: float, low: float, high: float, n: int) -> str:
    return f"n/a (n={n})" if not np.isfinite(rho) else f"{rho:+.2f} [{low:+.2f}, {high:+.2f}]"


def _ci(x: np.ndarray, y: np.ndarray, seed: int = 0) -> str:
    ci = bootstrap_spearman(x, y, n_boot=1000, seed=seed)
    return _format_ci(ci.rho, ci.low, ci.high, ci.n)


def primary(table: pd.DataFrame) -> pd.DataFrame:
    """Completed trials of the primary seed, with |alpha - 1|."""
    rows = table[(table["state"] == "COMPLETE")]
    if "repeat" in rows.columns:
        rows = rows[rows["repeat"] == 0]
    return rows.assign(abs_alpha_minus_1=(rows["alpha"] - 1.0).abs())


def present(frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The metrics that are columns of ``frame`` (older tables lack the newer metrics, e.g. twonn)."""
    return [m for m in metrics if m in frame.columns]


def _methods(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["method"].unique())


def spread_section(table: pd.DataFrame, reference: Optional[dict[str, float]]) -> pd.DataFrame:
    """Per method: configs, failures, readouts of the best / median / worst config, near-best share."""
    rows = []
    for method in sorted(table["method"].unique()):
        every = table[(table["method"] == method) & (table.get("repeat", 0) == 0)]
        done = primary(every)
        acc = done["test_accuracy"].to_numpy(float)
        best = np.nanmax(acc)
        rows.append({"method": method, "configs": len(every), "failed": int((every["state"] != "COMPLETE").sum()),
                     "test_best": best, "test_median": np.nanmedian(acc), "test_worst": np.nanmin(acc),
                     "within_1pt_of_best": int((acc >= best - 0.01).sum()),
                     "above_random_init": int((acc > (reference or {}).get("test_accuracy", np.nan)).sum()),
                     "knn_best": np.nanmax(done["knn_accuracy"]), "fewshot_best": np.nanmax(done["fewshot_test_accuracy"])})
    return pd.DataFrame(rows)


def seed_noise_section(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and quantity: mean std between seeds of one config vs std between configs (seed 0)."""
    rows = []
    done = table[table["state"] == "COMPLETE"].assign(abs_alpha_minus_1=lambda t: (t["alpha"] - 1).abs())
    for method in sorted(done["method"].unique()):
        mine = done[done["method"] == method]
        repeated = mine.groupby("config_id").filter(lambda g: len(g) > 1)
        for quantity in ("test_accuracy", "rankme", "rankme_normalized", "alpha"):
            within = repeated.groupby("config_id")[quantity].std(ddof=1).mean()
            between = mine[mine["repeat"] == 0][quantity].std(ddof=1)
            rows.append({"method": method, "quantity": quantity, "configs_with_seeds": repeated["config_id"].nunique(),
                         "std_between_seeds": within, "std_between_configs": between,
                         "noise_share": within / between if between else np.nan})
    return pd.DataFrame(rows)


def correlation_section(frame: pd.DataFrame, metrics: Sequence[str], readouts: Sequence[str]) -> pd.DataFrame:
    """Rows metric x readout, one column per method (and pooled for the width-free metrics)."""
    parts = []
    for readout in readouts:
        long = spearman_table(frame, metrics, readout, n_boot=1000, seed=0)
        long = long[long["scope"] != POOLED]
        text = long.apply(lambda r: _format_ci(r["spearman"], r["ci_low"], r["ci_high"], r["n"]), axis=1)
        wide = long.assign(text=text).pivot(index="metric", columns="scope", values="text")
        parts.append(wide.reindex(list(metrics)).reset_index().assign(readout=readout))
    table = pd.concat(parts, ignore_index=True)
    return table[["readout", "metric", *_methods(frame)]]


def epoch_section(curves: pd.DataFrame, table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Spearman of the metric at epoch e with the FINAL test accuracy (pruning's premise), per method."""
    final = primary(table).set_index("trial")["test_accuracy"]
    curves = curves[curves["trial"].isin(final.index)].assign(
        abs_alpha_minus_1=lambda c: (c["alpha"] - 1).abs())
    rows = []
    for metric in metrics:
        for epoch in sorted(curves["epoch"].unique()):
            row = {"metric": metric, "epoch": int(epoch)}
            at = curves[curves["epoch"] == epoch]
            for method in _methods(at):
                mine = at[at["method"] == method]
                row[method] = _ci(mine[metric].to_numpy(float), final.loc[mine["trial"]].to_numpy(float))
            rows.append(row)
    return pd.DataFrame(rows)


def short_run_section(curves: pd.DataFrame, table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Spearman of the metric at epoch e with the probe AT epoch e (e = 2, 4, final): a shorter training."""
    done = primary(table).set_index("trial")
    last = int(curves["epoch"].max())
    curves = curves.assign(abs_alpha_minus_1=lambda c: (c["alpha"] - 1).abs())
    rows = []
    for epoch, column in ((2, "test_accuracy_e2"), (4, "test_accuracy_e4"), (last, "test_accuracy")):
        if column not in done.columns:
            continue
        at = curves[(curves["epoch"] == epoch) & curves["trial"].isin(done.index)]
        for metric in metrics:
            row = {"epoch": epoch, "metric": metric}
            for method in _methods(at):
                mine = at[at["method"] == method]
                row[method] = _ci(mine[metric].to_numpy(float), done.loc[mine["trial"], column].to_numpy(float))
            rows.append(row)
    return pd.DataFrame(rows)


def width_section(frame: pd.DataFrame) -> pd.DataFrame:
    """RankMe raw vs normalised, and raw RankMe within each projector width (strata with >= 5 configs)."""
    rows = []
    for method in _methods(frame):
        mine = frame[frame["method"] == method]
        row = {"method": method,
               "rankme~out_dim": _ci(mine["rankme"].to_numpy(float), mine["out_dim"].to_numpy(float)),
               "acc~out_dim": _ci(mine["out_dim"].to_numpy(float), mine["test_accuracy"].to_numpy(float)),
               "rankme~acc": _ci(mine["rankme"].to_numpy(float), mine["test_accuracy"].to_numpy(float)),
               "rankme_normalized~acc": _ci(mine["rankme_normalized"].to_numpy(float),
                                            mine["test_accuracy"].to_numpy(float))}
        within = []
        for _, group in mine.groupby("out_dim"):
            if len(group) >= 5:
                ci = bootstrap_spearman(group["rankme"], group["test_accuracy"], n_boot=200)
                within.append((ci.rho, ci.n))
        if within:
            weights = np.array([n for _, n in within], float)
            row["rankme~acc within widths (mean, n-weighted)"] = (
                f"{np.nansum([r * n for r, n in within]) / weights.sum():+.2f} over {len(within)} widths")
        rows.append(row)
    return pd.DataFrame(rows)


LR_SPLIT = 1e-3  # geometric midpoint of the testbed's learning-rate range [1e-4, 1e-2]


def regime_section(frame: pd.DataFrame, metrics: Sequence[str], split: float = LR_SPLIT) -> pd.DataFrame:
    """Spearman with test accuracy within lr < split and lr >= split, per method."""
    rows = []
    for method in _methods(frame):
        mine = frame[frame["method"] == method]
        for name, part in ((f"lr < {split:g}", mine[mine["lr"] < split]), (f"lr >= {split:g}", mine[mine["lr"] >= split])):
            row = {"method": method, "regime": name, "configs": len(part),
                   "test_range": f"{part['test_accuracy'].min():.3f}-{part['test_accuracy'].max():.3f}"}
            for metric in metrics:
                row[metric] = _ci(part[metric].to_numpy(float), part["test_accuracy"].to_numpy(float))
            rows.append(row)
    return pd.DataFrame(rows)


def hindsight_section(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Regret (points) of reading the top b configs by each metric in its better direction ON THIS TABLE."""
    rows = []
    for method in _methods(frame):
        mine = frame[frame["method"] == method].reset_index(drop=True)
        budget = int(np.ceil(np.log2(len(mine)))) + 2
        oracle = mine.loc[mine["val_accuracy"].idxmax(), "test_accuracy"]
        row: dict[str, object] = {"method": method, "b": budget}
        for metric in metrics:
            values = mine[metric].to_numpy(float)
            rho = bootstrap_spearman(values, mine["test_accuracy"], n_boot=1).rho
            top = mine.iloc[np.argsort(-np.sign(rho) * values, kind="stable")[:budget]]
            chosen = top.loc[top["val_accuracy"].idxmax(), "test_accuracy"]
            row[metric] = f"{100 * (oracle - chosen):.1f} ({'+' if rho > 0 else '-'})"
        rows.append(row)
    return pd.DataFrame(rows)


def plateau_section(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: test accuracy at the last epoch minus at the latest intermediate readout (3/4 of the run in the
    converged preset), over every completed trial, against the seed noise (std between seeds of one config, mean
    over the configs trained with several seeds). Plateau: |mean difference| < seed noise."""
    marks = sorted((int(c.rsplit("_e", 1)[1]) for c in table.columns if c.startswith("test_accuracy_e")), reverse=True)
    if not marks:
        return pd.DataFrame()
    column = f"test_accuracy_e{marks[0]}"
    done = table[table["state"] == "COMPLETE"]
    rows = []
    for method in sorted(done["method"].unique()):
        mine = done[done["method"] == method]
        diff = (mine["test_accuracy"] - mine[column]).to_numpy(float)
        noise = mine.groupby("config_id").filter(lambda g: len(g) > 1).groupby("config_id")["test_accuracy"].std(
            ddof=1).mean()
        rows.append({"method": method, "trials": len(mine), "mark_epoch": marks[0],
                     "mean_last_minus_mark": np.nanmean(diff), "max_abs": np.nanmax(np.abs(diff)),
                     "seed_std_last": noise, "plateau": bool(abs(np.nanmean(diff)) < noise)})
    return pd.DataFrame(rows)


def best_signal_section(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per method: the label-free score with the largest |Spearman| with test accuracy, and whether it reaches
    0.6 in the direction of its sign (the issue's target is stated with the interval)."""
    rows = []
    for method in _methods(frame):
        mine = frame[frame["method"] == method]
        cis = {m: bootstrap_spearman(mine[m].to_numpy(float), mine["test_accuracy"].to_numpy(float), n_boot=1000)
               for m in metrics}
        cis = {m: c for m, c in cis.items() if np.isfinite(c.rho)}
        if not cis:
            continue
        best = max(cis, key=lambda m: abs(cis[m].rho))
        c = cis[best]
        rows.append({"method": method, "configs": len(mine), "best_metric": best,
                     "spearman": _format_ci(c.rho, c.low, c.high, c.n), "reaches_0.6": bool(abs(c.rho) >= 0.6)})
    return pd.DataFrame(rows)


def figures(frame: pd.DataFrame, out: Path) -> list[Path]:
    """The alpha-ReQ figure (alpha vs test accuracy, colour = projector width) and the RankMe figure (RankMe vs
    test accuracy), one panel per method, as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, name in (("alpha", "alpha_vs_accuracy.png"), ("rankme", "rankme_vs_accuracy.png")):
        methods = _methods(frame)
        fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False)
        for ax, method in zip(axes[0], methods):
            mine = frame[frame["method"] == method]
            dots = ax.scatter(mine[metric], 100 * mine["test_accuracy"], c=np.log2(mine["out_dim"]), cmap="viridis",
                              s=28, edgecolors="k", linewidths=0.3)
            ax.set(title=method, xlabel=metric, ylabel="linear probe test accuracy (%)")
            bar = fig.colorbar(dots, ax=ax)
            bar.set_label("log2 projector width")
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths


def random_init_reference(table: Path) -> Optional[dict[str, float]]:
    """The untrained backbone's readouts stored beside a testbed table (testbed.json), if any."""
    meta = table.with_suffix(".json")
    return json.loads(meta.read_text())["random_init_reference_mean_over_seeds"] if meta.is_file() else None


def _show(title: str, frame: pd.DataFrame, out: list[str]) -> None:
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format",
                           "{:.3f}".format, "display.max_colwidth", 40):
        text = frame.to_string(index=False)
    print(f"\n## {title}\n{text}", flush=True)
    out.append(f"\n## {title}\n\n```\n{text}\n```\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DATA / "testbed.parquet")
    parser.add_argument("--curves", type=Path, default=None, help="default: <table>_curves.parquet beside it")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other testbed tables (data condition)")
    parser.add_argument("--md", type=Path, default=None, help="also write the sections as markdown")
    parser.add_argument("--figures", type=Path, default=None, help="write the alpha / RankMe figures (PNG) here")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="only these methods (e.g. those whose grid is complete); default: every method")
    args = parser.parse_args(argv)
    for path in (args.table, *args.compare):
        if not path.is_file():
            raise SystemExit(f"conditions: no table at {path}; run python benchmarks/testbed.py first")
    table = pd.read_parquet(args.table)
    curves = pd.read_parquet(args.curves or args.table.with_name(args.table.stem + "_curves.parquet"))
    out: list[str] = [f"# Conditions of the label-free signal: {args.table.name}\n"]
    if args.methods:
        unknown = sorted(set(args.methods) - set(table["method"]))
        if unknown:
            raise SystemExit(f"conditions: --methods {unknown} not in the table; present: {_methods(table)}")
        table, curves = table[table["method"].isin(args.methods)], curves[curves["method"].isin(args.methods)]
        out.append(f"methods: {', '.join(args.methods)} (--methods)\n")
    reference = random_init_reference(args.table)
    frame = primary(table)
    if reference:
        print("random-init backbone (mean over seeds): " + ", ".join(f"{k} {v:.3f}" for k, v in reference.items()))
        out.append("random-init backbone (mean over seeds): "
                   + ", ".join(f"{k} {v:.3f}" for k, v in reference.items()) + "\n")
    _show("1a. Spread of the readouts (primary seed)", spread_section(table, reference), out)
    if "repeat" in table.columns and (table["repeat"] > 0).any():
        _show("1b. Seed noise: std between seeds of one config vs between configs", seed_noise_section(table), out)
    _show("2. Metric vs readout (Spearman, 95% bootstrap CI)", correlation_section(frame, present(frame, METRICS), READOUTS),
          out)
    _show("3a. Metric at epoch e vs FINAL test accuracy", epoch_section(curves, table, ("rankme", "rankme_normalized",
                                                                                         "alpha", "loss")), out)
    _show("3b. Metric at epoch e vs the probe at epoch e", short_run_section(curves, table, ("rankme",
                                                                                            "rankme_normalized",
                                                                                            "alpha")), out)
    _show("2b. Best label-free score per method (target: |Spearman| >= 0.6)",
          best_signal_section(frame, [m for m in present(frame, METRICS) if m != "loss"]), out)
    _show("2c. Plateau: last epoch vs the latest intermediate readout, against seed noise", plateau_section(table),
          out)
    _show("4. Width: raw vs normalised RankMe", width_section(frame), out)
    if frame.groupby("method")["lr"].nunique().max() > 1:  # a fixed learning rate (converged) has no regimes
        _show("5. Training regime: within the lower / upper half of the learning-rate range",
              regime_section(frame, ("rankme", "rankme_normalized", "alpha")), out)
    _show("6. Hindsight (NOT a policy): regret in points of the top b by each metric, sign read off this table",
          hindsight_section(frame, ("rankme", "rankme_normalized", "alpha", "silhouette", "entropy", "stable_rank")),
          out)
    for other in args.compare:
        _show(f"7. Data: {other}", correlation_section(primary(pd.read_parquet(other)), METRICS[:4],
                                                      READOUTS[:1]), out)
        _show(f"7. Data: spread on {other}", spread_section(pd.read_parquet(other), random_init_reference(other)),
              out)
    if args.figures:
        for path in figures(frame, args.figures):
            print(f"wrote {path}")
    if args.md:
        args.md.write_text("".join(out))
        print(f"\nwrote {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

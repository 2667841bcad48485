"""The result record of a trial (schema in docs/ARCHITECTURE.md) and its files: JSON, one-row parquet, CSV."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd

RECORD_METRIC_KEYS = ("rankme", "rankme_normalized", "alpha", "alpha_r2", "stable_rank", "participation_ratio",
                      "nesum", "silhouette", "ami", "entropy", "lidar", "loss")
RESULT_JSON, RESULT_PARQUET, MONITOR_CSV = "result.json", "result.parquet", "monitor.csv"


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN / inf floats become None (strict JSON has no NaN), numpy scalars become Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def final_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The record's ``metrics``: the last monitoring row, with every contract key present (None if absent)."""
    last = history[-1] if history else {}
    out = {k: last.get(k) for k in RECORD_METRIC_KEYS}
    out.update({k: v for k, v in last.items() if k not in out and k != "epoch"})
    return clean(out)


def build_record(*, status: str, failure_reason: Optional[str], method: str, run_dir: Path,
                 config: dict[str, Any], history: list[dict[str, Any]], features: dict[str, dict[str, str]],
                 timings: dict[str, float], epochs_completed: int) -> dict[str, Any]:
    return clean({
        "status": status, "failure_reason": failure_reason, "method": method, "run_dir": str(run_dir),
        "config": config, "metrics": final_metrics(history), "monitor": history, "features": features,
        "timings": timings, "epochs_completed": epochs_completed,
    })


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """Flat one-row view: scalars, metrics by name, ``timings_<k>``, config and monitor as JSON text."""
    row = {k: record[k] for k in ("status", "failure_reason", "method", "run_dir", "epochs_completed")}
    row.update(record["metrics"])
    row.update({f"timings_{k}": v for k, v in record["timings"].items()})
    row["config_json"] = json.dumps(record["config"], sort_keys=True)
    row["monitor_json"] = json.dumps(record["monitor"])
    return row


def write_record(record: dict[str, Any], run_dir: Path) -> None:
    """``result.json`` (strict JSON) and ``result.parquet`` (one row) under ``run_dir``."""
    (run_dir / RESULT_JSON).write_text(json.dumps(record, indent=2, allow_nan=False))
    row = record_row(record)
    pd.DataFrame([row]).astype({k: "float64" for k, v in row.items() if v is None}).to_parquet(
        run_dir / RESULT_PARQUET, index=False)


def write_monitor_csv(history: list[dict[str, Any]], run_dir: Path) -> None:
    """The monitoring curve, one row per monitored epoch (rewritten whole each time)."""
    pd.DataFrame(history).to_csv(run_dir / MONITOR_CSV, index=False)


def read_record(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RESULT_JSON).read_text())

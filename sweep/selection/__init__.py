"""Label-free selection of SSL hyperparameters: policies, readout jobs and the comparison report."""

from sweep.selection.pipeline import ExecutorReadout, TableReadout, pending_trials, run_readouts, select
from sweep.selection.policies import (
    POLICY_NAMES,
    CountingReadout,
    SelectionError,
    SelectionResult,
    adaptive_alpha_window,
    alpha_band,
    alpha_rankme,
    calibrated_rank,
    combined_order,
    oracle,
    proportional_split,
    rankme_budget,
    rankme_topk,
    run_policies,
    usable_trials,
)
from sweep.selection.readouts import ReadoutRecord, load_readouts, readout_job, readout_path

__all__ = [
    "POLICY_NAMES",
    "CountingReadout",
    "ExecutorReadout",
    "ReadoutRecord",
    "SelectionError",
    "SelectionResult",
    "TableReadout",
    "adaptive_alpha_window",
    "alpha_band",
    "alpha_rankme",
    "calibrated_rank",
    "combined_order",
    "load_readouts",
    "oracle",
    "pending_trials",
    "proportional_split",
    "rankme_budget",
    "rankme_topk",
    "readout_job",
    "readout_path",
    "run_policies",
    "run_readouts",
    "select",
    "usable_trials",
]

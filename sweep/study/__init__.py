"""Optuna ask/tell sweeps of SSL hyperparameters without labels.

Use through Hydra: ``python -m sweep.train.job -m hydra/sweeper=rankme_alpha hydra/launcher=sweep_local
+search_space=demo hydra.sweeper.n_trials=40 hydra.sweeper.n_jobs=4`` (re-run the same command to resume).
Programmatic entry points: the results table and its export, and the pieces the driver is built from.
"""
from sweep._lazy import lazy_exports

# Imported on first use (PEP 562): a trial worker that imports one submodule (the pruning reporter) must not
# pay for pandas (results) and the rest, ~0.3 s of every trial's start-up.
_EXPORTS = {
    "OBJECTIVES": "objectives", "Objective": "objectives", "ObjectiveError": "objectives",
    "objective_values": "objectives", "parse_objectives": "objectives",
    "TrialReporter": "pruning", "pruned_record": "pruning", "trial_reporter": "pruning",
    "export_results": "results", "trials_dataframe": "results",
    "Param": "search_space", "SearchSpace": "search_space", "SearchSpaceError": "search_space",
    "parse_search_space": "search_space",
    "StorageError": "storage", "StudyNotFoundError": "storage", "make_storage": "storage",
    "normalize_storage_url": "storage",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "OBJECTIVES", "Objective", "ObjectiveError", "Param", "SearchSpace", "SearchSpaceError", "StorageError",
    "StudyNotFoundError", "TrialReporter",
    "export_results", "make_storage", "normalize_storage_url", "objective_values", "parse_objectives",
    "parse_search_space", "pruned_record", "trial_reporter", "trials_dataframe",
]

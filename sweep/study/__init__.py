"""Optuna ask/tell sweeps of SSL hyperparameters without labels.

Use through Hydra: ``python -m sweep.train.job -m hydra/sweeper=rankme_alpha hydra/launcher=sweep_local
+search_space=demo hydra.sweeper.n_trials=40 hydra.sweeper.n_jobs=4`` (re-run the same command to resume).
Programmatic entry points: the results table and its export, and the pieces the driver is built from.
"""
from sweep.study.objectives import OBJECTIVES, Objective, ObjectiveError, objective_values, parse_objectives
from sweep.study.pruning import TrialReporter, pruned_record, reporter_from_env
from sweep.study.results import export_results, trials_dataframe
from sweep.study.search_space import Param, SearchSpace, SearchSpaceError, parse_search_space
from sweep.study.storage import StorageError, StudyNotFoundError, make_storage, normalize_storage_url

__all__ = [
    "OBJECTIVES", "Objective", "ObjectiveError", "Param", "SearchSpace", "SearchSpaceError", "StorageError",
    "StudyNotFoundError", "TrialReporter",
    "export_results", "make_storage", "normalize_storage_url", "objective_values", "parse_objectives",
    "parse_search_space", "pruned_record", "reporter_from_env", "trials_dataframe",
]

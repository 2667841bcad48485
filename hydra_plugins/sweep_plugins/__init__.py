"""Hydra plugins of the sweep project: ``hydra/sweeper=sweep_optuna`` and
``hydra/launcher=sweep_inprocess|sweep_local|sweep_slurm``. Light front: heavy code lives in sweep.study / sweep.launch."""

"""Structured configs of our sweeper and launchers, registered in Hydra's ConfigStore (values live in YAML)."""
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from sweep.config.sweeper_settings import SweepSettings


@dataclass
class SweepOptunaSweeperConf(SweepSettings):
    """The sweeper's one schema (``sweep.config.sweeper_settings.SweepSettings``: fields and defaults) plus its target."""

    _target_: str = "hydra_plugins.sweep_plugins.sweep_optuna_sweeper.SweepOptunaSweeper"


@dataclass
class InProcessLauncherConf:
    _target_: str = "hydra_plugins.sweep_plugins.sweep_launchers.InProcessLauncher"


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.sweep_plugins.sweep_launchers.LocalLauncher"
    gpus: Optional[list[Any]] = None  # e.g. [0, 1]: each trial gets the least busy one as CUDA_VISIBLE_DEVICES
    python: Optional[str] = None  # interpreter of the workers; None: the driver's
    env: dict[str, Any] = field(default_factory=dict)  # extra environment of every worker


@dataclass
class SlurmLauncherConf:
    _target_: str = "hydra_plugins.sweep_plugins.sweep_launchers.SlurmLauncher"
    cluster: Optional[str] = "slurm"  # submitit AutoExecutor cluster: slurm | local | debug | None (auto)
    submitit_folder: Optional[str] = None  # None: <sweep_dir>/.submitit/%j
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    gpus_per_node: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    timeout_min: int = 60
    nodes: int = 1
    tasks_per_node: int = 1
    array_parallelism: Optional[int] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH --key=value
    setup: list[str] = field(default_factory=list)  # lines run before the job (module load, env)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit -> checkpoint + requeue
    preempt_signal: Optional[str] = None  # e.g. USR2 when NCCL owns USR1 (exported as SUBMITIT_PREEMPT_SIGNAL)
    max_num_timeout: int = 3  # requeues after time-outs
    results_timeout_s: float = 5.0  # wait for a crashed job's result file (submitit's default is 15 s)


def _open_maps(schema: type, *paths: str) -> DictConfig:
    """The schema as a node whose free-form maps accept new keys without a leading ``+`` on the command line
    (``hydra.sweeper.sampler.options.population_size=8``); the rest stays struct-checked."""
    node = OmegaConf.structured(schema)
    for path in paths:
        OmegaConf.set_struct(OmegaConf.select(node, path), False)
    return node


def register_configs() -> None:
    cs = ConfigStore.instance()
    sweeper = _open_maps(SweepOptunaSweeperConf, "sampler.options", "pruner.options", "search_space")
    cs.store(group="hydra/sweeper", name="sweep_optuna", node=sweeper, provider="sweep")
    cs.store(group="hydra/launcher", name="sweep_inprocess", node=InProcessLauncherConf, provider="sweep")
    cs.store(group="hydra/launcher", name="sweep_local", node=_open_maps(LocalLauncherConf, "env"), provider="sweep")
    cs.store(group="hydra/launcher", name="sweep_slurm", node=_open_maps(SlurmLauncherConf, "additional_parameters"),
             provider="sweep")


register_configs()

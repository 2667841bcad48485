"""Structured configs of our sweeper and launchers, registered in Hydra's ConfigStore (values live in YAML)."""
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | grid | cmaes | nsgaii
    seed: Optional[int] = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to the Optuna sampler's constructor


@dataclass
class PrunerConf:
    name: str = "none"  # none | median | percentile | successive_halving | hyperband | threshold
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConf:
    metric: str = "rankme"  # a key of the result record's "metrics"
    direction: Optional[str] = None  # maximize | minimize; None: maximize, or minimize when target is set
    target: Optional[float] = None  # minimise |metric - target| (alpha-ReQ: target 1.0)


@dataclass
class SweepOptunaSweeperConf:
    _target_: str = "hydra_plugins.sweep_plugins.sweep_optuna_sweeper.SweepOptunaSweeper"
    study_name: Optional[str] = None  # None: the Hydra job name
    storage: Optional[str] = None  # None: sqlite <cwd>/.sweep/optuna.db | journal:///path | postgresql://...
    sampler: SamplerConf = field(default_factory=SamplerConf)
    objectives: list[ObjectiveConf] = field(default_factory=lambda: [ObjectiveConf()])
    n_trials: int = 20  # TOTAL for the study: a re-run tops up to this number
    n_jobs: int = 1  # trials kept in flight
    max_failure_ratio: float = 0.5  # abort when failed/finished exceeds this ...
    min_finished_before_abort: int = 5  # ... once this many trials have finished
    pruner: PrunerConf = field(default_factory=PrunerConf)
    search_space: dict[str, Any] = field(default_factory=dict)  # or +search_space=<name> (conf/search_space/)
    validate_fn: Optional[str] = "sweep.config.validate.validate_train_config"  # checks each composed config
    validate_configs: bool = True  # compose every categorical combination before submitting anything
    dedupe: bool = True  # a proposal equal to a COMPLETE trial reuses its result instead of running again
    poll_interval_s: float = 0.05
    assume_foreign_drivers_dead: bool = True  # deprecated, ignored: a driver is alive while its heartbeat is
    driver_heartbeat_s: float = 10.0  # the driver refreshes its heartbeat in the storage this often ...
    driver_timeout_s: float = 60.0  # ... and counts as lost (its jobs adopted or requeued) after this long without
    claim_settle_s: float = 0.5  # two drivers starting at once: the claim is re-read after this, one steps back
    export_results: bool = True  # trials.parquet + trials.csv in the sweep dir at the end


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

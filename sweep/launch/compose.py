"""Trial configs composed once per search-space shape, then patched: Hydra's composition costs ~90 ms a trial
(config files, defaults list, struct merge), most of a no-op trial's driver time (docs/ARCHITECTURE.md,
"Per-trial overhead").

Two trials have the same *shape* when their overrides differ only in plain numeric values (``lr=0.01`` vs
``lr=0.02``): the config groups chosen, the keys set and every other override are equal. The first trial of a
shape is composed by Hydra; later ones copy it and set their numbers the way Hydra's own override step does
(``OmegaConf.update(cfg, key, value, merge=True)`` on the struct config, same parsed value), then rebuild what
Hydra derives from the override list (``hydra.overrides.task``, ``hydra.job.override_dirname``). Anything else
(a config group, ``+key``/``~key``, a ``hydra.*`` key, a string, a key set twice or nested in another override)
is part of the shape, so it always goes through Hydra.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

PATCHABLE_TYPES = (int, float)  # bool is an int: excluded explicitly below
_MAX_SHAPES = 256  # categorical combinations kept; past that the oldest shape is recomposed when it returns


class ComposeCache:
    """``compose(overrides, idx)``: Hydra's ``load_sweep_config`` result for ``overrides``, job id/num = idx."""

    def __init__(self, hydra_context: Any, master_config: DictConfig) -> None:
        self.hydra_context, self.master = hydra_context, master_config
        self._shapes: dict[tuple[str, ...], DictConfig] = {}
        self._parser: Any = None
        self._master_hydra: list[Any] | None = None  # the driver's hydra overrides, parsed once
        self.hits = self.misses = 0

    def compose(self, overrides: Sequence[str], idx: int) -> DictConfig:
        parsed = self._parse(list(overrides))
        patch = _patchable(parsed, self._is_group)
        shape = tuple(o.input_line if i not in patch else f"{o.key_or_group}=<number>" for i, o in enumerate(parsed))
        cached = self._shapes.get(shape)
        if cached is None:
            self.misses += 1
            cfg = self._compose_fresh(list(overrides))
            self._shapes[shape] = copy.deepcopy(cfg)
            if len(self._shapes) > _MAX_SHAPES:
                self._shapes.pop(next(iter(self._shapes)))
        else:
            self.hits += 1
            cfg = self._patched(cached, parsed, patch)
        return _set_job(cfg, idx)

    def _compose_fresh(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.master, overrides)

    def _parse(self, overrides: list[str]) -> list[Any]:
        if self._parser is None:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            self._parser = OverridesParser.create()
        return self._parser.parse_overrides(overrides)

    def _is_group(self, key: str) -> bool:
        repository = getattr(self.hydra_context.config_loader, "repository", None)
        if repository is None:
            return True  # cannot tell: treat it as a group, so it is composed by Hydra
        return bool(repository.group_exists(key.replace(".", "/")))

    def _patched(self, cached: DictConfig, parsed: list[Any], patch: set[int]) -> DictConfig:
        """A copy of the shape's config with this trial's numbers, as Hydra's override step would set them."""
        from hydra._internal.config_loader_impl import get_overrides_dirname

        cfg = copy.deepcopy(cached)
        for i in sorted(patch):
            OmegaConf.update(cfg, parsed[i].key_or_group, parsed[i].value(), merge=True)
        if self._master_hydra is None:
            self._master_hydra = self._parse(list(OmegaConf.to_container(self.master.hydra.overrides.hydra)))
        app = [o for o in (*self._master_hydra, *parsed) if not o.is_hydra_override()]
        dirname = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in app]
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=app, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
        return cfg


def _patchable(parsed: list[Any], is_group: Any) -> set[int]:
    """Indexes of the overrides that may be set on a copy: ``key=<int|float>`` of a config value (not a
    group, not hydra's), whose key no other override sets, contains or lies under."""
    from hydra.core.override_parser.types import OverrideType

    keys = [str(o.key_or_group) for o in parsed]
    found = set()
    for i, o in enumerate(parsed):
        key = keys[i]
        if o.type != OverrideType.CHANGE or o.package is not None or o.is_sweep_override() or o.is_hydra_override():
            continue
        value = o.value()
        if isinstance(value, bool) or not isinstance(value, PATCHABLE_TYPES) or "/" in key or "@" in key:
            continue
        if any(j != i and (k == key or k.startswith(key + ".") or key.startswith(k + ".")) for j, k in enumerate(keys)):
            continue
        if is_group(key):
            continue
        found.add(i)
    return found


def _set_job(cfg: DictConfig, idx: int) -> DictConfig:
    with open_dict(cfg.hydra.job) as job:
        job.id = f"trial_{idx}"
        job.num = idx
    return cfg


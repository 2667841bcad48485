"""Did-you-mean for command-line overrides, checked before Hydra composes anything.

Hydra answers ``mehtod=simclr`` with advice to append ``+mehtod=simclr`` and answers ``method=simclrr`` with an
option list that includes the internal ``_schema_*`` nodes. ``override_problems`` names the mistyped group, key
or option, suggests the closest valid one and lists the public choices (names starting with ``_`` are hidden).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Optional

from sweep.config.paths import conf_dir
from sweep.config.store import register_configs

PRIMARY_CONFIG = "train"
HYDRA_FLAGS_WITHOUT_VALUE = ("-m", "--multirun")


def override_problems(argv: Sequence[str]) -> list[str]:
    """One message per override naming an unknown group, key or group option; [] when all are known.

    Hydra flags other than ``-m`` (``--cfg``, ``-cn``, ``--help`` ...) change what the overrides mean, so the
    check steps aside when one is present and Hydra's own messages apply."""
    if any(arg.startswith("-") and arg not in HYDRA_FLAGS_WITHOUT_VALUE for arg in argv):
        return []
    overrides = [arg for arg in argv if arg not in HYDRA_FLAGS_WITHOUT_VALUE]
    if not overrides:
        return []
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_configs()
    parsed = OverridesParser.create().parse_overrides(overrides)
    was_initialized = GlobalHydra.instance().is_initialized()
    if was_initialized:  # a caller's Hydra (tests, notebooks) must survive the check
        return []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = _all_groups(loader)
        keys = list(compose(PRIMARY_CONFIG).keys())
        problems = [_problem(o, groups, keys, loader) for o in parsed]
    return [p for p in problems if p]


def _all_groups(loader: object) -> list[str]:
    found: list[str] = []
    for parent in ("", "hydra"):
        found += [f"{parent}/{g}" if parent else g for g in loader.list_groups(parent)]  # type: ignore[attr-defined]
    return found


def _problem(override: object, groups: list[str], keys: list[str], loader: object) -> Optional[str]:
    key: str = override.key_or_group  # type: ignore[attr-defined]
    text: str = override.input_line  # type: ignore[attr-defined]
    if key.startswith("hydra.") or override.is_delete():  # type: ignore[attr-defined]
        return None
    if key in groups:
        return _option_problem(override, key, loader)
    if "/" in key:
        return _unknown(text, "config group", key, groups, [])
    head = key.split(".", 1)[0]
    if head in keys or head in groups or head == "hydra":
        return None
    if override.is_add() or override.is_force_add():  # type: ignore[attr-defined]  # +new.key=... adds a key
        return None
    return _unknown(text, "config group or key", head, [g for g in groups if not g.startswith("hydra")], keys)


def _option_problem(override: object, group: str, loader: object) -> Optional[str]:
    options = public(loader.get_group_options(group))  # type: ignore[attr-defined]
    for value in _values(override):
        if value is not None and value not in options and not value.startswith("_"):
            close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
            hint = f" (did you mean {override.input_line.split('=', 1)[0]}={close[0]}?)" if close else ""  # type: ignore
            return (f"{override.input_line!r}: no option {value!r} in group {group!r}{hint}. "  # type: ignore
                    f"Options: {', '.join(options)}")
    return None


def _values(override: object) -> Iterable[Optional[str]]:
    if override.is_sweep_override():  # type: ignore[attr-defined]
        return list(override.sweep_string_iterator())  # type: ignore[attr-defined]
    value = override.value()  # type: ignore[attr-defined]
    return [value if isinstance(value, str) or value is None else str(value)]


def _unknown(text: str, kind: str, name: str, groups: list[str], keys: list[str]) -> str:
    close = difflib.get_close_matches(name, groups + keys, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = f"Groups: {', '.join(groups)}" + (f"; keys: {', '.join(keys)}" if keys else "")
    return f"{text!r}: no {kind} {name!r}{hint}. {listing}"


def public(options: Iterable[str]) -> list[str]:
    """Options a user picks; ``_schema*`` nodes are the schema's, not choices."""
    return sorted(o for o in options if not o.startswith("_"))

"""``sweep best``: the chosen trial as Hydra overrides, and a config file that ``sweep train`` runs verbatim.

Why: a researcher reruns the chosen config from its exact values, not from a report's rounded ones, and a
trial's ``.hydra/overrides.yaml`` cannot be pasted into ``sweep train`` as is: it holds the sweep-only
``+search_space=...`` (a key of the sweeper, absent in a single run's config) and may hold ``hydra.*`` runtime
keys. This module drops those and writes a primary config, ``best.yaml``, whose defaults list is the package's
``train`` config with the trial's group choices as ``override`` entries and the trial's values after
``_self_``; Hydra composes it exactly as it composed the trial (an ``override`` in the primary config wins over
an experiment's, as a command-line override does). Run it with
``sweep train --config-dir DIR --config-name best``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from sweep.errors import SweepError
from sweep.selection.answer import Answer, Pick, params_text, read_answer

SWEEP_ONLY_GROUPS = ("search_space",)  # config groups that only the sweeper reads
CONFIG_NAME = "best"


class BestError(SweepError, ValueError):
    """No trial to retrain: the message says why and what to run instead."""


@dataclass(frozen=True)
class Retrain:
    """What ``sweep best`` prints and writes for one chosen trial."""

    pick: Pick
    overrides: list[str]  # the trial's Hydra overrides, sweep-only ones dropped
    config: Path  # best.yaml

    @property
    def command(self) -> str:
        """The command that retrains the trial from the config file."""
        return f"sweep train {shlex.join(['--config-dir', str(self.config.parent), '--config-name', CONFIG_NAME])}"

    @property
    def override_command(self) -> str:
        """The same run as one ``sweep train`` line of overrides."""
        return "sweep train " + shlex.join(self.overrides)


def choose(answer: Answer, policy: Optional[str] = None) -> Pick:
    """The recommended pick, or the named policy's; BestError when there is none."""
    picks = ([answer.recommended] if answer.recommended else []) + list(answer.others)
    if policy is None:
        if answer.recommended is None:
            raise BestError("no policy chose a config in this selection (the report says why)")
        return answer.recommended
    for pick in picks:
        if pick.policy == policy:
            return pick
    names = ", ".join(p.policy for p in picks) or "none"
    raise BestError(f"policy {policy!r} chose no config here; policies with a choice: {names}")


def retrain_overrides(overrides: Sequence[str]) -> list[str]:
    """A trial's overrides without the sweep-only ones (``+search_space=...``, ``hydra.*``, ``hydra/...``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    kept = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in SWEEP_ONLY_GROUPS or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        kept.append(override.input_line)
    return kept


def trial_overrides(run_dir: Optional[str]) -> list[str]:
    """``<run_dir>/.hydra/overrides.yaml`` (what Hydra received for the trial); BestError without it."""
    import yaml

    if not run_dir:
        raise BestError("the chosen trial has no run directory (a metrics table trained elsewhere): train its "
                        "values with your own trainer")
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise BestError(f"{path} does not exist: the trial was not run by `sweep train`, so there is no Hydra "
                        "config to rerun")
    return [str(line) for line in yaml.safe_load(path.read_text()) or []]


def _is_group(key: str, conf: Path) -> bool:
    return (conf / key).is_dir()


def config_text(overrides: Sequence[str], header: str = "") -> str:
    """``best.yaml``: ``train`` plus the group choices as ``override`` entries, then the values (exact)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from sweep.config.paths import conf_dir

    conf = conf_dir()
    defaults: list[Any] = ["train"]
    values = OmegaConf.create({})
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key, value = override.key_or_group, override.value()
        if override.is_delete() or override.package is not None:
            raise BestError(f"cannot write {override.input_line!r} into a config file: rerun it on the command "
                            "line")
        if _is_group(key, conf):
            defaults.append({key if override.is_add() else f"override {key}": value})
        else:
            OmegaConf.update(values, key, value, force_add=True)
    body = OmegaConf.to_yaml(OmegaConf.create({"defaults": [*defaults, "_self_"], **OmegaConf.to_container(values)}))
    return header + body


def write_config(overrides: Sequence[str], out_dir: Path, header: str = "") -> Path:
    """Write ``<out_dir>/best.yaml`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{CONFIG_NAME}.yaml"
    path.write_text(config_text(overrides, header))
    return path


def make_retrain(report_dir: Path, out_dir: Optional[Path] = None, policy: Optional[str] = None) -> Retrain:
    """The chosen trial of a selection folder (``report_dir/tables/answer.json``) as overrides and best.yaml."""
    answer_path = Path(report_dir) / "tables" / "answer.json"
    if not answer_path.is_file():
        raise BestError(f"{answer_path} does not exist: run `sweep select` on the study first (it writes the "
                        "report and its answer there)")
    pick = choose(read_answer(answer_path), policy)
    overrides = retrain_overrides(trial_overrides(pick.run_dir))
    folder = Path(out_dir or Path(report_dir) / "best").resolve()
    header = (f"# trial {pick.trial}, chosen by {pick.policy} (val {100 * pick.val_accuracy:.1f}%, test "
              f"{100 * pick.test_accuracy:.1f}%), from {pick.run_dir}\n"
              f"# retrain: sweep train --config-dir {folder} --config-name {CONFIG_NAME}\n")
    return Retrain(pick, overrides, write_config(overrides, folder, header))


def retrain_lines(retrain: Retrain) -> list[str]:
    """What ``sweep best`` prints: the trial, its exact values, the overrides, the file and the next command."""
    pick = retrain.pick
    return [f"trial {pick.trial}, chosen by {pick.policy}: val {100 * pick.val_accuracy:.1f}%, test "
            f"{100 * pick.test_accuracy:.1f}%",
            f"searched values (exact): {params_text(pick.params) or '-'}",
            f"run dir: {pick.run_dir}", f"checkpoint: {pick.checkpoint or '-'}",
            f"overrides: {shlex.join(retrain.overrides)}",
            f"config: {retrain.config}",
            "next: retrain it (add overrides such as epochs=... to change the budget):",
            f"  {retrain.command}",
            f"  or, the same as overrides: {retrain.override_command}"]

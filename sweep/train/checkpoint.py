"""Atomic save / load of ``checkpoints/last.pt``: model, optimiser, scheduler, epoch, RNG states, history.

Written to a temporary file unique to the writer then renamed, so a job killed mid-write (SLURM preemption)
leaves the previous checkpoint intact and two writers never share a temp file. Loaded with
``torch.load(weights_only=True)``: a checkpoint is data (tensors, numbers, strings, lists, dicts), never code, so
a planted ``last.pt`` cannot run anything; numpy arrays are stored as tensors for that reason.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from sweep.errors import SweepError
from sweep.safety import unique_suffix

CHECKPOINT_NAME = "last.pt"
_NDARRAY = "__ndarray__"  # {"__ndarray__": tensor}: a numpy array, restored as one on load


class CheckpointError(SweepError, ValueError):
    """A checkpoint that is not plain data (or not a checkpoint): refused, never unpickled as code."""


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / CHECKPOINT_NAME


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_loadable(value: Any) -> Any:
    """Plain data that ``torch.load(weights_only=True)`` accepts: numpy arrays -> tagged tensors, numpy
    scalars -> Python numbers, containers recursively (tuples stay tuples)."""
    if isinstance(value, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: to_loadable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_loadable(v) for v in value)
    if isinstance(value, list):
        return [to_loadable(v) for v in value]
    return value


def from_loadable(value: Any) -> Any:
    """Inverse of ``to_loadable``."""
    if isinstance(value, Mapping):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        return {k: from_loadable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(from_loadable(v) for v in value)
    if isinstance(value, list):
        return [from_loadable(v) for v in value]
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` plus the current RNG states atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}")
    try:
        torch.save(to_loadable({**state, "rng": rng_state()}), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_reason(err: Exception) -> str:
    """What torch found wrong, without its advice to retry with ``weights_only=False`` (that runs the code a
    planted checkpoint carries)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else type(err).__name__


def load_checkpoint(path: Path) -> Optional[dict[str, Any]]:
    """The saved state on CPU, or None (RNG states must be CPU tensors; load_state_dict moves the rest).
    Only plain data loads (``weights_only=True``); anything else raises ``CheckpointError`` naming the file."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(f"resume: {path} is not a plain-data checkpoint ({_load_reason(err)[:300]}); it "
                              f"was not loaded. Delete it to start the run afresh, or set resume=false") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"resume: {path} holds {type(state).__name__}, expected a checkpoint dict")
    return from_loadable(state)

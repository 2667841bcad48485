"""Atomic save / load of ``checkpoints/last.pt``: model, optimiser, scheduler, epoch, RNG states, history.

Written to a temporary file then renamed, so a job killed mid-write (SLURM preemption) leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

CHECKPOINT_NAME = "last.pt"


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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` plus the current RNG states atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({**state, "rng": rng_state()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Optional[dict[str, Any]]:
    """The saved state on CPU, or None (RNG states must be CPU tensors; load_state_dict moves the rest)."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)

"""One way to show progress on long steps (sweep trials, readouts, epochs, report figures).

A tqdm bar on an interactive terminal; nothing when stderr is not a TTY (SLURM logs, subprocess pipes, CI), so
job logs stay line-oriented; ``SWEEP_PROGRESS=0`` turns bars off and ``SWEEP_PROGRESS=1`` forces them on.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

from tqdm import tqdm

PROGRESS_ENV = "SWEEP_PROGRESS"


def bars_enabled() -> Optional[bool]:
    """tqdm's ``disable`` value: True = off, False = forced on, None = on only for a TTY."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return True
    if value in ("1", "true", "yes", "on"):
        return False
    return None


def progress(iterable: Optional[Iterable[Any]] = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on stderr with the project's on/off rule (see the module doc);
    ``enabled=False`` hides it whatever the rule (e.g. a one-trial readout inside a policy's loop)."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=True if not enabled else bars_enabled(), **kwargs)


@contextmanager
def logging_beside(bar: tqdm) -> Iterator[None]:
    """Route console log lines through tqdm while ``bar`` is shown, so they do not tear it."""
    if bar.disable:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield

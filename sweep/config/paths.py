"""Where the YAML config tree lives: one lookup shared by the train job, the sweeper and the CLI."""
from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../sweep


def conf_dir() -> Path:
    """The ``conf/`` directory: ``<repo>/conf`` in a checkout, else ``sweep/conf`` shipped as package data.

    The checkout copy wins so that edits to the YAML tree take effect without reinstalling.
    """
    candidates = (_PACKAGE_DIR.parent / "conf", _PACKAGE_DIR / "conf")
    for path in candidates:
        if (path / "train.yaml").is_file():
            return path
    raise FileNotFoundError(
        "config tree not found: looked for train.yaml in " + ", ".join(str(p) for p in candidates)
    )

"""Record files that jobs write while other jobs read them."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write-then-rename, so a reader never sees a half-written record (jobs may run concurrently)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
    os.replace(tmp, path)

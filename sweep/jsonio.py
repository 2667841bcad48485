"""Record files that jobs write while other jobs read them."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write-then-rename, so a reader never sees a half-written record (jobs may run concurrently); the temp
    name is unique per host, process and call, so two writers never share one."""
    from sweep.safety import unique_suffix

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}")
    try:
        tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""``python -m sweep.launch.worker <payload.pkl>``: run one trial in a fresh process, write ``result.pkl``.

The exit code is the trial's own (a crash shows as -9/137, not as a timeout); the result file appears only when
the trial returned, so the driver reads a missing file plus the exit code as a crash.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

RESULT_FILE = "result.pkl"


def run_payload_file(payload_path: Path) -> int:
    import cloudpickle

    from sweep.launch.trial import execute_trial

    payload = cloudpickle.loads(payload_path.read_bytes())
    outcome = execute_trial(payload)
    tmp = payload_path.with_name(RESULT_FILE + ".tmp")
    tmp.write_bytes(cloudpickle.dumps(outcome))
    os.replace(tmp, payload_path.with_name(RESULT_FILE))  # atomic: the driver never reads half a file
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sweep.launch.worker <payload.pkl>", file=sys.stderr)
        return 2
    return run_payload_file(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m sweep.launch.worker <payload.pkl>``: run one trial in a fresh process, write ``result.pkl``.

The exit code is the trial's own (a crash shows as -9/137, not as a timeout); the result file appears only when
the trial returned, so the driver reads a missing file plus the exit code as a crash. Both pickles carry the
driver's HMAC (``sweep.safety``): a payload that another user swapped in is refused before it is unpickled.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from sweep.launch.outcome import DISK_FULL, EXIT_NO_SPACE

RESULT_FILE = "result.pkl"
EXIT_UNTRUSTED, EXIT_WRITE_FAILED = 3, 5  # EXIT_NO_SPACE (4): named as a full disk even when stderr is lost


def run_payload_file(payload_path: Path) -> int:
    from sweep.launch.trial import execute_trial
    from sweep.safety import (
        KEY_ENV,
        UnsafeFolderError,
        UntrustedPickleError,
        driver_key,
        pickle_signed,
        unpickle_signed,
        write_private,
    )

    if not os.environ.get(KEY_ENV):
        print(f"sweep worker: {KEY_ENV} is not set: cannot authenticate {payload_path}; refusing to run it",
              file=sys.stderr)
        return EXIT_UNTRUSTED
    driver_key()  # read the key, then hide it from the trial's own code and child processes
    os.environ.pop(KEY_ENV, None)
    try:
        payload = unpickle_signed(payload_path)
    except (UntrustedPickleError, UnsafeFolderError) as err:
        print(f"sweep worker: {err}", file=sys.stderr)
        return EXIT_UNTRUSTED
    outcome = execute_trial(payload)
    try:
        write_private(payload_path.with_name(RESULT_FILE), pickle_signed(outcome))  # atomic: never half a file
    except OSError as err:
        return _write_failed(payload_path.with_name(RESULT_FILE), err)
    return 0


def _write_failed(path: Path, err: OSError) -> int:
    """Name a full disk plainly (the driver reads this stderr line into the trial's failure reason); the exit
    code names it too, for when ``stderr.log`` is on the full disk and the line cannot be written."""
    if err.errno == errno.ENOSPC:
        _say(f"sweep worker: {DISK_FULL}: cannot write {path}: {err}")
        return EXIT_NO_SPACE
    _say(f"sweep worker: cannot write {path}: {err}")
    return EXIT_WRITE_FAILED


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # stderr.log on a full disk as well: the exit code still tells the driver
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sweep.launch.worker <payload.pkl>", file=sys.stderr)
        return 2
    return run_payload_file(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m sweep.launch.guard -u -m submitit.core._submit FOLDER``: what a SLURM trial job runs first.

submitit's job loads its pickle by path from FOLDER, on the node, long after the driver checked the folder. This
re-checks there, right before that read, that neither the folder nor any folder above it could have been written
by another user (``check_folder_chain``: a swapped sweep dir would hand the job an attacker's pickle), then
hands over to submitit in the same process slot (``exec``: SLURM keeps tracking it).
"""
from __future__ import annotations

import os
import sys

EXIT_UNSAFE = 3


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[-2] != "submitit.core._submit":
        print("usage: python -m sweep.launch.guard -u -m submitit.core._submit FOLDER", file=sys.stderr)
        return 2
    from sweep.safety import UnsafeFolderError, check_folder_chain
    from sweep.launch.slurm import static_folder

    folder = argv[-1]
    try:
        check_folder_chain(static_folder(folder))
    except (UnsafeFolderError, FileNotFoundError) as err:
        print(f"sweep guard: refusing to load the job's pickle: {err}", file=sys.stderr, flush=True)
        return EXIT_UNSAFE
    os.execv(sys.executable, [sys.executable, *argv])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m sweep.launch.guard -u -m submitit.core._submit FOLDER``: what a SLURM trial job runs first.

submitit's job loads its pickle by path from FOLDER, on the node, long after the driver checked the folder. This
re-checks there, right before that read, that neither the folder nor any folder above it could have been written
by another user (``check_folder_chain``: a swapped sweep dir would hand the job an attacker's pickle), then runs
submitit's entry point in this same process (``runpy``, as ``python -m`` would): SLURM keeps tracking this
process, its exit status is submitit's, and the job pays for one interpreter start and one set of imports, not
two (``os.execv`` of a second interpreter cost ~0.2 s CPU per trial, docs/ARCHITECTURE.md "Per-trial overhead").
Only the light ``sweep.safety`` is imported before the check; submitit and the sweep come with the pickle.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

EXIT_UNSAFE = 3
EXIT_USAGE = 2
ENTRY = "submitit.core._submit"
IN_PROCESS_OPTIONS = frozenset({"-u"})  # interpreter options before ``-m`` this process can take on itself


def static_folder(folder: str | Path) -> Path:
    """The folder above the first ``%`` placeholder (``<sweep_dir>/.submitit`` for ``.../.submitit/%j``)."""
    parts = Path(folder).parts
    return Path(*parts[:next((i for i, p in enumerate(parts) if "%" in p), len(parts))])


def main(argv: list[str]) -> int:
    """Check FOLDER's chain, then run submitit's entry on it; EXIT_UNSAFE without loading anything if unsafe."""
    if len(argv) < 3 or argv[-3:-1] != ["-m", ENTRY]:
        print(f"usage: python -m sweep.launch.guard -u -m {ENTRY} FOLDER", file=sys.stderr)
        return EXIT_USAGE
    from sweep.safety import UnsafeFolderError, check_folder_chain

    folder, options = argv[-1], argv[:-3]
    try:
        check_folder_chain(static_folder(folder))
    except (UnsafeFolderError, FileNotFoundError) as err:
        print(f"sweep guard: refusing to load the job's pickle: {err}", file=sys.stderr, flush=True)
        return EXIT_UNSAFE
    if set(options) - IN_PROCESS_OPTIONS:  # a flag only a fresh interpreter can honour: exec one (same pid)
        os.execv(sys.executable, [sys.executable, *argv])
    if "-u" in options:
        _unbuffered_stdio()
    return run_entry(folder)


def run_entry(folder: str) -> int:
    """``python -m submitit.core._submit FOLDER`` in this process. A failing job raises (traceback, exit 1)
    and a ``sys.exit`` in it (submitit's requeue) exits with its own code, as in a process of its own."""
    import runpy

    sys.argv = [ENTRY, folder]  # runpy puts the module's path first, as ``-m`` does; argparse reads the rest
    runpy.run_module(ENTRY, run_name="__main__", alter_sys=True)
    return 0


def _unbuffered_stdio() -> None:
    """What ``-u`` gives a fresh interpreter: stdout and stderr written through at once, so the job's log
    holds every line even if SLURM kills it. A no-op when this interpreter was started with ``-u``."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(getattr(stream, "buffer", None), io.RawIOBase):
            continue
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # not backed by a file (a test's capture): nothing to unbuffer
            continue
        stream.flush()
        raw = io.FileIO(fd, "w", closefd=False)
        setattr(sys, name, io.TextIOWrapper(raw, encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=stream.line_buffering, write_through=True))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

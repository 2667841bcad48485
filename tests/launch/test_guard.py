"""``sweep.launch.guard``, what a SLURM trial job runs first, without SLURM: the folder chain is checked before
the job's pickle is read (EXIT_UNSAFE and nothing loaded when it is unsafe), and a safe job runs submitit's entry
point in the guard's own process (one interpreter: same pid, unbuffered output, submitit's exit status);
the job's callable unpickles without the driver side of the SLURM launcher."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
from submitit.core.utils import DelayedSubmission

from sweep.launch import guard
from sweep.safety import secure_dir

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this module by name

JOB_ID = "4242"


def where_it_ran(marker: str) -> dict[str, object]:
    """The job body: where and how it ran (pid, the interpreter's own argv, whether stdout writes through)."""
    Path(marker).write_text("loaded")
    print("line from the job")
    return {"pid": os.getpid(), "orig_argv": list(sys.orig_argv), "write_through": sys.stdout.write_through}


def fails() -> None:
    raise ValueError("the trial broke")


def _job_env() -> dict[str, str]:
    """What SLURM sets for a one-task job, as submitit's JobEnvironment reads it."""
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": JOB_ID, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
             "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "node0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, **slurm}


def _submitted(tmp_path: Path, fn, *args: object) -> Path:
    """A private ``<sweep>/.submitit`` with the job's pickle where submitit looks for it; returns the folder
    pattern the job is started with."""
    folder = secure_dir(tmp_path / "sweep" / ".submitit")
    job_dir = secure_dir(folder / JOB_ID)
    DelayedSubmission(fn, *args).dump(job_dir / f"{JOB_ID}_submitted.pkl")
    return folder / "%j"


def _run_guard(pattern: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *extra, "-m", "sweep.launch.guard", "-u", "-m",
                             "submitit.core._submit", str(pattern)], env=_job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(pattern: Path) -> tuple[str, object]:
    blob = (pattern.parent / JOB_ID / f"{JOB_ID}_0_result.pkl").read_bytes()
    return cloudpickle.loads(blob)


def test_a_safe_job_runs_in_the_guards_own_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pattern = _submitted(tmp_path, where_it_ran, str(marker))
    proc = _run_guard(pattern)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status, value = _result(pattern)
    assert status == "success" and marker.read_text() == "loaded"
    assert value["pid"] == proc.pid  # the process SLURM started, not a child
    assert "sweep.launch.guard" in value["orig_argv"]  # no second interpreter exec'd in its place
    assert value["write_through"] is True  # ``-u`` honoured in-process
    assert "line from the job" in out


def test_an_option_it_cannot_take_on_gets_a_fresh_interpreter_in_the_same_process(tmp_path: Path) -> None:
    pattern = _submitted(tmp_path, where_it_ran, str(tmp_path / "marker"))
    proc = subprocess.Popen([sys.executable, "-m", "sweep.launch.guard", "-u", "-X", "dev", "-m", guard.ENTRY,
                             str(pattern)], env=_job_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status, value = _result(pattern)
    assert status == "success" and value["pid"] == proc.pid  # exec keeps the pid SLURM tracks
    assert value["orig_argv"][1:4] == ["-u", "-X", "dev"]


def test_a_failing_job_exits_1_with_submitits_error_result(tmp_path: Path) -> None:
    pattern = _submitted(tmp_path, fails)
    proc = _run_guard(pattern)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "the trial broke" in err
    status, trace = _result(pattern)
    assert status == "error" and "ValueError: the trial broke" in str(trace)


def test_an_unsafe_folder_is_refused_before_anything_is_imported_or_loaded(tmp_path: Path) -> None:
    """The check runs first and imports neither submitit nor Hydra: the pickle is never read."""
    marker = tmp_path / "marker"
    pattern = _submitted(tmp_path, where_it_ran, str(marker))
    (tmp_path / "sweep").chmod(0o777)
    proc = _run_guard(pattern, "-X", "importtime")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == guard.EXIT_UNSAFE == 3, err
    assert "refusing to load the job's pickle" in err and not marker.exists()
    imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("submitit", "hydra", "omegaconf")}, imported


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    assert guard.main(["-u", "-m", guard.ENTRY, str(tmp_path / "gone" / "%j")]) == guard.EXIT_UNSAFE


@pytest.mark.parametrize("argv", [[], ["-u", "-m", "other.module", "/x/%j"], ["-m", guard.ENTRY]])
def test_any_other_command_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert guard.main(argv) == guard.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_static_folder_stops_at_the_first_placeholder() -> None:
    assert guard.static_folder("/s/.submitit/%j") == Path("/s/.submitit")
    assert guard.static_folder("/s/.submitit/%A_%a/x") == Path("/s/.submitit")
    assert guard.static_folder("/s/plain") == Path("/s/plain")


def test_the_job_callable_unpickles_without_the_driver_side_launcher() -> None:
    """New jobs name ``sweep.launch.slurm_job.TrialJob``; jobs pickled by an older driver as
    ``sweep.launch.slurm.TrialJob`` load the same class."""
    from sweep.launch import slurm, slurm_job

    assert slurm.TrialJob is slurm_job.TrialJob
    blob = cloudpickle.dumps(slurm_job.TrialJob())
    code = ("import pickle, sys; job = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(job).__module__, 'sweep.launch.slurm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=120, check=True)
    assert out.stdout.decode().split() == ["sweep.launch.slurm_job", "False"]

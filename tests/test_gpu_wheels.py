"""scripts/gpu_wheels.sh and the offline path of benchmarks/gpu_check.sh, checked on the CPU.

The lent GPU machine reaches no network and its image lacks hydra-core, optuna, submitit, mlxtend and their
needs: they travel as wheels (scripts/gpu_wheels.sh) and gpu_check.sh installs them offline. Here the script
fetches the same pinned set for the running Python, and a fresh venv that holds only torch and what the GPU image
holds besides (numpy, scipy, scikit-learn, pandas, pyarrow, matplotlib, tqdm, pytest, PyYAML ...: linked from
this environment, nothing downloaded) runs ``gpu_check.sh --dry-run`` offline from those wheels.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
WHEEL_SCRIPT = ROOT / "scripts" / "gpu_wheels.sh"
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"

# What the GPU image holds that the project needs (the device's package list; torch comes in its CUDA build
# there). Their own requirements are linked in too.
GPU_IMAGE = ["torch", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow", "matplotlib", "tqdm", "PyYAML",
             "packaging", "typing-extensions", "cloudpickle", "MarkupSafe", "joblib", "pytest", "pytest-timeout"]


def carried_pins() -> dict[str, str]:
    """name -> version of every wheel the script fetches (its ``NAME==VERSION`` lines)."""
    pins = re.findall(r"^\s+([A-Za-z0-9_.-]+)==([^\s#)]+)", WHEEL_SCRIPT.read_text(), flags=re.M)
    return {canonicalize_name(name): version for name, version in pins}


def image_closure() -> dict[str, metadata.Distribution]:
    """The GPU image's packages and everything they require (no extras), as installed here."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(GPU_IMAGE)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found[name] = metadata.distribution(name)
        for line in found[name].requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def test_pins_match_the_tested_environment_and_complete_the_gpu_image() -> None:
    pins = carried_pins()
    assert set(pins) == {"hydra-core", "omegaconf", "antlr4-python3-runtime", "optuna", "alembic", "sqlalchemy",
                         "mako", "colorlog", "submitit", "mlxtend"}
    for name, version in pins.items():  # the wheels are the versions the test suite runs with
        assert metadata.version(name) == version, name
    image = image_closure()
    assert not set(pins) & set(image), "a carried wheel is already in the GPU image"
    for name in pins:  # each carried wheel's needs are carried or in the image
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert canonicalize_name(req.name) in set(pins) | set(image), f"{name} needs {req.name}"
    for line in metadata.distribution("sweep").requires or []:  # and so are the project's own
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            assert canonicalize_name(req.name) in set(pins) | set(image), f"the project needs {req.name}"


def test_wheels_folder_is_ignored() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".gpu_wheels/x.whl"], cwd=ROOT)
    assert ignored.returncode == 0, ".gpu_wheels/ must be git-ignored (it is carried to the device by name)"


# ----------------------------------------------------------------------------- the offline install, end to end
def _offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV")) and k != "OUT"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script's wheel set for the running Python (skips when the package index cannot be reached)."""
    folder = tmp_path_factory.mktemp("wheels")
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--no-cache-dir", "-d", str(folder / "probe"), "colorlog==6.12.0"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"the package index cannot be reached (the wheel download needs it): {probe.stderr[-300:]}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    done = subprocess.run(["bash", str(WHEEL_SCRIPT), "--python-version", version, str(folder / "wheels")],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout + done.stderr
    total = re.search(r"([\d.]+) MiB\s+total, 10 wheels", done.stdout)
    assert total and float(total.group(1)) < 32, done.stdout
    return folder / "wheels"


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding torch and the rest of the GPU image only (linked from this environment)."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_offline_env())
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for dist in image_closure().values():
        here = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (here / top).exists() and not (site / top).exists():
                (site / top).symlink_to(here / top)
    return python


@pytest.mark.slow  # a fresh venv and a torch import: ~10 s
def test_the_image_venv_lacks_the_carried_packages(image_venv: Path) -> None:
    check = subprocess.run([str(image_venv), "-c", "import torch, numpy, sklearn, pytest; import hydra"],
                           capture_output=True, text=True, cwd="/", env=_offline_env())
    assert "No module named 'hydra'" in check.stderr, check.stderr


@pytest.mark.slow  # a fresh venv and a torch import: ~10 s
def test_gpu_check_stops_in_seconds_naming_a_missing_import(image_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "no_wheels").mkdir()
    start = time.monotonic()
    done = subprocess.run(["bash", str(GPU_CHECK), "--dry-run", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, cwd="/",
                          env=_offline_env(PYTHON=str(image_venv), SWEEP_WHEELS=str(tmp_path / "no_wheels")))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "MISSING  hydra (hydra-core)" in done.stderr and "scripts/gpu_wheels.sh" in done.stderr
    assert not (tmp_path / "out" / "gpu_tests.log").exists()  # no step ran
    assert time.monotonic() - start < 120


@pytest.mark.slow
def test_carried_wheels_resolve_offline_in_the_image_venv(image_venv: Path, wheels: Path) -> None:
    pins = [f"{name}=={version}" for name, version in carried_pins().items()]
    done = subprocess.run([str(image_venv), "-m", "pip", "install", "--dry-run", "--no-index", "--find-links",
                           str(wheels), *pins], capture_output=True, text=True, timeout=300, env=_offline_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Would install" in done.stdout, done.stdout


@pytest.mark.slow
def test_gpu_check_dry_run_passes_offline_with_only_the_carried_wheels(image_venv: Path, wheels: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(GPU_CHECK), "--dry-run"], capture_output=True, text=True, timeout=1200,
                          cwd="/", env=_offline_env(PYTHON=str(image_venv), SWEEP_WHEELS=str(wheels), OUT=str(out)))
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "installing 10 wheels" in done.stderr
    table = (out / "gpu_check.txt").read_text()
    for step in ("gpu_tests", "benchmark", "sweep"):
        assert re.search(rf"^{step}\s+ok\s", table, flags=re.M), table
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.log", "gpu_check.txt", "gpu_tests.log",
                                                     "setup.log", "sweep.db", "sweep.log"]


@pytest.mark.slow
def test_gpu_check_run_gives_a_command_the_same_offline_set_up(image_venv: Path, wheels: Path,
                                                                tmp_path: Path) -> None:
    """``--run COMMAND``: what the GPU testbed runs under (the wheels installed, the checkout importable)."""
    code = "import hydra, optuna, submitit, mlxtend, sweep; print('from', sweep.__file__)"
    done = subprocess.run(["bash", str(GPU_CHECK), str(tmp_path / "out"), "--run", "python", "-c", code],
                          capture_output=True, text=True, timeout=300, cwd="/",
                          env=_offline_env(PYTHON=str(image_venv), SWEEP_WHEELS=str(wheels)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"from {ROOT / 'sweep' / '__init__.py'}" in done.stdout
    assert (tmp_path / "out" / "run.log").read_text() == done.stdout
    failing = subprocess.run(["bash", str(GPU_CHECK), str(tmp_path / "out2"), "--run", "python", "-c",
                              "raise SystemExit(7)"], capture_output=True, text=True, timeout=300, cwd="/",
                             env=_offline_env(PYTHON=str(image_venv), SWEEP_WHEELS=str(wheels)))
    assert failing.returncode == 7, failing.stdout + failing.stderr


@pytest.mark.slow
def test_gpu_testbed_dry_run_runs_offline_with_only_the_carried_wheels(image_venv: Path, wheels: Path,
                                                                        tmp_path: Path) -> None:
    """The README's GPU step 3 at CPU dry-run size: the converged testbed under ``--run``, offline."""
    out = tmp_path / "out"
    command = ["python", "benchmarks/testbed.py", "--preset", "converged", "--device", "cpu", "--parallel", "2",
               "--dry-run", "--out", str(out / "testbed"), "--work-dir", str(tmp_path / "runs")]
    done = subprocess.run(["bash", str(GPU_CHECK), "--run", *command], capture_output=True, text=True,
                          timeout=900, cwd="/",
                          env=_offline_env(PYTHON=str(image_venv), SWEEP_WHEELS=str(wheels), OUT=str(out)))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    import pandas as pd

    table = pd.read_parquet(out / "testbed" / "testbed.parquet")
    assert len(table) == 2, table
    assert {"setup.log", "run.log", "testbed"} <= {p.name for p in out.iterdir()}

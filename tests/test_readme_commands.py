"""Every command the README shows runs as printed, with tiny budgets, in a fresh folder.

``README_PLAN`` names each command of the README's ``bash`` blocks (whitespace-normalised) and says how it is
checked: ``Run(substitutions)`` runs it after the listed budget substitutions (``n_trials=32`` -> ``2``, an
added ``experiment=tiny`` ...), ``Skip(reason)`` says why it cannot run here and what covers it instead. A README
command missing from the plan fails ``test_every_readme_command_is_planned``: the README cannot drift away from
what is checked. The commands run in order in one temporary folder, so the follow-up commands (progress,
results, select, risk) read the sweep the earlier command made, as a newcomer's would.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Run:
    """Run the command after replacing each ``old`` by ``new`` (budgets only) and appending ``extra``."""

    substitutions: tuple[tuple[str, str], ...] = ()
    extra: str = ""
    timeout_s: int = 600
    expect_files: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Skip:
    reason: str


TINY_SWEEP = (("experiment=demo ", "experiment=demo_tiny "),
              ("hydra.sweeper.n_trials=32", "hydra.sweeper.n_trials=2"))

README_PLAN: dict[str, Run | Skip] = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[dev]' "
    "&& sweep demo": Skip("the install is what .ci/run does on a fresh machine; `sweep demo` itself runs below "
                          "at --size tiny (test_readme_demo_runs) and in tests/test_demo.py"),
    "bash scripts/test.sh": Skip("the test command itself (this test runs inside it)"),
    "sweep train method=barlow_twins method.lambd=0.01 epochs=20":
        Run((("epochs=20", "epochs=1"),), extra="experiment=tiny"),
    "sweep train -m experiment=demo hydra/sweeper=rankme_normalized +search_space=demo hydra/launcher=sweep_local "
    "hydra.sweeper.n_trials=32 hydra.sweeper.n_jobs=2 hydra.sweeper.storage=sqlite:///sweeps/demo.db "
    "hydra.sweeper.study_name=demo hydra.sweep.dir=sweeps/demo":
        Run(TINY_SWEEP, expect_files=("sweeps/demo.db", "sweeps/demo/trials.parquet")),
    "sweep train -m experiment=demo hydra/sweeper=rankme_normalized +search_space=demo hydra/launcher=sweep_slurm "
    "hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=240 "
    "hydra.launcher.array_parallelism=16 hydra.sweeper.n_trials=32 hydra.sweeper.storage=sqlite:///sweeps/slurm.db "
    "hydra.sweeper.study_name=slurm hydra.sweep.dir=sweeps/slurm":
        Skip("needs a SLURM cluster: tests/launch/test_slurm_resources.py runs it on the real test cluster with the "
             "changes its comment names (partition, no gpus_per_node) and checks the refusal it warns of"),
    "sweep studies --storage sqlite:///sweeps/demo.db": Run(),
    "sweep progress --storage sqlite:///sweeps/demo.db --study demo": Run(),
    "sweep results --storage sqlite:///sweeps/demo.db --study demo --out trials.parquet":
        Run(expect_files=("trials.parquet", "trials.csv")),
    "sweep select --storage sqlite:///sweeps/demo.db --study demo --sweep-dir sweeps/demo --launcher local":
        Run(expect_files=("sweeps/demo/report/report.html",)),
    "optuna-dashboard sqlite:///sweeps/demo.db": Run(),  # a server: started, answered one request, stopped
    "sweep select --table benchmarks/data/testbed.parquet --out /tmp/testbed_report":
        Run((("/tmp/testbed_report", "testbed_report"),), expect_files=("testbed_report/report.html",)),
    "python benchmarks/selection.py --table benchmarks/data/testbed.parquet --reps 200":
        Run((("--reps 200", "--reps 10"),)),
    "pip install -e '.[lightning]'": Skip("an install; lightning is in the dev extra that the README's set-up "
                                          "installs, so the Lightning example below runs here"),
    "python examples/plain_torch.py -m hydra.sweeper.n_trials=4 hydra.sweeper.pruner.name=median "
    "hydra.sweeper.pruner.options.n_startup_trials=2": Run(expect_files=("sweeps/byo_torch.db",)),
    "sweep select --storage sqlite:///sweeps/byo_torch.db --study byo_torch --sweep-dir sweeps/byo_torch "
    "--launcher local": Run(expect_files=("sweeps/byo_torch/report/report.html",)),
    "python examples/lightning_module.py -m hydra.sweeper.n_trials=4 hydra.sweeper.pruner.name=median "
    "hydra.sweeper.pruner.options.n_startup_trials=2": Run(expect_files=("sweeps/byo_lightning.db",)),
    "sweep select --storage sqlite:///sweeps/byo_lightning.db --study byo_lightning --sweep-dir "
    "sweeps/byo_lightning --launcher local": Run(expect_files=("sweeps/byo_lightning/report/report.html",)),
    "bash scripts/gpu_wheels.sh": Skip("downloads from the package index into the repo's .gpu_wheels/; "
                                       "tests/test_gpu_wheels.py runs it for the running Python into a "
                                       "temporary folder"),
    "bash benchmarks/gpu_check.sh": Skip("needs a CUDA device (8 minutes); its --dry-run runs offline from the "
                                         "carried wheels in tests/test_gpu_wheels.py"),
    "bash benchmarks/gpu_check.sh --run python benchmarks/testbed.py --preset converged --device cuda "
    "--parallel 8 --minutes 6 --out \"$OUT/testbed\"":
        Skip("needs a CUDA device and the device's $OUT; the testbed's converged CPU dry run is tested in "
             "tests/selection/test_testbed.py and --run's offline set-up in tests/test_gpu_wheels.py"),
    "sweep best --storage sqlite:///sweeps/demo.db --study demo":
        Run(expect_files=("sweeps/demo/report/best/best.yaml",)),
    "sweep train --config-dir sweeps/demo/report/best --config-name best":
        Run(extra="epochs=1 hydra.run.dir=sweeps/retrained", expect_files=("sweeps/retrained/result.json",)),
    "sweep risk --storage sqlite:///sweeps/demo.db --study demo --sweep-dir sweeps/demo --reference-epochs 30":
        Run((("--reference-epochs 30", "--reference-epochs 1"),), expect_files=("sweeps/demo/risk/risk.csv",)),
    "sweep train -m experiment=demo hydra/sweeper=rankme_normalized +search_space=demo hydra/launcher=sweep_local "
    "hydra.sweeper.n_trials=32 hydra.sweeper.n_jobs=2 hydra.sweeper.storage=sqlite:///sweeps/tracked.db "
    "hydra.sweeper.study_name=tracked hydra.sweep.dir=sweeps/tracked tracking.kind=mlflow "
    "tracking.uri=sqlite:///sweeps/mlflow.db":
        Run(TINY_SWEEP, expect_files=("sweeps/mlflow.db", "sweeps/tracked/trials.parquet")),
}


def readme_commands(text: str) -> list[str]:
    """The commands of the ``bash`` blocks: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def test_every_readme_command_is_planned() -> None:
    commands = readme_commands(README.read_text())
    assert commands, "no bash blocks found in the README"
    unplanned = [c for c in commands if c not in README_PLAN]
    stale = [c for c in README_PLAN if c not in commands]
    assert not unplanned, f"README commands with no plan in {__file__}: {unplanned}"
    assert not stale, f"plans for commands the README no longer shows: {stale}"


def test_readme_commands_parse_continuations() -> None:
    text = "```bash\n# a comment\nsweep a \\\n    b   c  # trailing\n\nsweep d\n```\n```python\nx\n```"
    assert readme_commands(text) == ["sweep a b c", "sweep d"]


def _apply(command: str, plan: Run) -> str:
    for old, new in plan.substitutions:
        assert old in command, f"substitution {old!r} no longer matches {command!r}: update README_PLAN"
        command = command.replace(old, new)
    return f"{command} {plan.extra}".strip()


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SWEEP_PROGRESS="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_server(command: str, cwd: Path) -> None:
    """optuna-dashboard: it must start and answer on its default port; then it is stopped."""
    port = 8080
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"port {port} is taken: cannot check `{command}` here")
    proc = subprocess.Popen(shlex.split(command), cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                    return
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"`{command}` did not serve on port {port}: {proc.stdout.read()}")
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_readme_commands_run_in_order(tmp_path: Path) -> None:
    """The README's commands top to bottom in one fresh folder (``benchmarks/``, ``examples/`` linked in)."""
    for folder in ("benchmarks", "examples"):  # what a clone has beside the README
        (tmp_path / folder).symlink_to(ROOT / folder)
    commands = readme_commands(README.read_text())
    unplanned = [c for c in commands if c not in README_PLAN]
    assert not unplanned, f"README commands with no plan in README_PLAN: {unplanned}"
    ran = []
    for command in commands:
        plan = README_PLAN[command]
        if isinstance(plan, Skip):
            continue
        line = _apply(command, plan)
        if line.startswith("optuna-dashboard"):
            _run_server(line, tmp_path)
            ran.append(line)
            continue
        proc = subprocess.run(line, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=plan.timeout_s)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{line}` exited {proc.returncode}:\n{output[-4000:]}"
        assert "Traceback" not in output, f"`{line}` printed a traceback:\n{output[-4000:]}"
        for name in plan.expect_files:
            assert (tmp_path / name).exists(), f"`{line}` did not write {name}:\n{output[-2000:]}"
        ran.append(line)
    assert len(ran) >= 8, ran


@pytest.mark.slow
def test_readme_demo_runs(tmp_path: Path) -> None:
    """`sweep demo` at test size prints its headline and the report path, and the report exists."""
    proc = subprocess.run(["sweep", "demo", "--size", "tiny", "--out", str(tmp_path / "demo")], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"report: {tmp_path / 'demo'}" in proc.stdout
    assert (tmp_path / "demo" / "report" / "report.html").is_file()

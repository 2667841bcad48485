"""Launchers and executors: GPU assignment, SLURM parameters and job arrays (fake sbatch), requeue protocol,
make_executor, and the SLURM launcher run end to end on submitit's local backend."""
from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweep.launch import launcher_kind, make_executor
from sweep.launch.executors import InProcessExecutor
from sweep.launch.local import GpuPool
from sweep.launch.slurm import SlurmLauncher, TrialJob, slurm_parameters
from sweep.launch.trial import TrialPayload

sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
from runner import base_overrides, load, run_app  # noqa: E402


def _square(x: int) -> int:
    return x * x


def _fail() -> None:
    raise KeyError("missing readout")


# ----------------------------------------------------------------------------- GPU assignment
def test_gpu_pool_least_busy_then_round_robin() -> None:
    pool = GpuPool([0, 1])
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == ["0", "1", "0"]
    pool.release("1")
    assert pool.acquire() == "1"  # the free GPU, not the next in turn
    pool.release("0")
    pool.release("0")
    assert pool.acquire() == "0"
    assert GpuPool([]).acquire() is None  # no list: CUDA_VISIBLE_DEVICES is left alone


# ----------------------------------------------------------------------------- SLURM parameters
def test_slurm_parameters_map_to_submitit() -> None:
    params = slurm_parameters({
        "partition": "gpu", "gpus_per_node": 2, "cpus_per_task": 8, "mem_gb": 32, "timeout_min": 90,
        "array_parallelism": 4, "account": "proj", "qos": "high", "additional_parameters": {"reservation": "r1"},
        "setup": ["module load cuda"], "signal_delay_s": 60, "preempt_signal": "USR2", "constraint": None})
    assert params == {
        "slurm_partition": "gpu", "gpus_per_node": 2, "cpus_per_task": 8, "mem_gb": 32, "timeout_min": 90,
        "slurm_array_parallelism": 4, "slurm_account": "proj", "slurm_qos": "high",
        "slurm_additional_parameters": {"reservation": "r1"}, "slurm_signal_delay_s": 60,
        "slurm_setup": ["export SUBMITIT_PREEMPT_SIGNAL=USR2", "module load cuda"]}


def _fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``sbatch`` that records the script it was given and answers like SLURM."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch_calls"
    bin_dir.mkdir()
    log.mkdir()
    script = bin_dir / "sbatch"
    script.write_text('#!/bin/sh\nn=$(ls "%s" | wc -l)\ncp "$1" "%s/call_$n.sh"\necho "Submitted batch job 4242"\n'
                      % (log, log))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _payload(tmp_path: Path, idx: int) -> TrialPayload:
    from hydra.conf import HydraConf

    cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf), "x": idx})
    cfg.hydra.sweep.dir = str(tmp_path / "out")
    cfg.hydra.sweep.subdir = str(idx)
    return TrialPayload(hydra_context=None, task_function=_square, config=cfg)


def test_first_batch_is_one_job_array_later_trials_single(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_sbatch(tmp_path, monkeypatch)
    launcher = SlurmLauncher(cluster="slurm", submitit_folder=str(tmp_path / "sub" / "%j"), partition="gpu",
                             gpus_per_node=1, array_parallelism=2, timeout_min=30, signal_delay_s=45,
                             additional_parameters={"reservation": "r1"})
    handles = launcher._start([_payload(tmp_path, i) for i in range(3)], [0, 1, 2])
    assert [h.job_id for h in handles] == ["4242_0", "4242_1", "4242_2"]
    assert handles[1].run_dir == str(tmp_path / "out" / "1")
    single = launcher._start([_payload(tmp_path, 3)], [3])
    assert single[0].job_id == "4242"
    scripts = sorted(calls.iterdir())
    assert len(scripts) == 2  # one sbatch for the array, one for the single trial
    array_text, single_text = scripts[0].read_text(), scripts[1].read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=30", "#SBATCH --signal=USR2@45", "#SBATCH --reservation=r1"):
        assert line in array_text
    assert "--array" not in single_text and "#SBATCH --partition=gpu" in single_text


def test_trial_job_requeues_itself_with_the_same_payload(tmp_path: Path) -> None:
    import submitit

    job, payload = TrialJob(), _payload(tmp_path, 7)
    assert isinstance(job, submitit.helpers.Checkpointable)
    delayed = job.checkpoint(payload)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is job and delayed.args == (payload,)


# ----------------------------------------------------------------------------- make_executor
def test_make_executor_kinds(tmp_path: Path) -> None:
    assert launcher_kind({"_target_": "hydra_plugins.sweep_plugins.sweep_launchers.LocalLauncher"}) == "local"
    assert launcher_kind({"kind": "slurm"}) == "slurm"
    with pytest.raises(ValueError, match=r"allowed values are \['inprocess', 'local', 'slurm'\]"):
        launcher_kind({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    slurm = make_executor({"kind": "slurm", "partition": "gpu", "timeout_min": 20}, tmp_path / "s")
    assert slurm.cluster == "slurm"
    assert slurm._executor.parameters["partition"] == "gpu" and slurm._executor.parameters["time"] == 20
    import submitit

    assert isinstance(make_executor({"kind": "local"}, tmp_path / "l"), submitit.LocalExecutor)


def test_inprocess_executor_runs_and_raises_without_debugger(tmp_path: Path) -> None:
    executor = make_executor({"kind": "inprocess"}, tmp_path)
    assert isinstance(executor, InProcessExecutor)
    assert executor.submit(_square, 7).result() == 49
    job = executor.submit(_fail)
    assert job.done()
    with pytest.raises(KeyError, match="missing readout"):
        job.result()
    assert isinstance(job.exception(), KeyError)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_local_launcher_gpu_assignment(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), "+search_space=demo", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.n_jobs=2", "sleep=0.5", "hydra.launcher.gpus=[3,5]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(Path(t.user_attrs["record_path"]).read_text()) for t in load(storage).get_trials()]
    assert [r["cuda_visible_devices"] for r in records[:2]] == ["3", "5"]
    assert {r["cuda_visible_devices"] for r in records} == {"3", "5"}


@pytest.mark.slow
def test_slurm_launcher_on_submitit_local_backend(tmp_path: Path) -> None:
    """The SLURM launcher's whole path (batch submit, Checkpointable job, result/crash handling) on submitit's
    local backend; real SLURM runs are in the infra engineer's tests."""
    import optuna

    from sweep.study.storage import make_storage

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="t", storage=make_storage(storage), direction="maximize")
    for mode in ("ok", "exit137", "ok"):
        study.enqueue_trial({"x": 0.5, "method": "byol", "mode": mode})
    proc = run_app(*base_overrides(tmp_path, storage), "+search_space=demo", "hydra/launcher=sweep_slurm",
                   "hydra.launcher.cluster=local", "hydra.launcher.results_timeout_s=0", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_ratio=1.0",
                   "+hydra.sweeper.search_space.mode={type: categorical, choices: [ok, exit137]}", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["failure_reason"].startswith("crashed: job ")
    assert all(t.user_attrs["job_id"] for t in trials)
    assert trials[0].user_attrs["run_dir"] == str(tmp_path / "out" / "0")


@pytest.mark.slow
def test_submit_failure_requeues_trials_and_stops(tmp_path: Path) -> None:
    """sbatch refusing the job (or missing) is not the trials' fault: they are requeued and not counted, the run
    submits nothing more and stops naming the reason; the sweep has lost nothing for the rerun."""
    from sweep.study.resume import is_counted

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_app(*base_overrides(tmp_path, storage), "+search_space=demo", "hydra/launcher=sweep_slurm",
                   "hydra.launcher.partition=no_such_partition_xyz", "hydra.sweeper.n_trials=6",
                   "hydra.sweeper.n_jobs=2", "hydra.sweeper.min_finished_before_abort=2")
    assert proc.returncode != 0
    assert "2 trial(s) could not run: submit failed: " in proc.stderr
    trials = load(storage).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and not [t for t in failed if is_counted(t)]
    assert all(t.user_attrs["failure_reason"].startswith("not the trial's fault (submit failed: ") for t in failed)
    assert sum(t.state == TrialState.WAITING for t in trials) == 2  # the rerun runs them


def test_module_driver_does_not_put_its_package_folder_on_the_worker_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m sweep.cli``: adding sweep/ to PYTHONPATH would let sweep/ssl shadow the standard ssl module."""
    import types

    from sweep.launch import local

    as_module = types.ModuleType("__main__")
    as_module.__file__ = str(Path(local.__file__).parent.parent / "cli.py")
    as_module.__spec__ = importlib.util.find_spec("sweep.cli")
    monkeypatch.setitem(sys.modules, "__main__", as_module)
    assert local._script_dir() is None
    as_script = types.ModuleType("__main__")
    as_script.__file__ = "/some/app/run.py"
    as_script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", as_script)
    assert local._script_dir() == str(Path("/some/app").resolve())


def test_every_launcher_and_its_hydra_front_is_a_trial_submitter() -> None:
    """The sweep driver keeps trials in flight through ``TrialSubmitter`` (submit, submit_batch, sweep_dir) and
    never looks through a front's ``impl``: every registered kind, and each Hydra front of ours, implements it;
    Hydra's own BasicLauncher does not (the driver then runs batch by batch)."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    from hydra_plugins.sweep_plugins import sweep_launchers
    from sweep.launch import LAUNCHERS, TrialSubmitter

    for name, kind in LAUNCHERS.items():  # a Protocol with a property allows isinstance, not issubclass
        assert all(hasattr(kind.launcher, attr) for attr in ("submit", "submit_batch", "sweep_dir")), name
        front = getattr(sweep_launchers, kind.front)
        assert all(hasattr(front, attr) for attr in ("submit", "submit_batch", "sweep_dir")), kind.front
    front = sweep_launchers.LocalLauncher()
    front.impl = LAUNCHERS.get("local").launcher()
    front.impl.config = OmegaConf.create({"hydra": {"sweep": {"dir": "/x/sweep"}}})
    assert isinstance(front, TrialSubmitter) and front.sweep_dir == Path("/x/sweep")
    assert not isinstance(BasicLauncher(), TrialSubmitter)

"""Several processes per trial: rank detection (torchrun, SLURM tasks via submitit), batch sharding, and a real
2-process gloo run on CPU whose files are written once and match one process on the same weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sweep.config import compose_train_config
from sweep.train.checkpoint import checkpoint_path, load_checkpoint
from sweep.train.distributed import Dist, detect
from sweep.train.records import read_record

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
OVERRIDES = ["experiment=tiny", "epochs=2", "data.max_train_samples=300", "data.max_test_samples=120",
             "data.monitor_size=48", "batch_size=64", "metrics.collapse_rankme=0", "metrics.extract_batch_size=50"]
_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
             "SUBMITIT_EXECUTOR")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No distributed or SLURM variables; afterwards the environment exactly as before. ``detect`` exports
    RANK, WORLD_SIZE, MASTER_ADDR ... into ``os.environ`` itself (as a job must), which monkeypatch cannot undo:
    left behind, they made every later local trial of the test session wait in a rendezvous."""
    saved = dict(os.environ)
    for key in _DIST_ENV:
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch
    monkeypatch.undo()
    os.environ.clear()
    os.environ.update(saved)


def test_detect_reads_torchrun_slurm_tasks_and_off(clean_env: pytest.MonkeyPatch) -> None:
    assert detect("auto") == (0, 1, 0)  # a plain process
    clean_env.setenv("SLURM_NTASKS", "4")  # a SLURM allocation alone (not a submitit multi-task job): not DDP
    assert detect("auto") == (0, 1, 0)
    for key, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_PROCID": "3",
                       "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2",
                       "SLURM_JOB_NODELIST": "gpu[07-08]"}.items():
        clean_env.setenv(key, value)
    assert detect("auto") == (3, 4, 1)
    assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["WORLD_SIZE"] == "4"
    assert detect("off") == (0, 1, 0)
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "1")
    assert detect("auto") == (1, 2, 1)  # torchrun's variables come first
    with pytest.raises(ValueError, match=r"distributed='yes': allowed one of \['auto', 'off'\]"):
        detect("yes")


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_rank_shards_partition_each_global_batch_in_order(world: int) -> None:
    batch = np.array([9, 2, 7, 4, 0, 5, 3])
    shards = [Dist(rank, world).shard(batch) for rank in range(world)]
    assert np.array_equal(np.concatenate(shards), batch)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert torch.equal(Dist().gather_rows(torch.ones(3, 2), 3), torch.ones(3, 2))  # one process: no-op


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_write_once_and_match_one_process(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "sweep.train.job", *OVERRIDES, f"run_dir={run_dir}",
           f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SWEEP_PROGRESS": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.count("sweep train: run dir") == 1 and out.stdout.count("sweep train: completed") == 1
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epochs_completed"] == 2
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if p.name != "last.pt"]  # no stray temp files

    # One process, the DDP run's final weights: the same monitoring row and the same feature files.
    from sweep.train import job
    from sweep.train.epoch_metrics import monitor_row

    torch.set_num_threads(1)
    typed = OmegaConf.to_object(compose_train_config(OVERRIDES, run_dir=str(tmp_path / "single")))
    trial = job.build_trial(typed, CPU, tmp_path / "single")
    trial.model.load_state_dict(load_checkpoint(checkpoint_path(run_dir))["model"])
    row, _, reason = monitor_row(trial.model, trial.monitor_images, typed.metrics, CPU, None, trial.augmenter, 0)
    assert reason is None
    final = record["monitor"][-1]
    for key in ("rankme", "rankme_normalized", "alpha", "stable_rank", "participation_ratio", "nesum",
                "silhouette", "ami", "entropy"):
        assert final[key] == pytest.approx(row[key], rel=1e-6, abs=1e-9), key
    single = job.save_features(trial)
    for split in ("train", "val", "test"):
        assert np.array_equal(np.load(single[split]["labels"]), np.load(record["features"][split]["labels"]))
        for kind in ("backbone", "projector"):
            ours, theirs = np.load(single[split][kind]), np.load(record["features"][split][kind])
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5, err_msg=f"{split} {kind}")


def test_batch_losses_see_the_global_batch_with_exact_gradients(tmp_path: Path,
                                                               clean_env: pytest.MonkeyPatch) -> None:
    """2 gloo ranks holding 7 + 6 rows: each rank's loss is the single-process loss of all 13 rows, and its
    gradient (after DDP's division by the world size) is the single-process gradient of its own rows."""
    sys.path.insert(0, str(REPO / "tests" / "apps"))
    from ddp_gather import LOSSES, batch

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(REPO / "tests" / "apps" / "ddp_gather.py"), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    z1, z2 = batch()
    shares = np.array_split(np.arange(len(z1)), 2)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    for name, fn in LOSSES.items():
        a, b = z1.clone().float().requires_grad_(True), z2.clone().float().requires_grad_(True)
        loss = fn(a, b)
        loss.backward()
        for rank, share in enumerate(shares):
            got = ranks[rank][name]
            assert got[0] == pytest.approx(loss.item(), rel=1e-5), name
            n = len(share) * z1.shape[1]
            np.testing.assert_allclose(got[1:1 + n], a.grad[share].flatten().numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} view 1 rank {rank}")
            np.testing.assert_allclose(got[1 + n:], b.grad[share].flatten().numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} view 2 rank {rank}")


def test_global_batch_is_the_identity_outside_ddp() -> None:
    from sweep.ssl._gather import global_batch

    z = torch.randn(4, 3, requires_grad=True)
    assert global_batch(z) is z


def test_detect_leaves_no_distributed_variables_behind() -> None:
    """Runs after the detect test: the session's environment must not look like a torchrun rank."""
    assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK"} & set(os.environ)

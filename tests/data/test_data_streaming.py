"""Streaming data (``open_dataset``): uint8 rows read per batch give the same images as ``load_dataset``;
ImageNet-style folders (class lists, ``val``), STL-10's unlabelled split, DataLoader workers, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.config.schema import DataConfig
from sweep.data import DataError, Rows, iterate, load_dataset, open_dataset, sequential_batches, to_float

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def _stream_all(rows: Rows, image_size: int | None, workers: int = 0, batch: int = 64) -> torch.Tensor:
    return torch.cat([to_float(x, CPU, rows.max_value, image_size)
                      for x, _ in iterate(rows, sequential_batches(len(rows), batch), workers)])


def _write_pngs(root: Path, split: str, classes: list[str], per_class: int, side: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        folder = root / split / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


@pytest.mark.parametrize("image_size", [None, 12])
def test_streamed_digits_equal_loaded_images(image_size: int | None) -> None:
    cfg = DataConfig(name="digits", max_train_samples=300, max_test_samples=90, split_seed=3, image_size=image_size)
    loaded, data = load_dataset(cfg), open_dataset(cfg)
    assert data.input_shape == loaded.input_shape
    for split, rows in (("train", data.train_rows), ("test", data.test_rows)):
        source = getattr(data, split)
        streamed = _stream_all(Rows([(source, rows)]), data.image_size)
        assert torch.equal(streamed, getattr(loaded, split).images)  # same rows, same float32 arithmetic
        assert np.array_equal(source.labels[rows], getattr(loaded, split).labels.numpy())


def test_image_folder_uint8_matches_float_path_and_workers(tmp_path: Path) -> None:
    _write_pngs(tmp_path, "train", ["a", "b", "c"], 7, 10, seed=0)
    _write_pngs(tmp_path, "test", ["a", "b", "c"], 3, 10, seed=1)
    cfg = DataConfig(name="image_folder", root=str(tmp_path))
    loaded, data = load_dataset(cfg), open_dataset(cfg)
    rows = Rows([(data.train, data.train_rows)])
    assert rows.per_file and rows.max_value == 255.0
    in_process = _stream_all(rows, None, workers=0, batch=4)
    assert torch.equal(in_process, loaded.train.images)  # 8-bit PNG: u8 / 255 is the float path exactly
    assert torch.equal(_stream_all(rows, None, workers=2, batch=4), in_process)  # worker processes, same order
    x, y = rows.__getitems__([20, 0, 7])
    assert x.dtype == torch.uint8 and y.tolist() == [2, 0, 1]


def test_image_folder_resize_in_workers_close_to_float_path(tmp_path: Path) -> None:
    _write_pngs(tmp_path, "train", ["a", "b"], 4, 20, seed=2)
    _write_pngs(tmp_path, "test", ["a", "b"], 2, 20, seed=3)
    cfg = DataConfig(name="image_folder", root=str(tmp_path), image_size=8)
    loaded, data = load_dataset(cfg), open_dataset(cfg)
    streamed = _stream_all(Rows([(data.train, data.train_rows)]), data.image_size)
    assert streamed.shape == loaded.train.images.shape == (8, 3, 8, 8)
    # Pillow's antialiased bilinear vs torch's: the same filter up to rounding to 8 bits
    assert (streamed - loaded.train.images).abs().mean() < 0.02


def test_class_subset_and_val_folder_like_imagenet(tmp_path: Path) -> None:
    classes = ["n01", "n02", "n03", "n04"]
    _write_pngs(tmp_path, "train", classes, 3, 6, seed=4)
    _write_pngs(tmp_path, "val", classes, 2, 6, seed=5)
    (tmp_path / "subset.txt").write_text("# ImageNet-style subset\nn04\nn02\n\n")
    cfg = DataConfig(name="image_folder", root=str(tmp_path), classes_file=str(tmp_path / "subset.txt"),
                     test_dir="val")
    data = open_dataset(cfg)
    assert data.classes == ["n02", "n04"]
    assert len(data.train_rows) == 6 and len(data.test_rows) == 4
    assert sorted(set(data.test.labels.tolist())) == [0, 1]
    (tmp_path / "bad.txt").write_text("n02\nn99\n")
    with pytest.raises(DataError, match=r"classes_file=.*n99"):
        open_dataset(DataConfig(name="image_folder", root=str(tmp_path), classes_file=str(tmp_path / "bad.txt"),
                                test_dir="val"))
    with pytest.raises(DataError, match=r"missing folder .*test"):
        open_dataset(DataConfig(name="image_folder", root=str(tmp_path)))


def _write_stl(folder: Path, n_train: int, n_test: int, n_unlabeled: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{name}_X.bin")
        if name != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{name}_y.bin")


def test_stl10_unlabeled_split_joins_ssl_rows_only(tmp_path: Path) -> None:
    _write_stl(tmp_path / "stl10_binary", 60, 30, 25)
    data = open_dataset(DataConfig(name="stl10", root=str(tmp_path), unlabeled=True, image_size=32))
    assert data.unlabeled is not None and len(data.unlabeled.labels) == 25
    assert (data.unlabeled.labels == -1).all() and data.input_shape == (3, 32, 32)
    rows = Rows([(data.train, data.train_rows[:10]), (data.unlabeled, np.arange(25))])
    x, y = rows.__getitems__(list(range(35)))
    assert x.shape == (35, 3, 96, 96) and (y[10:] == -1).all() and (y[:10] >= 0).all()
    raw = np.fromfile(tmp_path / "stl10_binary" / "unlabeled_X.bin", dtype=np.uint8).reshape(25, 3, 96, 96)
    assert np.array_equal(x[10 + 4].numpy(), raw[4].transpose(0, 2, 1))  # column-major on disk
    with pytest.raises(DataError, match=r"data.unlabeled=True with data.name='cifar10'"):
        open_dataset(DataConfig(name="cifar10", root=str(tmp_path), unlabeled=True))


def test_streaming_config_fields_are_validated() -> None:
    from sweep.config import compose_train_config
    from sweep.train.config_check import config_problems

    cfg = compose_train_config(["experiment=tiny", "data.num_workers=-1", "data.unlabeled=true",
                                "precision=fp16", "distributed=nccl", "data.test_dir=a/b"], run_dir="/tmp/x")
    problems = "\n".join(config_problems(cfg))
    for expected in ("data.num_workers=-1: allowed an int >= 0", "data.unlabeled=True: allowed true only with",
                     "precision='fp16': allowed one of ['auto', 'fp32', 'bf16']",
                     "distributed='nccl': allowed one of ['auto', 'off']", "data.test_dir='a/b'"):
        assert expected in problems, problems


# ----------------------------------------------------------------------------- bounded memory
N_CLASSES, PER_CLASS, SIDE, STREAM_SIZE = 10, 2000, 8, 48  # 20k images; streamed at 48 px they would be 553 MB


@pytest.fixture(scope="session")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 tiny RGB PNGs (8x8) in train/<class>/ plus a small test split, written once per session."""
    root = tmp_path_factory.mktemp("folder20k")
    classes = [f"c{k}" for k in range(N_CLASSES)]
    _write_pngs(root, "train", classes, PER_CLASS, SIDE, seed=6)
    _write_pngs(root, "test", classes, 20, SIDE, seed=7)
    return root


MEMORY_PROBE = """
import json, resource, sys
import torch
from sweep.config import compose_train_config
from sweep.train.job import train
torch.set_num_threads(1)
root, run_dir, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

def run(n_train):
    cfg = compose_train_config(["experiment=tiny", "data=image_folder", f"data.root={root}", f"data.image_size={size}",
        f"data.max_train_samples={n_train}", "data.max_test_samples=null", "data.num_workers=2",
        "data.monitor_size=256", "backbone=mlp", "backbone.hidden_dims=[16]", "augment=none", "epochs=1",
        "batch_size=256", "metrics.collapse_rankme=0", "metrics.extract_batch_size=256"],
        run_dir=f"{run_dir}_{n_train}")
    status = train(cfg)["status"]
    return status, [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]

small, big = run(SMALL), run("null")
print(json.dumps({"status": [small[0], big[0]], "small_mb": small[1], "big_mb": big[1]}))
"""
N_SMALL = 4000  # enough batches that DataLoader prefetching reaches its steady state


def test_train_job_memory_is_bounded_on_20k_image_folder(big_folder: Path, tmp_path: Path) -> None:
    """A whole train job (SSL epoch, monitoring, features of every split) on 4,000 and then on 20,000 files in
    one process: peak RSS (of the job and of its DataLoader workers) barely moves, where the in-memory float32
    path would hold 16,000 more images (~422 MB at 48 px)."""
    extra_mb = (N_CLASSES * PER_CLASS - N_SMALL) * 3 * STREAM_SIZE**2 * 4 / 2**20
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SWEEP_PROGRESS": "0"}
    probe_src = MEMORY_PROBE.replace("SMALL", str(N_SMALL))
    out = subprocess.run([sys.executable, "-c", probe_src, str(big_folder), str(tmp_path / "run"),
                          str(STREAM_SIZE)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["status"] == ["completed", "completed"]
    job_growth, worker_growth = (b - s for b, s in zip(probe["big_mb"], probe["small_mb"]))
    assert job_growth < extra_mb / 5, (probe, extra_mb)
    assert worker_growth < extra_mb / 5, (probe, extra_mb)
    feats = np.load(f"{tmp_path / 'run'}_null/features/train_backbone.npy", mmap_mode="r")
    assert feats.shape == (len(np.load(f"{tmp_path / 'run'}_null/features/train_labels.npy")), 16)
    assert feats.shape[0] > 15000


def test_train_job_uses_stl10_unlabeled_rows_for_ssl_only(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from sweep.config import compose_train_config
    from sweep.train.job import build_trial, train

    _write_stl(tmp_path / "stl10_binary", 80, 30, 40)
    overrides = ["experiment=tiny", "data=stl10", "data.unlabeled=true", f"data.root={tmp_path}", "data.image_size=16",
                 "data.monitor_size=16", "backbone=mlp", "batch_size=16", "epochs=1", "metrics.collapse_rankme=0",
                 "metrics.alpha_window=[2,8]", "metrics.kmeans_clusters=4"]
    cfg = compose_train_config(overrides, run_dir=str(tmp_path / "run"))
    trial = build_trial(OmegaConf.to_object(cfg), CPU, tmp_path / "run")
    assert len(trial.split_rows("ssl")) == len(trial.rows["ssl"]) + 40 == 64 + 40
    assert trial.steps_per_epoch == (64 + 40) // 16
    record = train(cfg)
    assert record["status"] == "completed", record["failure_reason"]
    sizes = {s: np.load(record["features"][s]["labels"]).shape[0] for s in ("train", "val", "test")}
    assert sizes == {"train": 51, "val": 13, "test": 30}  # labelled rows only: (80 - 16) split 0.8 / 0.2
    assert np.load(record["features"]["train"]["backbone"]).shape == (51, 64)


def test_cache_dir_decodes_once_then_memory_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sweep.data._image_folder as image_folder

    _write_pngs(tmp_path / "data", "train", ["a", "b"], 6, 12, seed=8)
    _write_pngs(tmp_path / "data", "test", ["a", "b"], 2, 12, seed=9)
    plain_cfg = DataConfig(name="image_folder", root=str(tmp_path / "data"), image_size=8)
    cached_cfg = DataConfig(name="image_folder", root=str(tmp_path / "data"), image_size=8,
                            cache_dir=str(tmp_path / "cache"))
    plain = open_dataset(plain_cfg)
    expected = _stream_all(Rows([(plain.train, plain.train_rows)]), 8)
    first = open_dataset(cached_cfg)  # writes the cache files
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.endswith(".u8.npy") for f in files)  # train and test, no temp files left

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded a file although the cache holds it")

    monkeypatch.setattr(image_folder, "decode_u8", no_decode)
    again = open_dataset(cached_cfg)
    for data in (first, again):
        rows = Rows([(data.train, data.train_rows)])
        assert not rows.per_file
        assert torch.equal(_stream_all(rows, 8), expected)
    monkeypatch.undo()
    touched = tmp_path / "data" / "train" / "a" / "00000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    open_dataset(cached_cfg)  # a changed file set gets a new cache file
    assert len(list((tmp_path / "cache").iterdir())) == 3

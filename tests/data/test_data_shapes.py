"""The procedurally generated ``shapes`` set: seeded, balanced, in range, and loadable through the data config."""
from __future__ import annotations

import numpy as np
import pytest

from sweep.config.schema import DataConfig
from sweep.data import load_dataset
from sweep.data._procedural import SHAPE_CLASSES, SHAPES, balanced_labels, render_shapes, render_split


def test_render_split_is_a_pure_function_of_the_seed() -> None:
    a_pixels, a_labels = render_split(1500, seed=7, side=16)
    b_pixels, b_labels = render_split(1500, seed=7, side=16)
    c_pixels, _ = render_split(1500, seed=8, side=16)
    assert a_pixels.dtype == np.uint8 and a_pixels.shape == (1500, 3, 16, 16)
    np.testing.assert_array_equal(a_pixels, b_pixels)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert not np.array_equal(a_pixels, c_pixels)


def test_labels_are_balanced_and_cover_every_class() -> None:
    labels = balanced_labels(1003, len(SHAPE_CLASSES), seed=0)
    counts = np.bincount(labels, minlength=len(SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003
    assert set(SHAPES) == set(SHAPE_CLASSES)


def test_each_shape_covers_a_plausible_share_of_its_frame() -> None:
    """The signed distances describe objects: inside a unit frame each covers 10-80% of the area."""
    axis = np.linspace(-1.2, 1.2, 121)
    u, v = np.meshgrid(axis, axis)
    for name, distance in SHAPES.items():
        inside = (distance(u, v) <= 0).mean()
        assert 0.05 < inside < 0.8, (name, inside)


def test_nuisances_vary_while_the_class_is_fixed() -> None:
    """Images of one class differ a lot (colour, position, clutter): the class is not a colour statistic."""
    labels = np.zeros(200, dtype=np.int64)
    pixels = render_shapes(labels, np.random.default_rng(0), side=32).astype(float) / 255
    per_image_mean = pixels.mean(axis=(2, 3))
    assert per_image_mean.std(axis=0).min() > 0.1


@pytest.mark.slow
def test_shapes_loads_through_the_data_config() -> None:
    ds = load_dataset(DataConfig(name="shapes", max_train_samples=500, max_test_samples=100))
    assert ds.input_shape == (3, 32, 32) and ds.classes == SHAPE_CLASSES
    assert len(ds.train) == 500 and len(ds.test) == 100
    assert 0.0 <= float(ds.train.images.min()) and float(ds.train.images.max()) <= 1.0
    assert sorted(np.unique(ds.train.labels.numpy())) == list(range(10))

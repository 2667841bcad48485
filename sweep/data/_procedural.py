"""``shapes``: a procedurally generated, seeded image set where only the shape decides the class.

Why: on scikit-learn's digits a randomly initialised CNN is already linearly separable (93-96% probe accuracy
whatever the SSL hyperparameters), so no label-free metric can show that it predicts quality. Here every
nuisance that a good SSL representation must ignore varies strongly and independently of the class:
position, scale, rotation, foreground and background colour, a background gradient, an oriented texture
grating, clutter (line segments and dots drawn over the object) and pixel noise. The ten classes differ only
in the outline of one object: circle, triangle, square, five-pointed star, plus, ring, half disc, bar,
square frame and crescent.

The images are a pure function of ``(SHAPES_SEED, split, index)``: every run, on every machine, sees the same
pixels (generated in a few seconds, nothing is stored or downloaded). Train and test are generated from
different seeds with balanced classes.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sweep.data._arrays import RawSplit, array_reader
from sweep.data._options import DataOptions

SHAPES_SEED = 20261201
SHAPES_SIDE = 32
SHAPES_TRAIN = 10_000
SHAPES_TEST = 2_000
RENDER_CHUNK = 1_000
SHAPE_CLASSES = ["circle", "triangle", "square", "star", "plus", "ring", "half_disc", "bar", "frame",
                 "crescent"]

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) local coordinates -> signed distance


# ----------------------------------------------------------------------------- signed distances (<= 0 inside)
def _box(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.maximum(np.abs(u) - a, np.abs(v) - b)


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """Regular polygon of circumradius 1 (distance along the ray, a good approximation near the edge)."""
    theta = np.arctan2(v, u)
    sector = 2 * np.pi / sides
    radius = np.cos(np.pi / sides) / np.cos(np.mod(theta, sector) - np.pi / sides)
    return np.hypot(u, v) - radius


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    theta = np.arctan2(v, u)
    return np.hypot(u, v) - (0.62 + 0.38 * np.cos(5 * theta))


SHAPES: dict[str, Distance] = {
    "circle": lambda u, v: np.hypot(u, v) - 0.85,
    "triangle": lambda u, v: _polygon(u, v, 3),
    "square": lambda u, v: _box(u, v, 0.72, 0.72),
    "star": _star,
    "plus": lambda u, v: np.minimum(_box(u, v, 0.95, 0.3), _box(u, v, 0.3, 0.95)),
    "ring": lambda u, v: np.maximum(np.hypot(u, v) - 0.95, 0.55 - np.hypot(u, v)),
    "half_disc": lambda u, v: np.maximum(np.hypot(u, v) - 0.95, -v),
    "bar": lambda u, v: _box(u, v, 1.0, 0.28),
    "frame": lambda u, v: np.maximum(_box(u, v, 0.85, 0.85), -_box(u, v, 0.5, 0.5)),
    "crescent": lambda u, v: np.maximum(np.hypot(u, v) - 0.95, 0.75 - np.hypot(u - 0.45, v)),
}


# ----------------------------------------------------------------------------- rendering
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1], shape (1, side, side) each."""
    axis = (np.arange(side) + 0.5) / side * 2 - 1
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x[None], y[None]


def _coverage(distance: np.ndarray, scale: np.ndarray, side: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance in object units (one pixel of ramp)."""
    pixels = distance * scale[:, None, None] * side / 2
    return np.clip(0.5 - pixels, 0.0, 1.0)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _backgrounds(rng: np.random.Generator, n: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two random colours blended along a random direction, plus an oriented sine grating: (n, 3, H, W)."""
    c0, c1 = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    ramp = np.clip(0.5 + 0.5 * (np.cos(angle) * x + np.sin(angle) * y), 0, 1)[:, None]
    bg = c0[:, :, None, None] * (1 - ramp) + c1[:, :, None, None] * ramp
    freq = rng.uniform(2, 9, n)[:, None, None]
    tex_angle = rng.uniform(0, np.pi, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    grating = np.sin(freq * np.pi * (np.cos(tex_angle) * x + np.sin(tex_angle) * y) + phase)
    return bg + rng.uniform(0.0, 0.1, n)[:, None, None, None] * grating[:, None]


def _foreground_colours(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """Random colours, flipped (1 - c) when too close in luminance to the background to be seen at all."""
    colours = rng.uniform(0, 1, background_mean.shape)
    close = np.abs(_luminance(colours) - _luminance(background_mean)) < 0.2
    colours[close] = 1.0 - colours[close]
    return colours


def _paint(images: np.ndarray, coverage: np.ndarray, colours: np.ndarray) -> None:
    """Alpha-composite ``colours`` (n, 3) over ``images`` (n, 3, H, W) with ``coverage`` (n, H, W), in place."""
    a = coverage[:, None]
    images *= 1 - a
    images += a * colours[:, :, None, None]


def _segment_distance(x: np.ndarray, y: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distance (image units) from every pixel to the segment p-q, per image: p, q (n, 2)."""
    d = q - p
    px, py = x - p[:, 0, None, None], y - p[:, 1, None, None]
    t = np.clip((px * d[:, 0, None, None] + py * d[:, 1, None, None])
                / np.maximum((d**2).sum(1), 1e-9)[:, None, None], 0, 1)
    return np.hypot(px - t * d[:, 0, None, None], py - t * d[:, 1, None, None])


def _clutter(rng: np.random.Generator, images: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """0-2 short line segments and 0-3 dots of random colours drawn over every image."""
    n, side = images.shape[0], images.shape[-1]
    ones = np.ones(n)
    for k in range(2):
        active = (rng.integers(0, 3, n) > k).astype(float)
        p = rng.uniform(-1, 1, (n, 2))
        q = p + rng.uniform(-0.5, 0.5, (n, 2))
        width = rng.uniform(0.02, 0.05, n)[:, None, None]
        cover = _coverage(_segment_distance(x, y, p, q) - width, ones, side) * active[:, None, None]
        _paint(images, cover, rng.uniform(0, 1, (n, 3)))
    for k in range(3):
        active = (rng.integers(0, 4, n) > k).astype(float)
        c = rng.uniform(-1, 1, (n, 2))
        r = rng.uniform(0.04, 0.1, n)[:, None, None]
        dist = np.hypot(x - c[:, 0, None, None], y - c[:, 1, None, None]) - r
        _paint(images, _coverage(dist, ones, side) * active[:, None, None], rng.uniform(0, 1, (n, 3)))


def render_shapes(labels: np.ndarray, rng: np.random.Generator, side: int = SHAPES_SIDE) -> np.ndarray:
    """uint8 (N, 3, side, side) images of the classes ``labels`` (indices into SHAPE_CLASSES)."""
    n = len(labels)
    x, y = _grid(side)
    images = _backgrounds(rng, n, x, y)
    scale = rng.uniform(0.4, 0.7, n)
    centre = rng.uniform(-1, 1, (n, 2)) * (1 - scale[:, None])  # the object stays (mostly) inside the frame
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    dx, dy = x - centre[:, 0, None, None], y - centre[:, 1, None, None]
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / scale[:, None, None]
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / scale[:, None, None]
    distance = np.empty((n, side, side))
    for k, name in enumerate(SHAPE_CLASSES):
        rows = labels == k
        distance[rows] = SHAPES[name](u[rows], v[rows])
    colours = _foreground_colours(rng, images.mean(axis=(2, 3)))
    _paint(images, _coverage(distance, scale, side), colours)
    _clutter(rng, images, x, y)
    images += rng.normal(0, rng.uniform(0.0, 0.06, n)[:, None, None, None], images.shape)
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def balanced_labels(n: int, n_classes: int, seed: int) -> np.ndarray:
    """``n`` labels with every class equally often (up to one), in a seeded random order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % n_classes).astype(np.int64)


def render_split(n: int, seed: int, side: int = SHAPES_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int64 labels) of one split, rendered in chunks (bounded float64 temporaries),
    chunk ``i`` seeded with ``(seed, i)`` so the pixels do not depend on anything but ``seed`` and ``n``."""
    labels = balanced_labels(n, len(SHAPE_CLASSES), seed)
    pixels = np.empty((n, 3, side, side), dtype=np.uint8)
    for i, start in enumerate(range(0, n, RENDER_CHUNK)):
        rows = slice(start, start + RENDER_CHUNK)
        pixels[rows] = render_shapes(labels[rows], np.random.default_rng([seed, i]), side)
    return pixels, labels


def load_shapes_raw(opts: DataOptions) -> tuple[RawSplit, RawSplit, list[str]]:
    """10,000 train and 2,000 test 32x32 colour images of ten shapes under heavy nuisance variation."""
    splits = []
    for offset, n in ((0, SHAPES_TRAIN), (1, SHAPES_TEST)):
        pixels, labels = render_split(n, SHAPES_SEED + offset)
        splits.append(RawSplit(labels, array_reader(pixels, 255.0)))
    return splits[0], splits[1], list(SHAPE_CLASSES)

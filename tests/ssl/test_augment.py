"""Batched augmentations: shape/range/device, seed determinism, identity settings, exact known transforms."""
from __future__ import annotations

import colorsys
from dataclasses import replace
from typing import Any

import pytest
import torch

from sweep.config.schema import AugmentConfig
from sweep.ssl import Augmenter
from sweep.ssl import augment as A

torch.set_num_threads(1)
IDENTITY = AugmentConfig(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], flip_prob=0.0, jitter_prob=0.0,
                         grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0, noise_std=0.0)
FULL = AugmentConfig(crop_scale=[0.2, 1.0], flip_prob=0.5, jitter_prob=0.8, grayscale_prob=0.2, blur_prob=0.5,
                     solarize_prob=0.2, noise_std=0.05)


def _images(b: int = 8, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_dtype_device(channels: int) -> None:
    x = _images(c=channels)
    out = Augmenter(FULL)(x, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)


def test_same_seed_same_views_other_seed_other_views() -> None:
    x, aug = _images(), Augmenter(FULL)
    assert torch.equal(aug(x, _gen(3)), aug(x, _gen(3)))
    assert not torch.equal(aug(x, _gen(3)), aug(x, _gen(4)))


def test_parameters_are_drawn_per_sample() -> None:
    x = _images(b=1).expand(6, -1, -1, -1).contiguous()  # six copies of one image
    out = Augmenter(FULL)(x, _gen())
    assert len({tuple(o.flatten()[:20].tolist()) for o in out}) == 6


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_settings_return_the_input_exactly(channels: int) -> None:
    x = _images(c=channels)
    assert torch.equal(Augmenter(IDENTITY)(x, _gen()), x)


def test_zero_strength_jitter_is_identity() -> None:
    x = _images()
    assert torch.equal(Augmenter(replace(IDENTITY, jitter_prob=1.0, jitter_strength=0.0))(x, _gen()), x)


@pytest.mark.parametrize("field,value,match", [
    ("flip_prob", 1.5, "augment.flip_prob.*\\[0, 1\\]"),
    ("crop_scale", [0.9, 0.1], "augment.crop_scale.*low <= high"),
    ("crop_scale", [0.0, 1.0], "augment.crop_scale.*\\(0, 1\\]"),
    ("noise_std", -0.1, "augment.noise_std.*>= 0"),
    ("blur_sigma", [0.0, 1.0], "augment.blur_sigma.*> 0"),
])
def test_invalid_config_names_the_field(field: str, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Augmenter(replace(AugmentConfig(), **{field: value}))


def test_rejects_non_batched_input() -> None:
    with pytest.raises(ValueError, match="B, C, H, W"):
        Augmenter(FULL)(torch.rand(3, 8, 8), _gen())


# ----------------------------------------------------------------------------- single transforms
def test_flip_with_probability_one_is_an_exact_flip() -> None:
    x = _images()
    out = Augmenter(replace(IDENTITY, flip_prob=1.0))(x, _gen())
    assert torch.equal(out, x[..., torch.arange(15, -1, -1)])


def test_flip_with_probability_half_flips_some_samples_exactly() -> None:
    x = _images(b=32)
    out = A.random_flip(x, _gen(), 0.5)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 32


def test_grayscale_equals_the_luma_formula() -> None:
    x = _images(b=2, h=3, w=3)
    out = Augmenter(replace(IDENTITY, grayscale_prob=1.0))(x, _gen())
    for b in range(2):
        for i in range(3):
            for j in range(3):
                r, g, bl = (float(v) for v in x[b, :, i, j])
                y = 0.299 * r + 0.587 * g + 0.114 * bl
                assert out[b, :, i, j].tolist() == pytest.approx([y, y, y], abs=1e-6)


def test_crop_with_unit_scale_and_ratio_is_identity() -> None:
    x = _images()
    out = A.random_resized_crop(x, _gen(), (1.0, 1.0), (1.0, 1.0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_crop_of_the_left_half_samples_the_expected_columns() -> None:
    # width 0.5, centred at x = -0.5, full height: output column j samples input column j / 2 - 0.25,
    # so with a 2-pixel-wide constant-per-column image the result is a linear blend we can write down.
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 2, 4).contiguous() / 3  # columns 0, 1/3, 2/3, 1
    one = torch.ones(1)
    out = A.resized_crop(x, 0.5 * one, one, -0.5 * one, 0 * one)
    # output pixel centres map to input columns -0.25, 0.25, 0.75, 1.25 (border-clamped at 0)
    expected = torch.tensor([0.0, 0.25, 0.75, 1.25]) / 3
    torch.testing.assert_close(out[0, 0, 0], expected)


def test_crop_boxes_respect_scale_and_ratio() -> None:
    w, h, cx, cy = A.crop_boxes(_gen(), 1000, (0.3, 0.6), (0.75, 4 / 3), torch.device("cpu"))
    area, ratio = w * h, w / h
    assert area.min() >= 0.3 - 1e-6 and area.max() <= 0.6 + 1e-6
    assert ratio.min() >= 0.75 - 1e-6 and ratio.max() <= 4 / 3 + 1e-6
    assert (cx.abs() <= 1 - w + 1e-6).all() and (cy.abs() <= 1 - h + 1e-6).all()


def test_hsv_round_trip_and_hue_matches_colorsys() -> None:
    x = _images(b=2, h=4, w=4)
    torch.testing.assert_close(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    shift = torch.tensor([0.1, -0.3])
    out = A.adjust_hue(x, shift)
    for b in range(2):
        r, g, bl = (float(v) for v in x[b, :, 1, 2])
        hh, s, v = colorsys.rgb_to_hsv(r, g, bl)
        expected = colorsys.hsv_to_rgb((hh + shift[b].item()) % 1, s, v)
        assert out[b, :, 1, 2].tolist() == pytest.approx(list(expected), abs=1e-5)


def test_saturation_and_hue_are_noops_on_one_channel_images() -> None:
    x = _images(c=1)
    assert torch.equal(A.adjust_saturation(x, torch.full((8,), 0.1)), x)
    assert torch.equal(A.adjust_hue(x, torch.full((8,), 0.3)), x)
    assert torch.equal(A.grayscale(x), x)


def test_brightness_and_contrast_known_values() -> None:
    x = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2)
    brighter = A.adjust_brightness(x, torch.tensor([1.5])).flatten()
    torch.testing.assert_close(brighter, torch.tensor([0.3, 0.9]))
    # mean 0.4; factor 0.5 halves the distance to the mean
    torch.testing.assert_close(A.adjust_contrast(x, torch.tensor([0.5])).flatten(), torch.tensor([0.3, 0.5]))


def test_blur_preserves_constants_and_matches_a_direct_2d_convolution() -> None:
    const = torch.full((2, 3, 8, 8), 0.4)
    torch.testing.assert_close(A.gaussian_blur(const, torch.tensor([0.5, 1.5]), 3), const)
    x = _images(b=2, c=1, h=9, w=9)
    sigma = torch.tensor([0.7, 1.3])
    out = A.gaussian_blur(x, sigma, 2)
    for b in range(2):
        k1 = torch.exp(-torch.arange(-2.0, 3.0) ** 2 / (2 * sigma[b] ** 2))
        k2 = torch.outer(k1, k1) / k1.sum() ** 2
        padded = torch.nn.functional.pad(x[b:b + 1], (2, 2, 2, 2), mode="reflect")
        ref = torch.nn.functional.conv2d(padded, k2.view(1, 1, 5, 5))
        torch.testing.assert_close(out[b:b + 1], ref, atol=1e-6, rtol=0)


def test_solarize_inverts_bright_pixels() -> None:
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4)
    torch.testing.assert_close(A.solarize(x).flatten(), torch.tensor([0.1, 0.49, 0.5, 0.1]))


def test_noise_has_the_configured_std() -> None:
    x = torch.full((64, 1, 16, 16), 0.5)
    out = Augmenter(replace(IDENTITY, noise_std=0.05))(x, _gen())
    assert (out - x).std().item() == pytest.approx(0.05, rel=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_batch_device() -> None:
    x = _images().cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = Augmenter(FULL)(x, gen)
    again = Augmenter(FULL)(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.device == x.device and torch.equal(out, again)

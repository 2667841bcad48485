"""Batched tensor augmentations with per-sample random parameters, reproducible from a torch.Generator.

Everything runs on the batch's device (random numbers are drawn on the generator's device and moved),
so the two SSL views of a GPU batch never go through the CPU or PIL. Inputs are (B, C, H, W) in [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale


# ----------------------------------------------------------------------------- random draws
def _uniform(gen: torch.Generator, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    u = torch.rand(n, generator=gen, device=gen.device)
    return (lo + (hi - lo) * u).to(device)


def _bernoulli(gen: torch.Generator, n: int, p: float, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=gen.device).to(device) < p


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample select between two (B, ...) batches."""
    return torch.where(mask.view(-1, *([1] * (a.ndim - 1))), a, b)


def _bcast(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- geometric
def crop_boxes(gen: torch.Generator, n: int, scale: Sequence[float], ratio: Sequence[float],
               device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample crop (width, height, centre x, centre y) as fractions / normalised [-1, 1] coordinates.

    Area fraction ~ U(scale), aspect ratio log-uniform in ``ratio``; sides are clipped to the image
    (torchvision retries instead; clipping keeps it one batched draw).
    """
    area = _uniform(gen, n, scale[0], scale[1], device)
    log_r = _uniform(gen, n, math.log(ratio[0]), math.log(ratio[1]), device)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - w) * (2 * _uniform(gen, n, 0.0, 1.0, device) - 1)
    cy = (1 - h) * (2 * _uniform(gen, n, 0.0, 1.0, device) - 1)
    return w, h, cx, cy


def resized_crop(x: Tensor, w: Tensor, h: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Crop each image to its box and resize back to (H, W) with one affine grid + bilinear grid_sample."""
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(x: Tensor, gen: torch.Generator, scale: Sequence[float],
                        ratio: Sequence[float]) -> Tensor:
    return resized_crop(x, *crop_boxes(gen, x.shape[0], scale, ratio, x.device))


def random_flip(x: Tensor, gen: torch.Generator, p: float) -> Tensor:
    """Horizontal flip of each sample with probability p."""
    return _where(_bernoulli(gen, x.shape[0], p, x.device), x.flip(-1), x)


# ----------------------------------------------------------------------------- colour
def grayscale(x: Tensor) -> Tensor:
    """Luma of RGB images, repeated on 3 channels; 1-channel images are returned unchanged."""
    if x.shape[1] != 3:
        return x
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()


def _gray1(x: Tensor) -> Tensor:
    return grayscale(x)[:, :1] if x.shape[1] == 3 else x.mean(1, keepdim=True)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * _bcast(f)).clamp(0, 1)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the image's mean grey level (torchvision's definition)."""
    mean = _gray1(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + _bcast(f) * (x - mean)).clamp(0, 1)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the grayscale image; a no-op for 1-channel images."""
    if x.shape[1] != 3:
        return x
    g = grayscale(x)
    return (g + _bcast(f) * (x - g)).clamp(0, 1)


def rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2 + rc - bc, 4 + gc - rc))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    safe_max = torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    s = torch.where(maxc > 0, delta / safe_max, torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Closed form c_n = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6 with n = 5, 3, 1 for r, g, b."""
    h, s, v = x.unbind(1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]); a no-op for 1-channel images."""
    if x.shape[1] != 3:
        return x
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1)).clamp(0, 1)


def color_jitter(x: Tensor, gen: torch.Generator, strength: float) -> Tensor:
    """SimCLR jitter: brightness/contrast/saturation factors U[1 - 0.8s, 1 + 0.8s], hue shift U[-0.2s, 0.2s].

    Fixed order (brightness, contrast, saturation, hue); torchvision shuffles it, a fixed order stays batched.
    """
    n, dev = x.shape[0], x.device
    b = 0.8 * strength
    lo = max(0.0, 1 - b)
    x = adjust_brightness(x, _uniform(gen, n, lo, 1 + b, dev))
    x = adjust_contrast(x, _uniform(gen, n, lo, 1 + b, dev))
    x = adjust_saturation(x, _uniform(gen, n, lo, 1 + b, dev))
    hue = min(0.2 * strength, 0.5)
    return adjust_hue(x, _uniform(gen, n, -hue, hue, dev))


# ----------------------------------------------------------------------------- filters
def gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """(B, 2 radius + 1) normalised 1-D Gaussian kernels, one per sample's sigma."""
    d = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    k = torch.exp(-(d.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    return k / k.sum(1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable blur with a per-sample sigma: one grouped conv per axis, reflect padding."""
    b, c, hgt, wid = x.shape
    radius = max(0, min(radius, hgt - 1, wid - 1))
    if radius == 0:
        return x
    k = gaussian_kernels(sigma.to(x.dtype), radius).repeat_interleave(c, dim=0)  # (B*C, K)
    y = x.reshape(1, b * c, hgt, wid)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, hgt, wid)


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels at or above the threshold."""
    return torch.where(x >= threshold, 1 - x, x)


# ----------------------------------------------------------------------------- config + pipeline
def _pair(cfg: Any, name: str) -> tuple[float, float]:
    v = list(getattr(cfg, name))
    if len(v) != 2 or v[0] > v[1]:
        raise ValueError(f"augment.{name} must be [low, high] with low <= high, got {v}")
    return float(v[0]), float(v[1])


def _prob(cfg: Any, name: str) -> float:
    p = float(getattr(cfg, name))
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augment.{name} must be a probability in [0, 1], got {p}")
    return p


def _nonneg(cfg: Any, name: str) -> float:
    v = float(getattr(cfg, name))
    if v < 0:
        raise ValueError(f"augment.{name} must be >= 0, got {v}")
    return v


class Augmenter:
    """Crop -> flip -> colour jitter -> grayscale -> blur -> solarize -> noise, then clamp to [0, 1].

    A step whose probability (or noise_std) is 0 draws nothing and changes nothing; the crop is skipped when
    scale and ratio are both (1, 1), so the "none" config returns the input bit for bit.
    """

    def __init__(self, cfg: Any) -> None:
        self.crop_scale = _pair(cfg, "crop_scale")
        self.crop_ratio = _pair(cfg, "crop_ratio")
        if not 0 < self.crop_scale[0] <= 1 or self.crop_scale[1] > 1:
            raise ValueError(f"augment.crop_scale must lie in (0, 1], got {list(self.crop_scale)}")
        if self.crop_ratio[0] <= 0:
            raise ValueError(f"augment.crop_ratio must be > 0, got {list(self.crop_ratio)}")
        self.blur_sigma = _pair(cfg, "blur_sigma")
        if self.blur_sigma[0] <= 0:
            raise ValueError(f"augment.blur_sigma must be > 0, got {list(self.blur_sigma)}")
        self.flip_prob, self.jitter_prob = _prob(cfg, "flip_prob"), _prob(cfg, "jitter_prob")
        self.grayscale_prob, self.blur_prob = _prob(cfg, "grayscale_prob"), _prob(cfg, "blur_prob")
        self.solarize_prob = _prob(cfg, "solarize_prob")
        self.jitter_strength, self.noise_std = _nonneg(cfg, "jitter_strength"), _nonneg(cfg, "noise_std")

    def _crop_is_identity(self) -> bool:
        return self.crop_scale == (1.0, 1.0) and self.crop_ratio == (1.0, 1.0)

    def _apply(self, x: Tensor, gen: torch.Generator, p: float, fn: Any) -> Tensor:
        """Apply ``fn`` to the samples drawn with probability p (computed on all, selected per sample)."""
        if p <= 0:
            return x
        mask = _bernoulli(gen, x.shape[0], p, x.device)
        return _where(mask, fn(x), x)

    def _blur(self, x: Tensor, gen: torch.Generator) -> Tensor:
        sigma = _uniform(gen, x.shape[0], *self.blur_sigma, x.device)
        return gaussian_blur(x, sigma, math.ceil(3 * self.blur_sigma[1]))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"Augmenter expects (B, C, H, W) images, got shape {tuple(x.shape)}")
        if not self._crop_is_identity():
            x = random_resized_crop(x, generator, self.crop_scale, self.crop_ratio)
        if self.flip_prob > 0:
            x = random_flip(x, generator, self.flip_prob)
        if self.jitter_strength > 0:
            strength = self.jitter_strength
            x = self._apply(x, generator, self.jitter_prob, lambda t: color_jitter(t, generator, strength))
        x = self._apply(x, generator, self.grayscale_prob, grayscale)
        x = self._apply(x, generator, self.blur_prob, lambda t: self._blur(t, generator))
        x = self._apply(x, generator, self.solarize_prob, solarize)
        if self.noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
            x = x + self.noise_std * noise
        return x.clamp(0, 1)

"""Spectral metrics from running sums: the one code path for streaming and full-matrix inputs.

Cost model: one pass of X^T X (the GEMM, done in the input's precision on the input's device, in row
chunks, accumulated in float64) plus two float64 ``eigvalsh`` of D x D matrices -- the un-centred
Gram for RankMe / stable rank and the centred covariance for alpha, participation ratio and NESum.
Every metric is then derived from those two spectra.

Precision: rows are shifted by a reference vector c (the mean of the first chunk of rows, on both
paths, rounded to float32) before the GEMM, so float32 rounding is relative to the spread
of the data rather than to its offset; the un-centred Gram is rebuilt exactly in float64 as
S + c s^T + s c^T + n c c^T, where S = sum (x - c)(x - c)^T and s = sum (x - c).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import scipy.linalg
import torch

from ._alpha import DEFAULT_ALPHA_WINDOW, AlphaFit, alpha_from_spectrum
from ._inputs import ArrayLike, MetricInputError, as_tensor, check_finite, check_matrix, check_sizes
from ._spectrum import (
    clean_spectrum,
    nesum_from_eigenvalues,
    participation_ratio_from_eigenvalues,
    rankme_from_gram_eigenvalues,
    stable_rank_from_gram_eigenvalues,
)

SPECTRAL_KEYS = (
    "rankme",
    "alpha",
    "alpha_r2",
    "alpha_window_lo",
    "alpha_window_hi",
    "stable_rank",
    "participation_ratio",
    "nesum",
)
# Round-off floor of the spectra, below which eigenvalues are set to 0 (see clean_spectrum):
#   NOISE_FACTOR * (eps_c * ||S||_F / sqrt(D) + eps64 * sqrt(D) * (norms of the float64 rebuild terms)).
# The first term is the chunked GEMM of the shifted rows in the compute dtype: on float32 inputs of
# rank 1..30 (N = 16..32768, D = 8..2048) the largest null-space eigenvalue measured at
# <= 5.3 * eps32 * ||S||_F / sqrt(D), so the factor 32 leaves a 6x margin. The cost of the floor: a
# float32 Gram cannot resolve eigenvalues far below eps32 * lambda_max, so on float32 inputs with
# power-law spectra k^-a (D=1024, N=8192) RankMe matches the float64 SVD value to 1e-7 for a <= 1.5
# but only to ~6% for a = 2.5; pass float64 features when such steep spectra matter.
NOISE_FACTOR = 32.0
_EPS64 = float(torch.finfo(torch.float64).eps)
_CHUNK_ELEMENTS = 1 << 24  # rows per GEMM chunk = this / D (>= 1024): a 64 MiB float32 buffer


def _gemm_eps(cdtype: torch.dtype, device: torch.device) -> float:
    """Unit round-off of the chunk GEMM: float32 matmuls on CUDA run in TF32 when torch allows it."""
    if cdtype == torch.float32 and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return 2.0**-10
    return float(torch.finfo(cdtype).eps)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32 / half / bfloat16 are multiplied in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _state_device(device: torch.device) -> torch.device:
    """Where the float64 sums live: the data's device, except backends without float64 (MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


class SpectralAccumulator:
    """Streaming sums of X^T X and X (float64, O(D^2) memory) that yield every spectral metric.

    ``update`` accepts numpy arrays and torch tensors on any device; the product of each chunk is
    computed where the batch lives and added to float64 sums on ``device`` (default: the first
    batch's device). ``metrics`` equals :func:`spectral_metrics` on the concatenated batches.
    """

    def __init__(self, dim: int, device: Union[str, torch.device, None] = None) -> None:
        if int(dim) < 2:
            raise MetricInputError(f"dim needs D >= 2 features, got dim={dim}")
        self.dim = int(dim)
        self._device = _state_device(torch.device(device)) if device is not None else None
        self._n = 0
        self._shift: Optional[torch.Tensor] = None
        self._sum: Optional[torch.Tensor] = None
        self._scatter: Optional[torch.Tensor] = None
        self._eps = 0.0
        self._buffer: Optional[np.ndarray] = None  # reused shifted-chunk buffer (CPU path)

    # ------------------------------------------------------------------ accumulation
    def update(self, batch: ArrayLike) -> "SpectralAccumulator":
        """Add a (B, D) batch (B may vary between calls; B = 0 is a no-op). Returns self.

        A batch with NaN/inf raises before anything is added, so the accumulator stays usable.
        """
        x = as_tensor(batch, "batch")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise MetricInputError(f"batch must have shape (B, {self.dim}), got shape {tuple(x.shape)}")
        return self._add(x, "batch")

    def _add(self, x: torch.Tensor, name: str) -> "SpectralAccumulator":
        """Accumulate a validated-shape (B, D) tensor; errors name it ``name``."""
        if x.shape[0] == 0:
            return self
        cdtype = _compute_dtype(x.dtype)
        if not bool(torch.isfinite(x.sum(dim=0, dtype=cdtype)).all()):  # one cheap pass; NaN/inf propagate
            check_finite(x, name)
        rows = _chunk_rows(self.dim)
        if self._shift is None:
            self._start(x[:rows].to(cdtype).mean(dim=0), x.device)
        self._eps = max(self._eps, _gemm_eps(cdtype, x.device))
        if x.device.type == "cpu" and self._device.type == "cpu":  # type: ignore[union-attr]
            state = (self._scatter.numpy(), self._sum.numpy())  # type: ignore[union-attr]
            self._buffer = _add_numpy(x, self._shift, cdtype, *state, self._buffer)  # type: ignore[arg-type]
        else:
            scatter, total = _torch_sums(x, self._shift.to(x.device), cdtype)  # type: ignore[union-attr]
            self._scatter += scatter.to(self._device)  # type: ignore[operator]
            self._sum += total.to(self._device)  # type: ignore[operator]
        self._n += int(x.shape[0])
        return self

    def _start(self, shift: torch.Tensor, data_device: torch.device) -> None:
        """Fix the reference vector c and allocate the float64 sums."""
        dev = self._device if self._device is not None else _state_device(data_device)
        self._device = dev
        # Rounded to float32 so that every batch, float32 or float64, subtracts exactly this c and
        # the float64 rebuild of the Gram uses the shift that was actually applied.
        self._shift = shift.to(torch.float32).to(dev, torch.float64)
        self._sum = torch.zeros(self.dim, dtype=torch.float64, device=dev)
        self._scatter = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=dev)

    # ------------------------------------------------------------------ results
    @property
    def n(self) -> int:
        """Number of rows seen."""
        return self._n

    @property
    def mean(self) -> torch.Tensor:
        """float64 column mean of all rows seen."""
        self._require_data()
        return self._shift + self._sum / self._n  # type: ignore[operator]

    @property
    def gram(self) -> torch.Tensor:
        """float64 un-centred X^T X of all rows seen."""
        return self._rebuild()[0]

    @property
    def centered_scatter(self) -> torch.Tensor:
        """float64 sum_i (x_i - mean)(x_i - mean)^T; covariance = this / (N - 1)."""
        return self._rebuild()[1]

    def _require_data(self) -> None:
        if self._n == 0:
            raise MetricInputError("SpectralAccumulator has seen no rows; call update() first")

    def _rebuild(self) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """(Gram, centred scatter) in float64 from the shifted sums, with their round-off floors."""
        self._require_data()
        scatter, total, c, n = self._scatter, self._sum, self._shift, self._n
        cs = torch.outer(c, total)  # type: ignore[arg-type]
        ss, cc = torch.outer(total, total) / n, n * torch.outer(c, c)  # type: ignore[arg-type]
        s_norm, root_d = _fro(scatter), math.sqrt(self.dim)  # type: ignore[arg-type]
        gemm_err = self._eps * s_norm / root_d
        g_tol = NOISE_FACTOR * (gemm_err + _EPS64 * root_d * (s_norm + 2 * _fro(cs) + _fro(cc)))
        c_tol = NOISE_FACTOR * (gemm_err + _EPS64 * root_d * (s_norm + _fro(ss)))
        return scatter + cs + cs.T + cc, scatter - ss, g_tol, c_tol  # type: ignore[operator]

    def spectra(self) -> tuple[np.ndarray, np.ndarray]:
        """Cleaned descending eigenvalues of the un-centred Gram and of the centred covariance."""
        self._require_data()
        check_sizes(self._n, self.dim, "accumulated features")
        if not bool(torch.isfinite(self._scatter).all()):  # type: ignore[arg-type]
            raise MetricInputError("X^T X overflowed: feature values too large for the compute dtype")
        gram, centred, g_tol, c_tol = self._rebuild()
        g = clean_spectrum(_eigvalsh(gram), g_tol)
        cov = clean_spectrum(_eigvalsh(centred), c_tol) / (self._n - 1)
        return g, cov

    def metrics(self, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> dict[str, float]:
        """All spectral metrics (keys: ``SPECTRAL_KEYS``) of the rows seen so far."""
        g, cov = self.spectra()
        return metrics_from_spectra(g, cov, self._n, window)


def _chunk_rows(dim: int) -> int:
    """Rows per GEMM chunk: enough that the D x D float64 add is negligible next to the product."""
    return max(_CHUNK_ELEMENTS // dim, 1024)


def _add_numpy(
    x: torch.Tensor, shift: torch.Tensor, cdtype: torch.dtype, scatter: np.ndarray, total: np.ndarray,
    buf: Optional[np.ndarray],
) -> np.ndarray:
    """CPU path: shift each chunk into a reused buffer (returned for the next batch) and add its
    sums into the float64 state.

    numpy recognises ``a.T @ a`` and calls BLAS syrk (half the flops of a GEMM; measured 2x faster
    than torch's CPU matmul), and its float64 column sums are 8x faster than torch's.
    """
    a = (x if x.dtype == cdtype else x.to(cdtype)).numpy()  # half / bfloat16: multiplied in float32
    c = shift.to(cdtype).numpy()
    rows = _chunk_rows(a.shape[1])
    need = min(rows, a.shape[0])
    if buf is None or buf.dtype != c.dtype or buf.shape[0] < need:
        buf = np.empty((need, a.shape[1]), dtype=c.dtype)
    for start in range(0, a.shape[0], rows):
        xc = buf[: min(rows, a.shape[0] - start)]
        np.subtract(a[start : start + rows], c, out=xc)
        total += xc.sum(axis=0, dtype=np.float64)
        scatter += xc.T @ xc
    return buf


def _torch_sums(
    x: torch.Tensor, shift: torch.Tensor, cdtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accelerator path: float64 (X - c)^T (X - c) and sum (X - c), GEMMs on x's device."""
    c = shift.to(cdtype)
    scatter = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for chunk in torch.split(x, _chunk_rows(x.shape[1])):
        xc = chunk.to(cdtype) - c
        total += xc.sum(dim=0, dtype=torch.float64)
        scatter += xc.T @ xc
    return scatter, total


def _fro(m: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(m).item())


def _eigvalsh(m: torch.Tensor) -> np.ndarray:
    """Eigenvalues of a symmetric float64 matrix we own (overwritten): LAPACK syevd on CPU,
    cuSOLVER where the sums live on a GPU."""
    if m.device.type == "cpu":
        a = m.numpy()
        return scipy.linalg.eigh(a, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
    return torch.linalg.eigvalsh(m).cpu().numpy()


def metrics_from_spectra(
    gram_eigs: np.ndarray, cov_eigs: np.ndarray, n_samples: int, window: Sequence[int]
) -> dict[str, float]:
    """The spectral metric dict from the two cleaned spectra."""
    fit: AlphaFit = alpha_from_spectrum(cov_eigs, window)
    return {
        "rankme": rankme_from_gram_eigenvalues(gram_eigs, n_samples),
        "alpha": fit.alpha,
        "alpha_r2": fit.r2,
        "alpha_window_lo": float(fit.window[0]),
        "alpha_window_hi": float(fit.window[1]),
        "stable_rank": stable_rank_from_gram_eigenvalues(gram_eigs),
        "participation_ratio": participation_ratio_from_eigenvalues(cov_eigs),
        "nesum": nesum_from_eigenvalues(cov_eigs),
    }


def accumulate(x: ArrayLike, name: str = "x") -> SpectralAccumulator:
    """Full-matrix path: validate the shape of x and accumulate it in row chunks.

    The shift is the first chunk's mean, exactly as when streaming, so the two paths agree to
    round-off. NaN/inf are detected by a column sum (cheaper than an elementwise isfinite pass)
    and then counted for the message.
    """
    t = check_matrix(x, name, check_values=False)
    return SpectralAccumulator(t.shape[1], device=t.device)._add(t, name)


def spectral_metrics(x: ArrayLike, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> dict[str, float]:
    """Every spectral metric of an (N, D) matrix from one Gram pass (keys: ``SPECTRAL_KEYS``)."""
    return accumulate(x).metrics(window)

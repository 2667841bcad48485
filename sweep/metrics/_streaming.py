"""Spectral metrics from running sums: the one code path for streaming and full-matrix inputs.

Cost model: one pass of X^T X in float64 (BLAS syrk on CPU, a GEMM where the batch lives on a GPU) in row
chunks, plus two float64 ``eigvalsh`` of D x D matrices -- the un-centred Gram for RankMe / stable rank and
the centred covariance for alpha, participation ratio and NESum. Every metric is derived from those spectra.
On a CPU each chunk costs one fused convert-and-centre pass over its rows and one dsyrk that adds its scatter
in place into the D x D sums (beta = 1: no D x D temporary, no symmetrising copy per chunk); measured at
N = 4096, D = 2048 on one core, that dsyrk takes ~1.1x a float32 GEMM of the same X^T X.

Exactness: products are formed in float64 whatever the input dtype. float32, float16 and bfloat16 values
are exact in float64 and so are their pairwise products, so the Gram carries float64 round-off only
(~1e-16 relative to its norm, not float32's 6e-8): the small eigenvalues of steep spectra (power law k^-3 over
512 ranks spans 7e-9) keep their value, and RankMe agrees with a float64 SVD of the same matrix to ~1e-10.
On a CPU a float64 syrk costs about what a float32 GEMM of X^T X does (half the flops at half the rate).

Robustness:

* Scale: every batch is multiplied by an exact power of two that brings the largest |value| seen so far to
  [0.5, 1) (earlier sums are rescaled, exactly, when a larger batch arrives), so no product overflows
  (|x| ~ 1e200) or underflows (|x| ~ 1e-170); every metric is a ratio, so the result does not depend on a
  global scale of the input.
* Order: each chunk is centred on its own mean and merged with the running sums by the pairwise update of
  Chan, Golub & LeVeque (1979), M2 = M2_a + M2_b + n_a n_b / n (m_b - m_a)(m_b - m_a)^T. No reference point
  is taken from the first rows, so an unusual first batch (one row 1e5 standard deviations away) costs no
  precision, and the result does not depend on how the rows were split into batches, or in which order.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy.linalg.blas import dsyrk

from ._alpha import DEFAULT_ALPHA_WINDOW, AlphaFit, alpha_from_spectrum
from ._inputs import (
    ArrayLike,
    MetricInputError,
    as_tensor,
    check_finite,
    check_matrix,
    check_sizes,
    scale_pow2,
)
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
    "alpha_window_cut",
    "stable_rank",
    "participation_ratio",
    "nesum",
)
# Round-off floor of the spectra, below which eigenvalues are set to 0 (see clean_spectrum):
#   NOISE_FACTOR * eps64 * (sqrt(D) + 4) * lambda_max.
# Sources: the float64 products (relative to the norm of the rows, not to the small eigenvalues) and the
# eigen-solver's backward error, both ~eps64 * ||G||. On rank-k float64 inputs (k = 1..64, N = 16..32768,
# D = 4..2048, offsets 0..1e3 times the spread, with and without one row 1e5 times the others) the largest
# null-space eigenvalue measured at <= 5 eps64 lambda_max for D = 4 and <= 17 eps64 lambda_max for D = 2048,
# so the factor 4 leaves a margin of 5x (D = 4) to 11x (D = 2048), while eigenvalues above ~1e-13 lambda_max
# (singular values above ~3e-7 sigma_max) are kept: RankMe of a float32 matrix then matches its float64 SVD
# to ~1e-9 on steep and near-collapsed spectra (tests/metrics/test_metrics_robust.py).
NOISE_FACTOR = 4.0
# The alpha fit (and its collapse test) also drops eigenvalues that the input's own precision cannot
# resolve: rounding x to a dtype of unit round-off u moves each entry by <= u |x|, so every covariance
# eigenvalue beyond the data's rank is <= ||E||_F^2 <= u^2 ||X||_F^2 (Courant-Fischer; measured <= 0.16 of
# that on rank-k float32, float16 and bfloat16 inputs). A float32 embedding that collapsed to rank 1 is thus
# still "collapsed" (its rounding noise is no power law). For float32 the floor is <= 7e-15 D lambda_max,
# below any real spectrum; for bfloat16 (u = 2^-8) it can cut the window of a steep spectrum, with an
# AlphaWindowWarning.
QUANTISATION_FACTOR = 1.0
_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11,
                  torch.bfloat16: 2.0**-8}
_EPS64 = float(torch.finfo(torch.float64).eps)
_CHUNK_ELEMENTS = 1 << 23  # rows per chunk = this / D (>= 1024): a 64 MiB float64 buffer


def _state_device(device: torch.device) -> torch.device:
    """Where the float64 sums live: the data's device, except backends without float64 (MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


def _chunk_rows(dim: int) -> int:
    """Rows per product chunk: enough that the D x D float64 merge is negligible next to the product."""
    return max(_CHUNK_ELEMENTS // dim, 1024)


class SpectralAccumulator:
    """Streaming float64 moments (count, mean, centred scatter; O(D^2) memory) that yield every spectral
    metric.

    ``update`` accepts numpy arrays and torch tensors of any float dtype on any device; the product of each
    chunk is computed in float64 where the batch lives and merged into the sums on ``device`` (default: the
    first batch's device). ``metrics`` equals :func:`spectral_metrics` on the concatenated batches, in any
    order and any batch split (to float64 round-off), at any global scale of the input.
    """

    def __init__(self, dim: int, device: Union[str, torch.device, None] = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) < 2:
            raise MetricInputError(f"dim needs D >= 2 features, got dim={dim}")
        self.dim = int(dim)
        self._device = _state_device(torch.device(device)) if device is not None else None
        self._n = 0
        self._exp: Optional[int] = None  # sums are in units of 2**_exp (max |x| seen / 2**_exp in [0.5, 1))
        self._mean: Optional[torch.Tensor] = None  # float64 (D,), scaled units
        self._m2: Optional[torch.Tensor] = None  # float64 (D, D): sum (x - mean)(x - mean)^T, scaled units
        self._buffer: Optional[np.ndarray] = None  # reused float64 chunk buffer (CPU path)
        self._upper_stale = False  # True after in-place dsyrk updates: only the lower triangle of _m2 is valid
        self._unit_roundoff = 2.0**-53  # of the coarsest input dtype seen (integers count as float64)
        self._spectra_cache: dict[str, tuple[np.ndarray, ...]] = {}  # "gram" / "cov" until the next update

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
        self._spectra_cache = {}
        amax = _max_abs(x)  # NaN and inf propagate: one pass, then count for the message
        if not math.isfinite(amax):
            check_finite(x, name)
        if self._mean is None:
            self._start(x.device)
        self._unit_roundoff = max(self._unit_roundoff, _UNIT_ROUNDOFF.get(x.dtype, 2.0**-53))
        if amax > 0.0:
            e = math.frexp(amax)[1]
            if self._exp is None or e > self._exp:
                self._rescale(e)
        rows = _chunk_rows(self.dim)
        in_place = self._device.type == "cpu" and x.device.type in ("cpu", "mps")  # type: ignore[union-attr]
        for start in range(0, x.shape[0], rows):
            if in_place:
                self._cpu_add(x[start : start + rows].cpu())
            else:
                self._merge(*self._chunk_moments(x[start : start + rows]))
        return self

    def _start(self, data_device: torch.device) -> None:
        dev = self._device if self._device is not None else _state_device(data_device)
        self._device = dev
        self._mean = torch.zeros(self.dim, dtype=torch.float64, device=dev)
        self._m2 = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=dev)

    def _rescale(self, e: int) -> None:
        """Express the sums in units of 2**e (exact: a power of two; e only grows once data arrived)."""
        if self._exp is not None and self._n:  # (sums of all-zero rows need no rescaling)
            shift = self._exp - e
            self._mean = scale_pow2(self._mean, shift)  # type: ignore[arg-type]
            self._m2 = scale_pow2(self._m2, 2 * shift)  # type: ignore[arg-type]
        self._exp = e

    @property
    def _e(self) -> int:
        return self._exp if self._exp is not None else 0

    def _chunk_moments(self, chunk: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(rows, mean, centred scatter) of one chunk in float64 scaled units, on the state device (the path
        for sums that do not live on the CPU, or batches that do not)."""
        n_b = int(chunk.shape[0])
        if chunk.device.type in ("cpu", "mps"):  # MPS has no float64: its chunks are multiplied on the CPU
            buf, mean, alpha = self._cpu_centred(chunk.cpu())
            m2 = buf.T @ buf  # numpy calls BLAS syrk for a.T @ a
            m2 *= alpha  # a power of two: exact
            return n_b, torch.from_numpy(mean), torch.from_numpy(m2)
        c = scale_pow2(chunk.to(torch.float64), -self._e)
        mean = c.mean(dim=0)
        c -= mean
        m2 = c.T @ c
        return n_b, mean.to(self._device), m2.to(self._device)

    def _cpu_centred(self, chunk: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
        """(centred float64 rows in a reused buffer, their mean in scaled units, alpha): alpha * buf^T buf is
        the chunk's centred scatter in scaled units.

        float32 / float16 rows are centred unscaled, converting on the way (one pass; the mean is summed from
        the narrow input), and the scale goes into alpha = 2**-2e: their squares cannot over- or underflow
        float64, and scaling by a power of two is exact, so this equals scaling first. float64 rows are
        scaled first (their squares can overflow)."""
        if chunk.dtype not in (torch.float32, torch.float64, torch.float16):
            chunk = chunk.to(torch.float32)  # bfloat16 (and others): exact in float32; numpy has no bfloat16
        a = chunk.numpy()
        if self._buffer is None or self._buffer.shape[0] < a.shape[0]:
            self._buffer = np.empty((min(_chunk_rows(self.dim), max(a.shape[0], 1)), self.dim), np.float64)
        buf = self._buffer[: a.shape[0]]
        if a.dtype != np.float64:
            mean = np.add.reduce(a, axis=0, dtype=np.float64) / a.shape[0]
            np.subtract(a, mean, out=buf, dtype=np.float64)  # converts first: exact
            return buf, mean * math.ldexp(1.0, -self._e), math.ldexp(1.0, -2 * self._e)
        step = max(-1000, min(1000, -self._e))
        np.multiply(a, math.ldexp(1.0, step), out=buf)
        if step != -self._e:  # only for data near the ends of the float64 range
            buf *= math.ldexp(1.0, -self._e - step)
        mean = buf.mean(axis=0)
        buf -= mean
        return buf, mean, 1.0

    def _cpu_add(self, chunk: torch.Tensor) -> None:
        """CPU chunk into CPU sums: Chan's merge (see ``_merge``) with the chunk's scatter added in place by
        BLAS dsyrk (beta = 1: half a GEMM's flops, no D x D temporary). dsyrk writes one triangle: the
        (row-major) lower one of the sums is kept exact, the upper one is restored by ``_symmetrize``."""
        buf, mean_b, alpha = self._cpu_centred(chunk)
        n_a, n_b = self._n, buf.shape[0]
        n = n_a + n_b
        m2 = self._m2.numpy()  # type: ignore[union-attr]
        delta = torch.from_numpy(mean_b) - self._mean  # type: ignore[operator]
        self._mean = self._mean + delta * (n_b / n)  # type: ignore[operator]
        # Fortran sees the row-major m2 transposed: its "upper" triangle is our lower one.
        out = dsyrk(alpha, buf.T, beta=1.0, c=m2.T, trans=0, lower=0, overwrite_c=1)
        if out.ctypes.data != m2.ctypes.data:  # not updated in place (never seen): copy the triangle back
            m2.T[...] = out
        if n_a:
            self._m2.addr_(delta, delta, alpha=n_a * n_b / n)  # type: ignore[union-attr]
        self._n = n
        self._upper_stale = True

    def _symmetrize(self) -> None:
        """Copy the lower triangle of the scatter to the upper one after in-place dsyrk updates."""
        if self._upper_stale:
            m2 = self._m2  # type: ignore[union-attr]
            self._m2 = m2.tril() + m2.tril(-1).T  # type: ignore[union-attr]
            self._upper_stale = False

    def _merge(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        """Chan et al.'s pairwise merge of (n_b, mean_b, m2_b) into the running moments."""
        mean_b, m2_b = mean_b.to(self._device), m2_b.to(self._device)
        n_a = self._n
        n = n_a + n_b
        if n_a == 0:
            self._mean, self._m2 = mean_b.clone(), m2_b.clone()
        else:
            delta = mean_b - self._mean  # type: ignore[operator]
            self._mean = self._mean + delta * (n_b / n)  # type: ignore[operator]
            self._m2 += m2_b  # type: ignore[operator]
            self._m2.addr_(delta, delta, alpha=n_a * n_b / n)  # type: ignore[union-attr]
        self._n = n

    # ------------------------------------------------------------------ results
    @property
    def n(self) -> int:
        """Number of rows seen."""
        return self._n

    def _require_data(self) -> None:
        if self._n == 0:
            raise MetricInputError("SpectralAccumulator has seen no rows; call update() first")

    @property
    def mean(self) -> torch.Tensor:
        """float64 column mean of all rows seen."""
        self._require_data()
        return scale_pow2(self._mean.clone(), self._e)  # type: ignore[union-attr]

    @property
    def gram(self) -> torch.Tensor:
        """float64 un-centred X^T X of all rows seen (inf where it exceeds the float64 range)."""
        return scale_pow2(self._scaled_matrices()[0], 2 * self._e)

    @property
    def centered_scatter(self) -> torch.Tensor:
        """float64 sum_i (x_i - mean)(x_i - mean)^T; covariance = this / (N - 1)."""
        self._require_data()
        self._symmetrize()
        return scale_pow2(self._m2.clone(), 2 * self._e)  # type: ignore[union-attr]

    def _scaled_matrices(self, copy_scatter: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(un-centred Gram, centred scatter) in float64 scaled units (the Gram a fresh tensor; the scatter a
        copy unless ``copy_scatter`` is False, then the live sums: read only, and only their lower triangle
        is valid, which is all ``_eigvalsh`` reads)."""
        self._require_data()
        if copy_scatter:
            self._symmetrize()
        m2 = self._m2.clone() if copy_scatter else self._m2  # type: ignore[union-attr]
        gram = torch.addr(m2, self._mean, self._mean, alpha=float(self._n))  # type: ignore[arg-type]
        return gram, m2  # type: ignore[return-value]

    def _scaled_spectra(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cleaned descending eigenvalues of the Gram and of the covariance, in scaled units, and the
        covariance spectrum for the alpha fit (also without what the input precision cannot resolve).

        Each of the two D x D eigenvalue problems -- the fixed cost of every spectral metric (and of the
        Gaussian entropy) -- is solved once per state, when first needed, and cached until the next ``update``,
        so metrics asked for one after the other share it. Callers must not write to the returned arrays."""
        return (self._gram_spectrum(), *self._cov_spectra())

    def _checked_trace(self) -> float:
        """trace(X^T X) in scaled units; raises if the sums overflowed (impossible with unit-scaled rows)."""
        self._require_data()
        check_sizes(self._n, self.dim, "accumulated features")
        assert self._m2 is not None and self._mean is not None
        trace = float(torch.trace(self._m2).item()) + self._n * float(torch.dot(self._mean, self._mean).item())
        if not math.isfinite(trace):
            raise MetricInputError("X^T X is not finite: the accumulated sums overflowed")
        return trace

    def _gram_spectrum(self) -> np.ndarray:
        """Cleaned descending eigenvalues of the un-centred Gram (scaled units), cached."""
        if "gram" not in self._spectra_cache:
            self._checked_trace()
            gram, _ = self._scaled_matrices(copy_scatter=False)
            self._spectra_cache["gram"] = (_clean(_eigvalsh(gram)),)
        return self._spectra_cache["gram"][0]

    def _cov_spectra(self) -> tuple[np.ndarray, np.ndarray]:
        """(covariance spectrum, covariance spectrum for the alpha fit), scaled units, cached."""
        if "cov" not in self._spectra_cache:
            quantisation = QUANTISATION_FACTOR * self._unit_roundoff**2 * self._checked_trace()
            cov = _clean(_eigvalsh(self._m2))  # type: ignore[arg-type]
            alpha_cov = clean_spectrum(cov, quantisation) if quantisation > 0.0 else cov
            scale = 1.0 / (self._n - 1)
            self._spectra_cache["cov"] = (cov * scale, alpha_cov * scale)
        cov, alpha_cov = self._spectra_cache["cov"]
        return cov, alpha_cov

    def spectra(self) -> tuple[np.ndarray, np.ndarray]:
        """Cleaned descending eigenvalues of the un-centred Gram and of the centred covariance (input units;
        values beyond the float64 range come out as inf -- the metrics use scaled spectra, never overflow)."""
        g, cov, _ = self._scaled_spectra()
        return np.ldexp(g, 2 * self._e), np.ldexp(cov, 2 * self._e)

    def metrics(self, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> dict[str, float]:
        """All spectral metrics (keys: ``SPECTRAL_KEYS``) of the rows seen so far."""
        g, cov, alpha_cov = self._scaled_spectra()
        return metrics_from_spectra(g, cov, self._n, window, alpha_cov)


def _max_abs(x: torch.Tensor) -> float:
    """max |x| in one pass without an |x| copy (NaN if x holds a NaN, inf if it holds an inf)."""
    lo, hi = (float(v) for v in torch.aminmax(x))
    if math.isnan(lo) or math.isnan(hi):
        return math.nan
    return max(-lo, hi)


def _clean(eigenvalues: np.ndarray) -> np.ndarray:
    """Descending spectrum with the round-off floor (see NOISE_FACTOR) set to exactly 0."""
    top = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
    floor = NOISE_FACTOR * _EPS64 * (math.sqrt(eigenvalues.size) + 4.0) * top
    return clean_spectrum(eigenvalues, floor)


def _eigvalsh(m: torch.Tensor) -> np.ndarray:
    """Eigenvalues of a symmetric float64 matrix: LAPACK syevd (through torch; measured faster than scipy's
    build here) on CPU, cuSOLVER where the sums live on a GPU."""
    return torch.linalg.eigvalsh(m, UPLO="L").cpu().numpy()  # the lower triangle: see _cpu_add


def metrics_from_spectra(
    gram_eigs: np.ndarray, cov_eigs: np.ndarray, n_samples: int, window: Sequence[int],
    alpha_eigs: Optional[np.ndarray] = None,
) -> dict[str, float]:
    """The spectral metric dict from the two cleaned spectra (any global scale); ``alpha_eigs``: the
    covariance spectrum for the alpha fit when it was cleaned further (default: ``cov_eigs``)."""
    fit: AlphaFit = alpha_from_spectrum(cov_eigs if alpha_eigs is None else alpha_eigs, window)
    return {
        "rankme": rankme_from_gram_eigenvalues(gram_eigs, n_samples),
        "alpha": fit.alpha,
        "alpha_r2": fit.r2,
        "alpha_window_lo": float(fit.window[0]),
        "alpha_window_hi": float(fit.window[1]),
        "alpha_window_cut": float(fit.window_cut),
        "stable_rank": stable_rank_from_gram_eigenvalues(gram_eigs),
        "participation_ratio": participation_ratio_from_eigenvalues(cov_eigs),
        "nesum": nesum_from_eigenvalues(cov_eigs),
    }


def accumulate(x: ArrayLike, name: str = "x") -> SpectralAccumulator:
    """Full-matrix path: validate the shape of x and accumulate it in row chunks (the streaming code path,
    so the two agree to round-off). NaN/inf are found by the max-abs pass, then counted for the message."""
    t = check_matrix(x, name, check_values=False)
    return SpectralAccumulator(t.shape[1], device=t.device)._add(t, name)


def spectral_metrics(x: ArrayLike, window: Sequence[int] = DEFAULT_ALPHA_WINDOW) -> dict[str, float]:
    """Every spectral metric of an (N, D) matrix from one Gram pass (keys: ``SPECTRAL_KEYS``)."""
    return accumulate(x).metrics(window)

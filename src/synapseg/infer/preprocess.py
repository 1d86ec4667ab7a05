"""Rescaling between the input grid and the model grid, and robust normalisation.

Grid convention (shared with ``synapseg.train``): voxel ``i`` of a grid sits at
``i * voxel_size`` nm, so input voxel ``i`` is model coordinate ``i * s / d`` (``s``: input
voxel size, ``d``: model voxel size) and the model grid has
``floor((n - 1) * s / d) + 1`` voxels along an axis of ``n`` input voxels.

Resampling is separable: a Gaussian pre-filter of sigma ``(d / s - 1) / 2`` source voxels
along each axis that is downsampled (anti-aliasing, as ``skimage.transform.rescale``), then
linear interpolation with edge clamping. :func:`resample_stream` applies it to z-chunks of a
volume of any size (memory-mapped, zarr, or in memory) so memory stays bounded by the chunk:
every output row gets exactly the value a whole-volume resampling would give.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.errors import InputError, VoxelSizeError
from synapseg.specimen.mask import SpecimenMask

log = logging.getLogger(__name__)

MAX_UPSAMPLING = 4.0
"""Largest allowed ratio input voxel size / model voxel size (the model grid is finer)."""
SLOW_DOWNSAMPLING = 2.0
"""Inputs finer than this many times the model's voxel size get a warning about time."""
_TRUNCATE = 4.0
SAMPLE_VOXELS = 2_000_000
"""Voxels sampled for the normalisation statistics."""


def voxel_triple(voxel_size_nm: float | Sequence[float]) -> np.ndarray:
    """Voxel size as a float64 (z, y, x) array."""
    return np.broadcast_to(np.asarray(voxel_size_nm, dtype=np.float64).reshape(-1), (3,)).copy()


def rescale_factors(
    input_voxel_nm: float | Sequence[float], model_voxel_nm: float | Sequence[float]
) -> np.ndarray:
    """Model-grid voxels per input voxel along (z, y, x): ``input / model``.

    Above 1 the model grid is finer (upsampling); below 1 it is coarser (downsampling).
    """
    return voxel_triple(input_voxel_nm) / voxel_triple(model_voxel_nm)


def grid_shape(
    shape: Sequence[int],
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> tuple[int, int, int]:
    """Shape of the model grid covering a volume of ``shape`` input voxels."""
    f = rescale_factors(input_voxel_nm, model_voxel_nm)
    return tuple(int(math.floor((n - 1) * fi + 1e-6)) + 1 for n, fi in zip(shape, f))  # type: ignore[return-value]


def input_to_model_px(
    coords_px: np.ndarray,
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """Map (..., 3) (z, y, x) input-grid voxel coordinates to model-grid coordinates."""
    return np.asarray(coords_px, dtype=np.float64) * rescale_factors(input_voxel_nm, model_voxel_nm)


def model_to_input_px(
    coords_px: np.ndarray,
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """Map (..., 3) (z, y, x) model-grid voxel coordinates to input-grid coordinates."""
    return np.asarray(coords_px, dtype=np.float64) / rescale_factors(input_voxel_nm, model_voxel_nm)


def check_rescale(
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
    source: Any = None,
) -> np.ndarray:
    """Validate the rescaling from the input to the model grid and return its factors.

    Raises
    ------
    VoxelSizeError
        The input is more than :data:`MAX_UPSAMPLING` times coarser than the model: its
        membranes are not resolved, so upsampling cannot recover them.

    Downsampling by any factor is allowed; beyond :data:`SLOW_DOWNSAMPLING` a warning says
    that reading and filtering the fine input dominates the time.
    """
    f = rescale_factors(input_voxel_nm, model_voxel_nm)
    vin, vm = voxel_triple(input_voxel_nm), voxel_triple(model_voxel_nm)
    if f.max() > MAX_UPSAMPLING:
        raise VoxelSizeError(
            source,
            f"input voxel size {vin.max():.4g} nm is {f.max():.3g}x coarser than the model's "
            f"{vm.max():.4g} nm (at most {MAX_UPSAMPLING:g}x is allowed: membranes are not "
            "resolved)",
            "use a less binned tomogram, or check the voxel size (--voxel-size)",
        )
    if f.min() < 1 / SLOW_DOWNSAMPLING:
        log.warning(
            "%s: input voxel size %.4g nm is %.3gx finer than the model's %.4g nm; it is "
            "downsampled on the fly, which makes reading it the slowest step. Binning the "
            "tomogram first (e.g. IMOD 'binvol -binning %d') is faster.",
            source or "input",
            vin.min(),
            1 / f.min(),
            vm.min(),
            max(2, int(1 / f.min())),
        )
    return f


def antialias_sigma(factors: Sequence[float]) -> np.ndarray:
    """Gaussian pre-filter sigma (source voxels) per axis: ``(1 / f - 1) / 2`` where ``f < 1``."""
    f = np.asarray(factors, dtype=np.float64)
    return np.where(f < 1, (1 / f - 1) / 2, 0.0)


def _filter_radius(sigma: float) -> int:
    return int(_TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def resample_axis(data: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``data`` along ``axis`` at float ``coords`` (clamped to the edges).

    Returns float32 with ``len(coords)`` entries along ``axis``.
    """
    n = data.shape[axis]
    c = np.clip(np.asarray(coords, dtype=np.float64), 0, n - 1)
    i0 = np.minimum(np.floor(c).astype(np.intp), max(n - 2, 0))
    w = (c - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * data.ndim
    shape[axis] = len(c)
    w = w.reshape(shape)
    a = np.take(data, i0, axis=axis).astype(np.float32, copy=False)
    b = np.take(data, i1, axis=axis).astype(np.float32, copy=False)
    b -= a
    b *= w
    a += b
    return a


def resample_block(
    block: np.ndarray,
    coords: Sequence[np.ndarray | None],
    sigma: Sequence[float],
) -> np.ndarray:
    """Anti-alias filter and linearly resample the last three axes of ``block``.

    Parameters
    ----------
    block
        (..., z, y, x) source values (any leading axes, e.g. channels).
    coords
        For each of z, y, x: the source coordinates (in ``block``'s voxels) of the output
        rows, or ``None`` to leave that axis alone (no filter either).
    sigma
        Gaussian sigma per axis in source voxels (0: no filter).
    """
    out = np.asarray(block, dtype=np.float32)
    nd = out.ndim
    for k in range(3):
        if coords[k] is None:
            continue
        axis = nd - 3 + k
        if sigma[k] > 0:
            out = ndimage.gaussian_filter1d(
                out, float(sigma[k]), axis=axis, mode="nearest", truncate=_TRUNCATE
            )
        c = np.asarray(coords[k])
        if len(c) != out.shape[axis] or not np.array_equal(c, np.arange(out.shape[axis])):
            out = resample_axis(out, axis, c)
    return out


def resample_stream(
    read_rows: Callable[[int, int], np.ndarray],
    src_shape: Sequence[int],
    dst_shape: Sequence[int],
    factors: Sequence[float],
    write_rows: Callable[[int, int, np.ndarray], None],
    *,
    chunk_voxels: int = 16 * 2**20,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Resample a (…, z, y, x) volume to another grid, z-chunk by z-chunk.

    Each chunk of destination rows reads the source rows it needs (plus the filter margin) in
    batches of at most ``chunk_voxels`` voxels, resamples them in y and x first (so an
    unbinned input shrinks before it is stacked), then in z. Memory stays bounded by a few
    times ``chunk_voxels`` whatever the volume's size or the rescaling factor.

    Parameters
    ----------
    read_rows
        ``read_rows(z0, z1)`` returns source rows ``[z0, z1)`` as an array (…, z, y, x).
    src_shape, dst_shape
        Spatial (z, y, x) shapes of the source and destination grids.
    factors
        Destination voxels per source voxel, per axis (see :func:`rescale_factors`):
        destination voxel ``j`` is source coordinate ``j / f``.
    write_rows
        ``write_rows(z0, z1, block)`` receives destination rows ``[z0, z1)`` (float32).
    chunk_voxels
        Approximate number of voxels (per leading index) held per step.
    progress
        Called with the number of destination rows finished after each chunk.
    """
    f = np.asarray(factors, dtype=np.float64)
    sigma = antialias_sigma(f)
    nz, ny, nx = (int(s) for s in src_shape)
    mz, my, mx = (int(s) for s in dst_shape)
    cy = np.arange(my) / f[1]
    cx = np.arange(mx) / f[2]
    margin = _filter_radius(float(sigma[0])) + 1
    read_batch = max(1, chunk_voxels // max(ny * nx, 1))
    # source rows per chunk, held at the destination's y-x size
    src_rows = max(chunk_voxels // max(my * mx, 1), int(4 * margin + 4 / f[0]))
    rows_per_chunk = max(1, int((src_rows - 2 * margin - 1) * f[0]))
    for j0 in range(0, mz, rows_per_chunk):
        j1 = min(mz, j0 + rows_per_chunk)
        cz = np.arange(j0, j1) / f[0]
        i0 = max(0, int(math.floor(cz[0])) - margin)
        i1 = min(nz, int(math.floor(cz[-1])) + 2 + margin)
        parts = [
            resample_block(read_rows(a, min(i1, a + read_batch)), (None, cy, cx), sigma)
            for a in range(i0, i1, read_batch)
        ]
        mid = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-3)
        del parts
        out = resample_block(mid, (cz - i0, None, None), sigma)
        del mid
        write_rows(j0, j1, out)
        if progress is not None:
            progress(j1 - j0)


@dataclass(frozen=True)
class NormStats:
    """Robust z-score parameters: clip to ``[lo, hi]``, subtract ``mean``, divide by ``std``."""

    lo: float
    hi: float
    mean: float
    std: float

    def apply(self, data: np.ndarray, invert: bool = False) -> np.ndarray:
        """Normalised float32 copy of ``data`` (times -1 when ``invert``)."""
        out = np.clip(np.asarray(data, dtype=np.float32), self.lo, self.hi)
        out -= self.mean
        out *= (-1.0 if invert else 1.0) / self.std
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def normalise_stats(
    sample: np.ndarray, clip_percentiles: Sequence[float] = (0.5, 99.5)
) -> NormStats:
    """Percentile-clipped mean and std of a sample of voxels.

    Parameters
    ----------
    sample
        Any array of voxel values (e.g. a strided sample of the model-grid volume);
        non-finite values are ignored.
    clip_percentiles
        Lower and upper percentile to clip to before the mean and std.

    Raises
    ------
    InputError
        No finite values, or constant data.
    """
    values = np.asarray(sample, dtype=np.float32).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(None, "no finite voxel values to normalise", "check the tomogram")
    lo, hi = (float(v) for v in np.percentile(values, list(clip_percentiles)))
    clipped = np.clip(values, lo, hi)
    mean, std = float(clipped.mean(dtype=np.float64)), float(clipped.std(dtype=np.float64))
    if not std > 0:
        raise InputError(None, "the volume is constant after clipping", "check the tomogram")
    return NormStats(lo, hi, mean, std)


def stats_sample(
    arr: np.ndarray,
    max_voxels: int = SAMPLE_VOXELS,
    specimen: SpecimenMask | None = None,
    voxel_size_nm: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Evenly spaced rows, strided in y and x: a bounded sample of a (z, y, x) grid.

    With a ``specimen`` mask (and the grid's ``voxel_size_nm``) the rows are spread over the
    specimen's z-range and only specimen voxels are returned (flattened).
    """
    nz, ny, nx = arr.shape
    z_lo, z_hi = 0, nz - 1
    if specimen is not None:
        zr = specimen.facts.get("specimen_z_range_nm")
        d = float(np.broadcast_to(np.asarray(voxel_size_nm, dtype=float).reshape(-1), (3,))[0])
        if zr is not None:
            z_lo = int(np.clip(np.ceil(zr[0] / d), 0, nz - 1))
            z_hi = int(np.clip(np.floor(zr[1] / d) - 1, z_lo, nz - 1))
    zs = np.unique(np.linspace(z_lo, z_hi, min(z_hi - z_lo + 1, 32)).round().astype(int))
    stride = max(1, int(np.ceil(np.sqrt(ny * nx * len(zs) / max_voxels))))
    sample = np.stack([np.asarray(arr[int(z), ::stride, ::stride]) for z in zs])
    if specimen is None:
        return sample
    keep = specimen.sample_grid(
        (zs, np.arange(0, ny, stride), np.arange(0, nx, stride)), voxel_size_nm
    )
    if keep.sum() < 1000:  # too little specimen to trust: whole-volume statistics
        log.warning("specimen mask holds too few voxels for statistics; using the whole volume")
        return sample
    return sample[keep]


def normalise_config(card_normalisation: dict[str, Any]) -> tuple[float, float]:
    """Clip percentiles from a model card's ``normalisation`` entry.

    Raises
    ------
    InputError
        An unknown normalisation method.
    """
    method = card_normalisation.get("method", "percentile_zscore")
    if method != "percentile_zscore":
        raise InputError(
            None,
            f"unknown normalisation method {method!r} in the model card",
            "use a model written by this synapseg version",
        )
    lo, hi = card_normalisation.get("clip_percentiles", (0.5, 99.5))
    return float(lo), float(hi)


def rescale_volume(
    data: np.ndarray,
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """Resample a whole in-memory (z, y, x) array to the model grid (anti-aliased, linear).

    A convenience for small volumes and tests; :func:`resample_stream` does the same
    z-chunk by z-chunk.
    """
    f = rescale_factors(input_voxel_nm, model_voxel_nm)
    dst = grid_shape(data.shape, input_voxel_nm, model_voxel_nm)
    out = np.empty(dst, dtype=np.float32)

    def write(z0: int, z1: int, block: np.ndarray) -> None:
        out[z0:z1] = block

    resample_stream(lambda a, b: np.asarray(data[a:b], dtype=np.float32), data.shape, dst, f, write)
    return out

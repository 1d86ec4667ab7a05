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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg._cores import available_cores
from synapseg.core.units import voxel_size_zyx
from synapseg.errors import VoxelSizeError
from synapseg.infer.normalise import (
    NormStats,
    neutral_outside,
    normalise_config,
    normalise_statistics,
    normalise_stats,
    stats_sample,
)
from synapseg.specimen.mask import SpecimenMask

__all__ = [
    "NormStats",
    "check_rescale",
    "grid_shape",
    "input_to_model_px",
    "model_to_input_px",
    "neutral_outside",
    "normalise_config",
    "normalise_statistics",
    "normalise_stats",
    "prepare_image",
    "rescale_factors",
    "rescale_volume",
    "resample_stream",
    "stats_sample",
]

log = logging.getLogger(__name__)

MAX_UPSAMPLING = 4.0
"""Largest allowed ratio input voxel size / model voxel size (the model grid is finer)."""
SLOW_DOWNSAMPLING = 2.0
"""Inputs finer than this many times the model's voxel size get a warning about time."""
_TRUNCATE = 4.0
_ROW_LOOP_VOXELS = 2**16  # rows this large (z planes) are interpolated one by one, no gather
RESAMPLE_WORKERS = 2
"""z-chunks resampled at the same time (threads, capped at the cores) where the target is a
numpy array (:func:`rescale_volume`, :func:`synapseg.infer.predict.predict_volume`)."""


def voxel_triple(voxel_size_nm: float | Sequence[float]) -> np.ndarray:
    """Voxel size as a float64 (z, y, x) array."""
    return voxel_size_zyx(voxel_size_nm)


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
    if int(np.prod(data.shape[axis + 1 :])) >= _ROW_LOOP_VOXELS:
        return _lerp_rows(data, axis, i0, i1, w)
    shape = [1] * data.ndim
    shape[axis] = len(c)
    w = w.reshape(shape)
    a = np.take(data, i0, axis=axis).astype(np.float32, copy=False)
    b = np.take(data, i1, axis=axis).astype(np.float32, copy=False)
    b -= a
    b *= w
    a += b
    return a


def _lerp_rows(
    data: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """:func:`resample_axis` one output row (a whole plane) at a time, written straight
    into the result: no two gathered copies. Bit-identical (``w * (b - a) + a``) and about
    twice as fast along z, where each row is a large contiguous plane (issue 17)."""
    shape = list(data.shape)
    shape[axis] = len(i0)
    out = np.empty(shape, dtype=np.float32)
    src, dst = np.moveaxis(data, axis, 0), np.moveaxis(out, axis, 0)
    for j, (a, b) in enumerate(zip(i0, i1)):
        row = dst[j]
        np.subtract(src[b], src[a], out=row, dtype=np.float32)
        row *= w[j]
        row += src[a]
    return out


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
        if _filter_radius(float(sigma[k])) > 0:  # radius 0: scipy's kernel is [1.0], a copy
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
    workers: int = 1,
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
    workers
        Chunks resampled at the same time in threads (numpy and scipy release the GIL),
        capped at the available cores; memory grows with them. Each chunk's ``write_rows``
        gets disjoint rows, but calls may overlap in time: use more than 1 only when
        ``write_rows`` is thread-safe for disjoint rows (a numpy array or memmap is; a zarr
        array whose chunks span several rows is not).
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

    def chunk(j0: int) -> int:
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
        return j1 - j0

    starts = range(0, mz, rows_per_chunk)
    n_workers = min(max(1, int(workers)), available_cores(), len(starts))
    if n_workers <= 1:
        for j0 in starts:
            done = chunk(j0)
            if progress is not None:
                progress(done)
        return
    with ThreadPoolExecutor(n_workers, thread_name_prefix="synapseg-resample") as pool:
        pending: deque = deque()
        for j0 in starts:  # at most n_workers chunks in flight: memory stays bounded
            if len(pending) >= n_workers:
                _finish(pending.popleft(), progress)
            pending.append(pool.submit(chunk, j0))
        while pending:
            _finish(pending.popleft(), progress)


def _finish(future: Future, progress: Callable[[int], None] | None) -> None:
    done = future.result()  # re-raises a chunk's exception here, in the caller's thread
    if progress is not None:
        progress(done)


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

    resample_stream(
        lambda a, b: np.asarray(data[a:b], dtype=np.float32),
        data.shape,
        dst,
        f,
        write,
        workers=RESAMPLE_WORKERS,
    )
    return out


def prepare_image(
    data: np.ndarray,
    input_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
    clip_percentiles: Sequence[float] = (0.5, 99.5),
    specimen: SpecimenMask | bool = True,
    invert: bool = False,
) -> tuple[np.ndarray, NormStats]:
    """The network's input for an in-memory (z, y, x) volume: what training uses.

    Exactly the steps of :func:`synapseg.infer.predict.predict_volume` (which streams them):
    resample to the model grid (:func:`rescale_volume`), percentile z-score with statistics
    from the specimen only (:func:`stats_sample`, :func:`normalise_stats`), times -1 when
    ``invert``, and 0 outside the specimen (:func:`neutral_outside`).

    Parameters
    ----------
    data
        (z, y, x) volume on the input grid.
    input_voxel_nm, model_voxel_nm
        Voxel sizes of the input and of the model grid.
    clip_percentiles
        From the model card's ``normalisation`` (:func:`normalise_config`).
    specimen
        A specimen mask of ``data``; ``True`` computes it, ``False`` uses the whole volume.
    invert
        Multiply the normalised image by -1 (bright densities).

    Returns
    -------
    (image, stats)
        float32 model-grid image and the :class:`NormStats` applied.
    """
    from synapseg.specimen.mask import specimen_mask

    if specimen is True:
        specimen = specimen_mask(data, input_voxel_nm)
    mask = specimen if isinstance(specimen, SpecimenMask) else None
    image = rescale_volume(data, input_voxel_nm, model_voxel_nm)
    sample = stats_sample(image, specimen=mask, voxel_size_nm=model_voxel_nm)
    stats = normalise_stats(sample, clip_percentiles)
    image = stats.apply(image, invert=invert)
    neutral_outside(image, mask, [slice(0, n) for n in image.shape], model_voxel_nm)
    return image, stats

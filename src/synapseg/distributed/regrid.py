"""Resampling a region of one grid from the matching region of another, exactly as the
whole-volume stream does (:func:`synapseg.infer.preprocess.resample_stream`).

:func:`resample_region` reads only the source voxels a destination region needs (plus the
interpolation and anti-alias margins) and returns the values a whole-volume resampling
gives there, bit for bit: the same separable steps (y, x, then z), the same coordinates
(destination voxel ``j`` is source coordinate ``j / f``) and the same margins.
:class:`ModelGridRows` is a lazy, read-only view of the model grid of a volume that holds
nothing but computes the rows asked for (for the normalisation statistics of a volume too
large to rescale in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from synapseg.distributed.blocks import source_range
from synapseg.infer.preprocess import antialias_sigma, resample_block

__all__ = ["ModelGridRows", "resample_region"]

Reader = Callable[[tuple[slice, slice, slice]], np.ndarray]


def resample_region(
    read: Reader,
    src_shape: Sequence[int],
    region: Sequence[slice],
    factors: Sequence[float],
) -> np.ndarray:
    """float32 values of the destination ``region`` (slices of the destination grid).

    Parameters
    ----------
    read
        ``read(slices)`` returns the source voxels at ``slices`` (any real dtype).
    src_shape
        Source grid shape (z, y, x).
    region
        Destination slices (z, y, x) with explicit starts and stops.
    factors
        Destination voxels per source voxel along (z, y, x).
    """
    f = [float(v) for v in factors]
    sigma = antialias_sigma(f)
    src, coords = [], []
    for k in range(3):
        lo, hi = int(region[k].start), int(region[k].stop)
        a, b = source_range(lo, hi, f[k], int(src_shape[k]))
        src.append(slice(a, b))
        coords.append(None if f[k] == 1 else np.arange(lo, hi) / f[k] - a)
    block = np.asarray(read(tuple(src)), dtype=np.float32)  # type: ignore[arg-type]
    if coords[1] is not None or coords[2] is not None:
        block = resample_block(block, (None, coords[1], coords[2]), sigma)
    if coords[0] is not None:
        block = resample_block(block, (coords[0], None, None), sigma)
    return block


class ModelGridRows:
    """Read-only view of a volume's model grid: ``view[z, ys, xs]`` computes that row.

    The row's source sections are read once, in their own dtype, and resampled in bands of
    model rows of at most :attr:`BAND_VOXELS` source voxels each (a model row of a
    4096×4096-section volume computed whole held ~2 GB of float32 intermediates); only the
    bands holding rows in ``ys`` are computed.

    Parameters
    ----------
    data
        The (z, y, x) input array (memmap, zarr, numpy).
    factors
        Model voxels per input voxel (z, y, x).
    shape
        The model grid's shape.
    """

    BAND_VOXELS = 16 * 2**20

    def __init__(self, data: object, factors: Sequence[float], shape: Sequence[int]) -> None:
        self.data = data
        self.factors = [float(v) for v in factors]
        self.shape = tuple(int(s) for s in shape)

    def __getitem__(self, key: tuple) -> np.ndarray:
        z, ys, xs = key
        src_shape = tuple(int(n) for n in self.data.shape)  # type: ignore[attr-defined]
        a, b = source_range(int(z), int(z) + 1, self.factors[0], src_shape[0])
        raw = np.asarray(self.data[a:b])  # type: ignore[index]

        def read(sl: tuple[slice, slice, slice]) -> np.ndarray:
            return raw[(slice(sl[0].start - a, sl[0].stop - a), sl[1], sl[2])]

        ny, nx = self.shape[1:]
        wanted = np.arange(ny)[ys]
        band = max(1, int(self.BAND_VOXELS // max(1, (b - a) * src_shape[2] / self.factors[1])))
        rows = []
        for y0 in range(0, ny, band):
            here = wanted[(wanted >= y0) & (wanted < y0 + band)]
            if here.size:
                region = (slice(int(z), int(z) + 1), slice(y0, min(y0 + band, ny)), slice(0, nx))
                block = resample_region(read, src_shape, region, self.factors)
                rows.append(block[0][here - y0][:, xs])
        return np.concatenate(rows) if rows else np.zeros((0, len(range(nx)[xs])), np.float32)

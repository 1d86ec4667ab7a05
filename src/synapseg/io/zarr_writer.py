"""OME-Zarr (NGFF 0.4) multiscale volumes written block by block.

:func:`open_ome_zarr_writer` creates the store beside its target (``<name>.tmp``) and
yields the full-resolution zarr array: the caller writes it block by block (a volume larger
than memory never exists in one piece). On leaving the ``with`` block the lower-resolution
levels are computed from it slab by slab (2x2x2 mean for images and probabilities, every
second voxel for labels, so ids stay ids), the ``multiscales`` metadata is written with
``ome-zarr`` (axes z, y, x in nanometer, scale and translation per level) and the store is
renamed into place. Nothing appears under the target name if anything fails, and an
existing store is replaced only with ``overwrite``.

Stores are zarr format 2 (what OME-NGFF 0.4 readers such as napari-ome-zarr expect).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.io.atomic import atomic_dir
from synapseg.io.volume_base import as_voxel_size

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHUNKS", "open_ome_zarr_writer", "pyramid_shapes", "write_ome_zarr"]

DEFAULT_CHUNKS = (64, 256, 256)
"""Chunk shape (z, y, x) of every level (clipped to the level's shape)."""
MIN_LEVEL_EDGE = 64
"""No further level once the largest edge of the last one is below twice this."""
SLAB_VOXELS = 64 * 2**20
"""Voxels of a source slab while computing a lower level (bounds its memory)."""


def pyramid_shapes(shape: Sequence[int], max_levels: int = 5) -> list[tuple[int, int, int]]:
    """Shapes of the levels: each halves every axis longer than 1 (rounding up).

    Examples
    --------
    >>> pyramid_shapes((64, 300, 300))
    [(64, 300, 300), (32, 150, 150), (16, 75, 75)]
    """
    shapes = [tuple(int(s) for s in shape)]
    while len(shapes) < max_levels and max(shapes[-1]) >= 2 * MIN_LEVEL_EDGE:
        shapes.append(tuple((s + 1) // 2 if s > 1 else 1 for s in shapes[-1]))
    return shapes  # type: ignore[return-value]


def _downsample(block: np.ndarray, labels: bool, dtype: np.dtype) -> np.ndarray:
    """One level down: every second voxel (labels) or the 2x2x2 mean (images)."""
    if labels:
        return block[::2, ::2, ::2]
    pads = [(0, s % 2) for s in block.shape]
    data = (
        np.pad(block.astype(np.float32), pads, mode="edge")
        if any(p[1] for p in pads)
        else block.astype(np.float32)
    )
    z, y, x = data.shape
    mean = data.reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(dtype)
    return mean.astype(dtype)


def _chunks(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(max(1, min(int(c), int(s))) for c, s in zip(chunks, shape))


def _write_level(src: Any, dst: Any, labels: bool) -> None:
    """Fill ``dst`` (one level down) from ``src`` slab by slab."""
    ny, nx = src.shape[1], src.shape[2]
    rows = max(2, (SLAB_VOXELS // max(ny * nx, 1)) // 2 * 2)
    for z0 in range(0, src.shape[0], rows):
        block = np.asarray(src[z0 : z0 + rows])
        dst[z0 // 2 : z0 // 2 + (block.shape[0] + 1) // 2] = _downsample(block, labels, dst.dtype)


def _metadata(
    group: Any, shapes: list, vs: Sequence[float], origin: Sequence[float], name: str, labels: bool
) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    datasets = []
    factor = np.ones(3)
    for level in range(len(shapes)):
        if level:  # each level halves the axes longer than 1 (the last voxel may be padded)
            factor = factor * np.where(np.asarray(shapes[level - 1]) > 1, 2.0, 1.0)
        scale = [float(v) * float(f) for v, f in zip(vs, factor)]
        # an averaged voxel's center sits half a (coarse - fine) voxel in from the origin; a
        # picked one (labels: every second voxel) is the fine voxel itself
        shift = [
            float(o) + (0.0 if labels else (s - float(v)) / 2) for o, s, v in zip(origin, scale, vs)
        ]
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": shift},
                ],
            }
        )
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=axes, name=name)


@contextlib.contextmanager
def open_ome_zarr_writer(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    voxel_size_nm: float | Sequence[float],
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    overwrite: bool = False,
    labels: bool = False,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    max_levels: int = 5,
    compress: bool = True,
) -> Iterator[Any]:
    """Create an OME-Zarr multiscale volume and yield its writable full-resolution array.

    Parameters
    ----------
    path
        Target store (a ``.zarr`` folder).
    shape, dtype
        Full-resolution (z, y, x) shape and dtype.
    voxel_size_nm, origin_nm
        Voxel size (nm; scalar or z, y, x) and physical position (nm) of voxel (0, 0, 0).
    overwrite
        Replace an existing store.
    labels
        Instance labels: lower levels pick voxels instead of averaging them.
    chunks
        Chunk shape of every level.
    max_levels
        Most resolution levels (fewer for small volumes, see :func:`pyramid_shapes`).
    compress
        Compress chunks (zarr's default codec); ``False`` writes raw chunks (fastest).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    from synapseg.io.volume_writer import create_zarr_array, new_zarr_group

    path = Path(path)
    vs = as_voxel_size(voxel_size_nm, source=str(path))
    origin = tuple(float(o) for o in origin_nm)
    shapes = pyramid_shapes(shape, max_levels)
    with atomic_dir(path, overwrite) as tmp:
        group = new_zarr_group(tmp)
        arrays = [
            create_zarr_array(group, str(i), s, np.dtype(dtype), _chunks(s, chunks))
            if compress
            else group.create_array(
                str(i), shape=s, dtype=np.dtype(dtype), chunks=_chunks(s, chunks), compressors=None
            )
            for i, s in enumerate(shapes)
        ]
        yield arrays[0]
        for src, dst in zip(arrays, arrays[1:]):
            _write_level(src, dst, labels)
        _metadata(group, shapes, vs, origin, path.name, labels)  # type: ignore[arg-type]


def write_ome_zarr(
    path: str | os.PathLike,
    data: Any,
    voxel_size_nm: float | Sequence[float],
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    overwrite: bool = False,
    labels: bool = False,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
) -> Path:
    """Write an array (or memmap) as an OME-Zarr multiscale volume, z-slab by z-slab."""
    with open_ome_zarr_writer(
        path, data.shape, data.dtype, voxel_size_nm, origin_nm,
        overwrite=overwrite, labels=labels, chunks=chunks,
    ) as out:  # fmt: skip
        rows = max(1, SLAB_VOXELS // max(int(np.prod(data.shape[1:])), 1))
        for z0 in range(0, data.shape[0], rows):
            out[z0 : z0 + rows] = np.asarray(data[z0 : z0 + rows])
    return Path(path)

"""Write tomograms and label volumes: MRC (streamed through a memory map), TIFF, OME-Zarr.

Every writer is atomic (``*.tmp`` beside the target, then rename) and refuses to replace an
existing file unless ``overwrite=True``. Voxel size and origin are given in nm and stored
in each format's own units (Å in MRC headers).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.errors import InputError
from synapseg.io.atomic import atomic_dir, atomic_path, preallocate
from synapseg.io.volume import (
    IMOD_FLAG_SIGNED_BYTES,
    IMOD_STAMP,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    VoxelSize,
    as_voxel_size,
)

WRITABLE_DTYPES = tuple(
    np.dtype(t) for t in ("float32", "float16", "int8", "uint8", "int16", "uint16")
)


def _prepare_mrc_header(mrc: Any, dtype: np.dtype, voxel_size_nm: VoxelSize, origin_nm: VoxelSize):
    vz, vy, vx = (v * 10 for v in voxel_size_nm)
    mrc.voxel_size = (vx, vy, vz)
    oz, oy, ox = (o * 10 for o in origin_nm)
    mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
    if dtype.itemsize == 1:
        # Declare the byte sign the IMOD way so IMOD and synapseg agree.
        extra2 = bytearray(bytes(mrc.header.extra2))
        extra2[40:44] = IMOD_STAMP.to_bytes(4, "little")
        extra2[44:48] = (IMOD_FLAG_SIGNED_BYTES if dtype == np.int8 else 0).to_bytes(4, "little")
        mrc.header.extra2 = bytes(extra2)


def _check_write_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype not in WRITABLE_DTYPES:
        raise InputError(
            path,
            f"cannot write data type {dtype} to MRC",
            f"use one of {', '.join(str(d) for d in WRITABLE_DTYPES)}",
        )


def write_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    overwrite: bool = False,
    label: str | None = None,
) -> Path:
    """Write a (z, y, x) array atomically as MRC, TIFF (ImageJ) or OME-Zarr, by suffix.

    Parameters
    ----------
    path
        Target ``.mrc``/``.rec``/``.map`` (MRC), ``.tif``/``.tiff`` (ImageJ hyperstack with
        scale in nm and the origin as metadata) or ``.zarr`` (OME-NGFF 0.4, one scale level).
    data
        Array of float32, float16, int8, uint8, int16 or uint16. uint8 is written as
        mode 0 with IMOD's unsigned-bytes convention.
    voxel_size_nm, origin_nm
        Geometry in nm, stored in the header in Å.
    overwrite
        Replace an existing file; otherwise an existing file raises ``OutputExistsError``.
    label
        Optional text for the first header label (e.g. the synapseg version).
    """
    path = Path(path)
    data = np.asarray(data)
    _check_write_dtype(path, data.dtype)
    lower = path.name.lower()
    if lower.endswith(TIFF_SUFFIXES + ZARR_SUFFIXES):
        vs = as_voxel_size(voxel_size_nm, str(path))
        writer = _write_tiff if lower.endswith(TIFF_SUFFIXES) else _write_zarr
        return writer(path, data, vs, origin_nm, overwrite)
    if not lower.endswith(MRC_SUFFIXES):
        raise InputError(path, "unknown output type", "use .mrc, .tif or .zarr")
    with open_volume_writer(
        path, data.shape, data.dtype, voxel_size_nm, origin_nm, overwrite=overwrite, label=label
    ) as out:
        for z in range(data.shape[0]):  # section-wise: bounded extra memory for memmap input
            out[z] = data[z]
    return path


def _write_tiff(
    path: Path, data: np.ndarray, vs: VoxelSize, origin_nm: Sequence[float], overwrite: bool
) -> Path:
    import tifffile

    meta = {"spacing": vs[0], "unit": "nm", "axes": "ZYX"}
    meta.update({f"origin_{a}_nm": float(o) for a, o in zip("zyx", origin_nm)})
    with atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, resolution=(1 / vs[2], 1 / vs[1]), metadata=meta)
    return path


def new_zarr_group(path: Path) -> Any:
    """Create a Zarr v2-format group (what OME-NGFF 0.4 readers expect) with zarr 2 or 3."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="w", zarr_format=2)
    except TypeError:  # zarr 2 has no zarr_format argument and writes v2 anyway
        return zarr.open_group(str(path), mode="w")


def create_zarr_array(
    group: Any, name: str, shape: Sequence[int], dtype: Any, chunks: Sequence[int] | None = None
) -> Any:
    """Create an array in a zarr group with zarr 3 (``create_array``) or 2 (``create_dataset``).

    ``chunks`` defaults to blocks of at most 128 voxels per axis.
    """
    create = getattr(group, "create_array", None) or group.create_dataset
    chunks = tuple(min(n, 128) for n in shape) if chunks is None else tuple(chunks)
    return create(name, shape=tuple(shape), dtype=dtype, chunks=chunks)


def _write_zarr(
    path: Path, data: np.ndarray, vs: VoxelSize, origin_nm: Sequence[float], overwrite: bool
) -> Path:
    with atomic_dir(path, overwrite) as tmp:
        group = new_zarr_group(tmp)
        array = create_zarr_array(group, "0", data.shape, data.dtype)
        array[:] = data
        axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
        transforms = [
            {"type": "scale", "scale": list(vs)},
            {"type": "translation", "translation": [float(o) for o in origin_nm]},
        ]
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "name": path.name,
                "axes": axes,
                "datasets": [{"path": "0", "coordinateTransformations": transforms}],
            }
        ]
    return path


@contextlib.contextmanager
def open_volume_writer(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    voxel_size_nm: float | Sequence[float],
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    overwrite: bool = False,
    label: str | None = None,
) -> Iterator[np.ndarray]:
    """Create an MRC file and yield its writable, memory-mapped (z, y, x) data (zeros).

    Use it to stream results block by block into a volume larger than memory. The file
    appears under ``path`` only when the ``with`` block finishes without error. Its disk
    space is reserved up front (:func:`synapseg.io.atomic.preallocate`), so a full disk
    raises a one-line ``InputError`` here instead of killing the process with SIGBUS later.
    """
    import mrcfile

    path = Path(path)
    dtype = np.dtype(dtype)
    _check_write_dtype(path, dtype)
    vs = as_voxel_size(voxel_size_nm, source=str(path))
    origin = tuple(float(o) for o in origin_nm)
    file_dtype = np.dtype(np.int8) if dtype == np.uint8 else dtype
    with atomic_path(path, overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.new_mmap(tmp, shape=tuple(shape), mrc_mode=_mrc_mode(file_dtype))
        try:
            preallocate(tmp, os.path.getsize(tmp))
            _prepare_mrc_header(mrc, dtype, vs, origin)  # type: ignore[arg-type]
            if label:
                mrc.add_label(label[:80])
            view = mrc.data.view(np.uint8) if dtype == np.uint8 else mrc.data
            yield view
            _set_header_stats(mrc.header, view)
        finally:
            mrc.close()


def _section_stats(section: np.ndarray) -> tuple[float, float, float, float]:
    if section.dtype.kind in "iub" and section.dtype.itemsize <= 2:
        # 8/16-bit maps (labels, 0-255 probabilities): exact in int64 and ~3x faster than
        # float64 (min/max on the native type, one widening copy for the sums)
        wide = section.astype(np.int64).ravel()
        return float(section.min()), float(section.max()), float(wide.sum()), float(wide @ wide)
    s = np.asarray(section, dtype=np.float64)
    return float(s.min()), float(s.max()), float(s.sum()), float(np.square(s).sum())


def _set_header_stats(header: Any, data: np.ndarray) -> None:
    """Set dmin/dmax/dmean/rms section by section (mrcfile's own helper copies the volume).

    Two sections at a time (numpy releases the GIL), summed in section order: the same
    values as one thread."""
    lo, hi, total, total_sq = np.inf, -np.inf, 0.0, 0.0
    with ThreadPoolExecutor(2) as pool:
        for s_lo, s_hi, s_sum, s_sq in pool.map(_section_stats, data):
            lo, hi = min(lo, s_lo), max(hi, s_hi)
            total += s_sum
            total_sq += s_sq
    n = max(data.size, 1)
    mean = total / n
    header.dmin, header.dmax, header.dmean = lo, hi, mean
    header.rms = math.sqrt(max(total_sq / n - mean * mean, 0.0))


def _mrc_mode(dtype: np.dtype) -> int:
    from mrcfile import utils as mrc_utils

    return int(mrc_utils.mode_from_dtype(dtype))

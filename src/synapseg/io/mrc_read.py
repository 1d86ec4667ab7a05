"""MRC/REC reading for :func:`synapseg.io.volume.read_volume` (MRC2014, IMOD flavours).

Checks that the file is an MRC file at all, that its mode is one synapseg reads (0, 1, 2, 6,
12), that it is a single 3D volume (not a 4D stack) and not truncated; honours IMOD's
unsigned-bytes convention for mode 0; converts the header's Å to nm.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from synapseg.errors import InputError
from synapseg.io.volume_base import (
    _UNSET_VOXEL_SIZES_A,
    IMOD_FLAG_SIGNED_BYTES,
    IMOD_STAMP,
    Volume,
    VoxelSize,
    _resolve_voxel_size,
)

log = logging.getLogger("synapseg.io.volume")  # messages as before the split

_NOT_MRC_FIX = "check that it is a tomogram and not e.g. a text or TIFF file renamed to .mrc"
_MRC_MODES = (0, 1, 2, 3, 4, 6, 12, 101)


def _check_mrc_stamp(path: Path) -> None:
    """Refuse files that are plainly not MRC (no 'MAP ' stamp and no valid mode), fast."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise InputError(
            path,
            f"is not an MRC file ({len(head)} bytes, shorter than an MRC header)",
            _NOT_MRC_FIX,
        )
    modes = {int.from_bytes(head[12:16], order) for order in ("little", "big")}
    if not head[208:211] == b"MAP" and not modes & set(_MRC_MODES):
        raise InputError(
            path, "is not an MRC file (no 'MAP ' identifier and no valid mode)", _NOT_MRC_FIX
        )


def read_mrc(path: Path, user_vs: VoxelSize | None) -> Volume:
    """Open an MRC/REC file lazily (a read-only memmap); see :func:`read_volume`."""
    import mrcfile
    from mrcfile import utils as mrc_utils

    _check_mrc_stamp(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = mrc.header.copy()
        except (ValueError, OSError) as exc:
            raise InputError(
                path, f"not a readable MRC file ({exc})", "check the file and its extension"
            ) from exc
    has_map_id = bytes(header.map).startswith(b"MAP")
    try:
        dtype = mrc_utils.data_dtype_from_header(header)
        shape = mrc_utils.data_shape_from_header(header)
    except ValueError as exc:
        if not has_map_id:  # no 'MAP ' stamp and a nonsense header: another kind of file
            raise InputError(
                path,
                "is not an MRC file (no 'MAP ' identifier and an invalid header)",
                _NOT_MRC_FIX,
            ) from exc
        raise InputError(
            path,
            f"unsupported MRC header ({exc}); synapseg reads modes 0, 1, 2, 6 and 12",
            "convert it to mode 2 (float32), e.g. with IMOD's 'newstack -mode 2'",
        ) from exc
    for w in caught:
        log.warning("%s: header is slightly malformed, reading it anyway: %s", path, w.message)
    if len(shape) == 4:
        raise InputError(
            path,
            f"is a 4D/stack file of {shape[0]} volumes (shape {shape}, space group "
            f"{int(header.ispg)}), not a single 3D tomogram",
            "extract one volume, e.g. with mrcfile or IMOD's 'newstack -secs', and give that",
        )
    extra2 = bytes(header.extra2)
    stamp = int.from_bytes(extra2[40:44], "little")
    flags = int.from_bytes(extra2[44:48], "little")
    imod = stamp == IMOD_STAMP
    if dtype.itemsize == 1 and imod and not flags & IMOD_FLAG_SIGNED_BYTES:
        # IMOD writes mode 0 as unsigned bytes unless its signed-bytes flag is set.
        dtype = np.dtype(np.uint8)
    offset = 1024 + int(header.nsymbt)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise InputError(
            path,
            f"file is truncated: the header describes {shape} voxels of {dtype} "
            f"({expected} bytes) but the file has {size} bytes",
            "copy or export the file again",
        )
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if len(shape) == 2:
        data = data[np.newaxis]
    mxyz = [int(header.mx), int(header.my), int(header.mz)]
    cell = [float(header.cella.x), float(header.cella.y), float(header.cella.z)]
    # Per axis Å = cell / grid; 0 or 1 Å (or a zero grid) means unset.
    # Rounded to 1e-4 Å: the header's float32 cell turns 16.8 Å into 16.7999992.
    vs_a = [round(c / m, 4) if m > 0 else 0.0 for c, m in zip(cell, mxyz)]
    if len(shape) == 2:
        vs_a[2] = vs_a[0]  # a single section has no meaningful z spacing
    unset = any(
        not math.isfinite(v) or any(abs(v - u) < 1e-4 for u in _UNSET_VOXEL_SIZES_A) for v in vs_a
    )
    header_nm = None if unset else (vs_a[2] / 10, vs_a[1] / 10, vs_a[0] / 10)
    vs, source = _resolve_voxel_size(path, header_nm, user_vs)
    ox, oy, oz = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
    info = {
        "format": "MRC",
        "mode": int(header.mode),
        "file_dtype": str(dtype),
        "voxel_size_header_angstrom_xyz": [round(v, 6) for v in vs_a],
        "origin_angstrom_xyz": [ox, oy, oz],
        "imod_stamp": imod,
        "imod_signed_bytes": bool(flags & IMOD_FLAG_SIGNED_BYTES) if imod else None,
        "labels": [
            bytes(lbl).decode("ascii", "replace").strip()
            for lbl in header.label[: int(header.nlabl)]
        ],
        "extended_header_bytes": int(header.nsymbt),
    }
    origin = (oz / 10, oy / 10, ox / 10)
    return Volume(data, vs, origin, path, source, info)

"""IMOD model files (``.mod``) of open 3D contours: filament paths.

The same binary layout as :mod:`synapseg.io.imod` (model header, ``OBJT``, ``CONT``,
``LABL``, ``IMAT``, ``IEOF``; big-endian, IMOD's ``binspec.html``), with one object per
group of paths (``connectors``, ``tethers``) flagged as open contours
(``IMOD_OBJFLAG_OPEN``), one contour per path whose points may lie in many Z sections
(contour flag ``ICONT_WILD``), and the filament id as the contour label. Coordinates
follow :mod:`synapseg.io.imod`: ``x = x_px + 0.5``, ``y = y_px + 0.5``, ``z = z_px``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path
from synapseg.io.imod import (
    _CONTOUR_HEADER,
    _MODEL_HEADER,
    _OBJECT_HEADER,
    IMODF_MAT1_IS_BYTES,
    IMODF_MULTIPLE_CLIP,
    IMODF_NEW_TO_3DMOD,
    IMODF_Z_FROM_MINUSPT5,
    UNITS_NM,
    _chunk,
    _padded,
)

IMOD_OBJFLAG_OPEN = 1 << 3  # iobj.h
ICONT_WILD = 1 << 4  # icont.h: points not all in one Z plane

__all__ = ["write_imod_contours"]


def write_imod_contours(
    path: str | os.PathLike,
    objects: Sequence[tuple[str, tuple[float, float, float], Sequence[np.ndarray], Sequence[str]]],
    *,
    voxel_size_nm: float | Sequence[float],
    shape: Sequence[int],
    overwrite: bool = False,
) -> Path:
    """Write open contours (paths) as an IMOD model.

    Parameters
    ----------
    objects
        ``(name, rgb colour 0..1, paths, labels)`` per object; each path an (n, 3) array of
        zyx zero-based voxel coordinates, each label a short text (e.g. the filament id).
    voxel_size_nm
        Tomogram voxel size in nm, scalar or (z, y, x).
    shape
        (z, y, x) tomogram size.
    overwrite
        Replace an existing file.
    """
    path = Path(path)
    vs = voxel_size_zyx(voxel_size_nm)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(path, f"invalid voxel size {voxel_size_nm} nm", "give e.g. 1.4")
    nz, ny, nx = (int(s) for s in shape)
    flags = IMODF_Z_FROM_MINUSPT5 | IMODF_NEW_TO_3DMOD | IMODF_MULTIPLE_CLIP | IMODF_MAT1_IS_BYTES
    parts = [b"IMODV1.2"]
    parts.append(
        _MODEL_HEADER.pack(
            path.name.encode("ascii", "replace")[:127],
            nx, ny, nz,
            len(objects),
            flags,
            1, 1, 0, 255,
            0.0, 0.0, 0.0,
            1.0, 1.0, float(vs[0] / vs[2]),
            -1, -1, -1,
            3, 128,
            float(vs[2]),
            UNITS_NM,
            0,
            0.0, 0.0, 0.0,
        )
    )  # fmt: skip
    for name, color, paths, labels in objects:
        r, g, b = (float(c) for c in color)
        parts.append(
            b"OBJT"
            + _OBJECT_HEADER.pack(
                name.encode("ascii", "replace")[:63],
                *([0] * 16),
                len(paths),
                IMOD_OBJFLAG_OPEN,
                0, 1,
                r, g, b,
                0,
                1, 3, 1, 2, 0, 0, 0, 0,
                0, 0,
            )
        )  # fmt: skip
        for pts, label in zip(paths, labels):
            pts = np.asarray(pts, float).reshape(-1, 3)
            parts.append(b"CONT" + _CONTOUR_HEADER.pack(len(pts), ICONT_WILD, 0, 0))
            xyz = np.stack([pts[:, 2] + 0.5, pts[:, 1] + 0.5, pts[:, 0]], axis=1)
            parts.append(xyz.astype(">f4").tobytes())
            text = _padded(str(label))
            parts.append(_chunk(b"LABL", struct.pack(">2i", 0, len(text)) + text))
        fill = bytes(int(round(255 * min(max(c, 0.0), 1.0))) for c in (r, g, b))
        parts.append(_chunk(b"IMAT", bytes([102, 255, 127, 0]) + fill + b"\0"
                            + struct.pack(">I", 0) + bytes([0, 255, 0, 0])))  # fmt: skip
    parts.append(b"IEOF")
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(b"".join(parts))
    return path

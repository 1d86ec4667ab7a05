"""IMOD model files (``.mod``): vesicles as scattered-point spheres with per-point radius.

Pure-Python reader and writer of IMOD's binary model format (V1.2, big-endian chunks; see
IMOD's ``binspec.html`` and ``imodel_files.c``). What is written:

* ``IMOD``/``V1.2`` id and the 232-byte model header: ``xmax, ymax, zmax`` = the tomogram
  size (x, y, z), pixel size in nm (``units`` = -9), ``zscale`` = z voxel / x voxel, and
  model flag bit 10 (Z coordinates start from -0.5), which is the convention used here.
* one ``OBJT`` object (flag bit 9: scattered points, so 3dmod draws a sphere per point),
  one ``CONT`` contour of one point per vesicle, a ``LABL`` chunk whose contour label is the
  vesicle id, and a ``SIZE`` chunk with the point's sphere radius in pixels (x voxels);
  then ``IMAT`` (sphere colour) and ``IEOF``.

Coordinates: IMOD model coordinates run from 0 to NX in X and Y (pixel centers at
``i + 0.5``) but from -0.5 to NZ - 0.5 in Z (section centers at integers). synapseg's
zero-based voxel-center coordinates therefore map as ``x = center_x_px + 0.5``,
``y = center_y_px + 0.5``, ``z = center_z_px``. The sphere radius written is the
bilayer-midline radius (``radius_nm``), so the sphere lies on the membrane in 3dmod.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path
from synapseg.io.schema import CENTER_PX, complete_ids, make_table

log = logging.getLogger(__name__)

# Model flags (imodel.h)
IMODF_Z_FROM_MINUSPT5 = 1 << 10
IMODF_NEW_TO_3DMOD = 1 << 11
IMODF_MULTIPLE_CLIP = 1 << 12
IMODF_MAT1_IS_BYTES = 1 << 13
IMODF_FLIPYZ = 1 << 16
# Object flags (iobj.h)
IMOD_OBJFLAG_SCAT = 1 << 9
# units field of the model header: power of ten of a metre, 0 = pixels
UNITS_NM = -9
_UNIT_TO_NM = {-9: 1.0, -10: 0.1, -6: 1e3, -12: 1e-3, -3: 1e6, -2: 1e7, 1: 1e9}

_MODEL_HEADER = struct.Struct(">128s9i6f5if2i3f")  # 232 bytes
_OBJECT_HEADER = struct.Struct(">64s16I4i3fi8B2i")  # 176 bytes
_CONTOUR_HEADER = struct.Struct(">iIii")  # 16 bytes
assert _MODEL_HEADER.size == 232 and _OBJECT_HEADER.size == 176


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack(">i", len(payload)) + payload


def _padded(text: str) -> bytes:
    """String padded with NULs to a multiple of 4 bytes (at least one NUL), as IMOD does."""
    raw = text.encode("ascii", "replace")
    n = (len(raw) + 1 + 3) // 4 * 4
    return raw.ljust(n, b"\0")


def write_imod_spheres(
    path: str | os.PathLike,
    table: pd.DataFrame,
    *,
    voxel_size_nm: float | Sequence[float],
    shape: Sequence[int],
    overwrite: bool = False,
    name: str = "vesicles",
    color: tuple[float, float, float] = (0.0, 1.0, 0.0),
) -> Path:
    """Write the vesicles of ``table`` as an IMOD model of scattered-point spheres.

    Parameters
    ----------
    table
        Vesicle table (``id``, ``center_*_px``, ``radius_nm``).
    voxel_size_nm
        Tomogram voxel size in nm, scalar or (z, y, x); stored as the model pixel size.
    shape
        (z, y, x) tomogram size, stored as the model's ``xmax, ymax, zmax``.
    name
        Object name shown in 3dmod.
    color
        Object colour, RGB in 0..1.
    """
    path = Path(path)
    vs = voxel_size_zyx(voxel_size_nm)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(path, f"invalid voxel size {voxel_size_nm} nm", "give e.g. 1.4")
    nz, ny, nx = (int(s) for s in shape)
    centers = table[CENTER_PX].to_numpy(dtype=float)
    radius_px = table["radius_nm"].to_numpy(dtype=float) / vs[2]
    if not np.all(np.isfinite(radius_px)):
        raise ValueError("IMOD export needs a finite radius_nm for every vesicle")
    ids = table["id"].to_numpy(dtype=int)

    flags = IMODF_Z_FROM_MINUSPT5 | IMODF_NEW_TO_3DMOD | IMODF_MULTIPLE_CLIP | IMODF_MAT1_IS_BYTES
    parts = [b"IMODV1.2"]
    parts.append(
        _MODEL_HEADER.pack(
            path.name.encode("ascii", "replace")[:127],
            nx, ny, nz,  # xmax, ymax, zmax
            1,  # objsize
            flags,
            1, 1, 0, 255,  # drawmode, mousemode (model), black, white
            0.0, 0.0, 0.0,  # offsets (unused)
            1.0, 1.0, float(vs[0] / vs[2]),  # x, y, z scale
            -1, -1, -1,  # current object, contour, point
            3, 128,  # res, thresh
            float(vs[2]),  # pixsize
            UNITS_NM,
            0,  # csum
            0.0, 0.0, 0.0,  # alpha, beta, gamma (unused)
        )
    )  # fmt: skip
    default_px = int(round(float(np.median(radius_px)))) if len(radius_px) else 3
    r, g, b = (float(c) for c in color)
    parts.append(
        b"OBJT"
        + _OBJECT_HEADER.pack(
            name.encode("ascii", "replace")[:63],
            *([0] * 16),
            len(table),  # contsize
            IMOD_OBJFLAG_SCAT,
            0, 1,  # axis, drawmode
            r, g, b,
            max(default_px, 1),  # pdrawsize: default sphere radius, pixels
            1, 3, 1, 1, 0, 0, 0, 0,  # symbol, symsize, lw2d, lw3d, style, symflags, pad, trans
            0, 0,  # meshsize, surfsize
        )
    )  # fmt: skip
    for (cz, cy, cx), rad, vid in zip(centers, radius_px, ids):
        parts.append(b"CONT" + _CONTOUR_HEADER.pack(1, 0, 0, 0))
        parts.append(struct.pack(">3f", cx + 0.5, cy + 0.5, cz))
        label = _padded(str(int(vid)))
        parts.append(_chunk(b"LABL", struct.pack(">2i", 0, len(label)) + label))
        parts.append(_chunk(b"SIZE", struct.pack(">f", rad)))
    fill = bytes(int(round(255 * min(max(c, 0.0), 1.0))) for c in (r, g, b))
    parts.append(_chunk(b"IMAT", bytes([102, 255, 127, 0]) + fill + b"\0" + struct.pack(">I", 0)
                        + bytes([0, 255, 0, 0])))  # fmt: skip
    parts.append(b"IEOF")
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(b"".join(parts))
    return path


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InputError(
                self.path, "IMOD model file is truncated or corrupt", "re-save it from 3dmod"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct | str) -> tuple[Any, ...]:
        s = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return s.unpack(self.take(s.size))


def read_imod_spheres(
    path: str | os.PathLike, *, allow_missing_sizes: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read every point of an IMOD model as a sphere.

    Returns
    -------
    centers_px
        (n, 3) zyx centers in zero-based voxel-center coordinates of the model's image.
    radius_px
        (n,) sphere radii in pixels (x voxels), from the ``SIZE`` chunks.
    meta
        ``shape`` (z, y, x from xmax..), ``pixel_size`` and ``units`` (header values),
        ``pixel_size_nm`` (or ``None`` when the units are pixels), ``zscale``,
        ``flags``, ``labels`` (contour label per point, ``""`` when none),
        ``object`` (object index per point), ``object_names``.

    Raises
    ------
    InputError
        Not an IMOD binary model, truncated, no points, or (unless
        ``allow_missing_sizes``, which gives NaN) a point without a sphere size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "IMOD model file not found", "check the path")
    rd = _Reader(path, path.read_bytes())
    if rd.take(4) != b"IMOD":
        raise InputError(path, "not an IMOD binary model (no 'IMOD' id)", "give a .mod file")
    rd.take(4)  # version
    head = rd.unpack(_MODEL_HEADER)
    xmax, ymax, zmax, _objsize, mflags = head[1:6]
    zscale, pixsize, units = head[15], head[21], head[22]
    points: list[tuple[float, float, float]] = []
    sizes: list[float] = []
    labels: list[str] = []
    objects: list[int] = []
    names: list[str] = []
    cont_start = cont_len = 0
    while True:
        tag = rd.take(4)
        if tag == b"IEOF":
            break
        if tag == b"OBJT":
            obj = rd.unpack(_OBJECT_HEADER)
            names.append(obj[0].split(b"\0")[0].decode("ascii", "replace"))
        elif tag == b"CONT":
            if not names:
                raise InputError(path, "contour before any object", "re-save it from 3dmod")
            psize = rd.unpack(_CONTOUR_HEADER)[0]
            pts = np.frombuffer(rd.take(12 * psize), dtype=">f4").reshape(-1, 3)
            cont_start, cont_len = len(points), psize
            points.extend(map(tuple, pts.astype(float)))
            sizes.extend([np.nan] * psize)
            labels.extend([""] * psize)
            objects.extend([len(names) - 1] * psize)
        elif tag == b"SIZE":
            (nbytes,) = rd.unpack(">i")
            vals = np.frombuffer(rd.take(nbytes), dtype=">f4").astype(float)
            if len(vals) != cont_len:
                raise InputError(path, "SIZE chunk does not match its contour", "re-save it")
            sizes[cont_start : cont_start + cont_len] = vals.tolist()
        elif tag == b"LABL":
            (nbytes,) = rd.unpack(">i")
            chunk = _Reader(path, rd.take(nbytes))
            _nl, lpad = chunk.unpack(">2i")
            text = chunk.take(lpad).split(b"\0")[0].decode("ascii", "replace")
            labels[cont_start : cont_start + cont_len] = [text] * cont_len
        else:  # MESH, IMAT, VIEW, MINX, ... : skip by the size that follows the id
            (nbytes,) = rd.unpack(">i")
            if tag == b"MESH":  # MESH has no size field: header then data
                rd.pos -= 4
                vsize, lsize = rd.unpack(">3i")[:2]
                rd.take(4 + 12 * vsize + 4 * lsize)
            else:
                rd.take(nbytes)
    if not points:
        raise InputError(path, "IMOD model holds no points", "place vesicle points in 3dmod")
    xyz = np.asarray(points, dtype=float)
    if mflags & IMODF_FLIPYZ:  # stored with y and z exchanged
        xyz = xyz[:, [0, 2, 1]]
    centers = np.stack([xyz[:, 2], xyz[:, 1] - 0.5, xyz[:, 0] - 0.5], axis=1)
    radius = np.asarray(sizes, dtype=float)
    missing = ~np.isfinite(radius) | (radius <= 0)
    if missing.any() and not allow_missing_sizes:
        raise InputError(
            path,
            f"{int(missing.sum())} of {len(radius)} points have no sphere size",
            "give each vesicle point a size in 3dmod (or use a table with radii)",
        )
    radius[missing] = np.nan
    pixsize = float(f"{pixsize:.7g}")  # float32 in the file
    px_nm = pixsize * _UNIT_TO_NM[units] if units in _UNIT_TO_NM and pixsize > 0 else None
    meta = {
        "shape": (int(zmax), int(ymax), int(xmax)),
        "pixel_size": pixsize,
        "units": int(units),
        "pixel_size_nm": px_nm,
        "zscale": float(zscale) if zscale > 0 else 1.0,
        "flags": int(mflags),
        "labels": labels,
        "object": np.asarray(objects, dtype=int),
        "object_names": names,
    }
    return centers, radius, meta


def imod_to_table(
    path: str | os.PathLike,
    *,
    voxel_size_nm: float | Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    require_radius: bool = True,
) -> pd.DataFrame:
    """Read an IMOD sphere model into a vesicle table.

    The voxel size comes from ``voxel_size_nm`` or else from the model header (pixel size
    in nm/Å and ``zscale``). Ids come from the contour labels when they are unique
    integers (as written by :func:`write_imod_spheres`); points added in 3dmod (no label)
    or repeated labels get new ids above the largest. A
    warning is logged when the model was made on an image of another size than ``shape``
    or with another pixel size than ``voxel_size_nm`` (e.g. a binned tomogram).
    """
    centers, radius_px, meta = read_imod_spheres(path, allow_missing_sizes=not require_radius)
    if shape is not None and tuple(int(s) for s in shape) != meta["shape"]:
        log.warning(
            "%s: model was made on a %s (z, y, x) image, the tomogram is %s: check that it "
            "belongs to this tomogram (same binning)",
            path,
            meta["shape"],
            tuple(int(s) for s in shape),
        )
    if voxel_size_nm is not None and meta["pixel_size_nm"] is not None:
        given = float(voxel_size_zyx(voxel_size_nm)[2])
        if not np.isclose(given, meta["pixel_size_nm"], rtol=1e-2):
            log.warning(
                "%s: model pixel size %.4g nm differs from the tomogram's %.4g nm; using %.4g",
                path,
                meta["pixel_size_nm"],
                given,
                given,
            )
    if voxel_size_nm is None:
        if meta["pixel_size_nm"] is None:
            raise InputError(path, "the model header has no pixel size in nm", "pass --voxel-size")
        px = meta["pixel_size_nm"]
        voxel_size_nm = (px * meta["zscale"], px, px)
    vs = voxel_size_zyx(voxel_size_nm)
    ids = complete_ids([s.strip() or None for s in meta["labels"]], path)
    # no detection score in a model file: none is invented
    return make_table(centers, radius_px * vs[2], vs, ids=ids, score=np.full(len(centers), np.nan))

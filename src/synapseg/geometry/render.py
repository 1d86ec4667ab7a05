"""Render a vesicle table as an instance-label volume (filled spheres).

Each vesicle is painted as a ball of radius ``radius_column`` (nm, default the outer
membrane surface) around its ``center_*_px`` center, in physical units, so anisotropic
voxel sizes give the right ellipsoid in voxels. A voxel belongs to a ball when the
physical distance from the voxel *center* (integer position) to the vesicle center is
``<= radius``.

Overlaps: where balls overlap, the voxel goes to the vesicle with the smallest *power*
``d**2 - r**2`` (``d`` the distance from the voxel to the vesicle center, ``r`` its
radius). The boundary between two overlapping balls is then the plane that contains
their intersection circle (the radical plane): equal radii split at the mid-plane (the
nearer center wins), and a small ball is never swallowed by a large neighbour. The
result does not depend on the order of the rows (except for exact ties, which the
earlier row keeps).

Each ball is painted only inside its bounding box, and the only full-size array is the
output, which may be a writable memmap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx

log = logging.getLogger(__name__)

_CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
MAX_LABEL = int(np.iinfo(np.uint16).max)


def render_labels(
    table: pd.DataFrame,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    *,
    radius_column: str = "outer_radius_nm",
    out: np.ndarray | None = None,
    out_is_zero: bool = False,
) -> np.ndarray:
    """Paint the vesicles of ``table`` as filled spheres into a uint16 label volume.

    Parameters
    ----------
    table
        Vesicle table with ``id``, ``center_z_px``, ``center_y_px``, ``center_x_px`` and
        ``radius_column`` (nm). Ids must be unique integers in 1..65535.
    shape
        (z, y, x) shape of the volume (the input tomogram grid).
    voxel_size_nm
        Voxel size in nm, scalar or (z, y, x).
    radius_column
        Column holding the radius in nm to fill to (default: outer membrane surface).
    out
        Optional writable (z, y, x) uint16 array of ``shape`` (e.g. a ``numpy.memmap``)
        to render into; it is cleared first.
    out_is_zero
        ``out`` is known to hold zeros (a new file from
        :func:`synapseg.io.volume_writer.open_volume_writer`): it is not cleared. Clearing
        touches every page of the map, and those pages are then written to disk (0.5 GB
        at the reference size) though only the vesicles' boxes change.

    Returns
    -------
    numpy.ndarray
        uint16 (z, y, x) labels: 0 background, otherwise the vesicle's ``id``.
        Vesicles partly outside the volume are clipped; rows with a non-finite center or
        radius, or a radius <= 0, are skipped with a warning.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (z, y, x), got {shape}")
    vs = voxel_size_zyx(voxel_size_nm)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size_nm must be positive, got {voxel_size_nm}")
    missing = [c for c in ["id", *_CENTER_PX, radius_column] if c not in table.columns]
    if missing:
        raise ValueError(f"vesicle table lacks columns {missing}")

    if out is None:
        out = np.zeros(shape, dtype=np.uint16)
    else:
        if tuple(out.shape) != shape or out.dtype != np.uint16:
            raise ValueError(f"out must be uint16 of shape {shape}, got {out.dtype} {out.shape}")
        if not out_is_zero:
            for z in range(shape[0]):
                out[z] = 0

    ids = np.asarray(table["id"]).astype(np.int64)
    centers = table[_CENTER_PX].to_numpy(dtype=float)
    radii = table[radius_column].to_numpy(dtype=float)
    if len(ids) == 0:
        return out
    if ids.min() < 1 or ids.max() > MAX_LABEL:
        raise ValueError(f"vesicle ids must lie in 1..{MAX_LABEL} for uint16 labels")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("vesicle ids must be unique")
    ok = np.all(np.isfinite(centers), axis=1) & np.isfinite(radii) & (radii > 0)
    if not ok.all():
        log.warning(
            "skipping %d vesicle(s) with non-finite center or radius: ids %s",
            int((~ok).sum()),
            ids[~ok].tolist(),
        )

    # id -> row lookup, to recompute the power of an already painted neighbour.
    row_of = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    row_of[ids] = np.arange(len(ids))

    for i in np.flatnonzero(ok):
        c, r = centers[i], radii[i]
        half = r / vs
        lo = np.maximum(np.ceil(c - half).astype(int), 0)
        hi = np.minimum(np.floor(c + half).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = [(np.arange(lo[k], hi[k]) - c[k]) * vs[k] for k in range(3)]
        d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
        d2 = d2 + axes[2][None, None, :] ** 2
        inside = d2 <= r * r
        box = tuple(slice(lo[k], hi[k]) for k in range(3))
        region = np.asarray(out[box])
        taken = inside & (region != 0)
        if taken.any():
            zz, yy, xx = np.nonzero(taken)
            other = row_of[region[zz, yy, xx]]
            oc = centers[other]
            pos = np.stack([zz + lo[0], yy + lo[1], xx + lo[2]], axis=1).astype(float)
            other_power = (((pos - oc) * vs) ** 2).sum(axis=1) - radii[other] ** 2
            mine = d2[zz, yy, xx] - r * r
            lose = mine >= other_power
            # keep the neighbour where it is nearer (ties: the earlier row keeps the voxel)
            inside[zz[lose], yy[lose], xx[lose]] = False
        region[inside] = ids[i]
        out[box] = region
    return out

"""The presynaptic compartment: cytoplasm bounded by the plasma membrane, minus organelles.

On the working grid (:mod:`synapseg.context.grid`): every membrane voxel (dilated by one
voxel) is a wall; organelles (class 3 components) are filled (their convex hull, so a
mitochondrion cut by the missing wedge or the volume faces still counts as closed); where
a presynaptic plasma membrane exists, only the side of its fitted sheet facing the vesicles
is kept (so a gap in the membrane does not let the cytoplasm leak across); the
compartment is the connected free region holding most vesicle centers. Vesicles lie inside
it (Pyto counts them as part of the cytoplasm region). On the input grid the compartment is
the upsampled mask minus the membrane voxels there.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from synapseg.context.classify import (
    ORGANELLE,
    PRESYNAPTIC,
    MembraneMap,
    quadric_side,
    quadric_side_section,
)

log = logging.getLogger(__name__)

__all__ = ["presynaptic_compartment"]


def convex_fill(part: np.ndarray, step: int = 1) -> np.ndarray:
    """Voxels of a 3D box inside the convex hull of ``part``'s voxels (``part`` when flat),
    tested on every ``step``-th voxel (then spread over the ``step``³ block)."""
    pts = np.argwhere(part).astype(float)
    if len(pts) < 4:
        return part
    try:
        hull = ConvexHull(pts, qhull_options="C1")  # merged facets (≈ 200, not ≈ 2000)
    except QhullError:  # flat or degenerate: keep the membrane itself
        return part
    normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
    coarse_shape = tuple(-(-s // step) for s in part.shape)
    grid = np.argwhere(np.ones(coarse_shape, bool)).astype(float) * step + (step - 1) / 2
    inside = np.all(grid @ normals.T + offsets <= step / 2, axis=1).reshape(coarse_shape)
    for axis in range(3):
        inside = np.repeat(inside, step, axis=axis)
    return inside[tuple(slice(0, s) for s in part.shape)] | part


def _organelle_fill(mmap: MembraneMap) -> np.ndarray:
    """Organelle components filled to their convex hull (lumen + membrane)."""
    filled = np.zeros(mmap.components.shape, bool)
    slices = ndimage.find_objects(mmap.components)
    for comp, cls in mmap.classes.items():
        if cls == ORGANELLE:
            sl = slices[comp - 1]
            step = max(1, int(round(10.0 / float(mmap.coarse_voxel_nm.min()))))
            filled[sl] |= convex_fill(mmap.components[sl] == comp, step)
    return filled


def presynaptic_compartment(
    mmap: MembraneMap,
    probabilities: np.ndarray,
    vesicles: pd.DataFrame | None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The presynaptic cytoplasm as a bool mask on the input grid (``None``: not found).

    Needs vesicles (they mark the presynaptic side) and a presynaptic plasma membrane.
    """
    facts: dict[str, Any] = {}
    pm = [c for c, k in mmap.classes.items() if k == PRESYNAPTIC and c in mmap.shapes]
    if vesicles is None or not len(vesicles) or not pm:
        facts["compartment"] = "none: needs vesicles and a presynaptic plasma membrane"
        return None, facts
    vs, f = mmap.voxel_size_nm, mmap.factor
    cvs = vs * f
    wall = ndimage.binary_dilation(mmap.components > 0, np.ones((3, 3, 3), bool))
    organelles = _organelle_fill(mmap)
    free = ~(wall | organelles)
    centers = vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    cidx = np.clip(np.floor(centers / f).astype(int), 0, np.array(free.shape) - 1)
    fit = mmap.shapes[max(pm, key=lambda c: mmap.shapes[c]["area_nm2"])]
    ves_side = float(np.sign(np.median(quadric_side(fit, centers * vs)))) or 1.0
    band = 1.5 * float(np.linalg.norm(cvs))
    # coarse voxel centers (nm) along y and x
    cy = np.arange(free.shape[1]) * cvs[1] + (f - 1) / 2 * vs[1]
    cx = np.arange(free.shape[2]) * cvs[2] + (f - 1) / 2 * vs[2]
    near = np.zeros(free.shape, bool)  # coarse voxels the sheet passes close to
    for k in range(free.shape[0]):  # keep the vesicles' side of the plasma membrane
        side = quadric_side_section(fit, (k * f + (f - 1) / 2) * vs[0], cy, cx) * ves_side
        free[k] &= side > 0
        near[k] = np.abs(side) < band
    labels, _ = ndimage.label(free)
    hits = labels[cidx[:, 0], cidx[:, 1], cidx[:, 2]]
    hits = hits[hits > 0]
    if not len(hits):
        facts["compartment"] = "none: no vesicle center in a free region"
        return None, facts
    region = labels == np.bincount(hits).argmax()
    # back to the input grid: grow over the wall, remove the membrane voxels there, and
    # near the plasma membrane keep only its vesicle side, voxel by voxel
    region = ndimage.binary_dilation(region, np.ones((3, 3, 3), bool)) & ~organelles
    full = np.empty(mmap.shape, bool)
    ny, nx = mmap.shape[1], mmap.shape[2]
    yy, xx = np.meshgrid(np.arange(ny) * vs[1], np.arange(nx) * vs[2], indexing="ij")
    for k in range(region.shape[0]):
        reg = np.repeat(np.repeat(region[k], f, axis=0)[:ny], f, axis=1)[:, :nx]
        close = np.repeat(np.repeat(near[k], f, axis=0)[:ny], f, axis=1)[:, :nx]
        for z in range(k * f, min((k + 1) * f, mmap.shape[0])):
            sec = reg & (np.asarray(probabilities[z]) < mmap.level)
            check = sec & close
            if check.any():
                pts = np.c_[np.full(int(check.sum()), z * vs[0]), yy[check], xx[check]]
                sec[check] = quadric_side(fit, pts) * ves_side > 0
            full[z] = sec
    facts["compartment_volume_um3"] = round(float(full.sum()) * float(np.prod(vs)) * 1e-9, 5)
    facts["compartment_vesicles_inside"] = int(len(hits))
    return full, facts

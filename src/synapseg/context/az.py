"""The active-zone (AZ) membrane: mask, midplane surface (points + normals) and mesh.

The AZ is the part of the presynaptic plasma membrane (a synaptic pair's ``pre`` sheet,
:mod:`synapseg.context.classify`) that lies ``cleft_nm`` from its postsynaptic partner.

Midplane: the input-grid voxels of the AZ (probability ≥ level) are binned into cells of
``cell_nm``; over each cell's 3×3×3 neighbourhood the probability-weighted centroid and
covariance give a midplane point (the centroid of a slab cut by a box lies on its midplane
when the box is centred on it, to ≈ 0.1 nm otherwise) and the normal (the smallest
principal axis), oriented towards the presynaptic cytoplasm (away from the partner).
The mesh triangulates the midplane points over the AZ's PCA plane (2D Delaunay, edges
longer than 2.5 cells dropped): right for a gently curved patch, not for a folded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from synapseg.context.classify import MembraneMap
from synapseg.context.grid import cell_reduce, sheet_distance

__all__ = ["ActiveZone", "find_active_zone", "midplane"]

_OFFSETS = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T


@dataclass
class ActiveZone:
    """The active-zone membrane found in one tomogram.

    Attributes
    ----------
    mask
        bool (z, y, x) on the input grid: the AZ membrane voxels.
    points_nm
        (n, 3) midplane points, nm (z, y, x; voxel ``i`` at ``i * voxel_size``).
    normals
        (n, 3) unit normals at those points, pointing into the presynaptic cytoplasm.
    vertices_nm, faces
        Triangle mesh of the midplane (vertices nm z y x; faces: vertex indices).
    facts
        Area, cleft width, number of points, the pair it came from.
    """

    mask: np.ndarray
    points_nm: np.ndarray
    normals: np.ndarray
    vertices_nm: np.ndarray
    faces: np.ndarray
    facts: dict[str, Any]


def midplane(
    coords_nm: np.ndarray, weights: np.ndarray, cell_nm: float = 6.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Midplane points, unoriented normals and cell weights of a membrane's voxels.

    Parameters
    ----------
    coords_nm
        (n, 3) voxel centers (nm) of the membrane.
    weights
        (n,) weights (e.g. probability).
    cell_nm
        Cell size: one midplane point per occupied cell (neighbourhood 3 cells wide).
    """
    coords = np.asarray(coords_nm, float)
    w = np.asarray(weights, float)
    origin = coords.min(axis=0)
    cell = np.floor((coords - origin) / cell_nm).astype(np.int64)
    dims = cell.max(axis=0) + 3
    key = ((cell[:, 0] + 1) * dims[1] + cell[:, 1] + 1) * dims[2] + cell[:, 2] + 1
    keys, inverse = np.unique(key, return_inverse=True)
    rel = coords - origin
    sums = [np.bincount(inverse, w, len(keys))]
    for i in range(3):
        sums.append(np.bincount(inverse, w * rel[:, i], len(keys)))
    for i in range(3):
        for j in range(i, 3):
            sums.append(np.bincount(inverse, w * rel[:, i] * rel[:, j], len(keys)))
    own = np.stack(sums, axis=1)
    total = np.zeros_like(own)
    shift = (_OFFSETS[:, 0] * dims[1] + _OFFSETS[:, 1]) * dims[2] + _OFFSETS[:, 2]
    for s in shift:
        pos = np.searchsorted(keys, keys + s)
        pos = np.minimum(pos, len(keys) - 1)
        hit = keys[pos] == keys + s
        total[hit] += own[pos[hit]]
    wsum = total[:, 0]
    mean = total[:, 1:4] / wsum[:, None]
    cov = np.empty((len(keys), 3, 3))
    k = 4
    for i in range(3):
        for j in range(i, 3):
            cov[:, i, j] = cov[:, j, i] = total[:, k] / wsum - mean[:, i] * mean[:, j]
            k += 1
    _, vecs = np.linalg.eigh(cov)
    return mean + origin, vecs[:, :, 0], own[:, 0]


def _mesh(points: np.ndarray, cell_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate midplane points over their PCA plane (one vertex per 2D cell)."""
    if len(points) < 3:
        return points, np.zeros((0, 3), np.int64)
    center = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - center, full_matrices=False)
    uv = (points - center) @ vt[:2].T
    snap = np.floor(uv / (cell_nm * 0.75)).astype(np.int64)
    _, first = np.unique(snap, axis=0, return_index=True)
    first = np.sort(first)
    verts, uv = points[first], uv[first]
    if len(verts) < 3:
        return verts, np.zeros((0, 3), np.int64)
    try:
        tri = Delaunay(uv).simplices
    except Exception:  # degenerate (collinear) points: no mesh
        return verts, np.zeros((0, 3), np.int64)
    edges = np.stack([verts[tri[:, i]] - verts[tri[:, (i + 1) % 3]] for i in range(3)], axis=1)
    keep = np.linalg.norm(edges, axis=2).max(axis=1) <= 2.5 * cell_nm
    return verts, tri[keep].astype(np.int64)


def find_active_zone(
    mmap: MembraneMap,
    probabilities: np.ndarray,
    *,
    cleft_nm: tuple[float, float] = (15.0, 35.0),
    membrane_thickness_nm: float = 4.5,
    cell_nm: float = 6.0,
    min_area_nm2: float = 1500.0,
) -> ActiveZone | None:
    """The AZ of a classified membrane map, or ``None`` when it has no synaptic pair.

    Parameters
    ----------
    mmap
        From :func:`synapseg.context.classify.classify_membranes`.
    probabilities
        The same membrane probability map (input grid, uint8).
    """
    if not mmap.pairs:
        return None
    f, vs = mmap.factor, mmap.voxel_size_nm
    thick_nm = membrane_thickness_nm + float(mmap.coarse_voxel_nm.mean())
    pre_ids = [p["pre"] for p in mmap.pairs]
    post_ids = [p["post"] for p in mmap.pairs]
    pre_idx = np.argwhere(np.isin(mmap.components, pre_ids))
    post_pts = post_pts_all = mmap.points_nm(post_ids)
    pre_pts = (pre_idx * f + (f - 1) / 2) * vs
    gap = sheet_distance(pre_pts, post_pts) + thick_nm
    lo, hi = cleft_nm
    az_idx = pre_idx[(gap >= lo - mmap.coarse_voxel_nm.max()) & (gap <= hi)]
    if not len(az_idx):
        return None
    # input-grid voxels of the AZ cells, kept where the probability reaches the level
    sub = np.array(np.meshgrid(*[np.arange(f)] * 3, indexing="ij")).reshape(3, -1).T
    fine = (az_idx[:, None, :] * f + sub[None]).reshape(-1, 3)
    fine = fine[np.all(fine < np.array(mmap.shape), axis=1)]
    prob = np.asarray(probabilities)[fine[:, 0], fine[:, 1], fine[:, 2]]
    keep = prob >= mmap.level
    fine, prob = fine[keep], prob[keep].astype(float) / 255.0
    coords = fine * vs
    area = len(fine) * float(np.prod(vs)) / membrane_thickness_nm
    if len(fine) < 10 or area < min_area_nm2:
        return None
    points, normals, _ = midplane(coords, prob, cell_nm)
    # orient normals away from the postsynaptic partner (into the presynaptic cytoplasm)
    post_tree = cKDTree(cell_reduce(post_pts, 2.0)[0])
    post_pts = post_tree.data
    _, nearest = post_tree.query(points)
    flip = np.einsum("ij,ij->i", post_pts[nearest] - points, normals) > 0
    normals[flip] *= -1
    # cleft width: AZ midplane to the partner's midplane (from its working-grid voxels)
    post_mid, post_n, _ = midplane(post_pts_all, np.ones(len(post_pts_all)), cell_nm)
    _, k = cKDTree(post_mid).query(points)
    cleft = np.abs(np.einsum("ij,ij->i", points - post_mid[k], post_n[k]))
    mask = np.zeros(mmap.shape, bool)
    mask[fine[:, 0], fine[:, 1], fine[:, 2]] = True
    vertices, faces = _mesh(points, cell_nm)
    facts = {
        "found": True,
        "area_nm2": round(area, 1),
        "n_voxels": int(len(fine)),
        "n_midplane_points": int(len(points)),
        "cleft_width_nm_estimate": round(float(np.median(cleft)), 2),
        "pairs": [dict(p, fraction=round(p["fraction"], 3)) for p in mmap.pairs],
    }
    return ActiveZone(mask, points, normals, vertices, faces, facts)

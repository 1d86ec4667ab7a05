"""Measure a detected connection: its path, contact points, lengths and densities.

The path is the geodesic through the connection's core voxels (``skimage.graph.MCP``) from
the voxels nearest one boundary to those nearest the other, lightly smoothed, and closed
at both ends by the contact points on the boundaries themselves: the outer membrane
surface of a vesicle (the sphere of the table) or the nearest voxel of the AZ mask.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from skimage.graph import MCP_Geometric

from synapseg.filaments.boundaries import Boundaries
from synapseg.filaments.detect import Connection, FilamentParams

TABLE_COLUMNS = [
    "id",
    "kind",
    "vesicle_a",
    "vesicle_b",
    "contact_a_z_px",
    "contact_a_y_px",
    "contact_a_x_px",
    "contact_a_z_nm",
    "contact_a_y_nm",
    "contact_a_x_nm",
    "contact_b_z_px",
    "contact_b_y_px",
    "contact_b_x_px",
    "contact_b_z_nm",
    "contact_b_y_nm",
    "contact_b_x_nm",
    "length_nm",
    "end_to_end_nm",
    "mean_density",
    "contrast",
    "volume_nm3",
    "threshold_first",
    "threshold_last",
    "n_thresholds",
    "confidence",
    "az_distance_nm",
    "path_px",
]


def _surface_distance(points_nm: np.ndarray, center_nm: np.ndarray, outer_nm: float) -> np.ndarray:
    return np.linalg.norm(points_nm - center_nm, axis=1) - outer_nm


def _az_tree(bounds: Boundaries, box: tuple[slice, ...]) -> tuple[cKDTree | None, np.ndarray]:
    if bounds.az_mask is None:
        return None, np.zeros((0, 3))
    lo = np.array([s.start for s in box])
    pts = (np.argwhere(np.asarray(bounds.az_mask[box], bool)) + lo) * bounds.voxel_size_nm
    return (cKDTree(pts) if len(pts) else None), pts


def _ends(dist: np.ndarray, step_nm: float) -> np.ndarray:
    return np.nonzero(dist <= dist.min() + step_nm)[0]


def trace(conn: Connection, bounds: Boundaries) -> dict[str, np.ndarray]:
    """Path (nm, (n, 3), contact point to contact point) of a connection."""
    vs = bounds.voxel_size_nm
    shape = tuple(s.stop - s.start for s in conn.box)
    lo = np.array([s.start for s in conn.box])
    local = np.stack(np.unravel_index(conn.voxels, shape), axis=1)
    pts_nm = (local + lo) * vs
    a = conn.vesicle_a
    ca = bounds.centers_nm[a]
    da = _surface_distance(pts_nm, ca, bounds.outer_nm[a])
    if conn.vesicle_b >= 0:
        cb = bounds.centers_nm[conn.vesicle_b]
        db = _surface_distance(pts_nm, cb, bounds.outer_nm[conn.vesicle_b])
        tree = None
    else:
        tree, _ = _az_tree(bounds, conn.box)
        db = tree.query(pts_nm)[0] if tree is not None else np.zeros(len(pts_nm))
    step = float(vs.min()) * 0.75
    starts, ends = _ends(da, step), _ends(db, step)
    c_lo = local.min(axis=0)
    c_shape = local.max(axis=0) - c_lo + 1
    cost = np.full(c_shape, np.inf)
    rel = local - c_lo
    cost[tuple(rel.T)] = 1.0
    mcp = MCP_Geometric(cost, sampling=tuple(vs))
    costs, _ = mcp.find_costs([tuple(r) for r in rel[starts]], [tuple(r) for r in rel[ends]])
    end_costs = costs[tuple(rel[ends].T)]
    best = ends[int(np.argmin(end_costs))]
    path = np.asarray(mcp.traceback(tuple(rel[best])), float)
    path_nm = (path + c_lo + lo) * vs
    if len(path_nm) > 2:  # a 3-point moving average takes the staircase out
        inner = path_nm.copy()
        inner[1:-1] = (path_nm[:-2] + path_nm[1:-1] + path_nm[2:]) / 3
        path_nm = inner
    u = path_nm[0] - ca
    contact_a = ca + u / max(np.linalg.norm(u), 1e-9) * bounds.outer_nm[a]
    if conn.vesicle_b >= 0:
        w = path_nm[-1] - cb
        contact_b = cb + w / max(np.linalg.norm(w), 1e-9) * bounds.outer_nm[conn.vesicle_b]
    elif tree is not None:
        contact_b = tree.data[tree.query(path_nm[-1])[1]]
    else:
        contact_b = path_nm[-1]
    full = np.concatenate([contact_a[None], path_nm, contact_b[None]])
    return {"path_nm": full, "contact_a": contact_a, "contact_b": contact_b}


def confidence(levels: int, contrast: float, p: FilamentParams) -> float:
    """A 0-1 score from persistence and contrast (monotone; not calibrated)."""
    x = 0.8 * (levels - p.min_levels) + 1.2 * (contrast - 1.5)
    return float(1 / (1 + np.exp(-x)))


def row(
    conn: Connection,
    bounds: Boundaries,
    image: np.ndarray,
    p: FilamentParams,
    traced: dict[str, np.ndarray],
    az_dist_nm: float,
) -> dict:
    """One table row (without ``id``) of a measured connection."""
    vs = bounds.voxel_size_nm
    a_id = int(bounds.ids[conn.vesicle_a])
    b_id = int(bounds.ids[conn.vesicle_b]) if conn.vesicle_b >= 0 else None
    ca, cb = traced["contact_a"], traced["contact_b"]
    path = traced["path_nm"]
    if b_id is not None and b_id < a_id:  # connectors: vesicle_a < vesicle_b
        a_id, b_id, ca, cb, path = b_id, a_id, cb, ca, path[::-1]
    grey = np.asarray(image[conn.box], np.float32).ravel()[conn.voxels]
    contrast = conn.stats.get("density_sigma", np.nan)
    out = {
        "kind": "tether" if b_id is None else "connector",
        "vesicle_a": a_id,
        "vesicle_b": b_id,
    }
    for name, pt in (("a", ca), ("b", cb)):
        for k, ax in enumerate("zyx"):
            out[f"contact_{name}_{ax}_px"] = float(pt[k] / vs[k])
        for k, ax in enumerate("zyx"):
            out[f"contact_{name}_{ax}_nm"] = float(pt[k])
    out.update(
        length_nm=float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()),
        end_to_end_nm=float(np.linalg.norm(cb - ca)),
        mean_density=float(grey.mean()),
        contrast=float(contrast),
        volume_nm3=float(len(conn.voxels) * np.prod(vs)),
        threshold_first=conn.t_first,
        threshold_last=conn.t_last,
        n_thresholds=int(conn.levels),
        confidence=float(conn.stats["score"])
        if "score" in conn.stats
        else confidence(conn.levels, float(contrast), p),
        az_distance_nm=az_dist_nm,
        path_px=";".join(",".join(f"{v:.2f}" for v in q / vs) for q in path),
    )
    return out


def parse_path(text: str) -> np.ndarray:
    """``path_px`` text (``z,y,x;z,y,x;...``) → (n, 3) float array of px coordinates."""
    if not isinstance(text, str) or not text:
        return np.zeros((0, 3))
    return np.array([[float(v) for v in q.split(",")] for q in text.split(";")])

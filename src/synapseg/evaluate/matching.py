"""One-to-one matching of predicted vesicles to ground-truth vesicles.

Both tables are first brought into one physical frame (centers in nm, midline radius in nm)
by :func:`resolve_table`; then :func:`match_vesicles` pairs them with the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``) on center distance. A pair counts as a
match iff its center distance is *strictly* below ``match_fraction`` times the ground-truth
midline radius. Among all assignments the one with the most matches is chosen, and among
those the one with the smallest total distance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.tables import CENTER_NM, CENTER_PX, DEFAULT_MEMBRANE_THICKNESS_NM

log = logging.getLogger(__name__)

# Radii of the two tables differing by more than this factor means a unit mix-up
# (px vs nm, or Å written as nm), not a segmentation error.
_UNIT_MISMATCH_FACTOR = 4.0


@dataclass(frozen=True)
class ResolvedTable:
    """A vesicle table reduced to what matching needs, in nm.

    Attributes
    ----------
    ids
        (n,) integer vesicle ids (the table's ``id`` column, else 1..n).
    centers_nm
        (n, 3) zyx centers in nm.
    radius_nm
        (n,) bilayer-midline radii in nm.
    score
        (n,) confidence scores (ones when the table has none).
    voxel_size_nm
        zyx voxel size implied by the table (px and nm columns), or the one given; ``None``
        when the table holds nm only and none was given.
    """

    ids: np.ndarray
    centers_nm: np.ndarray
    radius_nm: np.ndarray
    score: np.ndarray
    voxel_size_nm: tuple[float, float, float] | None

    def __len__(self) -> int:
        return len(self.ids)


def _vs3(value: float | Sequence[float] | None) -> np.ndarray | None:
    if value is None:
        return None
    vs = voxel_size_zyx(value)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError("--voxel-size", f"voxel size {value!r} is not positive", "give nm > 0")
    return vs


def resolve_table(
    table: pd.DataFrame,
    voxel_size_nm: float | Sequence[float] | None = None,
    *,
    name: str = "table",
    membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM,
    default_voxel_size_nm: float | Sequence[float] | None = None,
) -> ResolvedTable:
    """Bring a vesicle table into nm: centers from ``center_*_nm`` (or ``center_*_px`` times
    the voxel size) and the midline radius from ``radius_nm`` (or ``radius_px`` times the x
    voxel size, or ``outer_radius_nm - membrane_thickness_nm / 2``).

    Parameters
    ----------
    table
        Vesicle table in :func:`synapseg.io.tables.make_table` layout (extra columns ignored).
    voxel_size_nm
        Voxel size of the table's pixel grid; needed only when the table has pixel columns
        but no nm columns. When both are present and this is given, they must agree.
    name
        How error messages name the table (usually its file path).
    membrane_thickness_nm
        Used only to derive the midline radius from an outer radius.
    default_voxel_size_nm
        Used like ``voxel_size_nm`` but only when the table itself cannot give nm (pixel-only
        columns) and ``voxel_size_nm`` is ``None``; never checked against nm columns.

    Raises
    ------
    InputError
        No usable centers or radius, pixel-only table without a voxel size, a given voxel
        size contradicting the table's own px/nm columns, or non-finite values.
    """
    cols = set(table.columns)
    vs = _vs3(voxel_size_nm)
    n = len(table)
    has_nm = all(c in cols for c in CENTER_NM)
    has_px = all(c in cols for c in CENTER_PX)
    if vs is None and not has_nm and default_voxel_size_nm is not None:
        vs = _vs3(default_voxel_size_nm)
    implied = None
    if has_px and has_nm and n:
        px = table[CENTER_PX].to_numpy(float)
        nm = table[CENTER_NM].to_numpy(float)
        implied = np.empty(3)
        for axis in range(3):
            ok = np.abs(px[:, axis]) > 1e-6
            implied[axis] = np.median(nm[ok, axis] / px[ok, axis]) if ok.any() else np.nan
        if vs is not None and np.all(np.isfinite(implied)):
            if np.any(np.abs(implied - vs) > 0.01 * vs):
                raise InputError(
                    name,
                    f"its px and nm columns imply a voxel size of {_fmt(implied)} nm, "
                    f"but {_fmt(vs)} nm was given",
                    "drop the voxel-size option or fix the table",
                )
    if has_nm:
        centers = table[CENTER_NM].to_numpy(float) if n else np.zeros((0, 3))
    elif has_px:
        if vs is None:
            raise InputError(
                name,
                "the table has pixel centers only (center_*_px) and no voxel size is known",
                "pass its voxel size (e.g. --gt-voxel-size / --pred-voxel-size in nm, or "
                "--tomogram) or add center_*_nm columns",
            )
        centers = table[CENTER_PX].to_numpy(float).reshape(-1, 3) * vs
    else:
        raise InputError(
            name,
            "table has no center columns (center_z_nm.. or center_z_px..)",
            "use synapseg's column names",
        )
    if "radius_nm" in cols:
        radius = table["radius_nm"].to_numpy(float)
    elif "radius_px" in cols:
        if vs is None and implied is None:
            raise InputError(
                name,
                "the table gives the radius in pixels only (radius_px) and no voxel size is known",
                "pass its voxel size or add a radius_nm column",
            )
        x_vs = vs[2] if vs is not None else implied[2]
        radius = table["radius_px"].to_numpy(float) * x_vs
    elif "outer_radius_nm" in cols:
        radius = table["outer_radius_nm"].to_numpy(float) - membrane_thickness_nm / 2
    else:
        raise InputError(name, "table has no radius column", "add radius_nm (bilayer midline)")
    if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(radius))):
        raise InputError(name, "table holds NaN or infinite centers or radii", "fix the table")
    if np.any(radius <= 0):
        raise InputError(name, "table holds radii <= 0", "fix the table")
    ids = table["id"].to_numpy(int) if "id" in cols else np.arange(1, n + 1)
    if len(np.unique(ids)) != n:
        raise InputError(name, "vesicle ids in the table are not unique", "renumber the ids")
    score = table["score"].to_numpy(float) if "score" in cols else np.ones(n)
    known = vs if vs is not None else implied
    voxel = None
    if known is not None and np.all(np.isfinite(known)):
        voxel = tuple(float(v) for v in known)
    return ResolvedTable(ids, centers.reshape(-1, 3), radius, score, voxel)


def _fmt(vs: np.ndarray) -> str:
    return " × ".join(f"{v:.4g}" for v in vs)


def check_units(gt: ResolvedTable, pred: ResolvedTable, gt_name: str, pred_name: str) -> None:
    """Reject a pair of tables whose radii differ by a factor that only a unit mix-up explains.

    Raises
    ------
    InputError
        When the median radii differ by more than a factor of 4 (e.g. one table in px, the
        other in nm, or Å written as nm).
    """
    if len(gt) == 0 or len(pred) == 0:
        return
    ratio = float(np.median(pred.radius_nm) / np.median(gt.radius_nm))
    if ratio > _UNIT_MISMATCH_FACTOR or ratio < 1 / _UNIT_MISMATCH_FACTOR:
        raise InputError(
            pred_name,
            f"its median radius is {ratio:.3g}× that of {gt_name}: the two tables use different "
            "units (px vs nm, or Å vs nm)",
            "give both tables in nm, or pass the voxel size of each table's pixel grid",
        )
    if gt.voxel_size_nm and pred.voxel_size_nm:
        a, b = np.asarray(gt.voxel_size_nm), np.asarray(pred.voxel_size_nm)
        if np.any(np.abs(a - b) > 0.01 * a):
            log.info(
                "ground truth (%s nm) and prediction (%s nm) have different voxel sizes; "
                "they are compared in nm",
                _fmt(a),
                _fmt(b),
            )


@dataclass(frozen=True)
class MatchResult:
    """The outcome of :func:`match_vesicles`.

    Index arrays are row positions into the resolved tables; id arrays are vesicle ids.
    Matched arrays are sorted by ground-truth position.
    """

    gt: ResolvedTable
    pred: ResolvedTable
    match_fraction: float
    gt_index: np.ndarray
    pred_index: np.ndarray
    distance_nm: np.ndarray

    @property
    def tp(self) -> int:
        return len(self.gt_index)

    @property
    def fp(self) -> int:
        return len(self.pred) - self.tp

    @property
    def fn(self) -> int:
        return len(self.gt) - self.tp

    def matched_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks over the ground-truth and predicted rows that are in a matched pair."""
        matched_gt = np.zeros(len(self.gt), bool)
        matched_gt[self.gt_index] = True
        matched_pred = np.zeros(len(self.pred), bool)
        matched_pred[self.pred_index] = True
        return matched_gt, matched_pred

    @property
    def fn_index(self) -> np.ndarray:
        """Ground-truth rows left unmatched (false negatives)."""
        return np.setdiff1d(np.arange(len(self.gt)), self.gt_index)

    @property
    def fp_index(self) -> np.ndarray:
        """Predicted rows left unmatched (false positives)."""
        return np.setdiff1d(np.arange(len(self.pred)), self.pred_index)

    @property
    def gt_ids(self) -> np.ndarray:
        return self.gt.ids[self.gt_index]

    @property
    def pred_ids(self) -> np.ndarray:
        return self.pred.ids[self.pred_index]

    @property
    def radius_error_nm(self) -> np.ndarray:
        """Signed midline-radius error (predicted - true) of each matched pair."""
        return self.pred.radius_nm[self.pred_index] - self.gt.radius_nm[self.gt_index]

    @property
    def center_error_nm(self) -> np.ndarray:
        """(tp, 3) zyx center error (predicted - true) of each matched pair."""
        return self.pred.centers_nm[self.pred_index] - self.gt.centers_nm[self.gt_index]


def assign(
    gt_centers_nm: np.ndarray,
    gt_radius_nm: np.ndarray,
    pred_centers_nm: np.ndarray,
    match_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-cardinality, minimum-distance one-to-one assignment.

    Returns ``(gt_index, pred_index, distance_nm)`` of the matched pairs, sorted by
    ``gt_index``. A pair is admissible iff its distance < ``match_fraction * gt_radius_nm``.
    """
    gt_centers_nm = np.asarray(gt_centers_nm, float).reshape(-1, 3)
    pred_centers_nm = np.asarray(pred_centers_nm, float).reshape(-1, 3)
    limit = match_fraction * np.asarray(gt_radius_nm, float)
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    if len(gt_centers_nm) == 0 or len(pred_centers_nm) == 0 or match_fraction <= 0:
        return empty
    # Only pairs within the largest admissible distance can match: find them with a KD-tree
    # and solve the assignment on the rows/columns that have candidates.
    tree = cKDTree(pred_centers_nm)
    candidates = tree.query_ball_point(gt_centers_nm, r=limit)
    rows, cols = [], []
    for g, preds in enumerate(candidates):
        for p in preds:
            rows.append(g)
            cols.append(p)
    if not rows:
        return empty
    rows_a, cols_a = np.asarray(rows), np.asarray(cols)
    dist = np.linalg.norm(gt_centers_nm[rows_a] - pred_centers_nm[cols_a], axis=1)
    ok = dist < limit[rows_a]
    rows_a, cols_a, dist = rows_a[ok], cols_a[ok], dist[ok]
    if len(rows_a) == 0:
        return empty
    # Solve each connected group of candidate pairs on its own: vesicles only compete with
    # neighbours, so the dense cost matrices stay small even for tens of thousands.
    n_gt = len(gt_centers_nm)
    graph = coo_matrix(
        (np.ones(len(rows_a)), (rows_a, n_gt + cols_a)),
        shape=(n_gt + len(pred_centers_nm),) * 2,
    )
    _, component = connected_components(graph, directed=False)
    pair_comp = component[rows_a]
    counts = np.bincount(pair_comp)
    single = counts[pair_comp] == 1  # an isolated admissible pair simply matches
    gi_parts, pi_parts, d_parts = [rows_a[single]], [cols_a[single]], [dist[single]]
    rest = np.flatnonzero(~single)
    order = rest[np.argsort(pair_comp[rest], kind="stable")]
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    for idx in np.split(order, bounds) if len(order) else []:
        g, p, dd = _assign_dense(rows_a[idx], cols_a[idx], dist[idx])
        gi_parts.append(g)
        pi_parts.append(p)
        d_parts.append(dd)
    gi, pi, d = (np.concatenate(x) for x in (gi_parts, pi_parts, d_parts))
    order = np.argsort(gi)
    return gi[order], pi[order], d[order]


def _assign_dense(
    rows: np.ndarray, cols: np.ndarray, dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian assignment over the admissible pairs (rows[k], cols[k]) at dist[k]."""
    g_used, g_inv = np.unique(rows, return_inverse=True)
    p_used, p_inv = np.unique(cols, return_inverse=True)
    if len(g_used) == 1 or len(p_used) == 1:  # one side single: take the nearest
        k = int(np.argmin(dist))
        return rows[k : k + 1], cols[k : k + 1], dist[k : k + 1]
    # Inadmissible pairs cost more than any full set of admissible ones, so the optimum
    # first maximises the number of matches, then minimises the summed distance.
    big = float(dist.sum() + 1.0) * 2.0
    cost = np.full((len(g_used), len(p_used)), big)
    cost[g_inv, p_inv] = dist
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < big
    return g_used[r[keep]], p_used[c[keep]], cost[r[keep], c[keep]]


def match_vesicles(
    gt_table: pd.DataFrame | ResolvedTable,
    pred_table: pd.DataFrame | ResolvedTable,
    match_fraction: float = 0.5,
    *,
    gt_voxel_size_nm: float | Sequence[float] | None = None,
    pred_voxel_size_nm: float | Sequence[float] | None = None,
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> MatchResult:
    """Match predicted to ground-truth vesicles one to one.

    Parameters
    ----------
    gt_table, pred_table
        Vesicle tables (:func:`synapseg.io.tables.make_table` layout) or already resolved
        tables. Centers are compared in nm, so tables on different voxel grids are fine as
        long as each carries nm columns or its voxel size is given.
    match_fraction
        A pair matches iff center distance < ``match_fraction`` × ground-truth midline radius.
    gt_voxel_size_nm, pred_voxel_size_nm
        Voxel sizes of pixel-only tables (see :func:`resolve_table`).
    gt_name, pred_name
        Names used in error messages (file paths).

    Returns
    -------
    MatchResult
        Matched pairs (Hungarian assignment), their distances, and the unmatched rows.
    """
    if not np.isfinite(match_fraction) or match_fraction <= 0:
        raise InputError("--match-fraction", f"{match_fraction} is not > 0", "use e.g. 0.5")
    gt = (
        gt_table
        if isinstance(gt_table, ResolvedTable)
        else resolve_table(gt_table, gt_voxel_size_nm, name=gt_name)
    )
    pred = (
        pred_table
        if isinstance(pred_table, ResolvedTable)
        else resolve_table(pred_table, pred_voxel_size_nm, name=pred_name)
    )
    check_units(gt, pred, gt_name, pred_name)
    gi, pi, d = assign(gt.centers_nm, gt.radius_nm, pred.centers_nm, match_fraction)
    return MatchResult(gt, pred, float(match_fraction), gi, pi, d)

"""Refine hand-placed vesicle points (center only, no radius) into spheres.

A point clicked by hand may be several nm off the true center and has no radius, which is
outside the capture range of :func:`synapseg.post.spheres.refine_spheres` (it searches
±0.35 R around a given radius). :func:`refine_points` first runs a coarse, exhaustive
search and then the pipeline's own fine fit:

1. *Coarse search*: candidate centers on a cubic grid of spacing ``grid_nm`` inside a ball of
   radius ``max_offset_nm`` around the point; for each candidate center, the wedge-weighted
   spherically averaged profile (the same directions and wedge weights as the fine fit) is
   sampled for radii ``min_radius_nm .. max_radius_nm`` and smoothed over the bilayer width.
   Each (center, radius) is scored by its membrane dip: the mean of the flanks
   ``[R - 2t, R - t]`` and ``[R + t, R + 2t]`` minus the profile at ``R``. An off-center sphere
   smears the dip over the offset, so the best score lies near the true center and radius.
2. *Fine fit*: :func:`~synapseg.post.spheres.refine_spheres` from the best coarse sphere
   (sub-voxel center and radius, QC columns).

Pure numpy; the tomogram may be a read-only memmap (only the neighbourhood of the points is
sampled).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.post.profiles import (
    estimate_background,
    fibonacci_directions,
    sample_profiles,
    smooth_rows,
    wedge_weights,
)
from synapseg.post.spheres import SphereParams, refine_spheres

__all__ = [
    "PointParams",
    "choose_polarity",
    "coarse_spheres",
    "refine_hand_placed",
    "refine_points",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PointParams:
    """Parameters of the coarse search of :func:`refine_points` (nm).

    Attributes
    ----------
    max_offset_nm
        Largest distance between the point and the true center that the search covers.
    grid_nm
        Spacing of the candidate-center grid.
    min_radius_nm, max_radius_nm
        Bilayer-midline radii scanned (synaptic vesicles: outer diameter ≈ 25-70 nm).
    n_directions
        Directions of the spherical average (fewer than the fine fit: speed).
    """

    max_offset_nm: float = 5.0
    grid_nm: float = 1.5
    min_radius_nm: float = 8.0
    max_radius_nm: float = 36.0
    n_directions: int = 160


def _offset_grid(max_offset_nm: float, grid_nm: float) -> np.ndarray:
    k = int(np.floor(max_offset_nm / grid_nm))
    ax = np.arange(-k, k + 1) * grid_nm
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    return g[np.linalg.norm(g, axis=1) <= max_offset_nm + 1e-9]


def coarse_spheres(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    params: PointParams | None = None,
    sphere_params: SphereParams | None = None,
    polarity: int = 1,
    background: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exhaustive (center, radius) search around each point; see the module docstring.

    Returns
    -------
    centers_px, radius_nm, dip
        (n, 3) best centers in voxels, (n,) midline radii in nm and (n,) dip depths in noise
        σ (NaN radius where no candidate could be scored, e.g. a point outside the volume).
    """
    p = params or PointParams()
    sp = sphere_params or SphereParams()
    vs = voxel_size_zyx(voxel_size_nm)
    pts = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    n = len(pts)
    if background is None:
        background = estimate_background(tomogram)
    norm = (background[0], background[1], float(np.sign(polarity) or 1))
    dirs = fibonacci_directions(p.n_directions)
    wdir = wedge_weights(dirs, sp.tilt_range_deg, sp.tilt_axis, sp.wedge_softness_deg)
    wdir = sp.wedge_floor + (1.0 - sp.wedge_floor) * wdir
    t = sp.membrane_thickness_nm
    step = 0.5 * float(vs.min())
    r_nm = np.arange(max(p.min_radius_nm - 2 * t, step), p.max_radius_nm + 2 * t + step, step)
    offsets = _offset_grid(p.max_offset_nm, p.grid_nm)  # (g, 3) nm
    smooth = max(sp.radial_smoothing * t, step) / step
    # flank/membrane kernel on the radial grid: dip(R) = mean(flanks) - prof(R)
    out_c = np.full((n, 3), np.nan)
    out_r = np.full(n, np.nan)
    out_d = np.full(n, np.nan)
    lo_t, hi_t = int(round(t / step)), int(round(2 * t / step))
    scan = (r_nm >= p.min_radius_nm) & (r_nm <= p.max_radius_nm)
    for i in range(n):
        cands = pts[i] + offsets / vs  # (g, 3) voxels
        radii = np.broadcast_to(r_nm, (len(cands), len(r_nm)))
        prof = sample_profiles(tomogram, cands, np.ascontiguousarray(radii), dirs, vs, norm)
        valid = np.isfinite(prof)
        wsum = np.einsum("d,gdr->gr", wdir, valid.astype(np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            sph = np.einsum("d,gdr->gr", wdir, np.where(valid, prof, 0.0)) / wsum
        sph = np.where(wsum > 0.3 * wdir.sum(), sph, np.nan)
        sph = smooth_rows(sph, smooth)
        flank = np.full_like(sph, np.nan)
        inner = _shift_mean(sph, -hi_t, -lo_t)
        outer = _shift_mean(sph, lo_t, hi_t)
        flank = 0.5 * (inner + outer)
        dip = np.where(scan[None, :], flank - sph, np.nan)
        if not np.isfinite(dip).any():
            continue
        g, j = np.unravel_index(np.nanargmax(dip), dip.shape)
        out_c[i] = cands[g]
        out_r[i] = r_nm[j]
        out_d[i] = dip[g, j]
    return out_c, out_r, out_d


def _shift_mean(prof: np.ndarray, a: int, b: int) -> np.ndarray:
    """Mean of ``prof[:, j + a .. j + b]`` for every column j (NaN where out of range)."""
    k = prof.shape[1]
    acc = np.zeros_like(prof)
    cnt = np.zeros_like(prof)
    for s in range(a, b + 1):
        lo, hi = max(0, -s), min(k, k - s)
        shifted = np.full_like(prof, np.nan)
        shifted[:, lo:hi] = prof[:, lo + s : hi + s]
        ok = np.isfinite(shifted)
        acc += np.where(ok, shifted, 0.0)
        cnt += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0.5 * (b - a + 1), acc / cnt, np.nan)


def refine_points(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    params: PointParams | None = None,
    sphere_params: SphereParams | None = None,
    polarity: int = 1,
    background: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Fit center and radius of vesicles from rough hand-placed points.

    Parameters
    ----------
    tomogram
        (z, y, x) array (may be a read-only memmap).
    centers_px
        (n, 3) points in input voxels (zyx), up to ``params.max_offset_nm`` off the center.
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    params
        :class:`PointParams` of the coarse search.
    sphere_params
        :class:`~synapseg.post.spheres.SphereParams` of the fine fit (and the wedge).
    polarity
        +1 when densities are dark, -1 for inverted contrast.
    background
        (median, sigma) of the tomogram; estimated if None.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`~synapseg.post.spheres.refine_spheres` (same row order);
        ``shift_nm`` is measured from the given point. Rows that could not be fitted (no
        tomogram around the point) keep the point with a NaN radius.
    """
    vs = voxel_size_zyx(voxel_size_nm)
    pts = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    if background is None:
        background = estimate_background(tomogram)
    c0, r0, _ = coarse_spheres(
        tomogram,
        pts,
        vs,
        params=params,
        sphere_params=sphere_params,
        polarity=polarity,
        background=background,
    )
    ok = np.isfinite(r0)
    fits = refine_spheres(
        tomogram,
        np.where(ok[:, None], c0, pts),
        np.where(ok, r0, 20.0),
        vs,
        params=sphere_params,
        polarity=polarity,
        background=background,
    )
    fits.loc[~ok, "radius_nm"] = np.nan
    centers = fits[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    fits["shift_nm"] = np.linalg.norm((centers - pts) * vs, axis=1)
    if (~ok).any():
        log.warning("%d point(s) could not be fitted (outside the tomogram?)", int((~ok).sum()))
    return fits


def choose_polarity(
    tomogram: np.ndarray,
    table: pd.DataFrame,
    voxel_size_nm: Sequence[float] | float,
    *,
    sphere_params: SphereParams | None = None,
    background: tuple[float, float] | None = None,
) -> int:
    """Contrast polarity for fitting the hand-placed rows of ``table`` (NaN ``radius_nm``).

    With at least three rows that have a radius, :func:`synapseg.post.polarity.detect_polarity`
    judges their membranes; otherwise the coarse search runs with both polarities on the
    hand-placed points and the one with the deeper median membrane dip wins.
    """
    from synapseg.post.polarity import detect_polarity

    sp = sphere_params or SphereParams()
    centers = table[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    radius = table["radius_nm"].to_numpy(float)
    known = np.isfinite(radius) & np.all(np.isfinite(centers), axis=1)
    if known.sum() >= 3:
        polarity, _ = detect_polarity(
            tomogram,
            centers[known],
            radius[known],
            voxel_size_nm,
            tilt_range_deg=sp.tilt_range_deg,
            tilt_axis=sp.tilt_axis,
            background=background,
        )
        return int(polarity)
    pts = centers[~known & np.all(np.isfinite(centers), axis=1)][:20]
    if len(pts) == 0:
        return 1
    dips = [
        np.nanmedian(
            coarse_spheres(
                tomogram, pts, voxel_size_nm, sphere_params=sp, polarity=s, background=background
            )[2]
        )
        for s in (1, -1)
    ]
    return 1 if not dips[1] > dips[0] else -1


def refine_hand_placed(
    table: pd.DataFrame,
    tomogram: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    sphere_params: SphereParams | None = None,
    params: PointParams | None = None,
    polarity: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Fit center and radius of the rows of a vesicle table that have no ``radius_nm``.

    The fitted rows get the refined center (px and nm), ``radius_nm``, the fit's QC columns
    (:data:`synapseg.post.spheres.FIT_QC_COLUMNS`, added as NaN for the other rows when
    absent), ``score`` NaN (no detection score for a hand-placed vesicle) and ``source`` =
    ``manual``. Every other row and column is left as it is (ids included). ``radius_px`` and
    ``outer_radius_nm`` are not touched: derive them afterwards from ``radius_nm``.

    Returns the new table and the boolean mask of the rows that were fitted (a row whose
    fit failed keeps a NaN radius).
    """
    from synapseg.post.spheres import FIT_QC_COLUMNS

    vs = voxel_size_zyx(voxel_size_nm)
    missing = table["radius_nm"].isna().to_numpy()
    out = table.copy()
    if not missing.any():
        return out, missing
    background = estimate_background(tomogram)
    if polarity is None:
        polarity = choose_polarity(
            tomogram, table, vs, sphere_params=sphere_params, background=background
        )
    centers = table.loc[missing, ["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    fits = refine_points(
        tomogram,
        centers,
        vs,
        params=params,
        sphere_params=sphere_params,
        polarity=polarity,
        background=background,
    )
    rows = out.index[missing]
    for k, axis in enumerate("zyx"):
        out.loc[rows, f"center_{axis}_px"] = fits[f"center_{axis}_px"].to_numpy()
        if f"center_{axis}_nm" in out:
            out.loc[rows, f"center_{axis}_nm"] = fits[f"center_{axis}_px"].to_numpy() * vs[k]
    out.loc[rows, "radius_nm"] = fits["radius_nm"].to_numpy()
    for col in FIT_QC_COLUMNS:
        if col not in out:
            out[col] = np.nan
        out.loc[rows, col] = fits[col].to_numpy()
    out["score"] = out["score"].astype(float) if "score" in out else np.nan
    out.loc[rows, "score"] = np.nan
    if "source" not in out:
        out["source"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out["source"] = out["source"].astype(object)
    out.loc[rows, "source"] = "manual"
    return out, missing

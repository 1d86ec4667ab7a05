"""Sub-voxel sphere refinement of vesicle candidates on the tomogram (not the probability map).

Method (all vesicles batched, see docs/postprocessing.md):

1. Directions: ``n_directions`` Fibonacci unit vectors, each the normal of the membrane patch
   it crosses, with a *missing-wedge weight*: for a tilt axis along y and range ±α the patch is
   recorded iff ``atan(|nz| / |nx|) <= α`` (x, y swap for an x axis), softened by a logistic.
2. Radial profiles: trilinear samples along every direction, directly on the input array (a
   memmap is only touched around the vesicles), in noise units ``polarity * (value - median) /
   sigma``, so the membrane is always a *minimum*.
3. Per direction: profiles are averaged over a Gaussian cone of neighbouring directions
   (weighted by their wedge weights) and smoothed along the radius with a Gaussian of
   ``radial_smoothing x thickness`` (a resolved bilayer's two leaflets merge into one minimum
   at the midline); the membrane radius is the parabola-refined minimum in a search window.
4. A weighted, robust (Tukey-biweight IRLS) algebraic least-squares sphere fit to the points
   ``center + r_d n_d`` gives a new center and radius; weights = wedge weight x dip depth.
   Steps 2-4 are repeated with a shrinking search window (excluding a neighbour 1-4 nm away),
   then the sphere is polished (:mod:`synapseg.post.polish`).
5. Final radius: parabolic minimum ``r*`` of the wedge-weighted spherically averaged profile at
   the final center, corrected for the inward shift of the extremum of a curved shell's value
   profile (``r* = R - s^2/R`` for a bilayer of Gaussian width ``s = thickness / 2.355``).
   QC: membrane and lumen contrast (noise σ per voxel), profile correlation, fit residual.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.post.bilayer import (
    _bilayer_template,
    _fit_bilayer_radius,
    filter_profiles,
    leaflet_offset_nm,
    leaflet_sigma_nm,
)
from synapseg.post.mirror import blend_mirror_z
from synapseg.post.parallel import map_ordered
from synapseg.post.polish import polish_spheres
from synapseg.post.profiles import (
    estimate_background,
    fibonacci_directions,
    masked_mean,
    parabolic_min,
    pearson,
    sample_profiles,
    wedge_weights,
)
from synapseg.specimen.mask import SpecimenMask

__all__ = [
    "FIT_QC_COLUMNS",
    "SphereParams",
    "estimate_background",
    "fibonacci_directions",
    "refine_spheres",
    "sample_profiles",
    "wedge_weights",
]

log = logging.getLogger(__name__)

FIT_QC_COLUMNS = [
    "membrane_contrast",
    "lumen_contrast",
    "inner_contrast",
    "profile_correlation",
    "fit_residual_nm",
    "wedge_coverage",
    "shift_nm",
]
"""QC columns of :func:`refine_spheres`, in output order after the center and ``radius_nm``."""


@dataclass(frozen=True)
class SphereParams:
    """Parameters of :func:`refine_spheres` (lengths in nm, angles in degrees).

    Attributes
    ----------
    tilt_range_deg
        Half tilt range ±α of the tilt series (60 for ±60°); ``None`` or >= 90 means no wedge.
    tilt_axis
        ``"y"`` or ``"x"``: the axis of the single-axis tilt series in the (z, y, x) array.
    membrane_thickness_nm
        Bilayer thickness, sets the QC windows and the template width.
    n_directions
        Number of Fibonacci directions.
    cone_deg
        Gaussian sigma (degrees) of the cone average of neighbouring directions.
    n_iter
        Number of sample/fit iterations.
    search_nm
        Half width of the first radial search window; ``None`` = max(4 voxels, 0.35 x radius).
    min_search_nm
        Half width of the last window; ``None`` = max(1.5 voxels, 0.75 x membrane thickness).
    wedge_softness_deg
        Width of the logistic softening of the wedge weight.
    wedge_floor
        Weight kept by directions inside the missing wedge (0 = ignore them).
    radial_smoothing
        Gaussian sigma of the radial smoothing, as a fraction of the membrane thickness
        (0.45 x 4.5 nm ≈ 2 nm merges the two leaflets of a resolved bilayer into one minimum
        at the midline).
    radial_filter
        ``"gaussian"`` (the smoothing above), ``"bilayer"`` (a matched two-leaflet kernel, see
        :func:`synapseg.post.bilayer.filter_profiles`) or ``"auto"``: ``"bilayer"`` for
        membranes at least ``RESOLVED_THICKNESS_NM`` thick, whose leaflets the smoothing would
        have to blur by more than a leaflet separation to merge.
    radial_step, final_step
        Radial sample spacing (voxels) of the iterations and of the final averaged profile.
    smoothing_pad
        Extra radial range sampled beyond the search window, in radial-smoothing sigmas.
    final_radius
        ``"model"``: fit a dip + lumen-step model to the averaged profile (robust to a dense
        lumen); ``"minimum"``: the plain profile minimum.
    chunk
        Vesicles sampled together (bounds memory: chunk x n_directions x samples floats).
    mirror_z_full_deg, mirror_z_none_deg, mirror_z_weight, mirror_z_max_nm, mirror_z_smooth_nm
        Narrow wedges: the z-center is blended with the mirror-symmetry estimate, see
        :func:`synapseg.post.mirror.blend_mirror_z` (``mirror_z_weight=0``: off).
    polish_directions, polish_iter, polish_step_nm
        Matched-filter polish of each fitted sphere (:func:`synapseg.post.polish.polish_spheres`;
        ``polish_directions=0``: off): directions, Newton steps, largest step (nm).
    """

    tilt_range_deg: float | None = 60.0
    tilt_axis: str = "y"
    membrane_thickness_nm: float = 4.5
    n_directions: int = 240
    cone_deg: float = 12.0
    n_iter: int = 4
    search_nm: float | None = None
    min_search_nm: float | None = None
    wedge_softness_deg: float = 4.0
    wedge_floor: float = 0.3
    radial_smoothing: float = 0.45
    radial_filter: str = "auto"
    radial_step: float = 0.75
    final_step: float = 0.5
    smoothing_pad: float = 2.0
    final_radius: str = "model"
    chunk: int = 96
    mirror_z_full_deg: float = 42.0
    mirror_z_none_deg: float = 55.0
    mirror_z_weight: float = 0.75
    mirror_z_max_nm: float = 2.0
    mirror_z_smooth_nm: float = 1.0
    polish_directions: int = 480
    polish_iter: int = 8
    polish_step_nm: float = 0.5


RESOLVED_THICKNESS_NM = 5.5
"""From this bilayer thickness on, ``radial_filter="auto"`` uses the two-leaflet kernel."""


def radial_mode(p: SphereParams) -> str:
    """The radial filter :func:`refine_spheres` uses with these parameters."""
    if p.radial_filter != "auto":
        return p.radial_filter
    return "bilayer" if p.membrane_thickness_nm >= RESOLVED_THICKNESS_NM else "gaussian"


def _cone_matrix(directions: np.ndarray, weights: np.ndarray, cone_deg: float) -> np.ndarray:
    cosang = np.clip(directions @ directions.T, -1.0, 1.0)
    ang = np.arccos(cosang)
    kern = np.exp(-0.5 * (ang / np.radians(cone_deg)) ** 2) * weights[None, :]
    kern[ang > np.radians(3 * cone_deg)] = 0.0
    return kern  # (e, d): row e averages directions d


def _fit_spheres(points: np.ndarray, weights: np.ndarray, n_irls: int = 3):
    """Weighted robust algebraic sphere fit, batched.

    points (n, m, 3) relative to the current center (nm), weights (n, m) >= 0.
    Returns (shift (n, 3), radius (n,), rms residual (n,)).
    """
    n, m, _ = points.shape
    a = np.concatenate([2 * points, np.ones((n, m, 1))], axis=2)  # (n, m, 4)
    b = np.sum(points**2, axis=2)  # (n, m)
    w = weights.copy()
    shift = np.zeros((n, 3))
    radius = np.zeros(n)
    resid = np.zeros((n, m))
    for it in range(n_irls + 1):
        aw = a * w[..., None]
        mat = np.einsum("nmi,nmj->nij", aw, a) + 1e-9 * np.eye(4)
        rhs = np.einsum("nmi,nm->ni", aw, b)
        sol = np.linalg.solve(mat, rhs[..., None])[..., 0]
        shift = sol[:, :3]
        radius = np.sqrt(np.clip(sol[:, 3] + np.sum(shift**2, axis=1), 1e-9, None))
        resid = np.linalg.norm(points - shift[:, None, :], axis=2) - radius[:, None]
        if it == n_irls:
            break
        wsum = np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        mad = np.sqrt(np.sum(weights * resid**2, axis=1, keepdims=True) / wsum)
        scale = np.maximum(2.5 * mad, 1e-6)
        u = np.clip(np.abs(resid) / scale, 0, 1)
        w = weights * (1 - u**2) ** 2
    wsum = np.maximum(weights.sum(axis=1), 1e-12)
    rms = np.sqrt(np.sum(weights * resid**2, axis=1) / wsum)
    return shift, radius, rms


def refine_spheres(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    params: SphereParams | None = None,
    polarity: int = 1,
    background: tuple[float, float] | None = None,
    specimen: SpecimenMask | None = None,
) -> pd.DataFrame:
    """Refine candidate vesicle spheres on the tomogram with sub-voxel precision.

    Parameters
    ----------
    tomogram
        (z, y, x) array (any real dtype; may be a read-only memmap, it is never copied).
    centers_px
        (n, 3) starting centers in input voxels (zyx).
    radius_nm
        (n,) starting bilayer-midline radii in nm.
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    params
        :class:`SphereParams`.
    polarity
        +1 when densities are dark (membrane = minimum), -1 for inverted contrast.
    background
        (median, sigma) of the tomogram; estimated with :func:`estimate_background` if None.
    specimen
        Specimen mask (:func:`synapseg.specimen.mask.specimen_mask`): ray samples outside it
        are ignored, like samples outside the volume (vesicles cut by the lamella surface).

    Returns
    -------
    pandas.DataFrame
        One row per input candidate (same order): ``center_z_px, center_y_px, center_x_px,
        radius_nm, membrane_contrast, lumen_contrast, inner_contrast, profile_correlation,
        fit_residual_nm, wedge_coverage, shift_nm``. Contrasts are per voxel in noise σ:
        ``membrane_contrast`` = cytoplasm (R + t .. R + 2t) minus membrane, ``lumen_contrast`` =
        cytoplasm minus lumen (0.2 R .. R - t), ``inner_contrast`` = lumen next to the membrane
        (R - 2t .. R - t) minus membrane (~0 for a solid blob); ``shift_nm`` is the distance
        moved from the start.
    """
    p = params or SphereParams()
    vs = voxel_size_zyx(voxel_size_nm)
    centers0 = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    radii0 = np.asarray(radius_nm, dtype=float).reshape(-1)
    n = len(centers0)
    cols = ["center_z_px", "center_y_px", "center_x_px", "radius_nm", *FIT_QC_COLUMNS]
    if n == 0:
        return pd.DataFrame({c: np.zeros(0) for c in cols})
    if background is None:
        background = estimate_background(tomogram, specimen=specimen)
    norm = (background[0], background[1], float(np.sign(polarity) or 1))
    dirs = fibonacci_directions(p.n_directions)
    wdir = wedge_weights(dirs, p.tilt_range_deg, p.tilt_axis, p.wedge_softness_deg)
    wdir = p.wedge_floor + (1.0 - p.wedge_floor) * wdir
    cone = _cone_matrix(dirs, wdir, p.cone_deg)
    vmin = float(vs.min())
    step = p.radial_step * vmin
    t = p.membrane_thickness_nm
    s_min = p.min_search_nm or max(1.5 * vmin, 0.75 * t)
    order = np.lexsort((centers0[:, 2], centers0[:, 1], np.floor(centers0[:, 0] / 8)))
    chunks = [order[s : s + p.chunk] for s in range(0, n, p.chunk)]  # near in z; in threads
    args = (vs, dirs, wdir, cone, norm, p, step, s_min)
    rows = map_ordered(
        lambda i: _refine_chunk(tomogram, centers0[i], radii0[i], *args, specimen), chunks
    )
    inverse = np.empty(n, int)
    inverse[order] = np.arange(n)
    out = {c: np.concatenate([r[c] for r in rows])[inverse] for c in cols}
    blend_mirror_z(tomogram, out, centers0, vs, norm, p, specimen)  # narrow wedges only
    return pd.DataFrame(out, columns=cols)


def _refine_chunk(
    tomogram, centers0, radii0, vs, dirs, wdir, cone, norm, p, step, s_min, specimen=None
):
    vmin = float(vs.min())
    m = len(centers0)
    t = p.membrane_thickness_nm
    mode = radial_mode(p)
    sigma_leaflet = leaflet_sigma_nm(vmin)
    if mode == "bilayer":  # matched two-leaflet kernel: the midline is the deepest response
        smooth_nm = max(sigma_leaflet, 0.5 * step)
        pad = p.smoothing_pad * smooth_nm + leaflet_offset_nm(t)
    else:  # radial smoothing merges the two leaflets of a bilayer into one midline minimum
        smooth_nm = max(p.radial_smoothing * t, 0.5 * step)
        pad = p.smoothing_pad * smooth_nm
    centers = centers0.copy()
    radii = np.maximum(radii0.copy(), 2 * vs.min())
    s0 = np.full(m, p.search_nm) if p.search_nm else np.maximum(4 * vs.min(), 0.35 * radii)
    residual = np.full(m, np.nan)
    coverage = np.zeros(m)
    for it in range(p.n_iter):
        half = np.maximum(s_min, s0 * 0.6**it)
        k = int(np.ceil((half.max() + pad) / step))
        offs = np.arange(-k, k + 1) * step
        r_nm = radii[:, None] + offs[None, :]
        r_nm = np.where(r_nm > 0.25 * vs.min(), r_nm, np.nan)
        prof = sample_profiles(
            tomogram, centers, np.nan_to_num(r_nm, nan=0.0), dirs, vs, norm, specimen
        )
        prof[np.broadcast_to(np.isnan(r_nm)[:, None, :], prof.shape)] = np.nan
        valid = np.isfinite(prof)
        filled = np.where(valid, prof, 0.0)
        # cone average over directions: (m, e, r) = sum_d K[e, d] * P[m, d, r]
        num = np.einsum("ed,mdr->mer", cone, filled, optimize=True)
        den = np.einsum("ed,mdr->mer", cone, valid.astype(np.float32), optimize=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            cprof = np.where(den > 1e-3, num / den, np.nan)
        cprof = filter_profiles(cprof, step, t, smooth_nm, mode)
        inside = np.abs(offs)[None, :] <= half[:, None]  # (m, r) search window
        base = masked_mean(cprof.reshape(-1, len(offs)), np.repeat(inside, len(dirs), axis=0))
        searched = np.where(inside[:, None, :], cprof, np.inf).reshape(-1, len(offs))
        pos, val, interior = parabolic_min(searched)
        depth = np.where(interior, base - val, 0.0)
        depth = np.clip(np.nan_to_num(depth), 0.0, None).reshape(m, -1)
        interior = interior.reshape(m, -1)
        r_dir = radii[:, None] + (pos.reshape(m, -1) - k) * step
        weights = wdir[None, :] * depth * interior
        pts = dirs[None, :, :] * r_dir[..., None]  # relative to the current center, nm
        good = weights.sum(axis=1) > 1e-9
        shift, rad, rms = _fit_spheres(pts, np.where(np.isfinite(r_dir), weights, 0.0))
        # limit the step to the search window, keep failed fits where they are
        norm_shift = np.linalg.norm(shift, axis=1)
        scale = np.minimum(1.0, half / np.maximum(norm_shift, 1e-12))
        shift = shift * scale[:, None]
        rad = np.clip(rad, radii - half, radii + half)
        ok = good & np.isfinite(rad) & np.all(np.isfinite(shift), axis=1)
        centers[ok] += shift[ok] / vs
        radii[ok] = rad[ok]
        residual = np.where(ok, rms, np.nan)
        coverage = weights.sum(axis=1) / np.maximum(
            (wdir[None, :] * depth.max(axis=1, keepdims=True)).sum(axis=1), 1e-12
        )
    args = (vs, p, norm, smooth_nm, mode, s_min, specimen)
    centers, radii = polish_spheres(tomogram, centers, radii, *args)  # low-contrast membranes
    # final spherically averaged profile: lumen .. radius + 2.5 thicknesses
    r_lo = np.maximum(0.2 * radii, 0.5 * vs.min())
    r_hi = radii + 2.5 * t
    fine = p.final_step * vmin
    n_r = int(np.ceil((r_hi - r_lo).max() / fine)) + 1
    r_nm = r_lo[:, None] + fine * np.arange(n_r)[None, :]
    prof = sample_profiles(tomogram, centers, r_nm, dirs, vs, norm, specimen)
    valid = np.isfinite(prof)
    wsum = np.einsum("d,mdr->mr", wdir, valid.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        sph = np.einsum("d,mdr->mr", wdir, np.where(valid, prof, 0.0)) / wsum
    sph = np.where(wsum > 1e-3, sph, np.nan)
    ssph = filter_profiles(sph, fine, t, smooth_nm, mode)
    if p.final_radius == "model":
        r_min, interior = _fit_bilayer_radius(
            r_nm, ssph, radii, t, smooth_nm, fine, mode, sigma_leaflet
        )
    else:
        # radius = parabolic minimum of the smoothed averaged profile within ±0.6 t of the fit
        near = np.abs(r_nm - radii[:, None]) <= 0.6 * t
        pos, val, interior = parabolic_min(np.where(near, ssph, np.inf))
        r_min = r_lo + pos * fine
    # the value profile of a curved shell (Gaussian width s) peaks at R - s^2/R: undo that
    s2 = (t / 2.355) ** 2 if mode == "gaussian" else sigma_leaflet**2
    r_min = 0.5 * (r_min + np.sqrt(np.maximum(r_min**2 + 4 * s2, 0.0)))
    final_r = np.where(interior, r_min, radii)
    memb = np.abs(r_nm - final_r[:, None]) <= 0.25 * t
    outside = (r_nm >= final_r[:, None] + 1.0 * t) & (r_nm <= final_r[:, None] + 2.0 * t)
    lumen = (r_nm >= r_lo[:, None]) & (r_nm <= final_r[:, None] - 1.0 * t)
    inner = (r_nm >= final_r[:, None] - 2.0 * t) & (r_nm <= final_r[:, None] - 1.0 * t)
    m_memb = masked_mean(ssph, memb)
    m_out = masked_mean(sph, outside)
    m_lum = masked_mean(sph, lumen)
    m_in = masked_mean(sph, inner)
    window = (np.abs(r_nm - final_r[:, None]) <= 2.0 * t) & np.isfinite(ssph)
    tmpl = _bilayer_template(r_nm, final_r, t, mode, smooth_nm, sigma_leaflet)
    corr = pearson(np.nan_to_num(ssph), tmpl, window)
    shift_nm = np.linalg.norm((centers - centers0) * vs, axis=1)
    return {
        "center_z_px": centers[:, 0],
        "center_y_px": centers[:, 1],
        "center_x_px": centers[:, 2],
        "radius_nm": final_r,
        "membrane_contrast": m_out - m_memb,
        "lumen_contrast": m_out - m_lum,
        "inner_contrast": m_in - m_memb,
        "profile_correlation": corr,
        "fit_residual_nm": residual,
        "wedge_coverage": coverage,
        "shift_nm": shift_nm,
    }

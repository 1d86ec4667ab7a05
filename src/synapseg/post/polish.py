"""Matched-filter polish of fitted sphere centers: every membrane sample at once, no argmin.

The sphere fit (:mod:`synapseg.post.spheres`) locates the membrane in each direction as the
minimum of a cone-averaged, radially filtered profile and fits a sphere through those
points. At low contrast (dense, protein-rich cytoplasm: the membrane ≈ 0.3 noise σ per
voxel) the per-direction minima scatter and the robust reweighting discards much of what
they carry. This step keeps the fitted sphere as the start and moves its center and radius
to the minimum of the summed, wedge-weighted filtered profile along the sphere itself,

    F(δ, ΔR) = Σ_d w_d · f_d(R + ΔR + δ·n_d),

where f_d is the radially filtered profile of direction n_d (the fit's own filter: the
Gaussian that merges the leaflets or the matched two-leaflet kernel) sampled once around
the fitted sphere, and w_d the missing-wedge weight. For a sphere in additive noise this is
the matched-filter (least-squares) estimate of the shell's position; moving the center by δ
moves the membrane along n_d by -δ·n_d, hence the argument (first order in δ/R). F is
minimised by Newton steps with the curvature clipped at zero (never climbing), each at most
``polish_step_nm``. A direction contributes only where its argument lies within the fit's
last search window (neighbours farther out never pull) and only if its cone-averaged
profile dips inside that window (not the slope of a lamella surface or a neighbour's edge).
A sphere keeps the fit when the polish would move it farther than that window, or when the
directions without a dip form one coherent cap (a vesicle cut by a lamella surface or the
volume's face: their wedge-weighted dipole exceeds ``MAX_MISSING_DIPOLE``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from synapseg.post.bilayer import filter_profiles, leaflet_offset_nm
from synapseg.post.profiles import fibonacci_directions, sample_profiles, wedge_weights
from synapseg.specimen.mask import SpecimenMask

__all__ = ["polish_spheres"]

log = logging.getLogger(__name__)

MAX_CONTRAST = 1.0
"""Spheres whose membrane is clearer than this (cytoplasm minus membrane, noise σ per voxel)
keep the fit: there the argmin fit is at its clutter floor and the broad matched filter
would only add the pull of blurred neighbours (denoised or SIRT-like looks, 1.4-3 σ; the
noise-limited looks the polish is for: 0.25-0.7 σ)."""

MAX_MISSING_DIPOLE = 0.03
"""Largest wedge-weighted dipole of the directions without a membrane dip (0 when they are
scattered, ≈ 0.1 for a vesicle cut by a lamella surface) at which a sphere is polished."""


def _interp(flat: np.ndarray, at: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """``flat`` (an (m, d, r) array raveled) linearly interpolated at the flat sample
    indices ``at`` (m, d; ``i * r + i0``) + ``frac``: one gather per end, no index grids."""
    return flat[at] * (1.0 - frac) + flat[at + 1] * frac


def _cone(directions: np.ndarray, weights: np.ndarray, cone_deg: float) -> sparse.csr_matrix:
    """(e, d) weights of a Gaussian cone average of neighbouring directions (within 3 σ)."""
    ang = np.arccos(np.clip(directions @ directions.T, -1.0, 1.0))
    kern = np.exp(-0.5 * (ang / np.radians(cone_deg)) ** 2) * weights[None, :]
    kern[ang > np.radians(3 * cone_deg)] = 0.0
    return sparse.csr_matrix(kern)


def _cone_average(cone: sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """(m, e, r) = sum_d cone[e, d] * values[m, d, r]."""
    m, d, r = values.shape
    flat = np.moveaxis(values, 1, 0).reshape(d, m * r)
    return np.moveaxis((cone @ flat).reshape(cone.shape[0], m, r), 0, 1)


def _membrane_contrast(prof, filt, w, offs, t) -> np.ndarray:
    """Cytoplasm (R + t .. R + 2t) minus membrane (filtered, within ±t/4), noise σ per voxel,
    of the wedge-weighted spherical average: the fit's ``membrane_contrast``."""
    with np.errstate(invalid="ignore"):
        raw = np.nansum(prof * w[None, :, None], axis=1) / np.maximum(
            np.sum(np.isfinite(prof) * w[None, :, None], axis=1), 1e-12
        )
        smooth = np.nansum(filt * w[None, :, None], axis=1) / np.maximum(
            np.sum(np.isfinite(filt) * w[None, :, None], axis=1), 1e-12
        )
    outside = (offs >= t) & (offs <= 2 * t)
    membrane = np.abs(offs) <= 0.25 * t
    return np.nanmean(raw[:, outside], axis=1) - np.nanmean(smooth[:, membrane], axis=1)


def polish_spheres(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radii_nm: np.ndarray,
    voxel_size_nm: Sequence[float],
    params: Any,
    norm: tuple[float, float, float],
    smooth_nm: float,
    mode: str,
    window_nm: float,
    specimen: SpecimenMask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move fitted spheres to the minimum of their wedge-weighted, filtered membrane profile.

    Parameters
    ----------
    tomogram
        (z, y, x) array (sampled in place, never copied).
    centers_px, radii_nm
        (m, 3) fitted centers in voxels and (m,) fitted bilayer-midline radii in nm.
    voxel_size_nm
        zyx voxel size (nm).
    params
        The :class:`synapseg.post.spheres.SphereParams` of the fit (wedge, thickness,
        ``polish_directions``, ``polish_iter``, ``polish_step_nm``).
    norm
        (median, sigma, polarity) of the tomogram: the membrane becomes a minimum.
    smooth_nm, mode
        The fit's radial filter (:func:`synapseg.post.bilayer.filter_profiles`).
    window_nm
        Half width of the fit's last radial search window: only samples within it count,
        and a polish moving the center farther keeps the fitted sphere.
    specimen
        Samples outside the specimen are ignored.

    Returns
    -------
    (centers_px, radii_nm)
        New arrays; unchanged rows where the polish had no membrane to work on, would have
        moved too far, or where the membrane is missing over a cap (``MAX_MISSING_DIPOLE``).
    """
    centers0 = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    radii0 = np.asarray(radii_nm, dtype=float).reshape(-1)
    m = len(centers0)
    n_dir = int(params.polish_directions)
    if m == 0 or n_dir <= 0 or params.polish_iter <= 0:
        return centers0.copy(), radii0.copy()
    vs = np.asarray(voxel_size_nm, dtype=float)
    t = params.membrane_thickness_nm
    dirs = fibonacci_directions(n_dir)
    w = wedge_weights(dirs, params.tilt_range_deg, params.tilt_axis, params.wedge_softness_deg)
    w = params.wedge_floor + (1.0 - params.wedge_floor) * w
    step = 0.5 * float(vs.min())
    support = 3.0 * smooth_nm + (leaflet_offset_nm(t) if mode == "bilayer" else 0.0)
    k = int(np.ceil((window_nm + support) / step))
    offs = np.arange(-k, k + 1) * step
    r_nm = radii0[:, None] + offs[None, :]
    r_ok = r_nm > 0.25 * float(vs.min())
    prof = sample_profiles(
        tomogram, centers0, np.where(r_ok, r_nm, 0.0), dirs, vs, norm, specimen
    ).astype(float)
    prof[np.broadcast_to(~r_ok[:, None, :], prof.shape)] = np.nan
    filt = filter_profiles(prof, step, t, smooth_nm, mode)
    contrast = _membrane_contrast(prof, filt, w, offs, t)
    valid = np.isfinite(filt).astype(float)
    filt = np.nan_to_num(filt)
    # only directions whose cone-averaged filtered profile dips inside the window: a membrane,
    # not the slope of a step (a lamella surface, vacuum) or of a dense neighbour's edge
    # (only the window's samples: the cone average is per sample, so the rest is not needed)
    inside = np.abs(offs) <= window_nm
    cone = _cone(dirs, w, params.cone_deg)
    num = _cone_average(cone, (filt * valid)[:, :, inside])
    den = _cone_average(cone, valid[:, :, inside])
    with np.errstate(invalid="ignore", divide="ignore"):
        win = np.where(den > 1e-3, num / den, np.inf)
    lowest = np.argmin(win, axis=2)
    last = int(inside.sum()) - 1
    used = (lowest > 0) & (lowest < last) & np.isfinite(np.min(win, axis=2))
    # a membrane missing over one coherent cap (cut by a lamella surface or the volume's face)
    # is not a whole sphere: the wedge-weighted dipole of the directions without a dip
    outer_end = np.isfinite(np.min(win, axis=2)) & (lowest == last)  # dark stuff outside
    lack = np.linalg.norm(((~used & ~outer_end) * w) @ dirs, axis=1) / w.sum()
    # the gates that keep the fit whatever the polish finds are decided before the Newton
    # steps, which run only on the spheres they leave
    todo = (lack <= MAX_MISSING_DIPOLE) & ~(contrast > MAX_CONTRAST)
    theta = np.zeros((m, 4))
    theta[todo] = _newton(valid[todo], filt[todo], used[todo], w, dirs, step, k, window_nm, params)
    moved = np.linalg.norm(theta[:, :3], axis=1)
    keep = todo & (moved <= window_nm) & (np.abs(theta[:, 3]) <= window_nm)
    centers = centers0.copy()
    radii = radii0.copy()
    centers[keep] += theta[keep, :3] / vs
    radii[keep] += theta[keep, 3]
    if not keep.all():
        log.debug("polish kept the fit of %d of %d spheres", (~keep).sum(), m)
    return centers, radii


def _newton(
    valid: np.ndarray,
    filt: np.ndarray,
    used: np.ndarray,
    w: np.ndarray,
    dirs: np.ndarray,
    step: float,
    k: int,
    window_nm: float,
    params: Any,
) -> np.ndarray:
    """(m, 4) center shift (nm) and radius change of the clipped Newton steps on
    ``F(δ, ΔR)`` (module docstring), from the filtered profiles and their validity
    (m, d, r), sampled at offsets ``(i - k) * step``."""
    m, n_dir, n_r = valid.shape
    d1 = np.gradient(filt, step, axis=2)
    d2 = np.gradient(d1, step, axis=2)
    design = np.concatenate([dirs, np.ones((n_dir, 1))], axis=1)  # (d, 4): δ (nm), ΔR
    theta = np.zeros((m, 4))
    if m == 0:
        return theta
    rows = (np.arange(m * n_dir) * n_r).reshape(m, n_dir)  # flat index of each profile's start
    flat_valid, flat_d1, flat_d2 = (a.reshape(-1) for a in (valid, d1, d2))
    for _ in range(int(params.polish_iter)):
        rho = theta[:, 3:4] + theta[:, :3] @ dirs.T  # (m, d): membrane offset along n_d
        idx = np.clip(rho / step + k, 0.0, n_r - 1.001)
        i0 = np.floor(idx).astype(int)
        frac = idx - i0
        at = rows + i0
        use = (np.abs(rho) <= window_nm) & (_interp(flat_valid, at, frac) > 0.999)
        wd = w[None, :] * use * used
        g1 = _interp(flat_d1, at, frac)
        g2 = np.maximum(_interp(flat_d2, at, frac), 0.0)
        grad = np.einsum("md,md,di->mi", wd, g1, design)
        hess = np.einsum("md,md,di,dj->mij", wd, g2, design, design)
        scale = np.trace(hess, axis1=1, axis2=2) / 4.0
        live = scale > 1e-9
        hess = hess + (1e-3 * scale + 1e-12)[:, None, None] * np.eye(4)
        delta = np.zeros((m, 4))
        delta[live] = -np.linalg.solve(hess[live], grad[live][..., None])[..., 0]
        size = np.linalg.norm(delta, axis=1)
        delta *= np.minimum(1.0, params.polish_step_nm / np.maximum(size, 1e-12))[:, None]
        theta += np.nan_to_num(delta)
    return theta

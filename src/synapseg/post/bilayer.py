"""The lipid-bilayer radial profile model of the sphere fit: template, radius fit, radial
filters and the bilayer thickness measured from the tomogram's own vesicles.

Split from :mod:`synapseg.post.spheres` (pure numpy on profiles; the fit loop lives there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.post.profiles import (
    fibonacci_directions,
    parabolic_min,
    sample_profiles,
    smooth_rows,
    wedge_weights,
)
from synapseg.specimen.mask import SpecimenMask

LEAFLET_SIGMA_NM = 0.5
"""Gaussian width of one lipid head-group layer (nm)."""
LEAFLET_BLUR_VOXELS = 0.6
"""Blur of the reconstruction and the trilinear sampling, in voxels (Gaussian sigma)."""
WINDOW_NM = 6.0
SHIFT_NM = 4.0
MIN_LEAFLET_RATIO = 0.33


def _bilayer_template(
    r: np.ndarray,
    radius: np.ndarray,
    thickness: float,
    mode: str = "gaussian",
    smooth_nm: float = 0.0,
    sigma_nm: float = LEAFLET_SIGMA_NM,
) -> np.ndarray:
    """The filtered membrane as a dip (negative) at ``radius``: for ``mode="gaussian"`` a
    Gaussian of width ``thickness / 2``; for ``"bilayer"`` the response of
    :func:`filter_profiles` to two leaflets (see :func:`_dip`)."""
    if mode == "bilayer":
        return -_dip(r - radius[:, None], thickness, smooth_nm, sigma_nm, mode)
    s = 0.5 * thickness
    return -np.exp(-0.5 * ((r - radius[:, None]) / s) ** 2)


def _dip(x: np.ndarray, t: float, smooth_nm: float, sigma_nm: float, mode: str) -> np.ndarray:
    """Positive dip shape of a filtered membrane profile at offset ``x`` from the midline.

    ``"gaussian"``: one Gaussian of width ``hypot(smooth, t / 2.355)``. ``"bilayer"``: two
    leaflets (width ``sigma_nm``, at ± :func:`leaflet_offset_nm`) correlated with the
    two-leaflet kernel (width ``smooth_nm``): twice as deep at the midline as at ± 2 offsets.
    """
    if mode == "bilayer":
        h = leaflet_offset_nm(t)
        s2 = np.hypot(smooth_nm, sigma_nm)
        return (
            2 * np.exp(-0.5 * (x / s2) ** 2)
            + np.exp(-0.5 * ((x - 2 * h) / s2) ** 2)
            + np.exp(-0.5 * ((x + 2 * h) / s2) ** 2)
        ) / 2
    sd = np.hypot(smooth_nm, t / 2.355)
    return np.exp(-0.5 * (x / sd) ** 2)


def _fit_bilayer_radius(
    r_nm, prof, radii, t, smooth_nm, step, mode="gaussian", sigma_nm=LEAFLET_SIGMA_NM
):
    """Radius of the best least-squares fit ``a D(r - R) + b S(r - R) + c`` of each profile.

    ``D``: the filtered bilayer's dip (:func:`_dip`), ``S``: logistic step (a lumen denser or
    lighter than the cytoplasm), fitted within ``|r - R| <= 2 t`` for ``R`` on a grid of
    ``step`` within ±0.6 t of ``radii``; the residual minimum is refined with a parabola.
    Modelling the lumen step keeps it from pulling the dip minimum inwards.
    """
    ss = np.hypot(smooth_nm, t / 4) / 1.7
    n_j = int(np.ceil(0.6 * t / step))
    js = np.arange(-n_j, n_j + 1) * step
    cand = radii[:, None] + js[None, :]  # (m, J)
    x = r_nm[:, None, :] - cand[:, :, None]  # (m, J, K)
    win = (np.abs(x) <= 2 * t) & np.isfinite(prof)[:, None, :]
    pr = np.where(win, np.nan_to_num(prof)[:, None, :], 0.0)
    basis = (
        np.stack(
            [
                _dip(x, t, smooth_nm, sigma_nm, mode),
                1.0 / (1.0 + np.exp(np.clip(x / ss, -50, 50))),
                np.ones_like(x),
            ],
            axis=-1,
        )
        * win[..., None]
    )
    gram = np.einsum("mjki,mjkl->mjil", basis, basis) + 1e-9 * np.eye(3)
    rhs = np.einsum("mjki,mjk->mji", basis, pr)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    cnt = np.maximum(win.sum(axis=2), 1)
    rss = (np.sum(pr**2, axis=2) - np.sum(coef * rhs, axis=2)) / cnt
    rss = np.where(coef[..., 0] < 0, rss, np.inf)  # the membrane must be a dip
    pos, _, interior = parabolic_min(rss)
    return radii + (pos - n_j) * step, interior


# --------------------------------------------------------------------------- radial filters


def leaflet_sigma_nm(voxel_size_nm: float) -> float:
    """Gaussian width (nm) of one leaflet as it appears in the tomogram: a 0.5 nm head group
    blurred by the reconstruction (0.6 voxel)."""
    return float(np.hypot(LEAFLET_SIGMA_NM, LEAFLET_BLUR_VOXELS * voxel_size_nm))


def leaflet_offset_nm(thickness_nm: float) -> float:
    """Distance of each leaflet's head-group peak from the midline: the outer edges of the two
    leaflets (peak + 1.3 sigma of 0.5 nm) span ``thickness_nm``."""
    return max(thickness_nm / 2 - 0.65, 0.6)


def filter_profiles(
    prof: np.ndarray, step_nm: float, thickness_nm: float, smooth_nm: float, mode: str
) -> np.ndarray:
    """Filter radial profiles (last axis, spacing ``step_nm``) so the membrane is one minimum
    at its midline.

    ``mode="gaussian"``: NaN-aware Gaussian of ``smooth_nm`` (merges the two leaflets of a
    bilayer the reconstruction barely resolves). ``mode="bilayer"``: NaN-aware correlation
    with a matched two-leaflet kernel (two Gaussians of width ``smooth_nm`` at ±
    :func:`leaflet_offset_nm`): for a resolved thick bilayer the response is deepest at the
    midline (both leaflets), half as deep one leaflet separation further out. Both kernels
    are symmetric, so a symmetric membrane's midline does not move.
    """
    if mode == "gaussian":
        return smooth_rows(prof, smooth_nm / step_nm)
    if mode != "bilayer":
        raise ValueError(f"radial filter must be 'gaussian' or 'bilayer', not {mode!r}")
    h = leaflet_offset_nm(thickness_nm) / step_nm
    s = max(smooth_nm / step_nm, 0.5)
    half = int(np.ceil(h + 3 * s))
    x = np.arange(-half, half + 1, dtype=float)
    kern = np.exp(-0.5 * ((x - h) / s) ** 2) + np.exp(-0.5 * ((x + h) / s) ** 2)
    kern /= kern.sum()
    valid = np.isfinite(prof)
    filled = np.where(valid, prof, 0.0)
    num = ndimage.correlate1d(filled, kern, axis=-1, mode="constant")
    den = ndimage.correlate1d(valid.astype(prof.dtype), kern, axis=-1, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (den > 0.2), num / den, np.nan)


# --------------------------------------------------------------------------- thickness


def _pooled_leaflet_misfit(
    prof: np.ndarray, x_nm: np.ndarray, offsets_nm: np.ndarray, sigma_nm: float
) -> np.ndarray:
    """Normalised misfit (m, H) of each profile to the best two-leaflet model per offset.

    Model: ``a G(x - s - h) + b G(x - s + h) + c S(x - s) + d`` (two leaflets of width
    ``sigma_nm``, a lumen step, a constant) within ``|x - s| <= WINDOW_NM``, for midline shifts
    ``s`` within ±``SHIFT_NM``; both leaflets must be dips of comparable depth (the shallower at
    least ``MIN_LEAFLET_RATIO`` of the deeper), so one leaflet cannot sit on the membrane and
    the other in empty cytoplasm. Misfit = residual mean square ÷ the profile's variance in
    the window, minimised over ``s``. Profiles must be complete (no NaN): the basis is shared.
    """
    shifts = np.arange(-SHIFT_NM, SHIFT_NM + 1e-9, 0.25)
    out = np.full((len(prof), len(offsets_nm)), np.inf)
    for s in shifts:
        x = x_nm - s
        win = np.abs(x) <= WINDOW_NM
        xs, pw = x[win], prof[:, win]  # (K,), (m, K)
        cnt = float(win.sum())
        var = np.maximum(pw.var(axis=1), 1e-12)
        ss = (pw**2).sum(axis=1)
        step = 1.0 / (1.0 + np.exp(np.clip(xs / 0.7, -50, 50)))
        h = np.asarray(offsets_nm, float)[:, None]  # (H, 1)
        basis = np.stack(
            [
                np.exp(-0.5 * ((xs[None] - h) / sigma_nm) ** 2),
                np.exp(-0.5 * ((xs[None] + h) / sigma_nm) ** 2),
                np.broadcast_to(step, (len(h), len(xs))),
                np.ones((len(h), len(xs))),
            ],
            axis=2,
        )  # (H, K, 4)
        rhs = np.einsum("mk,hki->hmi", pw, basis)  # (H, m, 4)
        gram = np.einsum("hki,hkj->hij", basis, basis) + 1e-9 * np.eye(4)
        coef = np.linalg.solve(gram[:, None], rhs[..., None])[..., 0]  # (H, m, 4)
        rss = (ss[None] - (coef * rhs).sum(axis=2)) / cnt  # (H, m)
        deep = np.minimum(coef[..., 0], coef[..., 1])
        shallow = np.maximum(coef[..., 0], coef[..., 1])
        ok = (shallow < 0) & (shallow <= MIN_LEAFLET_RATIO * deep)
        out = np.minimum(out, np.where(ok, rss / var[None], np.inf).T)
    return out


PROFILE_BATCH = 256
"""Vesicles whose rays are sampled at once by :func:`estimate_membrane_thickness` (~120 MB)."""


def estimate_membrane_thickness(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    norm: tuple[float, float, float],
    tilt_range_deg: float | None = 60.0,
    tilt_axis: str = "y",
    specimen: SpecimenMask | None = None,
    thickness_grid_nm: tuple[float, float] = (3.5, 8.5),
) -> dict[str, Any]:
    """Bilayer thickness of this tomogram's vesicles, from their own radial profiles.

    Each vesicle's wedge-weighted, spherically averaged profile (0.25 nm steps, ±10 nm about
    its fitted radius) is fitted with two leaflets (:func:`_pooled_leaflet_misfit`; free
    midline, free depths) for every leaflet offset of ``thickness_grid_nm``; the misfits are
    summed over the vesicles (the midline of each is a nuisance parameter) and the thickness
    with the smallest pooled misfit, refined with a parabola, is the estimate. Thickness =
    2 x offset + 1.3 nm (the outer edges of the two head groups).

    Parameters
    ----------
    tomogram, centers_px, radius_nm, voxel_size_nm
        The tomogram and the (fitted) spheres of the confident vesicles.
    norm
        (median, sigma, polarity) of the tomogram (membranes become minima).
    tilt_range_deg, tilt_axis, specimen
        Missing wedge and specimen mask, as in :func:`synapseg.post.spheres.refine_spheres`.
    thickness_grid_nm
        Range of thicknesses considered.

    Returns
    -------
    dict
        ``thickness_nm`` (None when fewer than 3 profiles could be fitted or the minimum lies
        on the edge of the range), ``n_vesicles``, ``misfit`` (pooled, per vesicle, at the
        estimate) and ``grid_nm`` / ``curve`` (the pooled misfit per thickness).
    """
    vs = voxel_size_zyx(voxel_size_nm)
    centers = np.asarray(centers_px, float).reshape(-1, 3)
    radii = np.asarray(radius_nm, float).reshape(-1)
    good = np.isfinite(radii) & np.isfinite(centers).all(axis=1)
    centers, radii = centers[good], radii[good]
    out: dict[str, Any] = {"thickness_nm": None, "n_vesicles": int(len(radii))}
    if len(radii) < 3:
        return out
    dirs = fibonacci_directions(240)
    wdir = 0.3 + 0.7 * wedge_weights(dirs, tilt_range_deg, tilt_axis)
    x_nm = np.arange(-10.0, 10.0 + 1e-9, 0.25)
    r_nm = np.maximum(radii[:, None] + x_nm[None, :], 0.0)
    sph = np.empty((len(radii), len(x_nm)))
    # in batches: the rays of all vesicles at once took 29 GiB for the 66,727 candidates of
    # a 1024×4096×4096 tomogram; each vesicle's profile is its own, so batches change nothing
    for i in range(0, len(radii), PROFILE_BATCH):
        part = slice(i, i + PROFILE_BATCH)
        prof = sample_profiles(tomogram, centers[part], r_nm[part], dirs, vs, norm, specimen)
        valid = np.isfinite(prof)
        wsum = np.einsum("d,mdr->mr", wdir, valid.astype(np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.einsum("d,mdr->mr", wdir, np.where(valid, prof, 0.0)) / wsum
        sph[part] = np.where(wsum > 1e-3, mean, np.nan)
    complete = np.isfinite(sph).mean(axis=1) >= 0.9  # cut by a face or the specimen: skip
    sph = sph[complete]
    if len(sph) < 3:
        return out
    # the few missing samples (a face within 10 nm) take the profile's mean: neutral
    sph = np.where(np.isfinite(sph), sph, np.nanmean(sph, axis=1, keepdims=True))
    lo, hi = thickness_grid_nm
    thick = np.arange(lo, hi + 1e-9, 0.1)
    misfit = _pooled_leaflet_misfit(sph, x_nm, (thick - 1.3) / 2, leaflet_sigma_nm(vs.min()))
    fitted = np.isfinite(misfit).any(axis=1)
    if fitted.sum() < 3:
        return out
    curve = np.where(np.isfinite(misfit[fitted]), misfit[fitted], 1.0).mean(axis=0)
    pos, val, interior = parabolic_min(curve[None, :])
    out.update(
        n_vesicles=int(fitted.sum()),
        grid_nm=[round(float(v), 2) for v in thick],
        curve=[round(float(v), 4) for v in curve],
    )
    if interior[0]:
        out["thickness_nm"] = float(lo + 0.1 * pos[0])
        out["misfit"] = float(val[0])
    return out

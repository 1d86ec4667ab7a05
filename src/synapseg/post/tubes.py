"""Tube sections among vesicle candidates: :func:`tube_scores`.

A sphere fitted to the cross-section of a tube (a microtubule, an ER tubule) has its
"membrane" only around the tube's axis: rays from the center within a cone around either
end of the axis run along the lumen and cross no membrane at the fitted radius. A vesicle
shows its membrane in every direction the tilt series recorded (outside the missing
wedge). The measure compares, per candidate, the membrane dip (the mean of the inner and
outer flanks minus the membrane band, per ray, in noise σ) averaged over two antipodal caps
of rays around a trial axis with the dip averaged over the rays perpendicular to it:

``tube_score = max over axes of 1 - max(dip(cap +a), dip(cap -a)) / dip(equator of a)``

≈ 0 for a vesicle (every cap shows the membrane), ≈ 1 or more for a tube section (both caps
empty). Taking the *stronger* of the two caps makes one-sided losses (a neighbour touching
the vesicle, a cut by the volume face) score low; averaging whole caps of rays (hundreds of
voxels of membrane) gives the SNR single rings lack. Rays under the missing wedge (the
tomogram's own wedge, :func:`synapseg.post.profiles.wedge_weights`) and rays leaving the
volume or the specimen carry no weight; an axis whose caps are mostly unrecorded is not
tried (a tube along the beam hides in the wedge and stays undetected).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.post.parallel import map_ordered
from synapseg.post.profiles import (
    estimate_background,
    fibonacci_directions,
    sample_profiles,
    wedge_weights,
)
from synapseg.specimen.mask import SpecimenMask

__all__ = ["tube_scores", "with_tube_scores"]

log = logging.getLogger(__name__)


def _axes(n_axes: int) -> np.ndarray:
    """``n_axes`` trial axes on the upper half sphere (an axis and its opposite are one)."""
    d = fibonacci_directions(2 * n_axes)
    d = d[(d[:, 0] > 0) | ((d[:, 0] == 0) & (d[:, 1] >= 0))]
    return d[:n_axes]


def _reference(dip: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The tomogram's own directional response: per ray direction, the median over the
    candidates of the dip relative to each candidate's mean recorded dip (the missing wedge
    and the CTF weaken some membrane normals more than others, for every vesicle alike)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nansum(np.nan_to_num(dip) * w, axis=1) / w.sum(axis=1)
        rel = np.where(w > 0.5, dip / mean[:, None], np.nan)[mean > 0]
        ref = np.nanmedian(rel, axis=0) if len(rel) >= 8 else np.ones(dip.shape[1])
    return np.clip(np.nan_to_num(ref, nan=1.0), 0.25, None)


def tube_scores(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    membrane_thickness_nm: float = 4.5,
    tilt_range_deg: float | None = 60.0,
    tilt_axis: str = "y",
    polarity: int = 1,
    background: tuple[float, float] | None = None,
    specimen: SpecimenMask | None = None,
    n_directions: int = 960,
    n_axes: int = 64,
    cap_deg: float = 35.0,
    equator_deg: float = 25.0,
    min_cap_weight: float = 0.3,
    reference: bool = True,
    min_z: float = 8.0,
    chunk: int = 128,
) -> np.ndarray:
    """How much each fitted sphere looks like the cross-section of a tube (see module doc).

    Parameters
    ----------
    tomogram
        (z, y, x) array (a memmap is sampled in place).
    centers_px
        (n, 3) sphere centers in voxels (zyx).
    radius_nm
        (n,) bilayer-midline radii (nm).
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    membrane_thickness_nm
        Bilayer thickness: the membrane band is ±½ of it around the radius, the flanks
        1-2 thicknesses inside and outside.
    tilt_range_deg, tilt_axis
        The tomogram's missing wedge (as for :func:`synapseg.post.spheres.refine_spheres`).
    polarity
        +1 when densities are dark, -1 for inverted contrast.
    background
        (median, sigma) of the tomogram; estimated when None.
    specimen
        Specimen mask: rays leaving it carry no weight.
    n_directions, n_axes
        Ray directions (Fibonacci) and trial axes (half sphere).
    cap_deg
        Half-angle of the two caps around a trial axis.
    equator_deg
        Half-width of the equatorial band of rays (angle from the plane perpendicular to the
        axis) that gives the reference dip.
    min_cap_weight
        An axis is tried only where each cap keeps at least this fraction of its rays'
        weight (recorded, inside the volume).
    chunk
        Candidates sampled together (memory: chunk x n_directions x samples floats).

    Returns
    -------
    numpy.ndarray
        (n,) ``tube_score``: ≈ 0 for a vesicle, ≈ 1 for a tube section; NaN where no axis
        could be tried or the equatorial dip is not positive (no membrane to compare with).
    """
    vs = voxel_size_zyx(voxel_size_nm)
    centers = np.asarray(centers_px, float).reshape(-1, 3)
    radii = np.asarray(radius_nm, float).reshape(-1)
    n = len(centers)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    if background is None:
        background = estimate_background(tomogram, specimen=specimen)
    norm = (float(background[0]), float(background[1]), float(np.sign(polarity) or 1))
    t = float(membrane_thickness_nm)
    dirs = fibonacci_directions(n_directions)
    wdir = wedge_weights(dirs, tilt_range_deg, tilt_axis)
    axes = _axes(n_axes)
    cosang = axes @ dirs.T  # (a, d)
    cap_pos = (cosang >= np.cos(np.radians(cap_deg))).astype(np.float32)
    cap_neg = (cosang <= -np.cos(np.radians(cap_deg))).astype(np.float32)
    equator = (np.abs(cosang) <= np.sin(np.radians(equator_deg))).astype(np.float32)
    cap_full = (cap_pos * wdir[None, :]).sum(axis=1)  # recorded weight of a whole cap
    step = 0.5 * float(vs.min())
    offs = np.arange(-2.0 * t, 2.0 * t + 0.5 * step, step)
    memb = np.abs(offs) <= 0.5 * t
    inner = (offs >= -2.0 * t) & (offs <= -1.0 * t)
    outer = (offs >= 1.0 * t) & (offs <= 2.0 * t)

    def chunk_dips(s: int) -> np.ndarray:
        c, r = centers[s : s + chunk], radii[s : s + chunk]
        r_nm = np.maximum(r[:, None] + offs[None, :], 0.0)
        prof = sample_profiles(tomogram, c, r_nm, dirs, vs, norm, specimen)  # (m, d, k)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # rays wholly outside: NaN
            flank = np.nanmean(prof[..., inner], -1) + np.nanmean(prof[..., outer], -1)
            return 0.5 * flank - np.nanmean(prof[..., memb], -1)

    # in threads, as the sphere fit samples its rays
    dip = np.concatenate(map_ordered(chunk_dips, range(0, n, chunk)))
    w = np.where(np.isfinite(dip), wdir[None, :], 0.0)
    if reference:
        dip = dip / _reference(dip, w)[None, :]
    dw = np.nan_to_num(dip) * w
    with np.errstate(invalid="ignore", divide="ignore"):
        w_pos, w_neg, w_eq = w @ cap_pos.T, w @ cap_neg.T, w @ equator.T  # (n, a)
        d_pos, d_neg = (dw @ cap_pos.T) / w_pos, (dw @ cap_neg.T) / w_neg
        d_eq = (dw @ equator.T) / w_eq
        d_cap = np.maximum(d_pos, d_neg)
        score = 1.0 - d_cap / d_eq
        # noise σ of a band mean ≈ 1/sqrt(voxels in it): the recorded area of the caps and
        # the equator x the band thickness; dip = membrane - mean of two flanks: 1.5 / N
        per_ray = 4 * np.pi * radii[:, None] ** 2 / len(dirs) * t / float(np.prod(vs))
        se = np.sqrt(1.5 / (np.minimum(w_pos, w_neg) * per_ray) + 1.5 / (w_eq * per_ray))
        z = (d_eq - d_cap) / se
    full = np.maximum(cap_full, 1e-9)[None, :]
    ok = (w_pos >= min_cap_weight * full) & (w_neg >= min_cap_weight * full)
    ok &= (w_eq > 0) & (d_eq > 0) & np.isfinite(score)
    best = np.where(ok & (z >= min_z), score, -np.inf).max(axis=1)
    out[:] = np.where(np.isfinite(best), best, np.where(ok.any(axis=1), 0.0, np.nan))
    return out


def with_tube_scores(
    fits: pd.DataFrame,
    tomogram: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    params: Any,
    thickness_nm: float,
    polarity: int,
    background: tuple[float, float] | None,
    specimen: SpecimenMask | None = None,
) -> pd.DataFrame:
    """The sphere fits of :func:`synapseg.post.vesicles.find_vesicles` with a ``tube_score``
    column (:func:`tube_scores`) when ``params.max_tube_score`` is set (opt-in: a model
    card's ``postprocessing.max_tube_score``); unchanged otherwise. ``params`` is its
    :class:`~synapseg.post.vesicles.PostParams` (the wedge); the QC filter
    (:func:`synapseg.post.filters.qc_filter`) rejects scores above ``max_tube_score`` as
    ``tube section`` and then asks the vesicle-free gate ``min_best_score`` again."""
    if getattr(params, "max_tube_score", None) is None or len(fits) == 0:
        return fits
    centers = fits[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    radius = fits["radius_nm"].to_numpy(float)
    ok = np.isfinite(radius) & np.all(np.isfinite(centers), axis=1)
    out = np.full(len(fits), np.nan)
    out[ok] = tube_scores(
        tomogram,
        centers[ok],
        radius[ok],
        voxel_size_nm,
        membrane_thickness_nm=thickness_nm,
        tilt_range_deg=params.tilt_range_deg,
        tilt_axis=params.tilt_axis,
        polarity=polarity,
        background=background,
        specimen=specimen,
    )
    return fits.assign(tube_score=out)

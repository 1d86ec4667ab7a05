"""Vesicle z-centers from mirror symmetry, for narrow tilt ranges.

Under a narrow missing wedge (±40-45°) the radial-profile sphere fit of
:mod:`synapseg.post.spheres` sees only membrane normals within ±α of the x-y plane, and its
z-center rests on the few oblique ones: on our simulator its median |dz| is 0.44-0.54 nm at
±40° against 0.20 nm at ±70° (docs/postprocessing.md, "Centers under domain shift").

A sphere is mirror-symmetric about the plane ``z = z_c`` through its center, and so is its
reconstruction: a z flip maps a single-axis (and a dual-axis) wedge onto itself, so the
wedge's smearing and lost caps are symmetric too. So the density ``f`` around the vesicle
(within a soft ball of radius ``R + pad``) satisfies ``f(z_c + u) = f(z_c - u)``, and its
autoconvolution along z, summed over the other axes, ``C(s) = sum f(u) f(s - u)``, peaks at
``s = 2 z_c``. This uses every voxel of the vesicle, including the smeared arcs the profile fit
cannot use. It is not used alone: :func:`mirror_z_centers` returns NaN when the ball leaves the
volume or the specimen (a cut vesicle is not symmetric), and the caller blends it with the fit
(:class:`synapseg.post.spheres.SphereParams` ``mirror_z_*``). It fails where the surroundings
are not symmetric (dense protein, vacuum nearby), which is why it is only blended in for narrow
tilt ranges and only when it agrees with the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.specimen.mask import SpecimenMask


def mirror_z_centers(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    norm: tuple[float, float, float] = (0.0, 1.0, 1.0),
    pad_nm: float = 4.5,
    softness_nm: float = 2.25,
    n_iter: int = 3,
    smooth_nm: float = 1.0,
    specimen: SpecimenMask | None = None,
) -> np.ndarray:
    """z-center (input voxels) of each vesicle from the mirror symmetry of its density.

    Parameters
    ----------
    tomogram
        (z, y, x) array (numpy array or memmap; only crops around the vesicles are read).
    centers_px
        (n, 3) starting centers (zyx, input voxels); y and x are kept.
    radius_nm
        (n,) bilayer-midline radii (nm).
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    norm
        (median, sigma, polarity) of the tomogram: values become
        ``polarity * (value - median) / sigma`` (the background must be ~0).
    pad_nm, softness_nm
        The ball weighting the density: a logistic edge at ``R + pad_nm`` of width
        ``softness_nm``.
    n_iter
        Re-centring iterations (the ball moves with the estimate).
    smooth_nm
        Gaussian sigma (nm) applied to the crop first (0: none).
    specimen
        Specimen mask: a vesicle whose ball leaves it (or the volume) gets NaN.

    Returns
    -------
    numpy.ndarray
        (n,) z-centers in input voxels; NaN where the estimate is not defined.
    """
    vs = voxel_size_zyx(voxel_size_nm)
    centers = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    radii = np.asarray(radius_nm, dtype=float).reshape(-1)
    med, sigma, sign = norm
    out = np.full(len(centers), np.nan)
    for i, (c0, r) in enumerate(zip(centers, radii)):
        c = c0.copy()
        edge = r + pad_nm
        half = np.ceil((edge + 2 * softness_nm) / vs).astype(int) + 1
        ok = True
        for _ in range(n_iter):
            lo = np.floor(c).astype(int) - half
            hi = np.floor(c).astype(int) + half + 1
            if np.any(lo < 0) or np.any(hi > np.asarray(tomogram.shape)):
                ok = False
                break
            crop = np.asarray(tomogram[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], np.float64)
            if smooth_nm > 0:
                crop = ndimage.gaussian_filter(crop, smooth_nm / vs, mode="nearest")
            grids = np.meshgrid(*[(np.arange(a, b) - cc) * s for a, b, cc, s in
                                  zip(lo, hi, c, vs)], indexing="ij")  # fmt: skip
            d = np.sqrt(grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2)
            if specimen is not None and not specimen.coarse.all():
                inner = d <= edge
                pts = np.stack([g[inner] / s + cc for g, s, cc in zip(grids, vs, c)], axis=1)
                if not specimen.contains_px(pts).all():
                    ok = False
                    break
            w = 1.0 / (1.0 + np.exp(np.clip((d - edge) / softness_nm, -50, 50)))
            f = sign * (crop - med) / sigma * w
            n_z = f.shape[0]
            spec = np.fft.rfft(f, n=2 * n_z, axis=0)
            conv = np.fft.irfft(spec * spec, n=2 * n_z, axis=0).sum(axis=(1, 2))[: 2 * n_z - 1]
            k = int(np.argmax(conv))
            dk = 0.0
            if 0 < k < len(conv) - 1:
                a, b, cc = conv[k - 1], conv[k], conv[k + 1]
                den = a - 2 * b + cc
                dk = float(np.clip(0.5 * (a - cc) / den, -0.5, 0.5)) if den < 0 else 0.0
            z_new = lo[0] + 0.5 * (k + dk)
            if not np.isfinite(z_new) or abs(z_new - c0[0]) * vs[0] > 0.5 * r:
                ok = False
                break
            c[0] = z_new
        if ok:
            out[i] = c[0]
    return out


def blend_weight(
    tilt_range_deg: float | None, full_below_deg: float, none_above_deg: float
) -> float:
    """Weight in [0, 1] of the mirror z-center against the fit's: 1 up to ``full_below_deg``,
    a linear ramp to 0 at ``none_above_deg``, 0 without a wedge."""
    if tilt_range_deg is None or tilt_range_deg >= 90 or none_above_deg <= full_below_deg:
        return 0.0
    return float(np.clip((none_above_deg - tilt_range_deg) / (none_above_deg - full_below_deg),
                         0.0, 1.0))  # fmt: skip


def blend_mirror_z(
    tomogram: np.ndarray,
    fits: dict[str, np.ndarray],
    start_px: np.ndarray,
    voxel_size_nm: np.ndarray,
    norm: tuple[float, float, float],
    params: Any,
    specimen: SpecimenMask | None = None,
) -> None:
    """Blend the mirror z-center into ``fits`` (columns of ``refine_spheres``), in place.

    ``params`` (:class:`synapseg.post.spheres.SphereParams`): the weight is
    ``mirror_z_weight`` x :func:`blend_weight` of the tilt range between ``mirror_z_full_deg``
    and ``mirror_z_none_deg``; a vesicle keeps its fitted z where the mirror estimate is NaN
    or differs by more than ``mirror_z_max_nm``. ``shift_nm`` is updated.
    """
    p = params
    w = p.mirror_z_weight * blend_weight(p.tilt_range_deg, p.mirror_z_full_deg, p.mirror_z_none_deg)
    if w <= 0 or len(fits["center_z_px"]) == 0:
        return
    vs = voxel_size_zyx(voxel_size_nm)
    fitted = np.stack([fits["center_z_px"], fits["center_y_px"], fits["center_x_px"]], axis=1)
    z_m = mirror_z_centers(tomogram, fitted, fits["radius_nm"], vs, norm=norm,
                           pad_nm=p.membrane_thickness_nm, smooth_nm=p.mirror_z_smooth_nm,
                           specimen=specimen)  # fmt: skip
    use = np.abs(z_m - fitted[:, 0]) * vs[0] <= p.mirror_z_max_nm  # False where NaN
    fitted[:, 0] = np.where(use, (1 - w) * fitted[:, 0] + w * z_m, fitted[:, 0])
    fits["center_z_px"] = fitted[:, 0]
    fits["shift_nm"] = np.linalg.norm((fitted - start_px) * vs, axis=1)


__all__ = ["blend_mirror_z", "blend_weight", "mirror_z_centers"]

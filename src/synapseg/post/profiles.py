"""Radial density profiles around vesicle centers: ray directions, missing-wedge weights,
robust background statistics, ray sampling of the tomogram and 1-D profile helpers.

Shared by :mod:`synapseg.post.spheres` and :mod:`synapseg.post.polarity`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.specimen.mask import SpecimenMask


def fibonacci_directions(n: int) -> np.ndarray:
    """Return ``n`` nearly uniform unit vectors on the sphere, shape (n, 3), (z, y, x) order."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    return np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], axis=1)


def wedge_weights(
    directions: np.ndarray,
    tilt_range_deg: float | None = 60.0,
    tilt_axis: str = "y",
    softness_deg: float = 4.0,
) -> np.ndarray:
    """Weight in [0, 1] of membrane normals ``directions`` (n, 3; zyx) under the missing wedge.

    A membrane patch with normal ``n`` is recorded iff ``atan(|n_z| / |n_p|) <= tilt_range``,
    where ``p`` is the in-plane axis perpendicular to the tilt axis (x for a tilt axis along y).
    The step is replaced by a logistic of width ``softness_deg``. ``tilt_axis="dual"`` is a
    dual-axis series (about y and about x, same range): a patch is recorded when either
    series records it (the missing pyramid), so the weight is the larger of the two.
    """
    directions = np.asarray(directions, dtype=float)
    if tilt_range_deg is None or tilt_range_deg >= 90:
        return np.ones(len(directions))
    if tilt_axis == "dual":
        return np.maximum(
            wedge_weights(directions, tilt_range_deg, "y", softness_deg),
            wedge_weights(directions, tilt_range_deg, "x", softness_deg),
        )
    if tilt_axis not in ("y", "x"):
        raise ValueError(f"tilt_axis must be 'y', 'x' or 'dual', not {tilt_axis!r}")
    perp = directions[:, 2] if tilt_axis == "y" else directions[:, 1]
    theta = np.degrees(np.arctan2(np.abs(directions[:, 0]), np.abs(perp)))
    arg = np.clip((theta - tilt_range_deg) / max(softness_deg, 1e-6), -50, 50)
    return 1.0 / (1.0 + np.exp(arg))


def estimate_background(
    tomogram: np.ndarray,
    max_samples: int = 2_000_000,
    seed: int = 0,
    specimen: SpecimenMask | None = None,
) -> tuple[float, float]:
    """Robust (median, sigma) of the tomogram's grey values from a strided subsample.

    Reads at most ~``max_samples`` voxels from evenly spaced z-sections (memmap friendly);
    sigma is 1.4826 x the median absolute deviation (falls back to the std when it is 0).
    With a ``specimen`` mask (:func:`synapseg.specimen.mask.specimen_mask`) the sections
    are spread over the specimen's z-range and only specimen voxels count, so vacuum/ice
    slabs and gold do not shift the background.
    """
    nz, ny, nx = tomogram.shape
    z_lo, z_hi = 0, nz
    if specimen is not None:
        z_lo, z_hi = (int(v) for v in specimen.facts.get("specimen_z_range_px", (0, nz)))
        z_lo, z_hi = min(max(z_lo, 0), nz - 1), max(min(z_hi, nz), z_lo + 1)
    n_sec = int(min(z_hi - z_lo, 16))
    zs = np.unique(np.linspace(z_lo, z_hi - 1, n_sec).round().astype(int))
    per_sec = max(1, max_samples // len(zs))
    stride = max(1, int(np.sqrt(ny * nx / per_sec)))
    rng = np.random.default_rng(seed)
    oy, ox = rng.integers(0, stride, size=2)
    values = np.stack(
        [np.asarray(tomogram[z, oy::stride, ox::stride], dtype=np.float64) for z in zs]
    )
    if specimen is not None:
        keep = specimen.sample_grid((zs, np.arange(oy, ny, stride), np.arange(ox, nx, stride)))
        if keep.sum() >= 1000:
            values = values[keep]
    values = values.ravel()
    values = values[np.isfinite(values)]
    med = float(np.median(values))
    sigma = float(1.4826 * np.median(np.abs(values - med)))
    if not sigma > 0:
        sigma = float(values.std()) or 1.0
    return med, sigma


def sample_profiles(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radii_nm: np.ndarray,
    directions: np.ndarray,
    voxel_size_nm: Sequence[float],
    norm: tuple[float, float, float] = (0.0, 1.0, 1.0),
    specimen: SpecimenMask | None = None,
) -> np.ndarray:
    """Sample the tomogram along rays: returns (n, n_dir, n_r) float32, NaN outside the volume
    (and outside the ``specimen`` mask when one is given: a vesicle cut by the lamella
    surface is fitted on its remaining part, as one cut by the volume's face).

    ``radii_nm`` is (n, n_r): the sample radii of each vesicle. ``norm`` = (median, sigma,
    polarity): values become ``polarity * (value - median) / sigma``. A numpy array or memmap
    is sampled in place; any other array-like (zarr) is read only within the bounding box of
    the rays (callers sort vesicles along z so that chunks stay local).
    """
    vs = voxel_size_zyx(voxel_size_nm)
    centers_px = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    n, n_r = radii_nm.shape
    # (3, n, d, r) sample positions in voxels
    coords = np.empty((3, n, len(directions), n_r))
    for i in range(3):
        np.multiply(directions[None, :, i, None], radii_nm[:, None, :] / vs[i], out=coords[i])
        coords[i] += centers_px[:, i, None, None]
    coords = coords.reshape(3, -1)
    outside_specimen = None
    if specimen is not None and not specimen.coarse.all():
        outside_specimen = ~specimen.contains_px(coords.T)
    if isinstance(tomogram, np.ndarray):  # ndarray or memmap: sampled in place
        source = tomogram
    else:  # e.g. a zarr array: read only the bounding box of these rays
        shape = np.asarray(tomogram.shape)
        finite = np.isfinite(coords).all(axis=0)
        lo = np.zeros(3, int)
        hi = np.zeros(3, int)
        if finite.any():
            lo = np.clip(np.floor(coords[:, finite].min(axis=1)).astype(int), 0, shape - 1)
            hi = np.clip(np.floor(coords[:, finite].max(axis=1)).astype(int) + 2, lo + 1, shape)
        source = np.asarray(tomogram[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
        coords = coords - lo[:, None]
        # samples outside the crop but inside the volume cannot occur (the crop holds them all)
        outside = np.any((coords < -1) | (coords > (hi - lo)[:, None]), axis=0)
        coords[:, outside] = -10.0  # -> cval (NaN), as outside the volume
    out = ndimage.map_coordinates(
        source, coords, order=1, mode="constant", cval=np.nan, output=np.float32
    )
    if outside_specimen is not None:
        out[outside_specimen] = np.nan
    med, sigma, sign = norm
    out -= np.float32(med)
    out *= np.float32(sign / sigma)
    return out.reshape(n, len(directions), n_r)


def smooth_rows(prof: np.ndarray, sigma: float) -> np.ndarray:
    """NaN-aware Gaussian smoothing along the last axis (normalised convolution)."""
    valid = np.isfinite(prof)
    num = ndimage.gaussian_filter1d(np.where(valid, prof, 0.0), sigma, axis=-1, mode="constant")
    den = ndimage.gaussian_filter1d(valid.astype(prof.dtype), sigma, axis=-1, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (den > 0.2), num / den, np.nan)


def parabolic_min(prof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index (float) and value of the minimum of each row of ``prof`` (m, k), interior only.

    Returns (position, value, interior_flag); rows whose minimum lies on an end are flagged.
    """
    m, k = prof.shape
    filled = np.where(np.isfinite(prof), prof, np.inf)
    idx = np.argmin(filled, axis=1)
    interior = (idx > 0) & (idx < k - 1) & np.isfinite(filled[np.arange(m), idx])
    i = np.clip(idx, 1, k - 2)
    rows = np.arange(m)
    a, b, c = filled[rows, i - 1], filled[rows, i], filled[rows, i + 1]
    interior &= np.isfinite(a) & np.isfinite(c)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        denom = a - 2 * b + c
        delta = np.where((denom > 0) & np.isfinite(denom), 0.5 * (a - c) / denom, 0.0)
        delta = np.clip(np.nan_to_num(delta), -0.5, 0.5)
        value = np.where(interior, b - 0.25 * (a - c) * delta, np.nan)
    pos = np.where(interior, i + delta, idx.astype(float))
    return pos, value, interior


def pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    cnt = np.maximum(mask.sum(axis=1), 1)
    xm = np.where(mask, x, 0).sum(axis=1) / cnt
    ym = np.where(mask, y, 0).sum(axis=1) / cnt
    xd = np.where(mask, x - xm[:, None], 0)
    yd = np.where(mask, y - ym[:, None], 0)
    den = np.sqrt((xd**2).sum(axis=1) * (yd**2).sum(axis=1))
    return np.where(den > 0, (xd * yd).sum(axis=1) / np.where(den > 0, den, 1), 0.0)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = mask & np.isfinite(values)
    cnt = mask.sum(axis=1)
    total = np.where(mask, values, 0.0).sum(axis=1)
    return np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)

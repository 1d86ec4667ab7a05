"""Small phantoms for the post-processing tests (independent of synapseg.simulate).

``make_phantom`` paints bilayer shells (Gaussian midline profile, slightly dense lumen), applies
a single-axis missing-wedge Fourier mask (tilt axis y, ±tilt_range) to signal and noise, and
scales the signal so that the 2-voxel membrane shell is ``contrast`` noise σ darker than the
background per voxel (the calibration of ../shared/reference/README.md).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

VOXEL_NM = 1.68


def wedge_filter(vol: np.ndarray, tilt_range_deg: float = 60.0) -> np.ndarray:
    """Zero Fourier components with |kz| > tan(alpha) |kx| (tilt axis y)."""
    kz = np.fft.fftfreq(vol.shape[0])[:, None, None]
    kx = np.fft.rfftfreq(vol.shape[2])[None, None, :]
    keep = np.abs(kz) <= np.tan(np.radians(tilt_range_deg)) * np.abs(kx) + 1e-12
    keep = np.broadcast_to(keep, (vol.shape[0], vol.shape[1], kx.shape[2])).copy()
    keep[0, :, 0] = True
    return np.fft.irfftn(np.fft.rfftn(vol) * keep, s=vol.shape, axes=(0, 1, 2)).astype(np.float32)


def shells(shape, centers_px, radii_nm, thickness_nm=4.5, lumen=0.15, blob=None):
    """Dark bilayer shells (value -1 at the midline) with a lumen of -``lumen``.

    ``blob``: optional boolean per vesicle; True paints a solid dark ball instead (an outlier).
    """
    vol = np.zeros(shape, np.float32)
    s = thickness_nm / 2.355 / VOXEL_NM
    for i, (c, r_nm) in enumerate(zip(centers_px, radii_nm)):
        r = r_nm / VOXEL_NM
        h = int(np.ceil(r + 4 * s + 2))
        lo = np.maximum(np.floor(c).astype(int) - h, 0)
        hi = np.minimum(np.floor(c).astype(int) + h + 1, shape)
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        if blob is not None and blob[i]:
            val = -1.0 / (1 + np.exp((d - r) / 0.5))
        else:
            val = -np.exp(-0.5 * ((d - r) / s) ** 2) - lumen / (1 + np.exp((d - r) / 0.5))
        sub = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.minimum(sub, val, out=sub)
    return vol


def make_phantom(
    shape,
    centers_px,
    radii_nm,
    *,
    contrast: float = 0.5,
    tilt_range_deg: float = 60.0,
    seed: int = 0,
    blob=None,
):
    centers_px = np.asarray(centers_px, float)
    radii_nm = np.asarray(radii_nm, float)
    sig = wedge_filter(shells(shape, centers_px, radii_nm, blob=blob), tilt_range_deg)
    rng = np.random.default_rng(seed)
    noise = wedge_filter(rng.standard_normal(shape).astype(np.float32), tilt_range_deg)
    noise /= noise.std()
    # calibrate: 2-voxel shell around the midline vs background far from vesicles
    zz, yy, xx = np.indices(shape, sparse=True)
    dmin = np.full(shape, np.inf, np.float32)
    shell = np.zeros(shape, bool)
    for c, r_nm in zip(centers_px, radii_nm):
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) - r_nm / VOXEL_NM
        shell |= np.abs(d) <= 1.0
        dmin = np.minimum(dmin, d)
    bg = dmin > 6
    scale = contrast / (sig[bg].mean() - sig[shell].mean())
    return (sig * scale + noise).astype(np.float32)


def packed_centers(shape, n, radius_nm, gap_nm=(1.0, 4.0), seed=0, margin_px=3, tries=20000):
    """Greedy crowded packing: each new ball touches an existing one with a 1-4 nm gap."""
    rng = np.random.default_rng(seed)
    r_px = np.asarray(radius_nm, float) / VOXEL_NM  # outer radii
    shape = np.asarray(shape)
    centers = [shape / 2.0]
    radii = [r_px[0]]
    k = 1
    for _ in range(tries):
        if k >= n:
            break
        j = rng.integers(len(centers))
        v = rng.standard_normal(3)
        v /= np.linalg.norm(v)
        gap = rng.uniform(*gap_nm) / VOXEL_NM
        c = centers[j] + v * (radii[j] + r_px[k] + gap)
        if np.any(c < r_px[k] + margin_px) or np.any(c > shape - 1 - r_px[k] - margin_px):
            continue
        d = np.linalg.norm(np.asarray(centers) - c, axis=1)
        if np.all(d >= np.asarray(radii) + r_px[k] + gap_nm[0] / VOXEL_NM - 1e-6):
            centers.append(c)
            radii.append(r_px[k])
            k += 1
    return np.asarray(centers), np.asarray(radii) * VOXEL_NM


def blurred_balls(shape, centers_px, outer_radii_nm, sigma_px=1.5):
    """A 'realistic' probability map: filled balls, Gaussian-blurred (neighbours bridge)."""
    zz, yy, xx = np.indices(shape, sparse=True)
    vol = np.zeros(shape, np.float32)
    for c, r in zip(centers_px, outer_radii_nm):
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        vol[d <= r / VOXEL_NM] = 1.0
    return np.clip(ndimage.gaussian_filter(vol, sigma_px), 0, 1)


@pytest.fixture(scope="session")
def phantom():
    """A 64x112x112 phantom with 8 separated vesicles (midline radii 16-24 nm)."""
    rng = np.random.default_rng(1)
    shape = (64, 112, 112)
    centers, radii = [], []
    while len(centers) < 8:
        r = rng.uniform(16, 24)
        c = rng.uniform([r / VOXEL_NM + 4] * 3, np.asarray(shape) - r / VOXEL_NM - 5)
        if all(np.linalg.norm(c - c2) * VOXEL_NM > r + r2 + 6 for c2, r2 in zip(centers, radii)):
            centers.append(c)
            radii.append(r)
    centers, radii = np.asarray(centers), np.asarray(radii)
    tomo = make_phantom(shape, centers, radii, seed=2)
    return tomo, centers, radii


@pytest.fixture(scope="session")
def kit():
    """The phantom helpers of this file (test modules cannot import conftest under importlib)."""
    return SimpleNamespace(
        VOXEL_NM=VOXEL_NM,
        make_phantom=make_phantom,
        packed_centers=packed_centers,
        blurred_balls=blurred_balls,
        wedge_filter=wedge_filter,
        shells=shells,
    )

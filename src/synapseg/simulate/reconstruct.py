"""Single-axis tomography geometry: projection and weighted back-projection.

The tilt axis is **y** (the common convention: IMOD tilts about the image y axis), so
every xz slice is an independent 2D problem and all y rows share one sparse matrix:
projecting is ``P @ V`` with ``V`` the volume as a (z·x, y) matrix, back-projecting is
``B @ Q``. ``P`` is Joseph's ray-driven projector (linear interpolation along x in each z
plane, weighted by the path length 1/cos θ); ``B`` is the voxel-driven linear
back-projector used by weighted back-projection (WBP). The detector row u has as many
pixels as x; the tilt angle θ rotates the beam from z towards +x.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

Array = np.ndarray


def _centres(n: int) -> Array:
    return np.arange(n, dtype=np.float64) - (n - 1) / 2


def projection_matrix(nz: int, nx: int, angles_deg: Array) -> sp.csr_matrix:
    """Sparse (n_tilts·nx, nz·nx) Joseph projector for tilts about y."""
    th = np.deg2rad(np.asarray(angles_deg, float))[:, None, None]  # (t, 1, 1)
    u = _centres(nx)[None, :, None]  # detector (t, u, z)
    z = _centres(nz)[None, None, :]
    cos, sin = np.cos(th), np.sin(th)
    x = (u - z * sin) / cos + (nx - 1) / 2
    x0 = np.floor(x)
    w1 = x - x0
    x0 = x0.astype(np.int64)
    cols, vals = [], []
    zi = np.arange(nz, dtype=np.int64)[None, None, :]
    for xi, w in ((x0, 1 - w1), (x0 + 1, w1)):
        ok = (xi >= 0) & (xi < nx)
        cols.append(np.where(ok, zi * nx + np.clip(xi, 0, nx - 1), 0))
        vals.append(np.where(ok, w / cos, 0.0))
    cols_a = np.stack(cols, axis=-1).reshape(-1)
    vals_a = np.stack(vals, axis=-1).reshape(-1).astype(np.float32)
    per_row = 2 * nz
    n_rows = len(angles_deg) * nx
    indptr = np.arange(0, n_rows * per_row + 1, per_row, dtype=np.int64)
    return sp.csr_matrix((vals_a, cols_a, indptr), shape=(n_rows, nz * nx))


def backprojection_matrix(nz: int, nx: int, angles_deg: Array) -> sp.csr_matrix:
    """Sparse (nz·nx, n_tilts·nx) voxel-driven linear back-projector."""
    th = np.deg2rad(np.asarray(angles_deg, float))[None, None, :]  # (z, x, t)
    z = _centres(nz)[:, None, None]
    x = _centres(nx)[None, :, None]
    u = x * np.cos(th) + z * np.sin(th) + (nx - 1) / 2
    u0 = np.floor(u)
    w1 = u - u0
    u0 = u0.astype(np.int64)
    ti = np.arange(len(angles_deg), dtype=np.int64)[None, None, :]
    cols, vals = [], []
    for ui, w in ((u0, 1 - w1), (u0 + 1, w1)):
        ok = (ui >= 0) & (ui < nx)
        cols.append(np.where(ok, ti * nx + np.clip(ui, 0, nx - 1), 0))
        vals.append(np.where(ok, w, 0.0))
    cols_a = np.stack(cols, axis=-1).reshape(-1)
    vals_a = np.stack(vals, axis=-1).reshape(-1).astype(np.float32)
    per_row = 2 * len(angles_deg)
    n_rows = nz * nx
    indptr = np.arange(0, n_rows * per_row + 1, per_row, dtype=np.int64)
    return sp.csr_matrix((vals_a, cols_a, indptr), shape=(n_rows, len(angles_deg) * nx))


def project(volume: Array, angles_deg: Array) -> Array:
    """Line integrals through a (z, y, x) volume for tilts about y: (n_tilts, y, u) float32."""
    nz, ny, nx = volume.shape
    mat = projection_matrix(nz, nx, angles_deg)
    flat = np.ascontiguousarray(np.asarray(volume, np.float32).transpose(0, 2, 1)).reshape(-1, ny)
    proj = mat @ flat  # (t·u, y)
    return np.ascontiguousarray(proj.reshape(len(angles_deg), nx, ny).transpose(0, 2, 1))


def radial_rolloff(k: Array, cutoff: float, falloff: float) -> Array:
    """1 up to ``cutoff`` (cycles/px), then a Gaussian fall-off of width ``falloff``."""
    return np.where(k > cutoff, np.exp(-0.5 * ((k - cutoff) / falloff) ** 2), 1.0)


def wbp_filter(
    n: int, angles_deg: Array, kind: str = "ramp", sirt_iterations: int = 10
) -> tuple[Array, int]:
    """1D frequency weights along u (rfft of length ``n_pad``) and ``n_pad``.

    ``ramp``: |k|. ``sirt``: the SIRT-like filter of Zeng (2012),
    |k|·(1 − (1 − α/|k|)^N), which mimics N Landweber iterations; α = 1/n_tilts (a
    heuristic step), so frequencies above ≈ N/n_tilts cycles/px are damped.
    """
    n_pad = int(2 ** np.ceil(np.log2(2 * n)))
    k = np.fft.rfftfreq(n_pad)
    w = np.abs(k)
    w[0] = 0.25 / n_pad  # DC of a discrete ramp (avoids losing the mean entirely)
    if kind == "sirt":
        alpha = 1.0 / max(len(angles_deg), 1)
        ratio = np.minimum(alpha / np.maximum(np.abs(k), 1e-12), 1.0)
        w = w * (1 - (1 - ratio) ** int(sirt_iterations))
    return w.astype(np.float32), n_pad


def filter_projections(
    projections: Array,
    weights: Array,
    n_pad: int,
    radial_cutoff: float | None = None,
    radial_falloff: float = 0.035,
) -> Array:
    """Apply 1D weights along u (zero-padded to ``n_pad``) and an optional 2D radial roll-off.

    The roll-off acts on the radius of (k_y, k_u), so the noise of the reconstruction is
    low-passed along y as well as x (as the interpolation of a real tilt-series alignment
    and IMOD's radial filter do together).
    """
    n = projections.shape[-1]
    spec = np.fft.rfft(projections, n=n_pad, axis=-1)
    spec *= weights
    if radial_cutoff is not None:
        ky = np.fft.fftfreq(projections.shape[-2])[:, None]
        ku = np.fft.rfftfreq(n_pad)[None, :]
        roll = radial_rolloff(np.sqrt(ky**2 + ku**2), radial_cutoff, radial_falloff)
        spec = np.fft.fft(spec, axis=-2)
        spec *= roll
        spec = np.fft.ifft(spec, axis=-2)
    return np.fft.irfft(spec, n=n_pad, axis=-1)[..., :n].astype(np.float32)


def backproject(projections: Array, angles_deg: Array, nz: int) -> Array:
    """Back-project (n_tilts, y, u) projections into a (nz, y, x) volume (x = u size)."""
    nt, ny, nx = projections.shape
    mat = backprojection_matrix(nz, nx, angles_deg)
    flat = np.ascontiguousarray(projections.transpose(0, 2, 1)).reshape(nt * nx, ny)
    vol = mat @ flat  # (z·x, y)
    return np.ascontiguousarray(vol.reshape(nz, nx, ny).transpose(0, 2, 1))


def angular_weights(angles_deg: Array) -> Array:
    """Each tilt's share of the angular range (radians), for unevenly spaced tilts."""
    a = np.deg2rad(np.sort(np.asarray(angles_deg, float)))
    order = np.argsort(np.asarray(angles_deg, float))
    if len(a) == 1:
        return np.ones(1)
    edges = np.concatenate(
        [[a[0] - (a[1] - a[0]) / 2], (a[1:] + a[:-1]) / 2, [a[-1] + (a[-1] - a[-2]) / 2]]
    )
    w = np.empty(len(a))
    w[order] = np.diff(edges)
    return w


def weighted_backprojection(
    projections: Array,
    angles_deg: Array,
    nz: int,
    kind: str = "ramp",
    radial_cutoff: float = 0.35,
    radial_falloff: float = 0.035,
    sirt_iterations: int = 10,
) -> Array:
    """Reconstruct (nz, y, x) from (n_tilts, y, u) projections by filtered back-projection."""
    weights, n_pad = wbp_filter(projections.shape[-1], angles_deg, kind, sirt_iterations)
    filtered = filter_projections(projections, weights, n_pad, radial_cutoff, radial_falloff)
    filtered *= angular_weights(angles_deg).astype(np.float32)[:, None, None]
    return backproject(filtered, angles_deg, nz)

"""Phantom building blocks: signed-distance shapes, radial density profiles, and rendering.

Every membrane-bound object is a *shape* (a signed distance in nm, negative inside) plus a
*profile* (density as a function of that distance: Gaussian lipid leaflets and step-like
compartments). Rendering evaluates the profile on the output grid; voxels where the
profile is not constant are super-sampled at ``oversample``³ sub-voxel centres and
averaged, which is exactly rendering at ``voxel_size / oversample`` and binning, but only
where it matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
TABLE_STEP_NM = 0.01


# --------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    """Density as a function of signed distance ``d`` (nm, negative inside).

    ``gaussians``: (position_nm, amplitude, sigma_nm) — lipid leaflets and thin shells.
    ``steps``: (d_from, d_to, value) — value where ``d_from <= d < d_to`` (±inf allowed).
    """

    gaussians: list[tuple[float, float, float]] = field(default_factory=list)
    steps: list[tuple[float, float, float]] = field(default_factory=list)

    def exact(self, d: Array) -> Array:
        """The profile from its formula (slow on big arrays; see :meth:`__call__`)."""
        d = np.asarray(d, dtype=np.float64)
        out = np.zeros(d.shape)
        for pos, amp, sigma in self.gaussians:
            out += amp * np.exp(-0.5 * ((d - pos) / sigma) ** 2)
        for lo, hi, value in self.steps:
            out += value * ((d >= lo) & (d < hi))
        return out

    def __call__(self, d: Array) -> Array:
        """The profile, interpolated from a 0.01 nm table (exact outside the support)."""
        if not hasattr(self, "_table"):
            lo, hi = self.support
            grid = np.arange(lo - 0.5, hi + 0.5 + TABLE_STEP_NM, TABLE_STEP_NM)
            self._table = (float(grid[0]), self.exact(grid).astype(np.float32))
        start, table = self._table
        x = (np.asarray(d, dtype=np.float32) - np.float32(start)) * np.float32(1 / TABLE_STEP_NM)
        np.clip(x, 0, len(table) - 1.001, out=x)
        i = x.astype(np.int32)
        x -= i
        lo_v = table[i]
        return lo_v + x * (table[i + 1] - lo_v)

    def edges(self) -> list[tuple[float, float]]:
        """(position, half-width) of every place where the profile changes."""
        out = [(p, 4 * s) for p, _, s in self.gaussians]
        out += [(e, 0.0) for lo, hi, _ in self.steps for e in (lo, hi) if math.isfinite(e)]
        return out

    @property
    def support(self) -> tuple[float, float]:
        """Range of ``d`` outside which the profile is constant."""
        edges = [p - w for p, w in self.edges()] + [p + w for p, w in self.edges()]
        return (min(edges), max(edges)) if edges else (0.0, 0.0)


def bilayer(offset_nm: float = 0.0, thickness_nm: float = 4.5, amplitude: float = 1.0) -> list:
    """Two Gaussian head-group leaflets whose outer edges span ``thickness_nm``."""
    half = max(thickness_nm / 2 - 0.65, 0.6)
    sigma = 0.5
    return [(offset_nm - half, amplitude, sigma), (offset_nm + half, amplitude, sigma)]


# --------------------------------------------------------------------------- shapes


class Shape:
    """A signed distance (nm, negative inside) on broadcastable z, y, x arrays in nm."""

    def __call__(self, z: Array, y: Array, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def bbox_nm(self, pad_nm: float) -> tuple[Array, Array]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Sphere(Shape):
    center_nm: Array
    radius_nm: float

    def __call__(self, z, y, x):
        cz, cy, cx = (float(v) for v in self.center_nm)  # Python floats keep float32 inputs
        return np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) - float(self.radius_nm)

    def bbox_nm(self, pad_nm):
        r = self.radius_nm + pad_nm
        return np.asarray(self.center_nm) - r, np.asarray(self.center_nm) + r


@dataclass
class Ellipsoid(Shape):
    """Ellipsoid with semi-axes ``axes_nm`` along the rows of ``rotation`` (first-order SDF)."""

    center_nm: Array
    axes_nm: Array
    rotation: Array

    def __call__(self, z, y, x):
        c = [float(v) for v in self.center_nm]
        a = [float(v) for v in self.axes_nm]
        rot = np.asarray(self.rotation, float).tolist()
        dz, dy, dx = z - c[0], y - c[1], x - c[2]
        rho2 = 0.0
        grad2 = 0.0
        for i in range(3):
            q = rot[i][0] * dz + rot[i][1] * dy + rot[i][2] * dx
            rho2 = rho2 + (q / a[i]) ** 2
            grad2 = grad2 + (q / a[i] ** 2) ** 2
        rho = np.sqrt(rho2)
        # d = (rho - 1) / |grad rho|, with |grad rho| = sqrt(grad2) / rho.
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (rho - 1) * rho / np.sqrt(grad2)
        return np.where(rho > 1e-6, d, -min(a))

    def bbox_nm(self, pad_nm):
        r = float(np.max(self.axes_nm)) + pad_nm
        return np.asarray(self.center_nm) - r, np.asarray(self.center_nm) + r


@dataclass
class Blob(Shape):
    """An irregular compartment: a sphere whose radius varies smoothly with direction."""

    center_nm: Array
    radius_nm: float
    directions: Array  # (k, 3) unit vectors
    amplitudes: Array  # (k,) relative radius modulation
    frequencies: Array  # (k,)
    phases: Array  # (k,)

    def __call__(self, z, y, x):
        c = [float(v) for v in self.center_nm]
        dz, dy, dx = z - c[0], y - c[1], x - c[2]
        r = np.sqrt(dz**2 + dy**2 + dx**2)
        rs = np.maximum(r, 1e-6)
        mod = 1.0
        modes = zip(
            np.asarray(self.directions, float).tolist(),
            np.asarray(self.amplitudes, float).tolist(),
            np.asarray(self.frequencies, float).tolist(),
            np.asarray(self.phases, float).tolist(),
        )
        for v, a, f, p in modes:
            cos_angle = (v[0] * dz + v[1] * dy + v[2] * dx) / rs
            mod = mod + a * np.cos(f * cos_angle + p)
        return r - float(self.radius_nm) * mod

    def bbox_nm(self, pad_nm):
        r = self.radius_nm * (1 + float(np.sum(np.abs(self.amplitudes)))) + pad_nm
        return np.asarray(self.center_nm) - r, np.asarray(self.center_nm) + r


@dataclass
class CurvedPlane(Shape):
    """A gently curved sheet: ``n·(p - p0) + curvature/2 · |p_perp|²`` (negative on -n side)."""

    point_nm: Array
    normal: Array
    curvature_per_nm: float = 0.0
    extent_lo: Array | None = None
    extent_hi: Array | None = None

    def __call__(self, z, y, x):
        p0 = [float(v) for v in self.point_nm]
        n = [float(v) for v in self.normal]
        dz, dy, dx = z - p0[0], y - p0[1], x - p0[2]
        along = n[0] * dz + n[1] * dy + n[2] * dx
        perp2 = dz**2 + dy**2 + dx**2 - along**2
        return along + 0.5 * float(self.curvature_per_nm) * perp2

    def bbox_nm(self, pad_nm):
        return np.asarray(self.extent_lo, float), np.asarray(self.extent_hi, float)


def random_rotation(rng: np.random.Generator) -> Array:
    """A uniformly random 3×3 rotation matrix (rows are orthonormal axes)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# --------------------------------------------------------------------------- rendering


def box_indices(
    lo_nm: Array, hi_nm: Array, voxel_size_nm: float, shape
) -> tuple[slice, ...] | None:
    """Voxel slices covering the physical box [lo, hi] (nm), clipped to ``shape``; None if empty."""
    lo = np.floor(np.asarray(lo_nm) / voxel_size_nm).astype(int) - 1
    hi = np.ceil(np.asarray(hi_nm) / voxel_size_nm).astype(int) + 2
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def grid_nm(box: tuple[slice, ...], voxel_size_nm: float) -> tuple[Array, Array, Array]:
    """Broadcastable z, y, x coordinates (nm) of the voxel centres in ``box``."""

    def axis(sl: slice) -> Array:
        return (np.arange(sl.start, sl.stop) * voxel_size_nm).astype(np.float32)

    z, y, x = (axis(sl) for sl in box)
    return z[:, None, None], y[None, :, None], x[None, None, :]


def render(
    shape: Shape,
    profile: Profile,
    out_shape: tuple[int, int, int],
    voxel_size_nm: float,
    oversample: int = 2,
    chunk: int = 1_000_000,
) -> tuple[tuple[slice, ...], Array, Array] | None:
    """Render ``profile(shape(p))`` on the output grid with sub-voxel super-sampling.

    Returns
    -------
    (box, values, distance) or None
        ``box``: the voxel slices the object touches; ``values``: float32 density in the
        box (binned from ``oversample``³ sub-samples near the profile's edges);
        ``distance``: the signed distance (nm) at the voxel centres, for labels.
    """
    lo_d, hi_d = profile.support
    pad = max(abs(lo_d), abs(hi_d)) + 2 * voxel_size_nm
    box = box_indices(*shape.bbox_nm(pad), voxel_size_nm, out_shape)
    if box is None:
        return None
    z, y, x = grid_nm(box, voxel_size_nm)
    dist = np.asarray(shape(z, y, x), dtype=np.float32)
    dist = np.broadcast_to(dist, tuple(s.stop - s.start for s in box))
    values = profile(dist)
    half_diag = voxel_size_nm * math.sqrt(3) / 2
    candidates = np.nonzero((dist >= lo_d - half_diag) & (dist <= hi_d + half_diag))
    dc = dist[candidates]
    keep = np.zeros(len(dc), bool)
    for pos, width in profile.edges():
        keep |= np.abs(dc - pos) <= width + half_diag
    near = tuple(c[keep] for c in candidates)
    if oversample > 1 and len(near[0]):
        s = int(oversample)
        off = (((np.arange(s) + 0.5) / s - 0.5) * voxel_size_nm).astype(np.float32)
        oz, oy, ox = (a.ravel() for a in np.meshgrid(off, off, off, indexing="ij"))
        acc = np.empty(len(near[0]), dtype=np.float32)
        for start in range(0, len(near[0]), max(chunk // s**3, 1)):
            sel = slice(start, start + max(chunk // s**3, 1))
            cz = z.ravel()[near[0][sel]][:, None] + oz
            cy = y.ravel()[near[1][sel]][:, None] + oy
            cx = x.ravel()[near[2][sel]][:, None] + ox
            acc[sel] = profile(shape(cz, cy, cx)).mean(axis=1)
        values[near] = acc
    return box, values, dist

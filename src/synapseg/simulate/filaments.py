"""Thin filaments and protein crowding: polyline ground truth and splat rendering.

Filaments (connectors between vesicles, tethers to the plasma membrane, actin) are
polylines. They are rendered by splatting densely sampled centre-line points with
trilinear weights and blurring with a Gaussian whose FWHM is the filament diameter,
so a straight filament gets a Gaussian cross-section of the requested peak density at
sub-voxel precision. Protein crowding uses the same splatting with random points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import ndimage

Array = np.ndarray
FWHM_PER_SIGMA = 2.3548
FILAMENT_COLUMNS = [
    "filament_id",
    "kind",
    "from_vesicle_id",
    "to_vesicle_id",
    "point_index",
    "z_px",
    "y_px",
    "x_px",
    "z_nm",
    "y_nm",
    "x_nm",
    "radius_nm",
]
LEGACY_DIAMETER_NM = 3.5  # connectors/tethers of the legacy model (== SMALL_DIAMETER_NM)
LEGACY_AMPLITUDE = 0.6  # their peak density after the shared blur (lipid head groups = 1)


def splat(volume: Array, points_px: Array, weights: Array) -> None:
    """Add ``weights`` at sub-voxel ``points_px`` (n, 3) with trilinear weights, in place."""
    points_px = np.asarray(points_px, dtype=float).reshape(-1, 3)
    weights = np.asarray(weights, dtype=float).reshape(-1)
    base = np.floor(points_px).astype(int)
    frac = points_px - base
    shape = np.asarray(volume.shape)
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner)
        idx = base + c
        w = weights * np.prod(np.where(c, frac, 1 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        np.add.at(volume, tuple(idx[ok].T), w[ok].astype(volume.dtype))


def sample_polyline(points_nm: Array, step_nm: float) -> Array:
    """Points every ``step_nm`` along a polyline (n, 3), including both ends."""
    points_nm = np.asarray(points_nm, dtype=float)
    seg = np.diff(points_nm, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    if cum[-1] == 0:
        return points_nm[:1]
    t = np.linspace(0, cum[-1], max(int(np.ceil(cum[-1] / step_nm)) + 1, 2))
    return np.stack([np.interp(t, cum, points_nm[:, i]) for i in range(3)], axis=1)


def sigma_px(diameter_nm: float, voxel_size_nm: float) -> float:
    """Gaussian σ (voxels) whose FWHM is ``diameter_nm``."""
    return diameter_nm / FWHM_PER_SIGMA / voxel_size_nm


def splat_tubes(
    volume: Array,
    polylines_nm: list[Array],
    voxel_size_nm: float,
    sigma: float,
    amplitude: float,
) -> None:
    """Splat centre lines so that blurring ``volume`` with ``sigma`` (voxels) gives Gaussian
    tubes of peak density ≈ ``amplitude``, in place."""
    if not polylines_nm:
        return
    step_nm = voxel_size_nm / 4
    pts = np.concatenate([sample_polyline(p, step_nm) for p in polylines_nm])
    # After blurring, a line of linear density L (per voxel) has peak L / (2π σ²).
    weight = amplitude * 2 * np.pi * sigma**2 * (step_nm / voxel_size_nm)
    splat(volume, pts / voxel_size_nm, np.full(len(pts), weight))


def splat_proteins(
    volume: Array,
    voxel_size_nm: float,
    rng: np.random.Generator,
    sigma: float,
    amplitude: float = 1.0,
    density_per_nm3: float = 2e-3,
) -> None:
    """Random globular proteins: Poisson points with exponential masses, in place.

    Blurring with ``sigma`` (voxels) turns each into a Gaussian blob; ``amplitude``
    scales the mean peak density (0.35 × amplitude).
    """
    if amplitude <= 0:
        return
    shape = volume.shape
    n = int(rng.poisson(density_per_nm3 * np.prod(shape) * voxel_size_nm**3))
    points = rng.uniform(0, 1, size=(n, 3)) * (np.asarray(shape) - 1)
    masses = rng.exponential(1.0, size=n)
    # A 3D Gaussian blob of unit mass has peak (2π σ²)^-3/2.
    peak = amplitude * 0.35 * (2 * np.pi * sigma**2) ** 1.5
    splat(volume, points, masses * peak)


def strands(points_nm: Array, radius_nm: float, n: int = 6) -> list[Array]:
    """The centre line plus ``n`` parallel copies on a circle of ``radius_nm`` around it."""
    pts = np.asarray(points_nm, float)
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    ref = np.where(np.abs(tangent[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(tangent, ref)
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
    v = np.cross(tangent, u)
    out = [pts]
    for phi in np.arange(n) * 2 * np.pi / n:
        out.append(pts + radius_nm * (np.cos(phi) * u + np.sin(phi) * v))
    return out


def blur(volume: Array, sigma: float) -> Array:
    """Gaussian blur (voxels), zero outside the volume."""
    return ndimage.gaussian_filter(volume, sigma, mode="constant", truncate=3.0)


def curved_polyline(a_nm: Array, b_nm: Array, rng: np.random.Generator, bend: float = 0.2) -> Array:
    """A gently bent 5-point polyline from ``a`` to ``b`` (quadratic Bézier)."""
    a_nm, b_nm = np.asarray(a_nm, float), np.asarray(b_nm, float)
    d = b_nm - a_nm
    length = np.linalg.norm(d)
    perp = rng.normal(size=3)
    perp -= perp.dot(d) / max(length**2, 1e-9) * d
    perp /= max(np.linalg.norm(perp), 1e-9)
    ctrl = (a_nm + b_nm) / 2 + perp * rng.uniform(-bend, bend) * length
    t = np.linspace(0, 1, 5)[:, None]
    return (1 - t) ** 2 * a_nm + 2 * (1 - t) * t * ctrl + t**2 * b_nm


def random_actin(extent_nm: Array, rng: np.random.Generator, step_nm: float = 5.0) -> Array:
    """A persistent random walk (persistence ≈ µm) crossing the volume, mostly in-plane."""
    extent_nm = np.asarray(extent_nm, float)
    start = rng.uniform(0, 1, 3) * extent_nm
    direction = rng.normal(size=3) * np.array([0.25, 1.0, 1.0])
    direction /= np.linalg.norm(direction)
    n = int(2 * extent_nm.max() / step_nm)
    pts = [start]
    for _ in range(n):
        direction = direction + rng.normal(scale=0.05, size=3)
        direction /= np.linalg.norm(direction)
        pts.append(pts[-1] + step_nm * direction)
    pts_arr = np.asarray(pts)
    pts_arr = np.concatenate([pts_arr[::-1], start + (start - pts_arr[1:])])  # both directions
    inside = np.all((pts_arr >= 0) & (pts_arr <= extent_nm), axis=1)
    if not inside.any():
        return pts_arr[:0]
    idx = np.nonzero(inside)[0]
    return pts_arr[idx[0] : idx[-1] + 1]


def filament_table(polylines: list[dict], voxel_size_nm: float) -> pd.DataFrame:
    """Ground-truth table: one row per polyline point (see ``FILAMENT_COLUMNS``).

    ``radius_nm`` is the filament's radius (half its diameter; actin 3.5 nm, legacy
    connectors and tethers 1.75 nm). Point 0 and the last point are the endpoints: on the
    outer surface of vesicle ``from_vesicle_id`` and on the outer surface of vesicle
    ``to_vesicle_id`` (connectors) or the cytoplasmic face of the plasma membrane
    (tethers, ``to_vesicle_id`` 0).
    """
    rows = []
    for fid, fil in enumerate(polylines, start=1):
        default = 7.0 if fil["kind"] == "actin" else LEGACY_DIAMETER_NM
        radius = float(fil.get("diameter_nm", default)) / 2
        for k, p in enumerate(np.asarray(fil["points_nm"])):
            rows.append(
                (
                    fid,
                    fil["kind"],
                    fil["from_id"],
                    fil["to_id"],
                    k,
                    *(p / voxel_size_nm),
                    *p,
                    radius,
                )
            )
    return pd.DataFrame(rows, columns=FILAMENT_COLUMNS)


def splat_filaments(
    volume: Array, filaments: list[dict], voxel_size_nm: float, sigma: float
) -> None:
    """Splat connectors and tethers (before the shared blur ``sigma``), in place.

    A filament without ``amplitude`` is drawn as before (peak ≈ 0.6 after the blur), all of
    them in one splat so legacy phantoms keep their bytes. One with ``amplitude`` and
    ``render_nm`` (the published model, :func:`published_filaments`) is drawn with its
    own peak density and strands.
    """
    groups: dict[float, list[Array]] = {}
    for f in filaments:
        amp = float(f.get("amplitude", LEGACY_AMPLITUDE))
        groups.setdefault(amp, []).extend(f.get("render_nm", [f["points_nm"]]))
    for amp, lines in groups.items():
        splat_tubes(volume, lines, voxel_size_nm, sigma, amp)


def _clear_of(points: Array, centers: Array, bounds: Array, skip: tuple[int, ...]) -> bool:
    """True when no point of ``points`` lies inside a vesicle other than ``skip``."""
    keep = np.ones(len(centers), bool)
    keep[list(skip)] = False
    if not keep.any():
        return True
    d = np.linalg.norm(points[:, None] - centers[None, keep], axis=2) - bounds[keep]
    return bool(np.all(d > 0.5))


def published_filaments(
    centers_nm: Array,
    radii_nm: Array,
    ids: Array,
    half_t_nm: float,
    rng: np.random.Generator,
    plasma: Callable[[Array], Array] | None = None,
    plasma_normal: Array | None = None,
    p: dict | None = None,
) -> list[dict]:
    """Connectors and tethers with numbers tuned to published values (docs/filaments.md).

    Parameters
    ----------
    centers_nm, radii_nm, ids
        Spherical vesicles: centers (n, 3) nm, bilayer midline radii, table ids.
    half_t_nm
        Half the membrane thickness (the outer surface is ``radius + half_t``).
    rng
        The random stream (independent of the phantom's, so other objects do not move).
    plasma, plasma_normal
        Signed distance (nm, negative on the vesicle side) to the plasma membrane midplane
        for points (n, 3), and its normal (pointing to the cleft); ``None``: no tethers.
    p
        Overrides of :data:`PUBLISHED` (e.g. ``{"connector_p": 0.0}``).

    Returns
    -------
    list of dict
        ``kind, from_id, to_id, points_nm, diameter_nm, amplitude, render_nm``.
    """
    q = {**PUBLISHED, **(p or {})}
    centers = np.asarray(centers_nm, float).reshape(-1, 3)
    outer = np.asarray(radii_nm, float) + half_t_nm
    out: list[dict] = []

    def make(kind: str, i: int, j: int, pts: Array) -> None:
        d = float(rng.uniform(*q["diameter_nm"]))
        mass = q["amplitude"] * (d / LEGACY_DIAMETER_NM) ** 2
        if d > LEGACY_DIAMETER_NM:  # wider than the blur: strands on a circle
            render = strands(pts, (d - LEGACY_DIAMETER_NM) / 2)
        else:
            render = [pts]
        out.append(
            {
                "kind": kind,
                "from_id": int(ids[i]),
                "to_id": int(ids[j]) if j >= 0 else 0,
                "points_nm": pts,
                "diameter_nm": round(d, 3),
                "amplitude": round(mass / len(render), 4),
                "render_nm": render,
            }
        )

    n = len(centers)
    count = np.zeros(n, int)
    if n > 1:
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=2)
        gap = dist - outer[:, None] - outer[None]
        lo, hi = q["connector_gap_nm"]
        pairs = np.argwhere(np.triu((gap >= lo) & (gap <= hi), 1))
        for i, j in pairs[rng.permutation(len(pairs))]:
            if rng.random() > q["connector_p"] or max(count[i], count[j]) >= q["max_connectors"]:
                continue
            u = (centers[j] - centers[i]) / dist[i, j]
            jit = rng.normal(scale=q["jitter"], size=3)
            jit -= jit.dot(u) * u
            a_dir, b_dir = u + jit, -u + jit
            a = centers[i] + a_dir / np.linalg.norm(a_dir) * outer[i]
            b = centers[j] + b_dir / np.linalg.norm(b_dir) * outer[j]
            pts = curved_polyline(a, b, rng, q["bend"])
            if _clear_of(sample_polyline(pts, 1.0), centers, outer, (i, j)):
                make("connector", int(i), int(j), pts)
                count[i] += 1
                count[j] += 1
    if plasma is None or plasma_normal is None:
        return out
    normal = np.asarray(plasma_normal, float)
    gap_pm = -np.asarray(plasma(centers), float).reshape(-1) - outer - half_t_nm
    lo, hi = q["tether_gap_nm"]
    for i in np.nonzero((gap_pm >= lo) & (gap_pm <= hi))[0]:
        if rng.random() > q["tether_p"]:
            continue
        for _ in range(1 + min(int(rng.poisson(q["extra_tethers"])), 2)):
            d = normal + rng.normal(scale=q["jitter"], size=3)
            a = centers[i] + d / np.linalg.norm(d) * outer[i]
            b = a + normal * (-float(plasma(a[None])[0]) - half_t_nm)
            pts = curved_polyline(a, b, rng, q["bend"])
            if _clear_of(sample_polyline(pts, 1.0), centers, outer, (int(i),)):
                make("tether", int(i), -1, pts)
    return out


# The published model's numbers (sources in docs/filaments.md).
PUBLISHED: dict = {
    "connector_gap_nm": (5.0, 20.0),  # outer-surface gap of connected vesicle pairs
    "connector_p": 0.45,  # probability that a pair within that gap is connected
    "max_connectors": 4,  # per vesicle
    "tether_gap_nm": (4.0, 45.0),  # vesicle–plasma-membrane gap of tethered vesicles
    "tether_p": 0.8,  # probability that such a vesicle is tethered
    "extra_tethers": 0.4,  # Poisson mean of additional tethers (≤ 3 per vesicle)
    "diameter_nm": (2.0, 6.0),
    "amplitude": LEGACY_AMPLITUDE,  # peak density of a 3.5 nm filament (lipid heads = 1)
    "jitter": 0.25,
    "bend": 0.15,
}

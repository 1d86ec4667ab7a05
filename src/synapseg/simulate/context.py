"""The cellular context around the vesicles: plasma membrane, cleft, organelles, filaments.

Everything here is a distractor or a partner of the vesicles: the presynaptic plasma
membrane (class 1), the cleft with the postsynaptic membrane (class 4) and density, a
mitochondrion, endosome-like compartments and dense-core vesicles (class 3), actin, and
the connectors and tethers whose polylines are ground truth.

The active zone (AZ) is the presynaptic plasma membrane facing the cleft: with a cleft,
the whole simulated plasma membrane (the cleft spans the volume); without a cleft or a
plasma membrane there is none (``info["active_zone"]``). :func:`active_zone_truth` adds
each vesicle's exact distance to its midplane to a vesicle table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from synapseg.simulate import filaments as fil
from synapseg.simulate.scene import (
    ACTIN_DIAMETER_NM,
    OTHER,
    PLASMA,
    POSTSYNAPTIC,
    Scene,
    clear,
    random_point,
)
from synapseg.simulate.shapes import Blob, CurvedPlane, Ellipsoid, Profile, Shape, Sphere, bilayer


def plasma_membrane(scene: Scene, rng: np.random.Generator) -> CurvedPlane:
    ext = scene.extent
    phi = math.radians(rng.uniform(-25, 25))
    n = np.array([rng.uniform(-0.1, 0.1), math.sin(phi), math.cos(phi)])
    n /= np.linalg.norm(n)
    p0 = np.array([ext[0] / 2, ext[1] / 2, ext[2] * rng.uniform(0.78, 0.88)])
    curv = rng.choice([-1, 1]) / rng.uniform(1000, 3000)
    return CurvedPlane(p0, n, curv, np.zeros(3), ext)


def render_synapse(scene: Scene, pm: CurvedPlane, rng: np.random.Generator) -> dict:
    p, t = scene.p, scene.p.membrane_thickness_nm
    info: dict[str, Any] = {}
    gauss = bilayer(0.0, t)
    steps: list[tuple[float, float, float]] = []
    membranes = [(0.0, PLASMA)]
    if p.cleft:
        width = float(rng.uniform(20, 28))
        psd = float(rng.uniform(20, 40))
        gauss += bilayer(width, t)
        steps += [
            (scene.half_t, width - scene.half_t, 0.1),
            (width + scene.half_t, width + psd, 0.3),
        ]
        membranes.append((width, POSTSYNAPTIC))
        info.update(cleft_width_nm=width, psd_thickness_nm=psd)
    scene.add(pm, Profile(gauss, steps), membranes)
    info.update(
        plasma_membrane_normal_zyx=pm.normal.tolist(),
        plasma_membrane_point_nm=pm.point_nm.tolist(),
        plasma_membrane_curvature_per_nm=float(pm.curvature_per_nm),
        active_zone=bool(p.cleft),
    )
    return info


def paraboloid_nearest(pm: CurvedPlane, points_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance (nm) from each point to the sheet ``pm(p) = 0`` and the nearest points.

    The sheet is a paraboloid of revolution about the axis through ``pm.point_nm`` along
    ``pm.normal``: its nearest point lies in the plane of that axis and the point, at the
    axial radius ``r`` solving ``k²/2·r³ + (1 + k·a)·r - ρ = 0`` (``a``, ``ρ``: the point's
    axial and radial coordinates, ``k`` the curvature).
    """
    pts = np.asarray(points_nm, float).reshape(-1, 3)
    p0, n = np.asarray(pm.point_nm, float), np.asarray(pm.normal, float)
    k = float(pm.curvature_per_nm)
    u = pts - p0
    a = u @ n
    perp = u - a[:, None] * n
    rho = np.linalg.norm(perp, axis=1)
    dist = np.empty(len(pts))
    nearest = np.empty_like(pts)
    for i in range(len(pts)):
        roots = np.roots([k * k / 2, 0.0, 1 + k * a[i], -rho[i]]) if k else [rho[i]]
        r = np.array([float(np.real(v)) for v in roots if abs(np.imag(v)) < 1e-9])
        d2 = (r - rho[i]) ** 2 + (a[i] + k * r**2 / 2) ** 2
        best = r[int(np.argmin(d2))]
        dist[i] = math.sqrt(float(d2.min()))
        e = perp[i] / rho[i] if rho[i] > 1e-12 else np.zeros(3)
        nearest[i] = p0 + best * e - (k * best**2 / 2) * n
    return dist, nearest


def active_zone_truth(vesicles: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """A copy of a simulated vesicle table with the true AZ columns.

    ``az_distance_nm``: the exact distance from each vesicle's bilayer-midline sphere
    (``center_*_nm``, ``radius_nm``) to the AZ midplane (the plasma membrane's sheet, from
    ``info``); ``az_nearest_{z,y,x}_nm``: the nearest midplane point. NaN when the synapse
    has no AZ (``info["active_zone"]`` false or absent). Kept out of ``vesicles.csv`` so
    every earlier simulation stays byte-identical.
    """
    out = vesicles.copy()
    cols = ["az_distance_nm", "az_nearest_z_nm", "az_nearest_y_nm", "az_nearest_x_nm"]
    if not info.get("active_zone") or not len(out):
        for col in cols:
            out[col] = np.full(len(out), np.nan)
        return out
    pm = CurvedPlane(
        np.asarray(info["plasma_membrane_point_nm"], float),
        np.asarray(info["plasma_membrane_normal_zyx"], float),
        float(info["plasma_membrane_curvature_per_nm"]),
    )
    centers = out[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy(float)
    dist, nearest = paraboloid_nearest(pm, centers)
    out[cols[0]] = dist - out["radius_nm"].to_numpy(float)
    for i, col in enumerate(cols[1:]):
        out[col] = nearest[:, i]
    return out


def distractors(scene: Scene, pm: CurvedPlane, rng: np.random.Generator) -> dict:
    """Mitochondrion, endosome-like compartments and dense-core vesicles (not in the GT)."""
    t, ext = scene.p.membrane_thickness_nm, scene.extent
    vol_um3 = float(np.prod(ext)) * 1e-9
    counts = {"mitochondrion": 0, "endosome": 0, "dense_core_vesicle": 0}
    # Mitochondrion: a large double-membrane ellipsoid poking in from the far x side.
    if rng.random() < 0.7:
        b = float(rng.uniform(80, 130))
        a = float(rng.uniform(1.5, 2.5)) * b
        depth = float(rng.uniform(0.12, 0.25)) * ext[2]
        c = np.array([ext[0] / 2, rng.uniform(0.2, 0.8) * ext[1], depth - b])
        ang = rng.uniform(-0.4, 0.4)  # long axis ≈ y, second ≈ x (the intrusion), third z
        rot = np.array(
            [[0, math.cos(ang), math.sin(ang)], [0, -math.sin(ang), math.cos(ang)], [1, 0, 0]]
        )
        shape = Ellipsoid(c, np.array([a, b, 0.8 * b]), rot)
        gap = 9.0
        prof = Profile(
            bilayer(0.0, t) + bilayer(-gap, t),
            [(-np.inf, -gap - scene.half_t, 0.25), (-gap + scene.half_t, -scene.half_t, 0.05)],
        )
        scene.add(shape, prof, [(0.0, OTHER), (-gap, OTHER)])
        scene.obstacles.append((shape, 5.0))
        counts["mitochondrion"] = 1
    kinds = ["endosome"] * int(rng.poisson(0.5 + 10 * vol_um3))
    kinds += ["dense_core_vesicle"] * int(rng.poisson(0.5 + 15 * vol_um3))
    for kind in kinds:
        for _ in range(30):
            c = random_point(scene, rng)
            if kind == "endosome":
                r = float(rng.uniform(30, 75))
                k = 3
                shape: Shape = Blob(
                    c,
                    r,
                    np.linalg.qr(rng.normal(size=(3, 3)))[0][:k],
                    rng.uniform(0.03, 0.1, k),
                    rng.uniform(1.5, 3.0, k),
                    rng.uniform(0, 2 * np.pi, k),
                )
                prof = Profile(bilayer(0.0, t), [(-np.inf, -scene.half_t, 0.04)])
                bound = r * 1.3
            else:
                r = float(rng.uniform(35, 50)) - scene.half_t
                shape = Sphere(c, r)
                core = r - float(rng.uniform(5, 9))
                prof = Profile(bilayer(0.0, t), [(-np.inf, core - r, 0.7)])
                bound = r + scene.half_t
            if float(pm(*c)) > -(bound + 20) or not clear(scene, c, bound):
                continue
            scene.add(shape, prof, [(0.0, OTHER)], lumen_below=-scene.half_t)
            scene.obstacles.append((shape, 3.0))
            counts[kind] += 1
            if kind == "endosome" and scene.p.mvb_fraction > 0:
                counts.setdefault("intraluminal_vesicles", 0)
                if rng.random() < scene.p.mvb_fraction:
                    counts["intraluminal_vesicles"] += _intraluminal_vesicles(
                        scene, shape, c, r, rng
                    )
            break
    return counts


def _intraluminal_vesicles(
    scene: Scene, endosome: Shape, c: np.ndarray, r: float, rng: np.random.Generator
) -> int:
    """Make an endosome a multivesicular body: vesicles (midline radius 15-22 nm, class 3,
    not in the vesicle table) inside its lumen, ≥ 2 nm from its membrane and each other."""
    t = scene.p.membrane_thickness_nm
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(40):
        if len(placed) >= 8:
            break
        ri = float(rng.uniform(15.0, 22.0))
        q = c + rng.normal(size=3) * r / 3
        bound = ri + scene.half_t
        if float(endosome(*q)) > -(bound + scene.half_t + 2.0):
            continue
        if any(np.linalg.norm(q - p) < bound + b + 2.0 for p, b in placed):
            continue
        scene.add(Sphere(q, ri), Profile(bilayer(0.0, t), []), [(0.0, OTHER)])
        placed.append((q, bound))
    return len(placed)


def connectors_and_tethers(scene: Scene, pm: CurvedPlane, rng: np.random.Generator) -> None:
    """Connectors (vesicle–vesicle) and tethers (vesicle–plasma membrane) as polylines.

    ``filament_model`` ``legacy`` (default: the bytes of every earlier phantom) draws them
    here from the phantom's stream. ``published`` (numbers tuned to published values, see
    docs/filaments.md) and ``none`` (the same phantom without them: a negative control)
    first make the legacy draws, so every other object stays where it was, then replace
    them: ``published`` with :func:`~synapseg.simulate.filaments.published_filaments` on an
    independent stream of the seed, ``none`` with nothing.
    """
    start = len(scene.polylines)
    _legacy_connectors_and_tethers(scene, pm, rng)
    model = getattr(scene.p, "filament_model", "legacy")
    if model == "legacy":
        return
    del scene.polylines[start:]
    if model == "none":
        return
    ves = [(i, v) for i, v in enumerate(scene.vesicles, start=1) if v.elongation == 1.0]
    frng = np.random.default_rng(np.random.SeedSequence([int(scene.p.seed), 15]))
    has_pm = bool(scene.p.plasma_membrane)
    scale = float(getattr(scene.p, "filament_amplitude_scale", 1.0))
    over = {"amplitude": fil.LEGACY_AMPLITUDE * scale} if scale != 1.0 else None
    scene.polylines.extend(
        fil.published_filaments(
            np.array([v.center_nm for _, v in ves]).reshape(-1, 3),
            np.array([v.radius_nm for _, v in ves]),
            np.array([i for i, _ in ves]),
            scene.half_t,
            frng,
            (lambda q: pm(q[:, 0], q[:, 1], q[:, 2])) if has_pm else None,
            pm.normal if has_pm else None,
            over,
        )
    )


def _legacy_connectors_and_tethers(scene: Scene, pm: CurvedPlane, rng: np.random.Generator) -> None:
    ves = [v for v in scene.vesicles if v.elongation == 1.0]
    ids = {id(v): i for i, v in enumerate(scene.vesicles, start=1)}
    seen: set[tuple[int, int]] = set()
    for v in ves:
        if rng.random() > 0.4:
            continue
        others = [w for w in ves if w is not v]
        gaps = [np.linalg.norm(w.center_nm - v.center_nm) - w.bound_nm - v.bound_nm for w in others]
        near = [w for w, g in zip(others, gaps) if 2.0 <= g <= 25.0]
        if not near:
            continue
        w = near[int(rng.integers(len(near)))]
        pair = tuple(sorted((ids[id(v)], ids[id(w)])))
        if pair in seen:
            continue
        seen.add(pair)
        u = w.center_nm - v.center_nm
        u /= np.linalg.norm(u)
        jitter = rng.normal(scale=0.25, size=3)
        a_dir = u + jitter - jitter.dot(u) * u
        b_dir = -u + jitter - jitter.dot(u) * u
        a = v.center_nm + a_dir / np.linalg.norm(a_dir) * (v.radius_nm + scene.half_t)
        b = w.center_nm + b_dir / np.linalg.norm(b_dir) * (w.radius_nm + scene.half_t)
        pts = fil.curved_polyline(a, b, rng)
        scene.polylines.append(
            {"kind": "connector", "from_id": ids[id(v)], "to_id": ids[id(w)], "points_nm": pts}
        )
    if not scene.p.plasma_membrane:
        return
    for v in ves:
        gap = -float(pm(*v.center_nm)) - v.bound_nm - scene.half_t
        if not 2.0 <= gap <= 40.0 or rng.random() > 0.6:
            continue
        d = pm.normal + rng.normal(scale=0.15, size=3)
        a = v.center_nm + d / np.linalg.norm(d) * (v.radius_nm + scene.half_t)
        b = a + pm.normal * (-float(pm(*a)) - scene.half_t)
        pts = fil.curved_polyline(a, b, rng)
        scene.polylines.append(
            {"kind": "tether", "from_id": ids[id(v)], "to_id": 0, "points_nm": pts}
        )


def place_actin(scene: Scene, rng: np.random.Generator) -> list[np.ndarray]:
    vol_um3 = float(np.prod(scene.extent)) * 1e-9
    lines = []
    centers = np.array([v.center_nm for v in scene.vesicles]).reshape(-1, 3)
    bounds = np.array([v.bound_nm for v in scene.vesicles])
    for _ in range(int(rng.poisson(1 + 30 * vol_um3))):
        pts = fil.random_actin(scene.extent, rng)
        if len(pts) < 2:
            continue
        # Actin threads between vesicles: keep the runs that stay clear of them.
        if len(centers):
            d = np.linalg.norm(pts[:, None] - centers[None], axis=2) - bounds - ACTIN_DIAMETER_NM
            clear = np.all(d > 0, axis=1)
        else:
            clear = np.ones(len(pts), bool)
        for run in np.split(np.arange(len(pts)), np.nonzero(np.diff(clear.astype(int)))[0] + 1):
            if clear[run[0]] and len(run) >= 3:
                lines.append(pts[run])
    for line in lines:
        scene.polylines.append({"kind": "actin", "from_id": 0, "to_id": 0, "points_nm": line})
    return lines

"""The phantom: a presynaptic terminal as a density volume with exact ground truth.

Coordinates are nm with voxel ``i`` centred at ``i * voxel_size_nm`` (so pixel
coordinates are zero-based on the output grid). Densities are relative to the cytosol
(0); lipid head groups peak at 1. Membrane label classes: see :data:`MEMBRANE_CLASSES`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synapseg.io.tables import make_table
from synapseg.simulate import filaments as fil
from synapseg.simulate.params import SimulationParams
from synapseg.simulate.shapes import (
    Blob,
    CurvedPlane,
    Ellipsoid,
    Profile,
    Shape,
    Sphere,
    bilayer,
    random_rotation,
    render,
)

log = logging.getLogger(__name__)

MEMBRANE_CLASSES = {1: "plasma membrane", 2: "vesicle membrane", 3: "other membrane"}
PLASMA, VESICLE, OTHER = 1, 2, 3
MIN_GAP_NM = 1.0  # closest allowed outer-surface gap between vesicles
SMALL_DIAMETER_NM = 3.5  # globular proteins and connectors/tethers (FWHM)
ACTIN_DIAMETER_NM = 7.0


@dataclass
class Phantom:
    """Noise-free density on the output grid plus everything known about it."""

    density: np.ndarray
    vesicle_labels: np.ndarray
    membrane_labels: np.ndarray
    vesicles: pd.DataFrame
    filaments: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Vesicle:
    center_nm: np.ndarray
    radius_nm: float  # bilayer midline (geometric mean for elongated ones)
    bound_nm: float  # radius of a sphere enclosing the outer surface
    shape: Shape
    elongation: float = 1.0


class _Scene:
    """Mutable state while building: output arrays and the placed objects."""

    def __init__(self, p: SimulationParams) -> None:
        self.p = p
        self.vs = float(p.voxel_size_nm)
        self.shape = tuple(p.shape)
        self.extent = np.asarray(self.shape, float) * self.vs
        self.density = np.zeros(self.shape, np.float32)
        self.vlab = np.zeros(self.shape, np.uint16)
        self.mlab = np.zeros(self.shape, np.uint8)
        self.compartment = np.zeros(self.shape, bool)  # lumens without cytosolic proteins
        self.obstacles: list[tuple[Shape, float]] = []  # (shape, clearance nm)
        self.vesicles: list[_Vesicle] = []
        self.polylines: list[dict] = []
        self.half_t = p.membrane_thickness_nm / 2

    def add(
        self,
        shape: Shape,
        profile: Profile,
        membranes: list[tuple[float, int]] = (),
        lumen_below: float | None = None,
        vesicle_id: int = 0,
    ) -> None:
        """Render an object; label voxels within a half bilayer of each membrane offset."""
        out = render(shape, profile, self.shape, self.vs, self.p.oversample)
        if out is None:
            return
        box, values, dist = out
        self.density[box] += values
        half = max(self.half_t, self.vs / 2)
        for offset, cls in membranes:
            sel = np.abs(dist - offset) <= half
            self.mlab[box][sel] = cls
        if lumen_below is not None:
            self.compartment[box] |= dist < lumen_below
        if vesicle_id:
            self.vlab[box][dist <= self.half_t] = vesicle_id


# --------------------------------------------------------------------------- geometry


def _plasma_membrane(scene: _Scene, rng: np.random.Generator) -> CurvedPlane:
    ext = scene.extent
    phi = math.radians(rng.uniform(-25, 25))
    n = np.array([rng.uniform(-0.1, 0.1), math.sin(phi), math.cos(phi)])
    n /= np.linalg.norm(n)
    p0 = np.array([ext[0] / 2, ext[1] / 2, ext[2] * rng.uniform(0.78, 0.88)])
    curv = rng.choice([-1, 1]) / rng.uniform(1000, 3000)
    return CurvedPlane(p0, n, curv, np.zeros(3), ext)


def _render_synapse(scene: _Scene, pm: CurvedPlane, rng: np.random.Generator) -> dict:
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
        membranes.append((width, OTHER))
        info.update(cleft_width_nm=width, psd_thickness_nm=psd)
    scene.add(pm, Profile(gauss, steps), membranes)
    info.update(
        plasma_membrane_normal_zyx=pm.normal.tolist(),
        plasma_membrane_point_nm=pm.point_nm.tolist(),
        plasma_membrane_curvature_per_nm=float(pm.curvature_per_nm),
    )
    return info


def _inside(scene: _Scene, c: np.ndarray, r: float) -> bool:
    margin = r + scene.vs
    return bool(np.all(c >= margin) and np.all(c <= scene.extent - scene.vs - margin))


def _clear(scene: _Scene, c: np.ndarray, r: float) -> bool:
    z, y, x = c
    return all(float(s(z, y, x)) >= r + clearance for s, clearance in scene.obstacles)


def _random_point(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 1, 3) * scene.extent


def _distractors(scene: _Scene, pm: CurvedPlane, rng: np.random.Generator) -> dict:
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
            c = _random_point(scene, rng)
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
            if float(pm(*c)) > -(bound + 20) or not _clear(scene, c, bound):
                continue
            scene.add(shape, prof, [(0.0, OTHER)], lumen_below=-scene.half_t)
            scene.obstacles.append((shape, 3.0))
            counts[kind] += 1
            break
    return counts


# --------------------------------------------------------------------------- vesicles


def _draw_vesicle(
    scene: _Scene, rng: np.random.Generator
) -> tuple[float, float, np.ndarray | None]:
    p = scene.p
    lo, hi = p.radius_range_nm
    outer = float(np.clip(rng.normal(p.radius_mean_nm, p.radius_sd_nm), lo, hi))
    mid = outer - scene.half_t
    if rng.random() < p.elongated_fraction:
        e = float(rng.uniform(1.05, max(p.max_elongation, 1.05)))
        axes = np.array([mid * e ** (2 / 3), mid * e ** (-1 / 3), mid * e ** (-1 / 3)])
        return mid, e, axes
    return mid, 1.0, None


def _place_vesicles(scene: _Scene, pm: CurvedPlane, rng: np.random.Generator) -> int:
    p = scene.p
    probe = rng.uniform(0, 1, (4000, 3)) * scene.extent
    pre_fraction = float(np.mean(pm(probe[:, 0], probe[:, 1], probe[:, 2]) < 0))
    if p.n_vesicles is not None:
        target = int(p.n_vesicles)
    else:
        target = int(round(p.vesicle_density_per_um3 * np.prod(scene.extent) * 1e-9 * pre_fraction))
    attempts = 0
    while len(scene.vesicles) < target and attempts < 80 * max(target, 1):
        attempts += 1
        mid, e, axes = _draw_vesicle(scene, rng)
        bound = (axes.max() if axes is not None else mid) + scene.half_t
        roll = rng.random()
        if scene.vesicles and roll < p.crowding:
            anchor = scene.vesicles[int(rng.integers(len(scene.vesicles)))]
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            gap = rng.uniform(MIN_GAP_NM, 4.0)
            c = anchor.center_nm + direction * (anchor.bound_nm + bound + gap)
        elif p.plasma_membrane and roll < p.crowding + 0.1 * (1 - p.crowding):
            q = _random_point(scene, rng)  # docked: a few nm from the plasma membrane
            gap = scene.half_t + rng.uniform(MIN_GAP_NM, 6.0)  # from the outer leaflet
            c = q - pm.normal * (float(pm(*q)) + bound + gap)
        else:
            c = _random_point(scene, rng)
            dist = -float(pm(*c)) - bound - scene.half_t
            if dist < 0 or rng.random() > math.exp(-dist / p.cluster_decay_nm):
                continue
        if not _inside(scene, c, bound) or float(pm(*c)) > -(bound + scene.half_t + MIN_GAP_NM):
            continue
        if scene.vesicles:
            centers = np.array([v.center_nm for v in scene.vesicles])
            bounds = np.array([v.bound_nm for v in scene.vesicles])
            if np.any(np.linalg.norm(centers - c, axis=1) < bounds + bound + MIN_GAP_NM):
                continue
        if not _clear(scene, c, bound):
            continue
        shape: Shape = Sphere(c, mid) if axes is None else Ellipsoid(c, axes, random_rotation(rng))
        scene.vesicles.append(_Vesicle(c, mid, bound, shape, e))
    if len(scene.vesicles) < target:
        log.info("placed %d of %d vesicles (volume full)", len(scene.vesicles), target)
    return target


def _render_vesicles(scene: _Scene) -> None:
    t = scene.p.membrane_thickness_nm
    prof = Profile(bilayer(0.0, t), [(-np.inf, 0.0, scene.p.lumen_density)])
    for i, v in enumerate(scene.vesicles, start=1):
        scene.add(v.shape, prof, [(0.0, VESICLE)], lumen_below=-scene.half_t, vesicle_id=i)


def _vesicle_table(scene: _Scene, pm: CurvedPlane) -> pd.DataFrame:
    vs, ves = scene.vs, scene.vesicles
    centers = np.array([v.center_nm for v in ves]).reshape(-1, 3)
    mids = np.array([v.radius_nm for v in ves])
    bounds = np.array([v.bound_nm for v in ves])
    if len(ves) > 1:
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=2) - bounds[:, None] - bounds
        np.fill_diagonal(dist, np.inf)
        min_gap = dist.min(axis=1)
    else:
        min_gap = np.full(len(ves), np.inf)
    pm_dist = -pm(centers[:, 0], centers[:, 1], centers[:, 2]) - bounds - scene.half_t
    return make_table(
        centers / vs,
        mids,
        (vs, vs, vs),
        membrane_thickness_nm=scene.p.membrane_thickness_nm,
        elongation=np.array([v.elongation for v in ves]),
        min_gap_nm=min_gap,
        membrane_distance_nm=np.asarray(pm_dist),
    )


# --------------------------------------------------------------------------- filaments


def _surface_point(v: _Vesicle, direction: np.ndarray) -> np.ndarray:
    return v.center_nm + direction * (v.radius_nm + 0.0)


def _connectors_and_tethers(scene: _Scene, pm: CurvedPlane, rng: np.random.Generator) -> None:
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


def _actin(scene: _Scene, rng: np.random.Generator) -> list[np.ndarray]:
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


# --------------------------------------------------------------------------- assembly


def build_phantom(params: SimulationParams, rng: np.random.Generator) -> Phantom:
    """Place and render every object of a presynaptic terminal (see module docstring)."""
    scene = _Scene(params)
    pm = _plasma_membrane(scene, rng)
    info: dict[str, Any] = {}
    if params.plasma_membrane:
        info.update(_render_synapse(scene, pm, rng))
    if params.distractors:
        info["distractors"] = _distractors(scene, pm, rng)
    info["n_vesicles_target"] = _place_vesicles(scene, pm, rng)
    _render_vesicles(scene)
    thin: list[np.ndarray] = []
    actin: list[np.ndarray] = []
    if params.filaments:
        _connectors_and_tethers(scene, pm, rng)
        thin = [f["points_nm"] for f in scene.polylines]
    if params.distractors:
        actin = _actin(scene, rng)
    # Proteins and connectors/tethers (both ≈ 3.5 nm) share one blur; actin (7 nm) another.
    small = fil.sigma_px(SMALL_DIAMETER_NM, scene.vs)
    crowd = np.zeros(scene.shape, np.float32)
    fil.splat_proteins(crowd, scene.vs, rng, small, params.protein_crowding)
    fil.splat_tubes(crowd, thin, scene.vs, small, 0.6)
    # Actin (7 nm) as a bundle of 7 thin lines on a 1.75 nm circle: the same blur then
    # gives a 7 nm filament, without a second full-volume filter.
    strands = [s for line in actin for s in fil.strands(line, ACTIN_DIAMETER_NM / 4)]
    sigma_nm = small * scene.vs
    share = 1 + 6 * math.exp(-((ACTIN_DIAMETER_NM / 4) ** 2) / (2 * sigma_nm**2))
    fil.splat_tubes(crowd, strands, scene.vs, small, 0.5 / share)
    crowd = fil.blur(crowd, small)
    crowd[scene.compartment] = 0.0  # lumens hold no cytosolic proteins
    scene.density += crowd
    table = _vesicle_table(scene, pm)
    info["n_vesicles"] = len(table)
    finite_gap = table["min_gap_nm"].to_numpy()
    info["crowded_fraction"] = float(np.mean(finite_gap <= 4.0)) if len(table) else 0.0
    info["n_filaments"] = {
        k: sum(f["kind"] == k for f in scene.polylines) for k in ("connector", "tether", "actin")
    }
    return Phantom(
        scene.density,
        scene.vlab,
        scene.mlab,
        table,
        fil.filament_table(scene.polylines, scene.vs),
        info,
    )

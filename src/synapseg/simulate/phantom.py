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
from synapseg.simulate import world
from synapseg.simulate.context import (
    connectors_and_tethers,
    distractors,
    place_actin,
    plasma_membrane,
    render_synapse,
)
from synapseg.simulate.params import SimulationParams
from synapseg.simulate.scene import (
    ACTIN_DIAMETER_NM,
    MEMBRANE_CLASSES,
    MIN_GAP_NM,
    SMALL_DIAMETER_NM,
    VESICLE,
    Scene,
    Vesicle,
    clear,
    inside,
    random_point,
)
from synapseg.simulate.shapes import (
    CurvedPlane,
    Ellipsoid,
    Profile,
    Shape,
    Sphere,
    bilayer,
    random_rotation,
)

log = logging.getLogger(__name__)

__all__ = ["MEMBRANE_CLASSES", "Phantom", "build_phantom"]


@dataclass
class Phantom:
    """Noise-free density on the output grid plus everything known about it."""

    density: np.ndarray
    vesicle_labels: np.ndarray
    membrane_labels: np.ndarray
    vesicles: pd.DataFrame
    filaments: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- vesicles


def _draw_vesicle(scene: Scene, rng: np.random.Generator) -> tuple[float, float, np.ndarray | None]:
    p = scene.p
    lo, hi = p.radius_range_nm
    outer = float(np.clip(rng.normal(p.radius_mean_nm, p.radius_sd_nm), lo, hi))
    mid = outer - scene.half_t
    if rng.random() < p.elongated_fraction:
        e = float(rng.uniform(1.05, max(p.max_elongation, 1.05)))
        axes = np.array([mid * e ** (2 / 3), mid * e ** (-1 / 3), mid * e ** (-1 / 3)])
        return mid, e, axes
    return mid, 1.0, None


def _place_vesicles(scene: Scene, pm: CurvedPlane, rng: np.random.Generator) -> int:
    p = scene.p
    probe = rng.uniform(0, 1, (4000, 3)) * scene.extent
    pre_fraction = float(np.mean(pm(probe[:, 0], probe[:, 1], probe[:, 2]) < 0))
    if p.n_vesicles is not None:
        target = int(p.n_vesicles)
    else:
        if p.lamella_thickness_nm is not None:  # only the specimen slab holds vesicles
            pre_fraction *= world.slab_fraction(p, scene.extent, probe)
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
            q = random_point(scene, rng)  # docked: a few nm from the plasma membrane
            gap = scene.half_t + rng.uniform(MIN_GAP_NM, 6.0)  # from the outer leaflet
            c = q - pm.normal * (float(pm(*q)) + bound + gap)
        else:
            c = random_point(scene, rng)
            dist = -float(pm(*c)) - bound - scene.half_t
            if dist < 0 or rng.random() > math.exp(-dist / p.cluster_decay_nm):
                continue
        if not inside(scene, c, bound) or float(pm(*c)) > -(bound + scene.half_t + MIN_GAP_NM):
            continue
        if scene.vesicles:
            centers = np.array([v.center_nm for v in scene.vesicles])
            bounds = np.array([v.bound_nm for v in scene.vesicles])
            if np.any(np.linalg.norm(centers - c, axis=1) < bounds + bound + MIN_GAP_NM):
                continue
        if not clear(scene, c, bound) or not world.vesicle_fits(scene, c, bound):
            continue
        shape: Shape = Sphere(c, mid) if axes is None else Ellipsoid(c, axes, random_rotation(rng))
        scene.vesicles.append(Vesicle(c, mid, bound, shape, e))
    if len(scene.vesicles) < target:
        log.info("placed %d of %d vesicles (volume full)", len(scene.vesicles), target)
    return target


def _render_vesicles(scene: Scene) -> None:
    t = scene.p.membrane_thickness_nm
    prof = Profile(bilayer(0.0, t), [(-np.inf, 0.0, scene.p.lumen_density)])
    for i, v in enumerate(scene.vesicles, start=1):
        scene.add(v.shape, prof, [(0.0, VESICLE)], lumen_below=-scene.half_t, vesicle_id=i)


def _vesicle_table(scene: Scene, pm: CurvedPlane) -> pd.DataFrame:
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
    extra = {}
    if scene.p.lamella_thickness_nm is not None:
        extra["cut_by_surface"] = world.cut_by_surface(scene, centers, bounds)
    return make_table(
        centers / vs,
        mids,
        (vs, vs, vs),
        membrane_thickness_nm=scene.p.membrane_thickness_nm,
        elongation=np.array([v.elongation for v in ves]),
        min_gap_nm=min_gap,
        membrane_distance_nm=np.asarray(pm_dist),
        **extra,
    )


# --------------------------------------------------------------------------- assembly


def build_phantom(params: SimulationParams, rng: np.random.Generator) -> Phantom:
    """Place and render every object of a presynaptic terminal (see module docstring)."""
    scene = Scene(params)
    pm = plasma_membrane(scene, rng)
    info: dict[str, Any] = {}
    if params.plasma_membrane:
        info.update(render_synapse(scene, pm, rng))
    if params.distractors:
        info["distractors"] = distractors(scene, pm, rng)
    if params.n_microtubules:
        info["microtubules"] = world.place_microtubules(scene, rng)
    if params.n_er_tubules:
        info["er_tubules"] = world.place_er_tubules(scene, rng)
    if params.n_coated_vesicles:
        info["coated_vesicles"] = world.place_coated_vesicles(scene, rng)
    gold = world.place_gold(scene, rng) if params.n_gold else []
    ice = world.place_ice(scene, rng) if params.n_ice_blobs else []
    info["n_vesicles_target"] = _place_vesicles(scene, pm, rng)
    _render_vesicles(scene)
    thin: list[dict] = []
    actin: list[np.ndarray] = []
    if params.filaments:
        connectors_and_tethers(scene, pm, rng)
        thin = list(scene.polylines)
    if params.distractors:
        actin = place_actin(scene, rng)
    # Proteins and connectors/tethers (both ≈ 3.5 nm FWHM) share one blur.
    small = fil.sigma_px(SMALL_DIAMETER_NM, scene.vs)
    crowd = np.zeros(scene.shape, np.float32)
    fil.splat_proteins(crowd, scene.vs, rng, small, params.protein_crowding)
    fil.splat_filaments(crowd, thin, scene.vs, small)
    # Actin (7 nm) as a bundle of 7 thin lines on a 1.75 nm circle: the same blur then
    # gives a 7 nm filament, without a second full-volume filter.
    strands = [s for line in actin for s in fil.strands(line, ACTIN_DIAMETER_NM / 4)]
    sigma_nm = small * scene.vs
    share = 1 + 6 * math.exp(-((ACTIN_DIAMETER_NM / 4) ** 2) / (2 * sigma_nm**2))
    fil.splat_tubes(crowd, strands, scene.vs, small, 0.5 / share)
    crowd = fil.blur(crowd, small)
    crowd[scene.compartment] = 0.0  # lumens hold no cytosolic proteins
    scene.density += crowd
    if params.ribosome_density_per_um3 > 0:
        info["n_ribosomes"] = world.place_ribosomes(scene, rng)
    if params.lamella_thickness_nm is not None:
        info["specimen_fraction"] = float(world.apply_lamella(scene).mean())
    if ice:
        world.render_ice(scene, ice)
        info["ice_blobs_px"] = [(b.center_nm / scene.vs).round(3).tolist() for b in ice]
    if gold:
        world.render_gold(scene, gold)
        info["gold_beads_px"] = [(b.center_nm / scene.vs).round(3).tolist() for b in gold]
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

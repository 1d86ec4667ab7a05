"""Shared state of phantom building: output arrays, placed objects, placement tests.

Coordinates are nm with voxel ``i`` centred at ``i * voxel_size_nm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synapseg.simulate.params import SimulationParams
from synapseg.simulate.shapes import Profile, Shape, render

MEMBRANE_CLASSES = {
    1: "presynaptic plasma membrane",
    2: "vesicle membrane",
    3: "organelle membrane",
    4: "postsynaptic membrane",
}
"""Membrane label classes of ``membrane_labels`` (the table ``synapseg.context`` uses too):
3 holds every other membrane (mitochondria, endosomes, dense-core and coated vesicles, ER,
intraluminal vesicles); 4 is the membrane across the cleft (before issue 14 it was 3)."""
PLASMA, VESICLE, OTHER, POSTSYNAPTIC = 1, 2, 3, 4
MIN_GAP_NM = 1.0  # closest allowed outer-surface gap between vesicles
SMALL_DIAMETER_NM = 3.5  # globular proteins and connectors/tethers (FWHM)
ACTIN_DIAMETER_NM = 7.0


@dataclass
class Vesicle:
    center_nm: np.ndarray
    radius_nm: float  # bilayer midline (geometric mean for elongated ones)
    bound_nm: float  # radius of a sphere enclosing the outer surface
    shape: Shape
    elongation: float = 1.0


class Scene:
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
        self.vesicles: list[Vesicle] = []
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


def inside(scene: Scene, c: np.ndarray, r: float) -> bool:
    margin = r + scene.vs
    return bool(np.all(c >= margin) and np.all(c <= scene.extent - scene.vs - margin))


def clear(scene: Scene, c: np.ndarray, r: float) -> bool:
    z, y, x = c
    return all(float(s(z, y, x)) >= r + clearance for s, clearance in scene.obstacles)


def random_point(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 1, 3) * scene.extent

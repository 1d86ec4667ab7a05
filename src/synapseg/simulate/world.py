"""The wider world around a synapse: lamella and vacuum, gold fiducials, microtubules, ribosomes.

Each feature is switched off by the defaults of :class:`SimulationParams`, draws random
numbers only when switched on (so default tomograms stay bit-identical), and keeps the
ground truth exact: vesicles cut by a lamella surface stay in the table with
``cut_by_surface`` set; gold beads, microtubules and ribosomes are distractors, listed
in ``info`` but never in the vesicle table.
"""

from __future__ import annotations

import math

import numpy as np

from synapseg.simulate.scene import OTHER, Scene, clear, random_point
from synapseg.simulate.shapes import Blob, Profile, Shape, Sphere, bilayer, grid_nm, render

Array = np.ndarray
GOLD_DENSITY = 25.0  # gold scatters far more than protein (head groups = 1)
MICROTUBULE_RADIUS_NM = 10.0  # wall midline: 25 nm outer, 15 nm inner diameter
MICROTUBULE_WALL_NM = 5.0
RIBOSOME_RADIUS_NM = (10.0, 13.0)
RIBOSOME_DENSITY = 0.8  # RNA-rich: darker than the average protein
ICE_DENSITY = 1.5  # crystalline ice contamination: dark (diffraction contrast)


# --------------------------------------------------------------------------- lamella


def lamella_normal(tilt_deg: float) -> Array:
    """Unit (z, y, x) normal of the lamella, tilted from z towards x by ``tilt_deg``."""
    a = math.radians(tilt_deg)
    return np.array([math.cos(a), 0.0, math.sin(a)])


def slab_distance(params, extent_nm: Array, z, y, x) -> Array:
    """Signed distance (nm) to the lamella surfaces: negative inside the specimen.

    With ``lamella_thickness_nm`` None the slab is infinitely thick (always -inf).
    """
    if params.lamella_thickness_nm is None:
        return np.full(np.broadcast(z, y, x).shape, -np.inf)
    n = lamella_normal(params.lamella_tilt_deg)
    c = np.asarray(extent_nm, float) / 2
    along = n[0] * (z - c[0]) + n[1] * (y - c[1]) + n[2] * (x - c[2])
    return np.abs(along) - params.lamella_thickness_nm / 2


def slab_fraction(params, extent_nm: Array, probe_nm: Array) -> float:
    """Fraction of the probe points (n, 3) that lie inside the lamella."""
    d = slab_distance(params, extent_nm, probe_nm[:, 0], probe_nm[:, 1], probe_nm[:, 2])
    return float(np.mean(d < 0))


def vesicle_fits(scene: Scene, c: Array, bound_nm: float) -> bool:
    """Whether a vesicle (centre ``c``, enclosing radius) may sit here given the lamella."""
    p = scene.p
    if p.lamella_thickness_nm is None:
        return True
    d = float(slab_distance(p, scene.extent, *c))
    return d < 0 if p.lamella_cuts_vesicles else d <= -(bound_nm + scene.vs)


def specimen_weight(params, shape: tuple[int, int, int]) -> Array:
    """Fraction (0-1) of each voxel inside the lamella, anti-aliased over one voxel."""
    vs = float(params.voxel_size_nm)
    z, y, x = grid_nm(tuple(slice(0, s) for s in shape), vs)
    d = slab_distance(params, np.asarray(shape, float) * vs, z, y, x)
    return np.clip(0.5 - d / vs, 0.0, 1.0).astype(np.float32)


def apply_lamella(scene: Scene) -> Array:
    """Replace everything outside the lamella by vacuum; return the specimen weight (0-1).

    The surface is anti-aliased over one voxel. Labels outside the slab are cleared.
    """
    weight = specimen_weight(scene.p, scene.shape)
    outside = weight <= 0
    scene.density *= weight
    scene.density += (1 - weight) * np.float32(scene.p.vacuum_density)
    scene.vlab[outside] = 0
    scene.mlab[outside] = 0
    return weight


def cut_by_surface(scene: Scene, centers_nm: Array, bounds_nm: Array) -> Array:
    """True for vesicles whose outer surface crosses a lamella surface."""
    if scene.p.lamella_thickness_nm is None or len(centers_nm) == 0:
        return np.zeros(len(centers_nm), bool)
    c = np.asarray(centers_nm, float)
    d = slab_distance(scene.p, scene.extent, c[:, 0], c[:, 1], c[:, 2])
    return np.asarray(d > -np.asarray(bounds_nm), bool)


# --------------------------------------------------------------------------- objects


def place_gold(scene: Scene, rng: np.random.Generator) -> list[Sphere]:
    """Gold beads on the two specimen surfaces (lamella or volume faces); obstacles for
    the vesicles. Rendered later by :func:`render_gold`, after the vacuum."""
    p, beads = scene.p, []
    r = float(p.gold_radius_nm)
    half = p.lamella_thickness_nm / 2 if p.lamella_thickness_nm is not None else None
    n = lamella_normal(p.lamella_tilt_deg)
    centre = scene.extent / 2
    for i in range(int(p.n_gold)):
        for _ in range(50):
            q = random_point(scene, rng)
            side = 1.0 if i % 2 else -1.0
            if half is None:  # the volume faces (z), just inside
                q[0] = r + scene.vs if side < 0 else scene.extent[0] - r - scene.vs
            else:  # on the lamella surface, inside the specimen
                along = float(np.dot(n, q - centre))
                q = q + n * (side * (half - r) - along)
            if np.any(q < 0) or np.any(q > scene.extent):
                continue
            if all(np.linalg.norm(q - b.center_nm) > 2 * r + 1 for b in beads):
                beads.append(Sphere(q, r))
                scene.obstacles.append((beads[-1], 2.0))
                break
    return beads


def place_ice(scene: Scene, rng: np.random.Generator) -> list[Blob]:
    """Crystalline ice contamination: irregular blobs (radius 15-40 nm) centred on the
    specimen surfaces (the lamella's, or the volume's z faces), so about half of each
    sticks into the specimen; obstacles for vesicles. Rendered by :func:`render_ice`."""
    p, blobs = scene.p, []
    half = p.lamella_thickness_nm / 2 if p.lamella_thickness_nm is not None else None
    n = lamella_normal(p.lamella_tilt_deg)
    centre = scene.extent / 2
    for i in range(int(p.n_ice_blobs)):
        q = random_point(scene, rng)
        side = 1.0 if i % 2 else -1.0
        if half is None:
            q[0] = 0.0 if side < 0 else scene.extent[0]
        else:
            q = q + n * (side * half - float(np.dot(n, q - centre)))
        k = 3
        blob = Blob(
            q,
            float(rng.uniform(15.0, 40.0)),
            np.linalg.qr(rng.normal(size=(3, 3)))[0][:k],
            rng.uniform(0.05, 0.15, k),
            rng.uniform(1.5, 3.0, k),
            rng.uniform(0, 2 * np.pi, k),
        )
        blobs.append(blob)
        scene.obstacles.append((blob, 3.0))
    return blobs


def render_ice(scene: Scene, blobs: list[Blob]) -> None:
    """Replace whatever is inside each blob (specimen or vacuum) by :data:`ICE_DENSITY`;
    labels inside are cleared."""
    occupancy = Profile([], [(-np.inf, 0.0, 1.0)])
    for blob in blobs:
        out = render(blob, occupancy, scene.shape, scene.vs, scene.p.oversample)
        if out is None:
            continue
        box, w, dist = out
        scene.density[box] = scene.density[box] * (1 - w) + w * np.float32(ICE_DENSITY)
        scene.vlab[box][dist < 0] = 0
        scene.mlab[box][dist < 0] = 0


def render_gold(scene: Scene, beads: list[Sphere]) -> None:
    """Render the beads (solid, :data:`GOLD_DENSITY`), added to what is there."""
    prof = Profile([], [(-np.inf, 0.0, GOLD_DENSITY)])
    for bead in beads:
        scene.add(bead, prof)


class Tube(Shape):
    """Distance (nm) to a straight axis through ``point_nm`` along ``direction`` minus a radius."""

    def __init__(self, point_nm: Array, direction: Array, radius_nm: float, extent_nm: Array):
        self.point_nm = np.asarray(point_nm, float)
        self.direction = np.asarray(direction, float) / np.linalg.norm(direction)
        self.radius_nm = float(radius_nm)
        self.extent_nm = np.asarray(extent_nm, float)

    def __call__(self, z, y, x):
        p0 = [float(v) for v in self.point_nm]
        d = [float(v) for v in self.direction]
        dz, dy, dx = z - p0[0], y - p0[1], x - p0[2]
        along = d[0] * dz + d[1] * dy + d[2] * dx
        perp2 = np.maximum(dz**2 + dy**2 + dx**2 - along**2, 0)
        return np.sqrt(perp2) - self.radius_nm

    def bbox_nm(self, pad_nm):
        return np.zeros(3), self.extent_nm


def place_microtubules(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Straight microtubules (25 nm, 5 nm wall, hollow) crossing the volume, mostly in-plane.

    They are rendered at once and become obstacles, so place them before the vesicles.
    Returns each axis as ``{"point_px", "direction"}`` (zyx, direction a unit vector).
    """
    axes = []
    r, half_wall = MICROTUBULE_RADIUS_NM, MICROTUBULE_WALL_NM / 2
    prof = Profile(
        [(-half_wall, 0.15, 0.6), (half_wall, 0.15, 0.6)], [(-half_wall, half_wall, 0.55)]
    )
    for _ in range(int(scene.p.n_microtubules)):
        c = random_point(scene, rng)
        c[0] = scene.extent[0] * rng.uniform(0.3, 0.7)
        direction = rng.normal(size=3) * np.array([0.15, 1.0, 1.0])
        if scene.p.microtubule_tilt_deg is not None:  # the same draw, another tilt law
            direction = _tilted(direction, scene.p.microtubule_tilt_deg)
        tube = Tube(c, direction, r, scene.extent)
        scene.add(tube, prof, lumen_below=-half_wall)
        scene.obstacles.append((tube, half_wall + 3.0))
        axes.append(
            {
                "point_px": (c / scene.vs).round(3).tolist(),
                "direction": tube.direction.round(6).tolist(),
            }
        )
    return axes


def _tilted(direction: np.ndarray, tilt_deg: tuple[float, float]) -> np.ndarray:
    """``direction`` (zyx) with its azimuth kept and its angle out of the xy plane set to
    lo + (hi - lo)·u, u = |2Φ(z/0.15) - 1| uniform in 0..1 (z ~ N(0, 0.15²), the default
    draw's z component), the sign of z kept: no extra random numbers, so a scene differs
    from the default one only in its microtubules' axes."""
    lo, hi = (float(v) for v in tilt_deg)
    u = abs(math.erf(float(direction[0]) / 0.15 / math.sqrt(2.0)))
    tilt = np.radians(lo + (hi - lo) * u)
    azimuth = math.atan2(float(direction[1]), float(direction[2]))
    sign = 1.0 if direction[0] >= 0 else -1.0
    return np.array(
        [
            sign * math.sin(tilt),
            math.cos(tilt) * math.sin(azimuth),
            math.cos(tilt) * math.cos(azimuth),
        ]
    )


def place_er_tubules(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Straight ER tubules: membrane tubes (bilayer midline radius 15-25 nm, light lumen)
    crossing the volume in any direction; membranes class 3, obstacles for vesicles.
    Cut across, they look like vesicles: a distractor. Place them before the vesicles."""
    t, half = scene.p.membrane_thickness_nm, scene.half_t
    prof = Profile(bilayer(0.0, t), [(-np.inf, -half, 0.1)])
    tubes = []
    for _ in range(int(scene.p.n_er_tubules)):
        c = random_point(scene, rng)
        r = float(rng.uniform(15.0, 25.0))
        tube = Tube(c, rng.normal(size=3), r, scene.extent)
        scene.add(tube, prof, [(0.0, OTHER)], lumen_below=-half)
        scene.obstacles.append((tube, half + 2.0))
        tubes.append(
            {
                "point_px": (c / scene.vs).round(3).tolist(),
                "direction": tube.direction.round(6).tolist(),
                "radius_nm": round(r, 3),
            }
        )
    return tubes


def place_coated_vesicles(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Clathrin-coated vesicles (endocytic, not synaptic vesicles: not in the table): a
    bilayer (midline radius 18-28 nm) inside a coat of two dense shells 6 and 13 nm outside
    it (outer diameter ≈ 70-90 nm); membranes class 3, obstacles. Place before vesicles."""
    t, half = scene.p.membrane_thickness_nm, scene.half_t
    out = []
    for _ in range(int(scene.p.n_coated_vesicles)):
        for _ in range(30):
            c = random_point(scene, rng)
            r = float(rng.uniform(18.0, 28.0))
            bound = r + 16.0
            if np.any(c < bound) or np.any(c > scene.extent - bound) or not clear(scene, c, bound):
                continue
            prof = Profile(
                bilayer(0.0, t) + [(6.0 + half, 0.35, 1.5), (13.0 + half, 0.5, 2.0)],
                [(-np.inf, -half, 0.2)],
            )
            shape = Sphere(c, r)
            scene.add(shape, prof, [(0.0, OTHER)], lumen_below=-half)
            scene.obstacles.append((Sphere(c, bound), 1.0))
            out.append({"center_px": (c / scene.vs).round(3).tolist(), "radius_nm": round(r, 3)})
            break
    return out


def place_ribosomes(scene: Scene, rng: np.random.Generator) -> int:
    """Ribosome-sized dense particles in the cytoplasm, clear of vesicles and compartments."""
    p = scene.p
    vol_um3 = float(np.prod(scene.extent)) * 1e-9
    target = int(rng.poisson(p.ribosome_density_per_um3 * vol_um3))
    centers = np.array([v.center_nm for v in scene.vesicles]).reshape(-1, 3)
    bounds = np.array([v.bound_nm for v in scene.vesicles])
    placed: list[tuple[Array, float]] = []
    done = np.empty((max(target, 1), 4))  # centres and radii placed so far, vectorised
    for _ in range(target * 5):
        if len(placed) >= target:
            break
        r = float(rng.uniform(*RIBOSOME_RADIUS_NM))
        c = random_point(scene, rng)
        idx = tuple(np.clip((c / scene.vs).astype(int), 0, np.asarray(scene.shape) - 1))
        if scene.compartment[idx] or not clear(scene, c, r):
            continue
        if len(centers) and np.any(np.linalg.norm(centers - c, axis=1) < bounds + r + 1.0):
            continue
        n = len(placed)
        if n and np.any(np.sum((done[:n, :3] - c) ** 2, axis=1) < (done[:n, 3] + r) ** 2):
            continue
        done[n] = (*c, r)
        placed.append((c, r))
    prof = Profile([], [(-np.inf, 0.0, RIBOSOME_DENSITY)])
    for c, r in placed:
        scene.add(Sphere(c, r), prof)
    return len(placed)


# --------------------------------------------------------------------------- looks


def wedge_mask(shape: tuple[int, int, int], tilt_range_deg: float) -> Array:
    """rfftn-shaped mask of the missing wedge of a single-axis series tilted about y:
    frequencies within ``90° - tilt_range_deg`` of the kz axis in the kz-kx plane."""
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.rfftfreq(shape[2])[None, None, :]
    kx_n, kz_n = kx * shape[2], kz * shape[0]  # cycles per volume: physical angles
    lost = np.abs(kx_n) < np.abs(kz_n) * math.tan(math.radians(90.0 - tilt_range_deg))
    return np.broadcast_to(lost, (shape[0], shape[1], shape[2] // 2 + 1))


def fill_wedge(reconstruction: Array, phantom: Array, tilt_range_deg: float) -> Array:
    """An IsoNet-like look: the missing wedge of ``reconstruction`` filled from the
    noise-free phantom. The phantom's transfer to the reconstruction (CTF, envelopes,
    filters, and the sign: densities are dark) is fitted by least squares in 24 shells
    of spatial frequency over the measured frequencies, and applied in the wedge.
    """
    rec_f = np.fft.rfftn(reconstruction)
    ref_f = np.fft.rfftn(phantom.astype(np.float32))
    lost = wedge_mask(reconstruction.shape, tilt_range_deg)
    k = np.sqrt(
        np.fft.fftfreq(reconstruction.shape[0])[:, None, None] ** 2
        + np.fft.fftfreq(reconstruction.shape[1])[None, :, None] ** 2
        + np.fft.rfftfreq(reconstruction.shape[2])[None, None, :] ** 2
    )
    shell = np.minimum((k / 0.5 * 24).astype(int), 23)
    measured = ~lost
    num = np.bincount(
        shell[measured], np.real(rec_f[measured] * np.conj(ref_f[measured])), minlength=24
    )
    den = np.bincount(shell[measured], np.abs(ref_f[measured]) ** 2, minlength=24)
    transfer = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
    filled = np.where(lost, transfer[shell] * ref_f, rec_f)
    return np.fft.irfftn(filled, s=reconstruction.shape, axes=(0, 1, 2)).astype(np.float32)

"""Membrane sheets and their classes, from a membrane probability map.

Pipeline (on the working grid of :mod:`synapseg.context.grid`, ≈ 3 nm voxels):

1. membrane voxels: probability ≥ ``level`` (max over each bin, so thin membranes survive
   the binning), minus the bilayer shells of the vesicles in the table;
2. connected components (26-connected); each gets a shape: PCA extents (``flatness`` =
   smallest / middle extent) and a quadric fitted over its PCA plane (``curvature_per_nm``,
   the larger principal curvature);
3. classes (:data:`MEMBRANE_CLASSES`): a *sheet* is flat (``flatness ≤ flat_max``) and gently
   curved (curvature radius ≥ ``min_sheet_radius_nm``); other components of at least
   ``min_area_nm2`` are organelle membranes (closed or strongly curved: mitochondria,
   endosomes, ER, dense-core vesicles); smaller ones stay unclassified;
4. a *synaptic pair* is a sheet with a partner membrane: at least ``min_pair_fraction``
   of the sheet lies ``cleft_nm`` (15-35 nm, midplane to midplane) from another component
   (a sheet or not: a predicted postsynaptic membrane often merges with its density),
   which lies further from the vesicles. The sheet is the presynaptic plasma membrane, the
   partner the postsynaptic membrane. An unpaired large sheet is plasma membrane without an
   active zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.context.grid import bin_factor, block_max, coarse_coords_nm, sheet_distance
from synapseg.core.units import voxel_size_zyx

__all__ = [
    "MEMBRANE_CLASSES",
    "ORGANELLE",
    "POSTSYNAPTIC",
    "PRESYNAPTIC",
    "UNCLASSIFIED",
    "VESICLE",
    "MembraneMap",
    "classify_membranes",
    "fit_quadric",
]

MEMBRANE_CLASSES = {
    1: "presynaptic plasma membrane",
    2: "vesicle membrane",
    3: "organelle membrane",
    4: "postsynaptic membrane",
    5: "unclassified membrane",
}
"""Class values of ``<name>_membranes.mrc``; 1-4 are those of the simulator's ground truth."""
PRESYNAPTIC, VESICLE, ORGANELLE, POSTSYNAPTIC, UNCLASSIFIED = 1, 2, 3, 4, 5
MAX_FIT_POINTS = 20000


@dataclass
class MembraneMap:
    """Membrane components on the working grid and what they are.

    Attributes
    ----------
    factor
        Binning of the working grid relative to the input grid.
    voxel_size_nm
        Input-grid voxel size (z, y, x) nm.
    shape
        Input-grid shape.
    components
        int32 component labels on the working grid (0: no membrane).
    classes
        Component id → class (:data:`MEMBRANE_CLASSES`).
    shapes
        Component id → shape facts (voxels, area, flatness, curvature, quadric).
    pairs
        Synaptic pairs: ``{"pre": id, "post": id, "fraction": f}``.
    level
        Probability (0-255) above which a voxel is membrane.
    """

    factor: int
    voxel_size_nm: np.ndarray
    shape: tuple[int, int, int]
    components: np.ndarray
    classes: dict[int, int]
    shapes: dict[int, dict[str, Any]]
    pairs: list[dict[str, Any]] = field(default_factory=list)
    level: int = 128

    @property
    def coarse_voxel_nm(self) -> np.ndarray:
        return self.voxel_size_nm * self.factor

    def points_nm(self, component: int | Sequence[int]) -> np.ndarray:
        """Working-grid voxel centers (nm) of one or several components."""
        ids = np.atleast_1d(component)
        idx = np.argwhere(np.isin(self.components, ids))
        return coarse_coords_nm(idx, self.factor, self.voxel_size_nm)

    def class_lut(self) -> np.ndarray:
        """Component id → class, as an array."""
        lut = np.zeros(int(self.components.max()) + 1, np.uint8)
        for comp, cls in self.classes.items():
            lut[comp] = cls
        return lut

    def facts(self) -> dict[str, Any]:
        counts = {name: 0 for name in MEMBRANE_CLASSES.values()}
        for cls in self.classes.values():
            counts[MEMBRANE_CLASSES[cls]] += 1
        return {
            "working_voxel_nm": [round(float(v), 3) for v in self.coarse_voxel_nm],
            "components": counts,
            "synaptic_pairs": len(self.pairs),
        }


def fit_quadric(points_nm: np.ndarray) -> dict[str, Any]:
    """PCA frame and quadric height ``w = a u² + b uv + c v² + d u + e v + f`` of a sheet.

    Returns ``center``, ``frame`` (rows: u, v, w axes), ``coef`` (a..f), ``flatness``
    (smallest / middle PCA extent), ``extent_nm`` (the three PCA standard deviations,
    largest first), ``curvature_per_nm`` (largest |principal curvature| at the center)
    and ``residual_nm`` (RMS of the height fit).
    """
    pts = np.asarray(points_nm, float)
    if len(pts) > MAX_FIT_POINTS:
        pts = pts[:: int(np.ceil(len(pts) / MAX_FIT_POINTS))]
    center = pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((pts - center).T) + 1e-9 * np.eye(3))
    frame = evecs[:, ::-1].T  # u (largest), v, w (normal)
    sd = np.sqrt(np.maximum(evals[::-1], 0))
    u, v, w = ((pts - center) @ frame.T).T
    design = np.stack([u * u, u * v, v * v, u, v, np.ones_like(u)], axis=1)
    coef, *_ = np.linalg.lstsq(design, w, rcond=None)
    hess = np.array([[2 * coef[0], coef[1]], [coef[1], 2 * coef[2]]])
    return {
        "center": center,
        "frame": frame,
        "coef": coef,
        "flatness": float(sd[2] / max(sd[1], 1e-9)),
        "extent_nm": sd.tolist(),
        "curvature_per_nm": float(np.max(np.abs(np.linalg.eigvalsh(hess)))),
        "residual_nm": float(np.sqrt(np.mean((design @ coef - w) ** 2))),
    }


def quadric_side(fit: dict[str, Any], points_nm: np.ndarray) -> np.ndarray:
    """Signed height of points above a fitted quadric sheet (nm, along its w axis)."""
    u, v, w = ((np.asarray(points_nm, float) - fit["center"]) @ fit["frame"].T).T
    return _height(fit, u, v, w)


def quadric_side_section(
    fit: dict[str, Any], z_nm: float, y_nm: np.ndarray, x_nm: np.ndarray
) -> np.ndarray:
    """:func:`quadric_side` of every point of a z-section, (len(y_nm), len(x_nm)).

    The sheet's coordinates are affine in y and x, so they are built by broadcasting 1D
    terms: no (N, 3) point list and no matrix product (which took 0.16 s per 512 × 512
    section under load, 20 s of the compartment on the reference volume; issue 14).
    Equal to :func:`quadric_side` on the same points to float rounding."""
    dz = float(z_nm) - fit["center"][0]
    dy = (np.asarray(y_nm, float) - fit["center"][1])[:, None]
    dx = (np.asarray(x_nm, float) - fit["center"][2])[None, :]
    frame = fit["frame"]
    u, v, w = (frame[k, 0] * dz + frame[k, 1] * dy + frame[k, 2] * dx for k in range(3))
    return _height(fit, u, v, w)


def _height(fit: dict[str, Any], u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = fit["coef"]
    return w - (a * u * u + b * u * v + c * v * v + d * u + e * v + f)


def _remove_vesicle_shells(
    mask: np.ndarray, vesicles: pd.DataFrame | None, factor: int, vs: np.ndarray, half_nm: float
) -> None:
    """Clear working-grid voxels on the bilayer shell of each vesicle (in place)."""
    if vesicles is None or not len(vesicles):
        return
    cvs = vs * factor
    slack = half_nm + 0.87 * float(cvs.max())
    centers = vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float) * vs
    for c, r in zip(centers, vesicles["radius_nm"].to_numpy(float)):
        lo = np.maximum(np.floor((c - r - slack) / cvs - 0.5).astype(int), 0)
        hi = np.minimum(np.ceil((c + r + slack) / cvs + 0.5).astype(int), mask.shape)
        if np.any(hi <= lo):
            continue
        grids = [
            (np.arange(a, b) * factor + (factor - 1) / 2) * s - cc
            for a, b, s, cc in zip(lo, hi, vs, c)
        ]
        d = np.sqrt(grids[0][:, None, None] ** 2 + grids[1][:, None] ** 2 + grids[2] ** 2)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        mask[box] &= np.abs(d - r) > slack


def classify_membranes(
    probabilities: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    vesicles: pd.DataFrame | None = None,
    *,
    level: int = 128,
    work_nm: float = 3.0,
    membrane_thickness_nm: float = 4.5,
    min_area_nm2: float = 1500.0,
    flat_max: float = 0.35,
    min_sheet_radius_nm: float = 250.0,
    min_plasma_area_nm2: float = 8000.0,
    cleft_nm: tuple[float, float] = (15.0, 35.0),
    min_pair_fraction: float = 0.3,
) -> MembraneMap:
    """Membrane components and their classes (see the module docstring).

    Parameters
    ----------
    probabilities
        Non-vesicle membrane probability on the input grid, uint8 0-255 (z, y, x).
    voxel_size_nm
        Input voxel size, nm (scalar or z, y, x).
    vesicles
        The vesicle table (centers in px, ``radius_nm``): their shells are not membranes
        here, and they tell which side of a synaptic pair is presynaptic.

    Returns
    -------
    MembraneMap
    """
    vs = np.asarray(voxel_size_zyx(voxel_size_nm), float)
    factor = bin_factor(vs, work_nm)
    cvs = vs * factor
    mask = block_max(probabilities, factor) >= level
    _remove_vesicle_shells(mask, vesicles, factor, vs, membrane_thickness_nm / 2)
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    components = components.astype(np.int32)
    thick_nm = membrane_thickness_nm + float(cvs.mean())
    voxel_nm3 = float(np.prod(cvs))
    counts = np.bincount(components.ravel(), minlength=n + 1)
    classes: dict[int, int] = {}
    shapes: dict[int, dict[str, Any]] = {}
    points: dict[int, np.ndarray] = {}
    slices = ndimage.find_objects(components)
    for comp in range(1, n + 1):
        area = counts[comp] * voxel_nm3 / thick_nm
        if area < min_area_nm2:
            classes[comp] = UNCLASSIFIED
            continue
        sl = slices[comp - 1]
        idx = np.argwhere(components[sl] == comp) + [s.start for s in sl]
        pts = coarse_coords_nm(idx, factor, vs)
        fit = fit_quadric(pts)
        fit.update(voxels=int(counts[comp]), area_nm2=float(area))
        shapes[comp] = fit
        sheet = fit["flatness"] <= flat_max and fit["curvature_per_nm"] <= 1 / min_sheet_radius_nm
        classes[comp] = UNCLASSIFIED if sheet else ORGANELLE
        fit["sheet"] = bool(sheet)
        points[comp] = pts
    pairs = _synaptic_pairs(points, shapes, vesicles, vs, thick_nm, cleft_nm, min_pair_fraction)
    paired = set()
    for pair in pairs:
        classes[pair["pre"]] = PRESYNAPTIC
        classes[pair["post"]] = POSTSYNAPTIC
        paired |= {pair["pre"], pair["post"]}
    for comp in points:
        big = shapes[comp]["area_nm2"] >= min_plasma_area_nm2
        if comp not in paired and shapes[comp]["sheet"] and big:
            classes[comp] = PRESYNAPTIC  # plasma membrane without a partner: no active zone
    return MembraneMap(
        factor, vs, tuple(probabilities.shape), components, classes, shapes, pairs, level
    )


def _synaptic_pairs(
    points: dict[int, np.ndarray],
    shapes: dict[int, dict[str, Any]],
    vesicles: pd.DataFrame | None,
    vs: np.ndarray,
    thick_nm: float,
    cleft_nm: tuple[float, float],
    min_fraction: float,
) -> list[dict[str, Any]]:
    """Sheets with a partner membrane across a cleft, presynaptic side first.

    The presynaptic side must be a sheet; its partner may be any membrane component (a
    predicted postsynaptic membrane often merges with its density into a thicker, less
    flat component): ``min_fraction`` of the sheet lies ``cleft_nm`` from it, on the side
    away from the vesicles.
    """
    if vesicles is None or not len(vesicles) or len(points) < 2:
        return []
    centers = vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float) * vs
    ves_dist = {c: float(np.median(sheet_distance(centers, p, 8.0))) for c, p in points.items()}
    lo, hi = cleft_nm
    pairs = []
    used: set[int] = set()
    ids = sorted(points, key=lambda c: ves_dist[c])  # nearest the vesicles first
    for a in ids:
        if not shapes[a]["sheet"]:
            continue
        for b in ids:
            if a == b or a in used or b in used or ves_dist[b] <= ves_dist[a]:
                continue
            d = sheet_distance(points[a], points[b]) + thick_nm
            fraction = float(np.mean((d >= lo) & (d <= hi)))
            if fraction >= min_fraction:
                pairs.append({"pre": a, "post": b, "fraction": fraction})
                used |= {a, b}
    return pairs

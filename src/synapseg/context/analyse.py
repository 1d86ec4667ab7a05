"""One call for the whole synapse context of a tomogram (what the ``context`` stage runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synapseg.context.az import ActiveZone, find_active_zone
from synapseg.context.classify import VESICLE, MembraneMap, classify_membranes
from synapseg.context.compartment import presynaptic_compartment
from synapseg.context.distances import add_az_columns, distance_layers, layer_facts
from synapseg.context.grid import upsample
from synapseg.core.units import voxel_size_zyx

__all__ = ["RETRY_LEVELS", "SynapseContext", "analyse_context", "membrane_classes"]

RETRY_LEVELS = (192, 230)
"""Stricter membrane levels (0-255) tried in turn when no synaptic pair is found."""


@dataclass
class SynapseContext:
    """Everything :func:`analyse_context` finds.

    Attributes
    ----------
    membranes
        uint8 class volume on the input grid (:data:`~synapseg.context.MEMBRANE_CLASSES`).
    az
        The active zone, or ``None`` when none was found.
    compartment
        bool presynaptic cytoplasm on the input grid, or ``None``.
    vesicles
        The vesicle table with ``az_distance_nm``, ``az_nearest_{z,y,x}_nm`` and ``pool``.
    layers
        Vesicle density per distance layer (``None`` without AZ or compartment).
    facts
        For the report: what was found, counts, timings.
    """

    membranes: np.ndarray
    az: ActiveZone | None
    compartment: np.ndarray | None
    vesicles: pd.DataFrame
    layers: pd.DataFrame | None
    facts: dict[str, Any] = field(default_factory=dict)


def membrane_classes(
    mmap: MembraneMap,
    probabilities: np.ndarray,
    vesicles: pd.DataFrame | None = None,
    membrane_thickness_nm: float = 4.5,
    base: MembraneMap | None = None,
) -> np.ndarray:
    """The uint8 class volume on the input grid: each membrane voxel (probability ≥ level)
    gets its component's class; the vesicles' bilayer shells (from the table) class 2.

    ``base``: the classification at a lower level (when ``mmap`` is a stricter retry that
    found the synaptic pair): voxels between the two levels, or without a class in
    ``mmap``, take their ``base`` class, so the volume covers the whole segmentation."""
    lut = mmap.class_lut()
    out = np.zeros(mmap.shape, np.uint8)
    f = mmap.factor
    if base is mmap or (base is not None and base.factor != f):
        base = None
    base_lut = None if base is None else base.class_lut()
    for k in range(mmap.components.shape[0]):
        zs = slice(k * f, min((k + 1) * f, mmap.shape[0]))
        shape = (zs.stop - zs.start, *mmap.shape[1:])
        cls = upsample(lut[mmap.components[k : k + 1]], f, shape)
        prob = np.asarray(probabilities[zs])
        cls = np.where(prob >= mmap.level, cls, 0)
        if base is not None:
            fill = upsample(base_lut[base.components[k : k + 1]], f, shape)
            cls = np.where((cls == 0) & (prob >= base.level), fill, cls)
        out[zs] = cls
    if vesicles is not None and len(vesicles):
        vs = mmap.voxel_size_nm
        half = membrane_thickness_nm / 2
        centers = vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float) * vs
        for c, r in zip(centers, vesicles["radius_nm"].to_numpy(float)):
            lo = np.maximum(np.floor((c - r - half) / vs).astype(int), 0)
            hi = np.minimum(np.ceil((c + r + half) / vs).astype(int) + 1, mmap.shape)
            if np.any(hi <= lo):
                continue
            g = [np.arange(a, b) * s - cc for a, b, s, cc in zip(lo, hi, vs, c)]
            d = np.sqrt(g[0][:, None, None] ** 2 + g[1][:, None] ** 2 + g[2] ** 2)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            out[box][np.abs(d - r) <= half] = VESICLE
    return out


def analyse_context(
    membrane_probabilities: np.ndarray,
    vesicles: pd.DataFrame,
    voxel_size_nm: float | Sequence[float],
    *,
    docked_nm: float = 5.0,
    proximal_nm: float = 45.0,
    layer_nm: float = 10.0,
    cleft_nm: tuple[float, float] = (15.0, 35.0),
    level: int = 128,
    membrane_thickness_nm: float = 4.5,
) -> SynapseContext:
    """Membrane classes, AZ, compartment, per-vesicle AZ columns and distance layers.

    Parameters
    ----------
    membrane_probabilities
        Non-vesicle membrane probability on the input grid, uint8 0-255.
    vesicles
        The vesicle table (``center_*_px``, ``radius_nm``).
    voxel_size_nm
        Input voxel size, nm.
    docked_nm, proximal_nm
        Pool thresholds on ``az_distance_nm``.
    layer_nm
        Thickness of the distance layers.
    cleft_nm
        Range of AZ-to-postsynaptic midplane distances that makes a synaptic cleft.
    level
        Probability (0-255) above which a voxel is membrane.
    """
    vs = voxel_size_zyx(voxel_size_nm)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # no synaptic pair: retry at stricter levels (a network's map can bridge the cleft,
    # merging both membranes into one component, with lower probabilities in the bridge);
    # when no level finds one, the classification at ``level`` stands
    base = None
    for lvl in (level, *(v for v in RETRY_LEVELS if v > level)):
        mmap = classify_membranes(
            membrane_probabilities,
            vs,
            vesicles,
            level=lvl,
            cleft_nm=cleft_nm,
            membrane_thickness_nm=membrane_thickness_nm,
        )
        base = mmap if base is None else base
        if mmap.pairs:
            break
    if not mmap.pairs:
        mmap = base
    timings["classify_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    membranes = membrane_classes(
        mmap, membrane_probabilities, vesicles, membrane_thickness_nm, base=base
    )
    timings["class_volume_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    az = find_active_zone(
        mmap, membrane_probabilities, cleft_nm=cleft_nm, membrane_thickness_nm=membrane_thickness_nm
    )
    timings["active_zone_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compartment, comp_facts = presynaptic_compartment(mmap, membrane_probabilities, vesicles)
    timings["compartment_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = add_az_columns(vesicles, az, vs, docked_nm, proximal_nm)
    layers = distance_layers(
        az,
        compartment,
        table,
        vs,
        layer_nm=layer_nm,
        factor=max(mmap.factor, int(round(layer_nm / 2 / min(vs)))),
        membrane_thickness_nm=membrane_thickness_nm,
    )
    timings["distances_s"] = time.perf_counter() - t0
    facts: dict[str, Any] = {**mmap.facts(), **comp_facts, "level": mmap.level}
    facts["active_zone"] = (
        az.facts
        if az is not None
        else {
            "found": False,
            "statement": "no active zone: no plasma membrane with a parallel partner "
            f"{cleft_nm[0]:g}-{cleft_nm[1]:g} nm across a cleft on the vesicles' side",
        }
    )
    if az is not None and len(table):
        pools = table["pool"].value_counts()
        facts["pools"] = {k: int(pools.get(k, 0)) for k in ("docked", "proximal", "distal")}
        facts["pool_thresholds_nm"] = {"docked": docked_nm, "proximal": proximal_nm}
    facts["layers"] = layer_facts(layers)
    facts["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return SynapseContext(membranes, az, compartment, table, layers, facts)

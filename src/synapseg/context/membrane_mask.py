"""A membrane segmentation from the membrane probability map: hysteresis plus an area floor.

Membranes are extended sheets; the false membrane a network draws on noise is mostly small
pieces. The segmentation keeps a voxel when

1. its probability reaches ``low`` (the map's own 0.5 by default), and
2. its connected piece of the ``low`` mask (26-connected) holds a *seed*, a voxel whose
   probability reaches ``high`` (hysteresis thresholding, as
   :func:`skimage.filters.apply_hysteresis_threshold`), and
3. that piece covers at least ``min_area_nm2`` of membrane (its voxel volume divided by
   ``membrane_thickness_nm``), so the floor is in nm² and scales with the voxel size.

Connectivity is computed on the context stage's working grid (:mod:`synapseg.context.grid`:
the input binned by an integer factor to ≈ ``work_nm``, each coarse voxel the maximum of its
block), so memory stays bounded at the reference size: one int32 label volume of the working
grid, and the input grid streamed in slabs of ``factor`` sections. Two pieces closer than
about one working voxel count as one. With ``factor == 1`` this is exactly hysteresis plus an
area floor on the input grid.

Parameters come from the membrane model's card, ``postprocessing.membrane_segmentation``
(``{"low": 0.5, "high": ..., "min_area_nm2": ...}``), with :data:`DEFAULTS` for missing keys;
``{"enabled": false}`` there (or ``segment(..., membrane_segmentation=False)``) keeps the
thresholded map as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.context.grid import bin_factor, block_max, upsample
from synapseg.core.units import voxel_size_zyx

log = logging.getLogger(__name__)

__all__ = [
    "CARD_KEY",
    "DEFAULTS",
    "card_segmentation_params",
    "clean_membrane_map",
    "membrane_segmentation",
    "segmentation_params",
]

CARD_KEY = "membrane_segmentation"
"""Key of the parameters in a membrane model card's ``postprocessing``."""

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "low": 0.5,
    "high": 0.9,
    "min_area_nm2": 1000.0,
    "membrane_thickness_nm": 4.5,
    "work_nm": 3.0,
}
"""Defaults in code (chosen on the membrane recipe's validation draws ``sim_028``-``sim_031``,
seeds ``[20261221, 28..31]``, never on the benchmark; docs/benchmarks.md)."""


def segmentation_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``overrides`` (unknown keys are refused).

    Raises
    ------
    ValueError
        An unknown key, or ``low > high``.
    """
    params = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ValueError(
                f"unknown membrane segmentation parameter {key!r} (known: {', '.join(DEFAULTS)})"
            )
        params[key] = value
    params["enabled"] = bool(params["enabled"])
    for key in ("low", "high", "min_area_nm2", "membrane_thickness_nm", "work_nm"):
        params[key] = float(params[key])
    if params["low"] > params["high"]:
        raise ValueError(f"membrane segmentation: low {params['low']} > high {params['high']}")
    return params


def card_segmentation_params(model: str | Path | None) -> dict[str, Any]:
    """The segmentation parameters of a membrane model (name, folder or card path): its
    card's ``postprocessing.membrane_segmentation`` over :data:`DEFAULTS`. ``model``
    ``"default"`` is the shipped default membrane model; ``None`` gives the defaults."""
    if model is None or str(model).lower() == "none":
        return segmentation_params()
    from synapseg.model.registry import read_card, resolve_model

    if str(model) == "default":
        from synapseg.context.membrane_net import default_membrane_model

        card_path = default_membrane_model()
        if card_path is None:
            return segmentation_params()
    else:
        card_path = resolve_model(model)
    card = read_card(card_path)
    try:
        return segmentation_params((card.postprocessing or {}).get(CARD_KEY))
    except (ValueError, TypeError) as exc:
        from synapseg.errors import ModelError

        raise ModelError(
            card_path,
            f"postprocessing.{CARD_KEY} is invalid ({exc})",
            f"fix or remove it in the card (known keys: {', '.join(DEFAULTS)}; low <= high)",
        ) from exc


def _level(p: float) -> int:
    """A 0-1 probability as the uint8 level ``membrane_mask`` uses (rounded, ×255)."""
    return int(round(float(p) * 255))


def membrane_segmentation(
    probabilities: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    low: float = DEFAULTS["low"],
    high: float = DEFAULTS["high"],
    min_area_nm2: float = DEFAULTS["min_area_nm2"],
    membrane_thickness_nm: float = DEFAULTS["membrane_thickness_nm"],
    work_nm: float = DEFAULTS["work_nm"],
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The cleaned membrane map: ``probabilities`` where the segmentation keeps a voxel, else 0.

    Parameters
    ----------
    probabilities
        Membrane probability on the input grid, uint8 0-255 (z, y, x); any array-like that
        slices in z (a memmap streams).
    voxel_size_nm
        Input voxel size, nm (scalar or z, y, x).
    low, high
        Hysteresis levels (probabilities 0-1): voxels from ``low``, in pieces holding a
        voxel from ``high``.
    min_area_nm2
        Smallest piece kept: voxels ≥ ``low`` × voxel volume / ``membrane_thickness_nm``.
    membrane_thickness_nm
        Converts a piece's volume to its membrane area.
    work_nm
        Voxel size of the working grid on which connectivity is computed.
    out
        uint8 array of the input shape to write into (default: a new one).

    Returns
    -------
    cleaned : numpy.ndarray
        uint8, the input probability on kept voxels and 0 elsewhere (so ``cleaned >= low``
        is the segmentation and every level above ``low`` reads as before).
    facts : dict
        Pieces found and kept, voxels kept and removed, the working-grid factor.
    """
    vs = np.asarray(voxel_size_zyx(voxel_size_nm), float)
    shape = tuple(int(s) for s in probabilities.shape)
    lo, hi = _level(low), _level(high)
    factor = bin_factor(vs, work_nm)
    coarse = block_max(probabilities, factor)
    seeds = coarse >= hi
    labels, n = ndimage.label(coarse >= lo, structure=np.ones((3, 3, 3), bool))
    del coarse
    slabs = range(labels.shape[0])

    def slab(k: int) -> tuple[slice, np.ndarray]:
        zs = slice(k * factor, min((k + 1) * factor, shape[0]))
        return zs, upsample(labels[k : k + 1], factor, (zs.stop - zs.start, *shape[1:]))

    def count(k: int) -> np.ndarray:  # a piece's input-grid voxels >= low (its area)
        zs, lab = slab(k)
        return np.bincount(lab[np.asarray(probabilities[zs]) >= lo], minlength=n + 1)

    if out is None:
        out = np.zeros(shape, np.uint8)

    def write(k: int) -> None:
        zs, lab = slab(k)
        p = np.asarray(probabilities[zs])
        out[zs] = np.where(keep[lab] & (p >= lo), p, 0)

    # two slabs at a time (numpy releases the GIL in most of this); sums and writes are
    # order-independent, so the result is the same
    with ThreadPoolExecutor(2) as pool:
        counts = np.sum(list(pool.map(count, slabs)), axis=0, dtype=np.int64)
        area_nm2 = counts * float(np.prod(vs)) / membrane_thickness_nm
        seeded = np.zeros(n + 1, bool)
        seeded[np.unique(labels[seeds])] = True
        keep = seeded & (area_nm2 >= min_area_nm2)
        keep[0] = False
        list(pool.map(write, slabs))
    kept = int(counts[keep].sum())
    facts = {
        "working_factor": int(factor),
        "pieces": int(n),
        "pieces_kept": int(keep.sum()),
        "pieces_without_seed": int(n - seeded[1:].sum()),
        "pieces_below_area": int((seeded[1:] & (area_nm2[1:] < min_area_nm2)).sum()),
        "voxels_kept": kept,
        "voxels_removed": int(counts[1:].sum()) - kept,
    }
    return out, facts


def clean_membrane_map(
    probabilities: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    params: Mapping[str, Any] | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`membrane_segmentation` with ``params`` (:func:`segmentation_params`), or the
    map unchanged when ``params["enabled"]`` is false. Returns the map and the facts for the
    report (the parameters used included)."""
    p = segmentation_params(params)
    facts: dict[str, Any] = {"parameters": p}
    if not p["enabled"]:
        return probabilities, facts
    args = {k: v for k, v in p.items() if k != "enabled"}
    cleaned, got = membrane_segmentation(probabilities, voxel_size_nm, out=out, **args)
    facts.update(got)
    log.info(
        "membrane segmentation: kept %d of %d pieces (%d voxels removed)",
        got["pieces_kept"],
        got["pieces"],
        got["voxels_removed"],
    )
    return cleaned, facts

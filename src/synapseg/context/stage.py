"""The ``context`` stage: membrane classes, active zone, compartment, per-vesicle AZ columns.

Inputs: ``grid``, ``membrane_probabilities`` (the ``membrane_net`` stage; ``None`` when no
membrane model ran) and ``vesicles``. Outputs (all ``None`` when the stage is off or there
is no membrane map, with the reason in its facts):

``membranes``
    uint8 class volume (``<name>_membranes.mrc``).
``az``
    :class:`~synapseg.context.az.ActiveZone` or ``None`` when no AZ was found
    (``<name>_az.json`` always; ``<name>_az.mrc`` mask and ``<name>_az.ply`` mesh when found).
``compartment``
    bool presynaptic cytoplasm (``<name>_compartment.mrc``).
``layers``
    vesicle density per distance layer (``<name>_layers.csv``).
``vesicles_in_context``
    the vesicle table with ``az_distance_nm``, ``az_nearest_{z,y,x}_nm`` and ``pool``; the
    file runner writes it over ``<name>_vesicles.csv``, so every export carries the columns.

Parameters: ``context`` (False: off), ``docked_nm`` (5), ``proximal_nm`` (45), ``layer_nm``
(10), ``cleft_nm`` ((15, 35)), ``membrane_segmentation`` (True: the map is cleaned first by
:func:`synapseg.context.membrane_mask.clean_membrane_map` with the membrane model card's
``postprocessing.membrane_segmentation`` over the defaults in code; a dict overrides single
parameters; False: the thresholded map as it was). Everything downstream (classes, AZ,
compartment) reads the cleaned map, so ``<name>_membranes.mrc`` is the segmentation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from typing import Any

import numpy as np

from synapseg.core.stages import Stage, StageContext, register_stage
from synapseg.io.atomic import preallocate

log = logging.getLogger(__name__)

__all__ = ["CONTEXT_OUTPUTS", "CONTEXT_STAGE", "run_context"]

CONTEXT_OUTPUTS = ("membranes", "az", "compartment", "layers", "vesicles_in_context")


SCRATCH_BYTES = 64 * 2**20
"""A cleaned map above this size is memory-mapped (page cache, not the process's memory)."""


def _scratch_map(shape: tuple[int, ...], folder: str | None) -> np.ndarray | None:
    """An unlinked temporary uint8 memory map of ``shape`` for the cleaned membrane map
    (274 MB at the reference size), or ``None`` (a plain array) when it is small."""
    if int(np.prod(shape)) <= SCRATCH_BYTES:
        return None
    fd, path = tempfile.mkstemp(prefix="synapseg-membranes-", suffix=".u8", dir=folder)
    os.close(fd)
    try:
        preallocate(path, int(np.prod(shape)))  # a full disk: an error now, not SIGBUS later
        return np.memmap(path, dtype=np.uint8, mode="w+", shape=tuple(shape))
    finally:
        with contextlib.suppress(OSError):  # the map keeps its pages; the disk space goes with it
            os.unlink(path)


def run_context(ctx: StageContext) -> dict[str, Any]:
    """Run :func:`synapseg.context.analyse.analyse_context` (see the module docstring)."""
    p = ctx.params
    none = {name: None for name in CONTEXT_OUTPUTS}
    if not p.get("context", True):
        ctx.facts.update(ran=False, reason="context off (--no-context)")
        return none
    prob = ctx["membrane_probabilities"]
    if prob is None:
        ctx.facts.update(ran=False, reason="no membrane probabilities (no membrane model ran)")
        return none
    from synapseg.context.analyse import analyse_context
    from synapseg.context.membrane_mask import clean_membrane_map

    t0 = time.perf_counter()
    vs = ctx["grid"].voxel_size_nm
    params = _segmentation_params(p)
    out = _scratch_map(prob.shape, p.get("scratch_dir")) if params["enabled"] else None
    prob, seg_facts = clean_membrane_map(prob, vs, params, out=out)
    seg_facts["seconds"] = round(time.perf_counter() - t0, 3)
    result = analyse_context(
        prob,
        ctx["vesicles"],
        vs,
        docked_nm=float(p["docked_nm"]),
        proximal_nm=float(p["proximal_nm"]),
        layer_nm=float(p["layer_nm"]),
        cleft_nm=tuple(float(v) for v in p["cleft_nm"]),
        level=int(round(params["low"] * 255)) if params["enabled"] else 128,
    )
    ctx.facts.update(ran=True, **result.facts)
    ctx.facts["membrane_segmentation"] = seg_facts
    ctx.facts["seconds"] = time.perf_counter() - t0
    source = p.get("path") or "volume"
    if result.az is None:
        log.info("%s: %s", source, result.facts["active_zone"]["statement"])
    return {
        "membranes": result.membranes,
        "az": result.az,
        "compartment": result.compartment,
        "layers": result.layers,
        "vesicles_in_context": result.vesicles,
    }


def _segmentation_params(p: Any) -> dict[str, Any]:
    """The membrane model card's segmentation parameters, with the caller's
    ``membrane_segmentation`` (a bool turns it on/off, a dict overrides single keys)."""
    from synapseg.context.membrane_mask import card_segmentation_params, segmentation_params

    params = card_segmentation_params(p.get("membrane_model", "default"))
    given = p.get("membrane_segmentation", True)
    if isinstance(given, dict):
        return segmentation_params({**params, **given})
    return segmentation_params({**params, "enabled": bool(given) and params["enabled"]})


CONTEXT_STAGE = Stage(
    "context",
    ("grid", "membrane_probabilities", "vesicles"),
    CONTEXT_OUTPUTS,
    run_context,
    {
        "context": True,
        "docked_nm": 5.0,
        "proximal_nm": 45.0,
        "layer_nm": 10.0,
        "cleft_nm": (15.0, 35.0),
        "membrane_segmentation": True,
    },
    persist=CONTEXT_OUTPUTS,
)
register_stage(CONTEXT_STAGE, replace=True)


def _register_stores() -> None:
    from synapseg.context.files import register_context_stores

    register_context_stores()


_register_stores()

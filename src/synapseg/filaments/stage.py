"""The ``filaments`` stage: connectors and tethers after the vesicles and the active zone.

Inputs: ``image``, ``grid``, ``polarity`` (densities bright when inverted), ``vesicles``,
and, when the ``context`` stage is registered, ``az`` (its
:class:`~synapseg.context.az.ActiveZone`, ``None`` when none was found) and
``vesicles_in_context`` (the vesicle table with ``az_distance_nm``). Outputs:

``filaments``
    the filament table (``<name>_filaments.csv``, plus ``<name>_filaments.mod`` with the
    paths as IMOD open contours and ``<name>_filaments_summary.png``).
``filament_labels``
    uint16 filament ids on the input grid (``<name>_filaments.mrc``).
``vesicles_with_filaments``
    the vesicle table with ``n_connectors`` and ``n_tethers``, written over
    ``<name>_vesicles.csv``.

Parameter ``filaments``: ``"auto"`` or ``None`` (default: run when an active zone was
found), ``True`` (``segment --filaments``: run anyway, connectors only without an AZ) or
``False``. The
summary (fractions by AZ distance, counts, lengths) goes into the report's facts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from synapseg.core.stages import Stage, StageContext, register_stage, registered_stages

log = logging.getLogger(__name__)

__all__ = ["FILAMENT_OUTPUTS", "az_mask_of", "run_filaments"]

FILAMENT_OUTPUTS = ("filaments", "filament_labels", "vesicles_with_filaments")


def az_mask_of(az: Any) -> np.ndarray | None:
    """The boolean AZ mask of an ``az`` artifact (an object or dict with ``mask``, an
    array, or ``None``)."""
    if az is None:
        return None
    mask = az.get("mask") if isinstance(az, dict) else getattr(az, "mask", az)
    return None if mask is None else np.asarray(mask, bool)


def run_filaments(ctx: StageContext) -> dict[str, Any]:
    """Detect connectors and tethers (see the module docstring)."""
    from synapseg.filaments.detect import FilamentParams
    from synapseg.filaments.find import detect_filaments
    from synapseg.filaments.summary import add_counts, filament_summary

    none = dict.fromkeys(FILAMENT_OUTPUTS)
    mode = ctx.params.get("filaments", "auto")
    mode = "auto" if mode is None else mode
    az = az_mask_of(ctx.inputs.get("az"))
    if mode is False or mode == "no":
        ctx.facts.update(ran=False, reason="filaments off")
        return none
    if az is None and mode not in (True, "yes"):
        ctx.facts.update(ran=False, reason="no active zone found (segment --filaments forces it)")
        return none
    vesicles = ctx.inputs.get("vesicles_in_context")
    if vesicles is None:
        vesicles = ctx["vesicles"]
    grid = ctx["grid"]
    polarity = ctx.inputs.get("polarity") or {}
    overrides = dict(ctx.params.get("filament_params") or {})
    overrides.setdefault("invert", bool(polarity.get("invert", False)))
    params = FilamentParams(**overrides)
    t0 = time.perf_counter()
    labels = ctx.sink("filament_labels", grid.shape, np.uint16)
    facts: dict[str, Any] = {}
    table, labels = detect_filaments(
        ctx["image"], grid.voxel_size_nm, vesicles, az, params, labels_out=labels, facts=facts
    )
    counted = add_counts(vesicles, table)
    facts["summary"] = filament_summary(counted, table)
    facts["seconds"] = time.perf_counter() - t0
    if az is None:
        facts["note"] = "no active zone: connectors only"
    ctx.facts.update(ran=True, **facts)
    log.info(
        "%s: %d connectors, %d tethers",
        ctx.params.get("path") or "volume",
        facts["n_connectors"],
        facts["n_tethers"],
    )
    return {"filaments": table, "filament_labels": labels, "vesicles_with_filaments": counted}


def filament_stage() -> Stage:
    """The stage, reading ``az``/``vesicles_in_context`` when a stage produces them."""
    produced = {o for st in registered_stages().values() for o in st.outputs}
    inputs = ["image", "grid", "polarity", "vesicles"]
    inputs += [name for name in ("az", "vesicles_in_context") if name in produced]
    return Stage(
        "filaments",
        tuple(inputs),
        FILAMENT_OUTPUTS,
        run_filaments,
        {"filaments": "auto", "filament_params": None},
        persist=FILAMENT_OUTPUTS,
    )


register_stage(filament_stage(), replace=True)


def _register_stores() -> None:
    from synapseg.filaments.files import register_filament_stores

    register_filament_stores()


_register_stores()

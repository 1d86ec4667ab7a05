"""The built-in stages: specimen mask → network → polarity → probabilities → wedge → vesicles.

Each is pure on arrays (the probabilities go into a sink when one is given) and is what
``synapseg segment`` runs; :mod:`synapseg.core.runner` adds files, resume and the report.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.stages import Stage, StageContext, register_stage

log = logging.getLogger(__name__)

CENTER_COLUMNS = ["center_z_px", "center_y_px", "center_x_px"]


def as_volume(ctx: StageContext) -> Any:
    """The ``image`` artifact as a :class:`~synapseg.io.volume.Volume` (for infer/)."""
    from synapseg.io.volume import Volume

    grid = ctx["grid"]
    return Volume(ctx["image"], grid.voxel_size_nm, grid.origin_nm, ctx.params.get("path"))


def run_specimen(ctx: StageContext) -> dict[str, Any]:
    from synapseg.specimen.mask import specimen_mask

    specimen = specimen_mask(ctx["image"], ctx["grid"].voxel_size_nm)
    ctx.facts.update(specimen.facts)
    return {"specimen": specimen}


def run_network(ctx: StageContext) -> dict[str, Any]:
    from synapseg.model.registry import load_model

    return {"network": load_model(ctx.params["model"], device="cpu")}


def run_polarity(ctx: StageContext) -> dict[str, Any]:
    invert = ctx.params["invert"]
    if invert == "auto":
        from synapseg.infer.polarity import decide_polarity

        polarity = decide_polarity(
            as_volume(ctx), ctx["network"], ctx.params["device"], ctx["specimen"]
        )
    else:
        polarity = {"invert": invert == "yes", "forced": True}
    return {"polarity": polarity}


def run_predict(ctx: StageContext) -> dict[str, Any]:
    """Vesicle probability (uint8, 0-255) on the input grid, streamed into the sink."""
    from synapseg.infer.predict import predict_volume

    net, card = ctx["network"]
    grid = ctx["grid"]
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    out = ctx.sink("probabilities", grid.shape, np.uint8)
    predict_volume(
        as_volume(ctx),
        model=(net, card),
        device=ctx.params["device"],
        tta=ctx.params["tta"],
        tile_size=ctx.params["tile_size"],
        out=out,
        progress=ctx.params["progress"],
        invert=ctx["polarity"]["invert"],
        report=details,
        specimen=ctx["specimen"],
        scratch_dir=ctx.params["scratch_dir"],
    )
    seconds = time.perf_counter() - t0
    ctx.facts.update(
        {
            "seconds": seconds,
            "mvoxel_per_s": float(np.prod(grid.shape)) / 1e6 / max(seconds, 1e-9),
            "model": {
                "name": card.name,
                "sha256": card.sha256,
                "voxel_size_nm": card.voxel_size_nm,
            },
            "polarity": ctx["polarity"],
            "details": details,
        }
    )
    return {"probabilities": out}


def run_acquisition(ctx: StageContext) -> dict[str, Any]:
    """The missing wedge: given (``tilt_range_deg``/``tilt_axis``) or estimated."""
    from synapseg.specimen.wedge import resolve_wedge

    specimen = ctx["specimen"]  # None: blocks over the whole volume
    z_range = None if specimen is None else specimen.facts.get("specimen_z_range_px")
    wedge, note = resolve_wedge(
        ctx["image"],
        ctx["grid"].voxel_size_nm,
        ctx.params["tilt_range_deg"],
        ctx.params["tilt_axis"],
        z_range_px=None if z_range is None else tuple(z_range),
    )
    ctx.facts.update(wedge.to_json())
    source = ctx.params.get("path") or "volume"
    if note:
        log.warning("%s: %s", source, note)
        ctx.facts["note"] = note
    else:
        log.info(
            "%s: missing wedge ±%.1f° about %s (%s, quality %s)",
            source,
            wedge.tilt_range_deg,
            wedge.wedge_axis,
            wedge.source,
            ctx.facts["quality"],
        )
    return {"wedge": wedge}


def run_vesicles(ctx: StageContext) -> dict[str, Any]:
    """Instances, wedge-aware sphere fit, QC filters and the optional ``mask`` filter."""
    from synapseg.post.vesicles import PostParams, count_outcomes, find_vesicles
    from synapseg.summary import vesicle_warnings

    grid, p = ctx["grid"], ctx.params
    params = vesicle_params(p, ctx["wedge"], _invert(ctx["polarity"], p["invert"]))
    t0 = time.perf_counter()
    table, rejected, info = find_vesicles(
        ctx["image"],
        ctx["probabilities"],
        grid.voxel_size_nm,
        params=PostParams(**params),
        specimen=ctx["specimen"],
    )
    mask = p["mask"]
    if mask is not None and len(table):
        idx = np.rint(table[CENTER_COLUMNS].to_numpy()).astype(int)
        idx = np.clip(idx, 0, np.array(grid.shape) - 1)
        inside = np.asarray(mask)[idx[:, 0], idx[:, 1], idx[:, 2]] != 0
        outside = table[~inside].assign(reason="center outside --mask")
        rejected = pd.concat([rejected, outside], ignore_index=True)
        table = table[inside].reset_index(drop=True)
        table["id"] = np.arange(1, len(table) + 1)
        count_outcomes(info["counts"], table, rejected)  # candidates = vesicles + rejected
    source = p.get("path") or "volume"
    if len(table) == 0:
        log.warning("%s: no vesicles found", source)
        info.setdefault("statement", "no vesicles found")
    table["source"] = "auto"  # found by segment; export marks hand-placed rows "manual"
    info = dict(info)
    info["seconds"] = time.perf_counter() - t0
    info["n_vesicles"] = int(len(table))
    info["confidence_model"] = params.get("confidence_model", "packaged")
    info["rejected"] = rejected_summary(rejected)
    sanity = vesicle_warnings(
        table["radius_nm"].to_numpy(), grid.voxel_size_nm, info["params"]["min_radius_nm"]
    )
    for message in sanity:
        log.warning("%s: %s", source, message)
    info["warnings"] = list(info.get("warnings", [])) + sanity
    ctx.facts.update(info)
    return {"vesicles": table}


def vesicle_params(params: dict[str, Any], wedge: Any, invert: str) -> dict[str, Any]:
    """The :class:`~synapseg.post.vesicles.PostParams` keywords of a run, from one place for
    the single-process ``vesicles`` stage and the block-wise path
    (:func:`synapseg.distributed.block_post.post_params`).

    Parameters
    ----------
    params
        The stage parameters (``model``, ``min_confidence``, ``threshold``,
        ``min_radius_nm``, ``max_radius_nm``; missing keys are unset).
    wedge
        The missing wedge (:class:`~synapseg.specimen.wedge.WedgeEstimate`).
    invert
        ``"yes"``/``"no"`` (the polarity decision) or ``"auto"``.

    Returns
    -------
    dict
        The wedge, polarity and confidence cut-off; the model card's calibrated
        ``min_best_score``/``threshold``/``min_separation_nm``
        (:func:`~synapseg.model.registry.card_post_params`) and the network's own confidence
        model when the model is a name or folder, and a radius range the card's
        ``postprocessing`` holds (``synapseg adapt`` may write ``qc_min_radius_nm``) and its
        opt-in ``max_tube_score`` (:mod:`synapseg.post.tubes`); the given
        ``threshold`` and radius range last (a user's value wins over the card's).
    """
    out: dict[str, Any] = {
        "tilt_range_deg": wedge.tilt_range_deg,
        "invert": invert,
        "min_confidence": params.get("min_confidence", 0.5),
        "tilt_axis": wedge.wedge_axis,  # "dual": weights of both series (a pyramid)
    }
    if isinstance(params.get("model"), (str, os.PathLike)):  # calibrated for this network
        from synapseg.model.registry import card_post_params, read_card, resolve_model

        card = read_card(resolve_model(params["model"]))
        out.update(card_post_params(card))
        for key in ("min_radius_nm", "max_radius_nm", "qc_min_radius_nm"):  # `synapseg adapt`
            if key in (card.postprocessing or {}):
                out[key] = card.postprocessing[key]
        if (card.postprocessing or {}).get("max_tube_score") is not None:  # opt-in, post.tubes
            out["max_tube_score"] = float(card.postprocessing["max_tube_score"])
    for key in ("threshold", "min_radius_nm", "max_radius_nm"):
        if params.get(key) is not None:
            out[key] = params[key]
    if params.get("min_radius_nm") is not None:  # the user's floor is the size check's too
        out.pop("qc_min_radius_nm", None)
    confidence = _confidence_model(params.get("model", "default"))
    if confidence is not None:
        out["confidence_model"] = confidence
    return out


def _confidence_model(model: Any) -> str | None:
    """The network's own confidence model (``confidence_model.json`` in its folder), or None
    for the one packaged with :mod:`synapseg.post`."""
    from synapseg.model.registry import confidence_model_path

    if not isinstance(model, (str, os.PathLike)):
        return None
    path = confidence_model_path(model)
    return None if path is None else str(path)


def _invert(polarity: dict[str, Any] | None, given: str) -> str:
    """``yes``/``no`` from the polarity decision; ``given`` (auto/yes/no) when none was made."""
    if polarity is None or polarity.get("invert") is None:
        return given
    return "yes" if polarity["invert"] else "no"


def rejected_summary(rejected: pd.DataFrame) -> list[dict[str, Any]]:
    """Rejected candidates for the report: center, radius, network score, calibrated
    confidence (so calibration can be scored over every candidate) and reason."""
    keys = (*CENTER_COLUMNS, "radius_nm", "score", "confidence", "reason")
    cols = [c for c in keys if c in rejected]
    return json.loads(rejected[cols].to_json(orient="records", double_precision=3))


BUILTIN = (
    Stage("specimen", ("image", "grid"), ("specimen",), run_specimen),
    Stage("network", (), ("network",), run_network, {"model": "default"}),
    Stage(
        "polarity",
        ("image", "grid", "network", "specimen"),
        ("polarity",),
        run_polarity,
        {"invert": "auto", "device": "auto"},
        persist=("polarity",),
    ),
    Stage(
        "predict",
        ("image", "grid", "network", "polarity", "specimen"),
        ("probabilities",),
        run_predict,
        {"device": "auto", "tta": False, "tile_size": None, "progress": False, "scratch_dir": None},
        persist=("probabilities",),
    ),
    Stage(
        "acquisition",
        ("image", "grid", "specimen"),
        ("wedge",),
        run_acquisition,
        {"tilt_range_deg": None, "tilt_axis": None},
    ),
    Stage(
        "vesicles",
        ("image", "grid", "probabilities", "polarity", "wedge", "specimen"),
        ("vesicles",),
        run_vesicles,
        {
            "model": "default",  # its card's calibrated post-processing and confidence model
            "threshold": None,
            "min_radius_nm": None,
            "max_radius_nm": None,
            "min_confidence": 0.5,
            "invert": "auto",
            "mask": None,
        },
        persist=("vesicles",),
    ),
)

for _stage in BUILTIN:
    register_stage(_stage, replace=True)

import synapseg.context.membrane_net  # noqa: E402,F401  (registers the membrane_net stage)
import synapseg.context.stage  # noqa: E402,F401  (registers the context stage)
import synapseg.filaments.stage  # noqa: E402,F401  (registers the filaments stage)

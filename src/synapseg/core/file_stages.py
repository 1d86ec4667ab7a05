"""The built-in stages at the file level, as ``synapseg segment`` has always called them.

``stage_predict`` / ``stage_vesicles`` / ``stage_export`` keep their signatures (they are
re-exported by :mod:`synapseg.pipeline`, and tests swap them there); their work is done by
the core stages of :mod:`synapseg.core.builtin`. :func:`file_stages` adapts them to the
registry for the runner.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg import __version__
from synapseg.core.grid import Grid
from synapseg.core.options import OutputPaths, SegmentOptions
from synapseg.core.segment import run_stages, stage_params
from synapseg.core.stages import Stage, StageContext, registered_stages
from synapseg.errors import InputError
from synapseg.io.tables import write_table_csv
from synapseg.io.volume import Volume, read_volume
from synapseg.io.volume_writer import open_volume_writer
from synapseg.numbers import format_sizes_nm
from synapseg.specimen.wedge import WedgeEstimate

log = logging.getLogger(__name__)

__all__ = [
    "core_params",
    "file_stages",
    "load_mask",
    "resolve_acquisition",
    "stage_export",
    "stage_predict",
    "stage_vesicles",
]


def load_mask(options: SegmentOptions, volume: Volume) -> np.ndarray | None:
    """``--mask`` as a boolean array on the tomogram's grid (``None`` without one)."""
    if options.mask is None:
        return None
    mask = read_volume(options.mask, volume.voxel_size_nm if options.voxel_size_nm else None)
    if mask.shape != volume.shape:
        raise InputError(
            options.mask,
            f"mask shape {mask.shape} differs from the tomogram's {volume.shape}",
            "give a mask on the tomogram's grid",
        )
    if not np.allclose(mask.voxel_size_nm, volume.voxel_size_nm, rtol=1e-3):
        raise InputError(
            options.mask,
            f"mask voxel size {format_sizes_nm(mask.voxel_size_nm)} differs from the "
            f"tomogram's {format_sizes_nm(volume.voxel_size_nm)}",
            "give a mask on the tomogram's grid (or fix its header)",
        )
    return np.asarray(mask.data) != 0


def core_params(options: SegmentOptions, volume: Volume, **extra: Any) -> dict[str, Any]:
    """The core stages' parameters from ``SegmentOptions`` (``mask`` is read lazily)."""
    params = stage_params(registered_stages())
    for key in list(params):
        if hasattr(options, key) and key != "mask":
            params[key] = getattr(options, key)
    params["path"] = volume.path
    params.update(extra)
    return params


def _inputs(volume: Volume, **artifacts: Any) -> dict[str, Any]:
    return {"image": volume.data, "grid": Grid.of(volume), **artifacts}


def stage_predict(
    volume: Volume, options: SegmentOptions, target: Path, specimen: Any = None
) -> dict[str, Any]:
    """Predict vesicle probabilities and stream them into ``target`` (uint8, 0–255).

    The contrast polarity is decided here, once (``infer.polarity.decide_polarity``), and
    recorded with its evidence; ``specimen`` (a ``SpecimenMask``) bounds its crops and the
    normalisation statistics (``None``: computed here).
    """
    stages = registered_stages()
    artifacts = _inputs(volume) if specimen is None else _inputs(volume, specimen=specimen)
    order = [stages[n] for n in ("network", "polarity", "predict")]
    if specimen is None:
        order.insert(0, stages["specimen"])
    params = core_params(options, volume, scratch_dir=Path(target).parent)
    t0 = time.perf_counter()
    with open_volume_writer(
        target,
        volume.shape,
        np.uint8,
        volume.voxel_size_nm,
        volume.origin_nm,
        overwrite=True,
        label=f"synapseg {__version__} vesicle probability x255",
    ) as out:
        facts = run_stages(order, artifacts, params, sinks={"probabilities": out})["predict"]
    seconds = time.perf_counter() - t0  # as before: network, polarity decision, prediction
    facts["seconds"] = seconds
    facts["mvoxel_per_s"] = float(np.prod(volume.shape)) / 1e6 / max(seconds, 1e-9)
    return facts


def resolve_acquisition(
    volume: Volume, options: SegmentOptions, specimen: Any = None
) -> tuple[WedgeEstimate, dict]:
    """The missing wedge for this tomogram: ``--tilt-range``/``--tilt-axis`` where given,
    else estimated from its spectrum (±60° about y when the estimate is unreliable), in
    blocks centred on the specimen's z-range when ``specimen`` (a ``SpecimenMask``) is given.

    Returns the wedge and its report entry (``tilt_axis, tilt_range_deg, dual_axis,
    source, quality`` and ``note`` when the default replaced the estimate).
    """
    stage = registered_stages()["acquisition"]
    ctx = StageContext(
        stage.name,
        _inputs(volume, specimen=specimen),
        core_params(options, volume),
    )
    wedge = stage.run(ctx)["wedge"]
    return wedge, ctx.facts


def stage_vesicles(
    volume: Volume,
    options: SegmentOptions,
    probabilities: Path,
    target: Path,
    prov: dict,
    inverted: bool | None = None,
    wedge: WedgeEstimate | None = None,
    specimen: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Instances, sphere fit and QC filters on the tomogram + probability map.

    ``specimen`` (a ``SpecimenMask``) bounds the QC background statistics.

    ``inverted`` is the contrast decision of the predict stage (``None``: decide here);
    ``wedge`` the missing wedge for the sphere fit and QC (``None``: resolve it here).
    """
    wedge = wedge or resolve_acquisition(volume, options)[0]
    stage = registered_stages()["vesicles"]
    prob = read_volume(probabilities, volume.voxel_size_nm).data
    polarity = None if inverted is None else {"invert": bool(inverted)}
    artifacts = _inputs(
        volume, probabilities=prob, polarity=polarity, wedge=wedge, specimen=specimen
    )
    params = core_params(options, volume, mask=load_mask(options, volume))
    facts = run_stages([stage], artifacts, params)["vesicles"]
    table = artifacts["vesicles"]
    write_table_csv(target, table, provenance=prov, overwrite=True)
    return table, facts


def stage_export(
    volume: Volume, options: SegmentOptions, table: pd.DataFrame, paths: OutputPaths, prov: dict
) -> dict[str, str]:
    """Write every requested format from the vesicle table; returns format → path."""
    written: dict[str, str] = {"csv": str(paths["csv"])}
    shape, vs = volume.shape, volume.voxel_size_nm
    for fmt in options.formats:
        if fmt == "csv":
            continue
        target = paths[fmt]
        if fmt == "json":
            from synapseg.io.tables import write_table_json

            write_table_json(target, table, provenance=prov, overwrite=True)
        elif fmt == "star":
            from synapseg.io.star import write_table_star

            write_table_star(
                target,
                table,
                tomogram_name=volume.name,
                voxel_size_nm=vs,
                shape=shape,
                binning=options.star_binning,
                overwrite=True,
            )
        elif fmt == "mod":
            from synapseg.io.imod import write_imod_spheres

            write_imod_spheres(target, table, voxel_size_nm=vs, shape=shape, overwrite=True)
        elif fmt == "labels":
            from synapseg.post.render import render_labels

            with open_volume_writer(
                target,
                shape,
                np.uint16,
                vs,
                volume.origin_nm,
                overwrite=True,
                label="synapseg labels",
            ) as out:
                render_labels(table, shape, vs, out=out, out_is_zero=True)  # a new file
        elif fmt == "pyto":
            from synapseg.io.pyto import write_pyto

            if options.pyto_boundaries is None and options.mask is None and options.context:
                from synapseg.context.files import write_context_pyto

                auto = write_context_pyto(  # 2 = AZ, 3 = cytoplasm from the context stage
                    target,
                    table,
                    paths.folder,
                    volume.name,
                    shape=shape,
                    voxel_size_nm=vs,
                    layer_nm=options.layer_nm,
                    overwrite=True,
                )
                if auto is not None:
                    written.update({f"pyto_{k}": str(v) for k, v in auto.items()})
                    continue
            boundaries = None
            if options.pyto_boundaries is not None:
                boundaries = np.asarray(read_volume(options.pyto_boundaries, vs).data)
            elif options.mask is not None:
                boundaries = np.where(load_mask(options, volume), 3, 0).astype(np.int16)
            result = write_pyto(
                target, table, shape=shape, voxel_size_nm=vs, boundaries=boundaries, overwrite=True
            )
            written.update({f"pyto_{k}": str(v) for k, v in result.items()})
            continue
        written[fmt] = str(target)
    return written


def file_stages(
    hooks: Any, volume: Volume, options: SegmentOptions, paths: OutputPaths, prov: dict
) -> dict[str, Stage]:
    """The registry with ``predict`` (polarity included) and ``vesicles`` done by
    ``hooks.stage_predict`` / ``hooks.stage_vesicles`` (looked up when they run, so a
    test may swap them), which write ``paths["probabilities"]`` / ``paths["csv"]``."""
    stages = registered_stages()
    stages.pop("polarity", None)  # decided inside stage_predict, which loads the network itself
    stages.pop("network", None)

    def predict(ctx: StageContext) -> dict[str, Any]:
        target = paths["probabilities"]
        ctx.facts.update(hooks.stage_predict(volume, options, target, ctx["specimen"]))
        prob = read_volume(target, volume.voxel_size_nm).data
        return {"probabilities": prob, "polarity": ctx.facts.get("polarity")}

    def vesicles(ctx: StageContext) -> dict[str, Any]:
        inverted = (ctx["polarity"] or {}).get("invert")
        table, info = hooks.stage_vesicles(
            volume,
            options,
            paths["probabilities"],
            paths["csv"],
            prov,
            inverted,
            ctx["wedge"],
            ctx["specimen"],
        )
        ctx.facts.update(info)
        return {"vesicles": table}

    stages["predict"] = Stage(
        "predict",
        ("image", "grid", "specimen"),
        ("probabilities", "polarity"),
        predict,
        persist=("probabilities", "polarity"),
    )
    old = stages["vesicles"]
    stages["vesicles"] = Stage("vesicles", old.inputs, old.outputs, vesicles, persist=old.persist)
    return stages

"""``synapseg segment --backend dask`` for one tomogram: block-wise, with files and a report.

:func:`segment_file` writes what the local backend writes (the probability map, the vesicle
table with provenance, the exports, ``<name>_report.json``), computed block by block by
:mod:`synapseg.distributed.run` on a dask client (or here without one). Volume outputs are
MRC or, with ``volume_format="zarr"``, OME-Zarr multiscale (``<name>_probabilities.zarr``,
``<name>_vesicles.zarr``), written block-wise. A finished tomogram is skipped unless
``overwrite``; an interrupted one resumes after its probability map when that was finished
(the report records it), else it is redone from the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.distributed.backend import DEFAULT_RETRIES, FileArray
from synapseg.distributed.blocks import iter_blocks
from synapseg.distributed.run import DEFAULT_POST_BLOCK, predict_blocks, vesicles_blocks

log = logging.getLogger(__name__)

__all__ = ["LABEL_BLOCK", "open_input", "render_labels_blockwise", "segment_file"]

LABEL_BLOCK = (64, 512, 512)
"""Block (z, y, x voxels) in which the label volume is rendered."""
CENTERS = ["center_z_px", "center_y_px", "center_x_px"]


def open_input(tomogram: str | Path, voxel_size_nm: Any = None) -> Any:
    """The tomogram as a lazy :class:`~synapseg.io.volume.Volume` (see ``read_volume``:
    a local path, or an fsspec URL of an OME-Zarr store such as ``s3://bucket/t.zarr``)."""
    from synapseg.io.volume import read_volume

    return read_volume(tomogram, voxel_size_nm)


def _writer(path: Path, shape: Sequence[int], dtype: Any, volume: Any, labels: bool, label: str):
    if path.name.endswith(".zarr"):
        from synapseg.io.zarr_writer import open_ome_zarr_writer

        return open_ome_zarr_writer(
            path,
            shape,
            dtype,
            volume.voxel_size_nm,
            volume.origin_nm,
            overwrite=True,
            labels=labels,
        )
    from synapseg.io.volume_writer import open_volume_writer

    return open_volume_writer(
        path, shape, dtype, volume.voxel_size_nm, volume.origin_nm, overwrite=True, label=label
    )


def render_labels_blockwise(table: pd.DataFrame, out: Any, voxel_size_nm: Sequence[float]) -> None:
    """Render the vesicles of ``table`` into ``out`` (uint16, input grid) block by block:
    each block paints every vesicle that reaches it (the same voxels as one whole-volume
    :func:`synapseg.geometry.render_labels`)."""
    from synapseg.geometry import render_labels

    vs = np.asarray(voxel_size_nm, dtype=float)
    c = table[CENTERS].to_numpy(float)
    r_px = table["outer_radius_nm"].to_numpy(float)[:, None] / vs[None, :]
    for block in iter_blocks(out.shape, LABEL_BLOCK, 0):
        lo = np.array([s.start for s in block.core])
        hi = np.array([s.stop for s in block.core])
        near = np.all((c + r_px >= lo - 1) & (c - r_px <= hi), axis=1)
        sub = table.loc[near].copy()
        sub[CENTERS] = c[near] - lo
        out[block.core] = render_labels(sub, block.core_shape, vs)


def segment_file(
    tomogram: str | Path,
    out_dir: str | Path,
    options: Any,
    *,
    client: Any = None,
    volume_format: str = "mrc",
    tiles_per_block: int | Sequence[int] = 2,
    post_block: int | Sequence[int] = DEFAULT_POST_BLOCK,
    retries: int = DEFAULT_RETRIES,
    gpu_resource: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Segment one tomogram block-wise into ``out_dir``; return the report dict.

    Parameters
    ----------
    tomogram, out_dir
        Input (path or OME-Zarr URL) and output folder.
    options
        :class:`~synapseg.core.options.SegmentOptions`.
    client
        A ``distributed.Client`` or ``None`` (blocks run here).
    volume_format
        ``"mrc"`` or ``"zarr"`` (OME-Zarr multiscale) for the probability and label volumes.
    tiles_per_block, post_block, retries, gpu_resource
        See :func:`synapseg.distributed.run.segment_blocks`.
    on_stage
        Called with ``"predict"``, ``"vesicles"``, ``"export"`` as they start.
    """
    from synapseg.core.builtin import rejected_summary
    from synapseg.core.file_stages import load_mask, stage_export
    from synapseg.core.options import STAGES, OutputPaths, provenance
    from synapseg.core.resume import load_state, options_digest, save_report
    from synapseg.errors import InputError
    from synapseg.io.atomic import check_free_space
    from synapseg.io.fingerprint import input_fingerprint
    from synapseg.io.scan import check_finite
    from synapseg.io.tables import write_table_csv
    from synapseg.numbers import round_sig

    on_stage = on_stage or (lambda stage: None)
    if options.from_stage is not None:
        raise InputError(
            "--from-stage", "is not available with --backend dask", "rerun with --overwrite"
        )
    volume = open_input(tomogram, options.voxel_size_nm)
    paths = OutputPaths(Path(out_dir), volume.name)
    ext = ".zarr" if volume_format == "zarr" else ".mrc"
    prob_path = paths["probabilities"].with_suffix(ext)
    labels_path = paths["labels"].with_suffix(ext)
    local = "://" not in str(tomogram)
    fingerprint = input_fingerprint(tomogram) if local else {"url": str(tomogram)}
    digest = options_digest(options, volume)
    state = load_state(paths, options, digest, fingerprint)
    if state.get("finished"):
        log.info("%s: already segmented (pass --overwrite to redo)", tomogram)
        return {**state, "skipped": True}
    input_facts: dict[str, Any] = {"warnings": [], "scan": None, "fill_nonfinite": None}
    if np.issubdtype(np.dtype(volume.dtype), np.floating):  # integers cannot be NaN
        volume, input_facts = check_finite(volume, options.fill_nonfinite)
    n = int(np.prod(volume.shape))
    paths.folder.mkdir(parents=True, exist_ok=True)
    check_free_space(paths.folder, n * (1 + 2 * ("labels" in options.formats)), volume.name)
    prov = provenance(options)
    prov.update(tomogram=str(tomogram), backend="dask" if client is not None else "blocks")
    params = {
        "invert": options.invert,
        "threshold": options.threshold,
        "tilt_range_deg": options.tilt_range_deg,
        "tilt_axis": options.tilt_axis,
        "min_radius_nm": options.min_radius_nm,
        "max_radius_nm": options.max_radius_nm,
        "min_confidence": options.min_confidence,
        "device": options.device,
    }
    from synapseg.distributed.decisions import decide

    t0 = time.perf_counter()
    on_stage("predict")
    d = decide(volume, options.model, params, tile_size=options.tile_size)
    prov["model"] = d.facts["model"]
    prov["acquisition"] = d.facts.get("acquisition")
    earlier = state["stages"].get("predict")
    if earlier and prob_path.exists():  # an interrupted run's finished probability map
        log.info("%s: resuming after the probabilities of the earlier run", tomogram)
        predict_facts = {**earlier, "resumed": True}
    else:
        with _writer(
            prob_path, volume.shape, np.uint8, volume, False, "synapseg probability x255"
        ) as sink:
            predict_facts = predict_blocks(
                volume,
                d,
                sink,
                client=client,
                tiles_per_block=tiles_per_block,
                device=options.device,
                tta=options.tta,
                retries=retries,
                gpu_resource=gpu_resource,
            )
        predict_facts["seconds"] = time.perf_counter() - t0
        predict_facts.update(model=d.facts["model"], polarity=d.polarity)
        # an interrupted run resumes here (the network is most of a huge volume's time)
        state.update(digest=digest, input=fingerprint, backend=prov["backend"], finished=False)
        state["stages"] = {"predict": {**predict_facts, "probabilities": str(prob_path)}}
        save_report(paths["report"], state, final=False)
    on_stage("vesicles")
    prob = FileArray(prob_path, volume.voxel_size_nm)
    d = d.with_threshold(prob)
    table, rejected, info = vesicles_blocks(
        volume, d, prob if client is not None else prob.data, client=client,
        post_block=post_block, retries=retries,
    )  # fmt: skip
    mask = load_mask(options, volume)
    if mask is not None and len(table):
        idx = np.clip(np.rint(table[CENTERS].to_numpy()).astype(int), 0, np.array(volume.shape) - 1)
        inside = mask[idx[:, 0], idx[:, 1], idx[:, 2]]
        rejected = pd.concat([rejected, table[~inside].assign(reason="center outside --mask")])
        table = table[inside].reset_index(drop=True)
        table["id"] = np.arange(1, len(table) + 1)
    table["source"] = "auto"
    info["n_vesicles"] = int(len(table))
    info["rejected"] = rejected_summary(rejected)
    write_table_csv(paths["csv"], table, provenance=prov, overwrite=True)
    on_stage("export")
    t1 = time.perf_counter()
    formats = tuple(f for f in options.formats if f != "labels")
    written = stage_export(volume, replace(options, formats=formats), table, paths, prov)
    if "labels" in options.formats:
        with _writer(labels_path, volume.shape, np.uint16, volume, True, "synapseg labels") as out:
            render_labels_blockwise(table, out, volume.voxel_size_nm)
        written["labels"] = str(labels_path)
    stages = {
        "specimen": d.facts.get("specimen", {}),
        "predict": {**predict_facts, "probabilities": str(prob_path)},
        "acquisition": d.facts.get("acquisition", {}),
        "vesicles": info,
        "export": {"seconds": time.perf_counter() - t1, "files": written},
    }
    state.update(
        tomogram=str(Path(tomogram).resolve()) if local else str(tomogram),
        shape_zyx=list(volume.shape),
        voxel_size_nm_zyx=[round_sig(v) for v in volume.voxel_size_nm],
        voxel_size_source=volume.voxel_size_source,
        input=fingerprint,
        input_scan=input_facts.get("scan"),
        digest=digest,
        backend=prov["backend"],
        stages=stages,
        specimen=stages["specimen"],
        acquisition=stages["acquisition"],
        provenance=prov,
        warnings=input_facts["warnings"] + list(info.get("warnings", [])),
        n_vesicles=int(len(table)),
        timings_s={s: round(stages[s].get("seconds", 0.0), 3) for s in STAGES},
        finished=True,
    )
    save_report(paths["report"], state, final=True)
    return state

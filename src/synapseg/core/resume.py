"""Resume bookkeeping of ``segment``: the options digest, the disk-space preflight and the
earlier run's report (refusing foreign files and changed inputs)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.core.options import STAGES, OutputPaths, SegmentOptions
from synapseg.errors import InputError, OutputExistsError
from synapseg.io.atomic import check_free_space, write_text_atomic
from synapseg.io.fingerprint import describe_change
from synapseg.io.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["load_state", "options_digest", "preflight", "save_report"]


def save_report(path: Path, state: dict[str, Any], final: bool) -> None:
    """Write the report atomically, floats rounded (1.68, not 1.68000…02).

    The report after each stage is the resume state: compact (json's C encoder, ~4x faster
    than indented text on a report of thousands of rejected candidates); the finished
    report is indented for reading.
    """
    from synapseg.numbers import round_floats

    text = json.dumps(round_floats(state), indent=2 if final else None, default=str)
    write_text_atomic(path, text, overwrite=True)


def options_digest(options: SegmentOptions, volume: Volume) -> str:
    """16 hex digits identifying the options that change results (plus the voxel size)."""
    relevant = options.to_json()
    for key in ("overwrite", "from_stage", "progress", "formats", "star_binning"):
        relevant.pop(key)
    if relevant.get("fill_nonfinite") is None:  # digests of runs before the option stay valid
        relevant.pop("fill_nonfinite", None)
    relevant["voxel_size_nm"] = list(volume.voxel_size_nm)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


_SMALL_OUTPUTS_BYTES = 16 * 2**20  # tables, report, IMOD model: a generous bound


def preflight(
    volume: Volume, options: SegmentOptions, done: dict[str, Any], paths: OutputPaths
) -> int:
    """Check the model, the tile size and the free disk space before any stage runs.

    Returns the bytes the remaining stages need (outputs plus the predict stage's
    memory-mapped scratch arrays on the model grid, when they spill to disk).
    """
    from synapseg.infer.predict import IN_MEMORY_BYTES
    from synapseg.infer.tiling import choose_tiling
    from synapseg.model.registry import read_card, resolve_model

    n = int(np.prod(volume.shape))
    needed = _SMALL_OUTPUTS_BYTES
    if "predict" not in done:
        card = read_card(resolve_model(options.model))
        if options.tile_size is not None:
            choose_tiling(card.config, (options.tile_size,) * 3, options.tile_size)
        zoom = np.asarray(volume.voxel_size_nm, dtype=float) / float(card.voxel_size_nm)
        grid_bytes = 4 * int(np.prod(np.ceil(np.asarray(volume.shape) * zoom)))
        needed += n  # uint8 probabilities
        scratch = (grid_bytes, grid_bytes * len(card.output_channels))  # image, probabilities
        needed += sum(b for b in scratch if b > IN_MEMORY_BYTES)
    if "export" not in done:
        needed += 2 * n * sum(fmt in options.formats for fmt in ("labels", "pyto"))
    check_free_space(paths.folder, needed, f"outputs of {volume.name}")
    return needed


def load_state(
    paths: OutputPaths,
    options: SegmentOptions,
    digest: str,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of an earlier run for resuming, or a fresh one; refuse foreign files.

    ``fingerprint`` (:func:`~synapseg.io.fingerprint.input_fingerprint` of the tomogram) is
    compared with the earlier run's: a changed input is recomputed from scratch (with a
    warning), and with ``--from-stage`` it is an error, since the stages to be reused were
    computed from another file.
    """
    report_path = paths["report"]
    fresh = {"stages": {}, "finished": False, "digest": digest}
    if options.overwrite:
        return fresh
    if report_path.exists():
        try:
            state = json.loads(report_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(
                report_path, "earlier report is unreadable", "pass --overwrite to start again"
            ) from exc
        if state.get("digest") != digest and options.from_stage is None:
            raise InputError(
                report_path,
                "outputs exist from a run with different parameters",
                "pass --overwrite to recompute, or --from-stage to redo later stages",
            )
        change = None if fingerprint is None else describe_change(state.get("input"), fingerprint)
        if change and state.get("stages"):
            if options.from_stage is not None and options.from_stage != STAGES[0]:
                raise InputError(
                    state.get("tomogram", report_path),
                    f"{change}, so its results cannot be reused by "
                    f"--from-stage {options.from_stage}",
                    "rerun without --from-stage to recompute everything",
                )
            log.warning("%s: %s; recomputing everything", report_path, change)
            return {**fresh, "recomputed_because": change}
        state.setdefault("stages", {})
        return state
    # No report: any output file already there is not ours to replace.
    for key in ("probabilities", *options.formats):
        if paths[key].exists():
            raise OutputExistsError(
                paths[key], "output exists", "pass --overwrite to replace it or choose another -o"
            )
    return fresh

"""``segment`` on a tomogram file: the runner with the pipeline's files, resume and report.

Outputs (see :class:`~synapseg.core.options.OutputPaths`): the probability map, the vesicle
CSV, the exports, and ``<name>_report.json``, rewritten after every stage, which records
what is done so an interrupted run resumes at the first unfinished stage. A finished
tomogram is skipped unless ``overwrite``; ``from_stage`` recomputes from that stage on.
Stages registered with :func:`synapseg.core.stages.register_stage` run here too, and resume
the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from synapseg._lazy import import_in_background
from synapseg.core import file_stages
from synapseg.core.grid import Grid
from synapseg.core.options import STAGES, OutputPaths, SegmentOptions, provenance
from synapseg.core.resume import load_state, options_digest, preflight, save_report
from synapseg.core.runner import Runner
from synapseg.io.fingerprint import input_fingerprint
from synapseg.io.scan import check_finite
from synapseg.io.tables import read_table_csv
from synapseg.io.volume import read_volume
from synapseg.numbers import round_sig
from synapseg.summary import check_usable, segment_warnings

log = logging.getLogger(__name__)

__all__ = ["segment_tomogram"]


def _legacy_artifacts(state: dict[str, Any], paths: OutputPaths) -> None:
    """Reports written before the runner have no ``artifacts``: derive them."""
    artifacts = state.setdefault("artifacts", {})
    stages = state.get("stages", {})
    if "predict" in stages and "probabilities" not in artifacts:
        artifacts["probabilities"] = {"kind": "store", "file": str(paths["probabilities"])}
        artifacts["polarity"] = {"kind": "json", "value": stages["predict"].get("polarity")}
    if "vesicles" in stages and "vesicles" not in artifacts:
        artifacts["vesicles"] = {"kind": "store", "file": str(paths["csv"])}


def _missing_artifacts(state: dict[str, Any]) -> list[str]:
    """Artifacts the earlier run recorded whose files are gone."""
    return [
        name
        for name, entry in state.get("artifacts", {}).items()
        if entry.get("file") and not Path(entry["file"]).exists()
    ]


def segment_tomogram(
    tomogram: str | Path,
    out_dir: str | Path,
    options: SegmentOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
    hooks: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the whole pipeline on one tomogram; return the report dict.

    Parameters
    ----------
    tomogram
        Input tomogram file.
    out_dir
        Output folder (created if needed).
    options
        Pipeline options; defaults otherwise.
    on_stage
        Called with a stage name before it runs (for progress display).
    hooks
        Where ``stage_predict``, ``stage_vesicles`` and ``stage_export`` are looked up
        (default :mod:`synapseg.core.file_stages`; :mod:`synapseg.pipeline` passes itself).
    """
    hooks = hooks or file_stages
    options = options or SegmentOptions()
    on_stage = on_stage or (lambda stage: None)
    volume = read_volume(tomogram, options.voxel_size_nm)
    paths = OutputPaths(Path(out_dir), volume.name)
    digest = options_digest(options, volume)
    fingerprint = input_fingerprint(tomogram)
    state = load_state(paths, options, digest, fingerprint)
    missing = _missing_artifacts(state)
    if missing and state.get("finished"):
        log.warning("%s: %s missing; recomputing them", paths["report"], ", ".join(missing))
    if state.get("finished") and options.from_stage is None and not missing:
        log.info("%s: already segmented (pass --overwrite to redo)", tomogram)
        state["skipped"] = True
        state.pop("recomputed_because", None)  # a note about an earlier run, not this one
        return state
    import_in_background("torch")  # overlaps the volume scan (issue 17)
    # The whole volume is scanned for NaN/inf before anything is written (issue 13).
    volume, input_facts = check_finite(volume, options.fill_nonfinite)
    check_usable(volume)
    mask_volume = read_volume(options.mask, volume.voxel_size_nm) if options.mask else None
    input_facts["warnings"] += segment_warnings(volume, options.model, mask_volume)
    redo_from = STAGES.index(options.from_stage) if options.from_stage else len(STAGES)
    for stage in STAGES[redo_from:]:
        state["stages"].pop(stage, None)
    _legacy_artifacts(state, paths)
    preflight(volume, options, state["stages"], paths)
    state.update(
        {
            "tomogram": str(Path(tomogram).resolve()),
            "shape_zyx": list(volume.shape),
            "voxel_size_nm_zyx": [round_sig(v) for v in volume.voxel_size_nm],
            "voxel_size_source": volume.voxel_size_source,
            "input": fingerprint,
            "input_scan": input_facts["scan"],
            "fill_nonfinite": input_facts["fill_nonfinite"],
            "finished": False,
            "digest": digest,
        }
    )
    prov = provenance(options)
    prov["tomogram"] = state["tomogram"]
    prov["voxel_size_nm_zyx"] = state["voxel_size_nm_zyx"]
    if "predict" in state["stages"]:
        prov["model"] = state["stages"]["predict"].get("model")

    def save(final: bool = False) -> None:
        state["provenance"] = prov
        state["warnings"] = input_facts["warnings"] + [
            w for st in state["stages"].values() for w in st.get("warnings", [])
        ]
        save_report(paths["report"], state, final)

    def after(stage: Any, outputs: dict[str, Any], facts: dict[str, Any]) -> None:
        if stage.name == "specimen":
            state["specimen"] = facts
        elif stage.name == "predict":
            prov["model"] = facts.get("model")
        elif stage.name == "acquisition":
            state["acquisition"] = prov["acquisition"] = facts
        save()

    runner = Runner(
        volume.data,
        Grid.of(volume),
        paths.folder,
        volume.name,
        params=file_stages.core_params(options, volume),
        state=state,
        stages=file_stages.file_stages(hooks, volume, options, paths, prov),
        self_saved=("probabilities", "vesicles"),
        provenance=prov,
        on_stage=on_stage,
        after_stage=after,
    )
    runner.run()
    if "vesicles" in runner.ran:  # a new table: every export is redone
        state["stages"].pop("export", None)
    if "export" not in state["stages"]:
        on_stage("export")
        # Always from the CSV, as a resumed run must: every export then holds the table's
        # numbers exactly as written, interrupted or not (fault_injection.py --stage-kills).
        table: pd.DataFrame = read_table_csv(paths["csv"])
        t0 = time.perf_counter()
        written = hooks.stage_export(volume, options, table, paths, prov)
        state["stages"]["export"] = {"seconds": time.perf_counter() - t0, "files": written}
    state["finished"] = True
    state["n_vesicles"] = state["stages"]["vesicles"]["n_vesicles"]
    state["timings_s"] = {s: round(state["stages"][s].get("seconds", 0.0), 3) for s in STAGES}
    save(final=True)
    return state

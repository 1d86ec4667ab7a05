"""The segmentation pipeline: tomogram → probabilities → vesicle table → exports.

Stages, each writing its artifact atomically into the output folder:

``predict``
    ``<name>_probabilities.mrc``: vesicle probability on the input grid (uint8, 0–255).
``vesicles``
    ``<name>_vesicles.csv`` (+ ``.provenance.json``): instances, sphere fit, QC filters.
``export``
    label volume, JSON, STAR, IMOD model, Pyto labels, as requested by ``formats``.

``<name>_report.json`` is rewritten after every stage and records what is done, so an
interrupted run resumes at the first unfinished stage. A finished tomogram is skipped
unless ``overwrite``; ``from_stage`` recomputes from that stage on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg import __version__
from synapseg.errors import InputError, OutputExistsError
from synapseg.io.atomic import check_free_space, write_text_atomic
from synapseg.io.fingerprint import describe_change, input_fingerprint
from synapseg.io.scan import check_finite
from synapseg.io.tables import CENTER_PX, read_table_csv, write_table_csv
from synapseg.io.volume import MRC_SUFFIXES, TIFF_SUFFIXES, Volume, is_zarr, read_volume
from synapseg.io.volume_writer import open_volume_writer
from synapseg.numbers import format_sizes_nm, round_floats, round_sig
from synapseg.specimen.wedge import WedgeEstimate, resolve_wedge
from synapseg.summary import check_usable, segment_warnings, vesicle_warnings

log = logging.getLogger(__name__)

STAGES = ("predict", "vesicles", "export")
ALL_FORMATS = ("csv", "json", "star", "mod", "labels", "pyto")
DEFAULT_FORMATS = ("csv", "json", "star", "mod", "labels")
_OUTPUT_SUFFIXES = (
    "_probabilities",
    "_vesicles",
    "_pyto_labels",
    "_report",
)


@dataclass
class SegmentOptions:
    """Everything that controls ``segment``; recorded in the report."""

    model: str = "default"
    device: str = "auto"
    tta: bool = False
    tile_size: int | None = None
    voxel_size_nm: float | None = None
    mask: Path | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    star_binning: float | None = None  # None: STAR holds RELION-5 centered Å only
    pyto_boundaries: Path | None = None
    invert: str = "auto"
    threshold: float | None = None
    tilt_range_deg: float | None = None
    tilt_axis: str | None = None
    min_radius_nm: float | None = None
    max_radius_nm: float | None = None
    min_confidence: float = 0.5
    overwrite: bool = False
    from_stage: str | None = None
    progress: bool = False
    fill_nonfinite: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.formats) - set(ALL_FORMATS))
        if unknown:
            raise InputError(
                "--formats",
                f"unknown format(s) {', '.join(unknown)}",
                f"use {','.join(ALL_FORMATS)}",
            )
        if self.from_stage is not None and self.from_stage not in STAGES:
            raise InputError(
                "--from-stage",
                f"unknown stage '{self.from_stage}'",
                f"use one of {', '.join(STAGES)}",
            )
        if self.invert not in ("auto", "yes", "no"):
            raise InputError("--invert", f"unknown value '{self.invert}'", "use auto, yes or no")
        if self.star_binning is not None and not self.star_binning > 0:
            raise InputError("--star-binning", "must be positive", "give e.g. 4 for bin-4 data")
        if not 0 <= self.min_confidence <= 1:
            raise InputError(
                "--min-confidence",
                f"{self.min_confidence} is not a probability",
                "give a value between 0 and 1, e.g. 0.5",
            )
        if self.tilt_axis not in (None, "y", "x", "dual"):
            raise InputError("--tilt-axis", f"unknown value '{self.tilt_axis}'", "use y, x or dual")
        self._check_values()
        if self.fill_nonfinite not in (None, "median"):
            raise InputError(
                "--fill-nonfinite", f"unknown method '{self.fill_nonfinite}'", "use median"
            )

    def _check_values(self) -> None:
        """Every value checked before work starts: a one-line error naming the option."""
        from synapseg import options as check

        check.check_open_interval(
            "--threshold", self.threshold, 0, 1, "give a probability between 0 and 1, e.g. 0.5"
        )
        check.check_radius_range(self.min_radius_nm, self.max_radius_nm)
        check.check_open_interval(
            "--tilt-range", self.tilt_range_deg, 0, 90, "give the ± tilt range in degrees, e.g. 60"
        )
        check.check_positive("--voxel-size", self.voxel_size_nm, "give the voxel size in nm")
        check.check_tile_size(self.tile_size)
        check.check_device(self.device)
        check.check_file("--mask", self.mask)
        check.check_file("--pyto-boundaries", self.pyto_boundaries)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["mask"] = str(self.mask) if self.mask else None
        out["pyto_boundaries"] = str(self.pyto_boundaries) if self.pyto_boundaries else None
        out["formats"] = list(self.formats)
        return out


@dataclass
class OutputPaths:
    """Where ``segment`` writes the outputs for one tomogram."""

    folder: Path
    name: str
    files: dict[str, Path] = field(init=False)

    def __post_init__(self) -> None:
        f, n = self.folder, self.name
        self.files = {
            "probabilities": f / f"{n}_probabilities.mrc",
            "csv": f / f"{n}_vesicles.csv",
            "json": f / f"{n}_vesicles.json",
            "star": f / f"{n}_vesicles.star",
            "mod": f / f"{n}_vesicles.mod",
            "labels": f / f"{n}_vesicles.mrc",
            "pyto": f / f"{n}_pyto_labels.mrc",
            "report": f / f"{n}_report.json",
        }

    def __getitem__(self, key: str) -> Path:
        return self.files[key]


def list_tomograms(folder: Path) -> list[Path]:
    """Tomograms in a folder (MRC/REC, TIFF, OME-Zarr), excluding synapseg's own outputs."""
    found = []
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if not ((path.is_file() and lower.endswith(MRC_SUFFIXES + TIFF_SUFFIXES)) or is_zarr(path)):
            continue
        stem = path.name.split(".", 1)[0]
        if stem.endswith(_OUTPUT_SUFFIXES) or stem.endswith("_labels"):
            continue
        found.append(path)
    if not found:
        raise InputError(
            folder, "folder holds no tomograms (.mrc/.rec/.tif/.zarr)", "check the path"
        )
    return found


def provenance(options: SegmentOptions, card: Any | None = None) -> dict[str, Any]:
    """Tool, model and parameters: attached to every output."""
    model = None
    if card is not None:
        model = {"name": getattr(card, "name", None), "sha256": getattr(card, "sha256", None)}
        model["voxel_size_nm"] = getattr(card, "voxel_size_nm", None)
    return {
        "tool": "synapseg",
        "synapseg_version": __version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "parameters": options.to_json(),
    }


# ----------------------------------------------------------------------------- stages


def _load_mask(options: SegmentOptions, volume: Volume) -> np.ndarray | None:
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


def stage_predict(
    volume: Volume, options: SegmentOptions, target: Path, specimen: Any = None
) -> dict[str, Any]:
    """Predict vesicle probabilities and stream them into ``target`` (uint8, 0–255).

    The contrast polarity is decided here, once (``infer.polarity.decide_polarity``), and
    recorded with its evidence; ``specimen`` (a ``SpecimenMask``) bounds its crops and the
    normalisation statistics (``None``: computed by ``predict_volume``).
    """
    from synapseg.infer.predict import predict_volume
    from synapseg.model.registry import load_model

    net, card = load_model(options.model, device="cpu")
    t0 = time.perf_counter()
    facts: dict[str, Any] = {}
    if options.invert == "auto":
        from synapseg.infer.polarity import decide_polarity

        polarity = decide_polarity(volume, (net, card), options.device, specimen)
    else:
        polarity = {"invert": options.invert == "yes", "forced": True}
    with open_volume_writer(
        target,
        volume.shape,
        np.uint8,
        volume.voxel_size_nm,
        volume.origin_nm,
        overwrite=True,
        label=f"synapseg {__version__} vesicle probability x255",
    ) as out:
        predict_volume(
            volume,
            model=(net, card),
            device=options.device,
            tta=options.tta,
            tile_size=options.tile_size,
            out=out,
            progress=options.progress,
            invert=polarity["invert"],
            report=facts,
            specimen=True if specimen is None else specimen,
            scratch_dir=target.parent,  # big model-grid scratch files beside the outputs
        )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "mvoxel_per_s": float(np.prod(volume.shape)) / 1e6 / max(seconds, 1e-9),
        "model": {"name": card.name, "sha256": card.sha256, "voxel_size_nm": card.voxel_size_nm},
        "polarity": polarity,
        "details": facts,
    }


def resolve_acquisition(
    volume: Volume, options: SegmentOptions, specimen: Any = None
) -> tuple[WedgeEstimate, dict]:
    """The missing wedge for this tomogram: ``--tilt-range``/``--tilt-axis`` where given,
    else estimated from its spectrum (±60° about y when the estimate is unreliable), in
    blocks centred on the specimen's z-range when ``specimen`` (a ``SpecimenMask``) is given.

    Returns the wedge and its report entry (``tilt_axis, tilt_range_deg, dual_axis,
    source, quality`` and ``note`` when the default replaced the estimate).
    """
    z_range = None if specimen is None else specimen.facts.get("specimen_z_range_px")
    wedge, note = resolve_wedge(
        volume.data,
        volume.voxel_size_nm,
        options.tilt_range_deg,
        options.tilt_axis,
        z_range_px=None if z_range is None else tuple(z_range),
    )
    entry = wedge.to_json()
    if note:
        log.warning("%s: %s", volume.path, note)
        entry["note"] = note
    else:
        log.info(
            "%s: missing wedge ±%.1f° about %s (%s, quality %s)",
            volume.path,
            wedge.tilt_range_deg,
            wedge.wedge_axis,
            wedge.source,
            entry["quality"],
        )
    return wedge, entry


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
    from synapseg.post.vesicles import PostParams, count_outcomes, find_vesicles

    prob = read_volume(probabilities, volume.voxel_size_nm).data
    invert = options.invert if inverted is None else ("yes" if inverted else "no")
    params = {
        "tilt_range_deg": options.tilt_range_deg,
        "invert": invert,
        "min_confidence": options.min_confidence,
    }
    wedge = wedge or resolve_acquisition(volume, options)[0]
    params["tilt_range_deg"] = wedge.tilt_range_deg
    params["tilt_axis"] = wedge.wedge_axis  # "dual": weights of both series (a pyramid)
    for key in ("threshold", "min_radius_nm", "max_radius_nm"):
        if getattr(options, key) is not None:
            params[key] = getattr(options, key)
    t0 = time.perf_counter()
    table, rejected, info = find_vesicles(
        volume.data, prob, volume.voxel_size_nm, params=PostParams(**params), specimen=specimen
    )
    mask = _load_mask(options, volume)
    if mask is not None and len(table):
        idx = np.rint(table[CENTER_PX].to_numpy()).astype(int)
        idx = np.clip(idx, 0, np.array(volume.shape) - 1)
        inside = mask[idx[:, 0], idx[:, 1], idx[:, 2]]
        outside = table[~inside].assign(reason="center outside --mask")
        rejected = pd.concat([rejected, outside], ignore_index=True)
        table = table[inside].reset_index(drop=True)
        table["id"] = np.arange(1, len(table) + 1)
        count_outcomes(info["counts"], table, rejected)  # candidates = vesicles + rejected
    if len(table) == 0:
        log.warning("%s: no vesicles found", volume.path)
        info.setdefault("statement", "no vesicles found")
    table["source"] = "auto"  # found by segment; export marks hand-placed rows "manual"
    write_table_csv(target, table, provenance=prov, overwrite=True)
    info = dict(info)
    info["seconds"] = time.perf_counter() - t0
    info["n_vesicles"] = int(len(table))
    info["rejected"] = _rejected_summary(rejected)
    return table, info


def _rejected_summary(rejected: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [
        c
        for c in ("center_z_px", "center_y_px", "center_x_px", "radius_nm", "reason")
        if c in rejected
    ]
    return json.loads(rejected[cols].to_json(orient="records", double_precision=3))


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
                render_labels(table, shape, vs, out=out)
        elif fmt == "pyto":
            from synapseg.io.pyto import write_pyto

            boundaries = None
            if options.pyto_boundaries is not None:
                boundaries = np.asarray(read_volume(options.pyto_boundaries, vs).data)
            elif options.mask is not None:
                boundaries = np.where(_load_mask(options, volume), 3, 0).astype(np.int16)
            result = write_pyto(
                target, table, shape=shape, voxel_size_nm=vs, boundaries=boundaries, overwrite=True
            )
            written.update({f"pyto_{k}": str(v) for k, v in result.items()})
            continue
        written[fmt] = str(target)
    return written


# ----------------------------------------------------------------------------- driver


def _options_digest(options: SegmentOptions, volume: Volume) -> str:
    relevant = options.to_json()
    for key in ("overwrite", "from_stage", "progress", "formats", "star_binning"):
        relevant.pop(key)
    if relevant.get("fill_nonfinite") is None:  # digests of runs before the option stay valid
        relevant.pop("fill_nonfinite", None)
    relevant["voxel_size_nm"] = list(volume.voxel_size_nm)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


_SMALL_OUTPUTS_BYTES = 16 * 2**20  # tables, report, IMOD model: a generous bound


def _preflight(
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


def _load_state(
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


def segment_tomogram(
    tomogram: str | Path,
    out_dir: str | Path,
    options: SegmentOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
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
    """
    options = options or SegmentOptions()
    on_stage = on_stage or (lambda stage: None)
    volume = read_volume(tomogram, options.voxel_size_nm)
    paths = OutputPaths(Path(out_dir), volume.name)
    digest = _options_digest(options, volume)
    fingerprint = input_fingerprint(tomogram)
    state = _load_state(paths, options, digest, fingerprint)
    if state.get("finished") and options.from_stage is None:
        log.info("%s: already segmented (pass --overwrite to redo)", tomogram)
        state["skipped"] = True
        state.pop("recomputed_because", None)  # a note about an earlier run, not this one
        return state
    # The whole volume is scanned for NaN/inf before anything is written (issue 13).
    volume, input_facts = check_finite(volume, options.fill_nonfinite)
    check_usable(volume)
    mask_volume = read_volume(options.mask, volume.voxel_size_nm) if options.mask else None
    input_facts["warnings"] += segment_warnings(volume, options.model, mask_volume)
    redo_from = STAGES.index(options.from_stage) if options.from_stage else len(STAGES)
    for stage in STAGES[redo_from:]:
        state["stages"].pop(stage, None)
    _preflight(volume, options, state["stages"], paths)
    from synapseg.specimen.mask import specimen_mask

    specimen = specimen_mask(volume.data, volume.voxel_size_nm)  # once, for every stage
    state["specimen"] = specimen.facts
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
    table: pd.DataFrame | None = None

    def save() -> None:
        state["provenance"] = prov
        state["warnings"] = input_facts["warnings"] + [
            w for st in state["stages"].values() for w in st.get("warnings", [])
        ]
        text = json.dumps(round_floats(state), indent=2, default=str)  # 1.68, not 1.68000…02
        write_text_atomic(paths["report"], text, overwrite=True)

    if "predict" not in state["stages"]:
        on_stage("predict")
        state["stages"]["predict"] = stage_predict(
            volume, options, paths["probabilities"], specimen
        )
        save()
    prov["model"] = state["stages"]["predict"].get("model")
    if "vesicles" not in state["stages"]:
        on_stage("vesicles")
        inverted = state["stages"]["predict"].get("polarity", {}).get("invert")
        wedge, state["acquisition"] = resolve_acquisition(volume, options, specimen)
        prov["acquisition"] = state["acquisition"]
        table, info = stage_vesicles(
            volume, options, paths["probabilities"], paths["csv"], prov, inverted, wedge, specimen
        )
        sanity = vesicle_warnings(
            table["radius_nm"].to_numpy(), volume.voxel_size_nm, info["params"]["min_radius_nm"]
        )
        for message in sanity:
            log.warning("%s: %s", volume.path, message)
        info["warnings"] = list(info.get("warnings", [])) + sanity
        state["stages"]["vesicles"] = info
        save()
    if "export" not in state["stages"]:
        on_stage("export")
        # Always from the CSV, as a resumed run must: every export then holds the table's
        # numbers exactly as written, interrupted or not (fault_injection.py --stage-kills).
        table = read_table_csv(paths["csv"])
        t0 = time.perf_counter()
        written = stage_export(volume, options, table, paths, prov)
        state["stages"]["export"] = {"seconds": time.perf_counter() - t0, "files": written}
    state["finished"] = True
    state["n_vesicles"] = state["stages"]["vesicles"]["n_vesicles"]
    state["timings_s"] = {s: round(state["stages"][s].get("seconds", 0.0), 3) for s in STAGES}
    save()
    return state

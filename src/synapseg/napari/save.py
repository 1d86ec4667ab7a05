"""Save corrections: every export through the CLI's io code, and "add to training set".

:func:`save_corrected` writes what ``synapseg export`` writes, with the same functions
(:func:`synapseg.commands.export.finalize_geometry`, :func:`synapseg.io.tables.write_table_csv`,
:func:`synapseg.pipeline.stage_export`): ``<name>_vesicles.csv`` (+ ``.provenance.json``),
``.json``, ``.star``, ``.mod``, ``<name>_vesicles.mrc`` labels and, when asked, Pyto labels;
every write is atomic and existing files are only replaced with ``overwrite=True``. The
provenance records the corrections (ids added, deleted, moved, resized, merged, split, by
hand) and the confidence cut of the viewer.

:func:`add_to_training_set` writes one ``synapseg train --data DIR`` item:
``DIR/<name>/tomogram.<ext>`` (a link to the tomogram when its header holds the voxel size,
else a copy), ``vesicle_labels.mrc`` (uint16 labels with the voxel size in the header),
``vesicles.csv`` and ``provenance.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.errors import InputError, OutputExistsError

log = logging.getLogger(__name__)

EDITOR = "synapseg napari plugin"


def existing_outputs(folder: str | os.PathLike, name: str, formats: Sequence[str]) -> list[Path]:
    """The files :func:`save_corrected` would replace in ``folder``."""
    from synapseg.pipeline import OutputPaths

    paths = OutputPaths(Path(folder), name)
    found = [paths[f] for f in formats if paths[f].exists()]
    sidecar = paths["csv"].with_suffix(".provenance.json")
    if "csv" in formats and sidecar.exists():
        found.append(sidecar)
    return found


def visible_table(table: pd.DataFrame, min_confidence: float) -> tuple[pd.DataFrame, list[int]]:
    """Rows kept at the viewer's confidence cut (hand-placed rows always) and the ids hidden."""
    from synapseg.napari.layers import shown_mask

    shown = shown_mask(table, min_confidence)
    hidden = [int(v) for v in table.loc[~shown, "id"]]
    return table[shown].reset_index(drop=True), hidden


def save_corrected(
    table: pd.DataFrame,
    volume: Any,
    folder: str | os.PathLike,
    *,
    formats: Sequence[str] | None = None,
    overwrite: bool = False,
    corrections: dict[str, Any] | None = None,
    min_confidence: float = 0.0,
    star_binning: float | None = None,
    segmented_with: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write the corrected table and every export into ``folder``; returns format → path.

    Parameters
    ----------
    table
        The corrected vesicle table (:attr:`CorrectionStack.table`).
    volume
        The tomogram (:class:`~synapseg.io.volume.Volume`): grid, voxel size, name.
    folder
        Output folder (created).
    formats
        Any of ``csv, json, star, mod, labels, pyto`` (default: ``segment``'s defaults).
    overwrite
        Replace existing outputs (the widget asks first).
    corrections
        :meth:`CorrectionStack.provenance`, recorded under ``corrections``.
    min_confidence
        The viewer's confidence cut: rows below it (not hand-placed) are left out and
        listed in the provenance as ``hidden_by_confidence``.
    star_binning
        RELION-4 binning (as ``synapseg export --star-binning``).
    segmented_with
        The provenance of the table as it was opened (kept under ``segmented_with``).

    Raises
    ------
    OutputExistsError
        An output exists and ``overwrite`` is false (nothing is written).
    InputError
        No vesicle left to save.
    """
    from synapseg.io.tables import write_table_csv
    from synapseg.pipeline import (
        DEFAULT_FORMATS,
        OutputPaths,
        SegmentOptions,
        provenance,
        stage_export,
    )

    folder = Path(folder)
    formats = tuple(formats or DEFAULT_FORMATS)
    if "csv" not in formats:
        formats = ("csv", *formats)
    existing = existing_outputs(folder, volume.name, formats)
    if existing and not overwrite:
        raise OutputExistsError(
            existing[0], "output exists", "confirm overwriting or choose another folder"
        )
    kept, hidden = visible_table(table, min_confidence)
    if len(kept) == 0:
        raise InputError(folder, "no vesicles to save", "add vesicles or lower the confidence cut")
    kept = _complete(kept, volume.voxel_size_nm)
    options = SegmentOptions(formats=formats, star_binning=star_binning, overwrite=overwrite)
    prov = provenance(options)
    prov.update(
        {
            "edited_with": EDITOR,
            "tomogram": None if volume.path is None else str(Path(volume.path).resolve()),
            "voxel_size_nm": [float(v) for v in volume.voxel_size_nm],
            "corrections": corrections or {},
            "min_confidence_shown": float(min_confidence),
            "hidden_by_confidence": hidden,
        }
    )
    if segmented_with:
        prov["segmented_with"] = segmented_with
    folder.mkdir(parents=True, exist_ok=True)
    paths = OutputPaths(folder, volume.name)
    write_table_csv(paths["csv"], kept, provenance=prov, overwrite=overwrite)
    written = stage_export(volume, options, kept, paths, prov)
    log.info("saved %d vesicles to %d files in %s", len(kept), len(written), folder)
    return written


def _complete(table: pd.DataFrame, voxel_size_nm: Any) -> pd.DataFrame:
    """Every core column, derived as ``synapseg export`` derives it (nm centers, radius_px,
    outer radius, ``source``); ``score`` NaN where the table has none."""
    from synapseg.commands.export import finalize_geometry

    table = table.reset_index(drop=True)
    if "score" not in table:
        table = table.assign(score=np.nan)
    return finalize_geometry(table, voxel_size_nm)


def add_to_training_set(
    folder: str | os.PathLike,
    volume: Any,
    table: pd.DataFrame,
    *,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write the corrected tomogram as one item of a ``synapseg train --data`` folder.

    Returns ``folder/<name>`` (see the module docstring for its files).

    Raises
    ------
    OutputExistsError
        ``folder/<name>`` exists and ``overwrite`` is false.
    """
    from synapseg.geometry import render_labels
    from synapseg.io.atomic import write_text_atomic
    from synapseg.io.tables import write_table_csv
    from synapseg.io.volume_writer import open_volume_writer

    item = Path(folder) / volume.name
    if item.exists() and not overwrite:
        raise OutputExistsError(
            item, "training item exists", "confirm overwriting or choose another folder"
        )
    if len(table) == 0:
        raise InputError(item, "no vesicles to add", "a training item needs vesicles")
    item.mkdir(parents=True, exist_ok=True)
    vs = tuple(float(v) for v in volume.voxel_size_nm)
    table = _complete(table, vs)
    source = None if volume.path is None else Path(volume.path)
    linkable = (
        source is not None
        and source.is_file()
        and getattr(volume, "voxel_size_source", "") == "header"
        and source.suffix.lower() in (".mrc", ".rec", ".map", ".tif", ".tiff")
    )
    for old in item.glob("tomogram.*"):
        old.unlink()
    if linkable:
        target = item / f"tomogram{source.suffix.lower()}"
        os.symlink(source.resolve(), target)
    else:
        target = item / "tomogram.mrc"
        dtype = np.dtype(volume.dtype)
        if dtype not in (np.int8, np.uint8, np.int16, np.uint16, np.float16, np.float32):
            dtype = np.dtype(np.float32)
        with open_volume_writer(target, volume.shape, dtype, vs, overwrite=True) as out:
            for z in range(0, volume.shape[0], 16):  # section slabs: bounded memory
                out[z : z + 16] = np.asarray(volume.data[z : z + 16], dtype=dtype)
    with open_volume_writer(
        item / "vesicle_labels.mrc",
        volume.shape,
        np.uint16,
        vs,
        overwrite=True,
        label="synapseg labels (corrected in napari)",
    ) as out:
        render_labels(table, volume.shape, vs, out=out)
    write_table_csv(item / "vesicles.csv", table, overwrite=True)
    prov = {"edited_with": EDITOR, "tomogram": str(target), **(provenance or {})}
    write_text_atomic(
        item / "provenance.json", json.dumps(prov, indent=2, default=str), overwrite=True
    )
    log.info("added %s (%d vesicles) to the training set %s", volume.name, len(table), folder)
    return item

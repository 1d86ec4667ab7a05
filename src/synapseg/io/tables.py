"""The vesicle table: the one object that flows after sphere fitting, and its CSV form.

The columns, units and row validation are defined once in :mod:`synapseg.io.schema`.
Columns (CSV header, in this order): ``id, center_z_px, center_y_px, center_x_px,
center_z_nm, center_y_nm, center_x_nm, radius_nm, radius_px, score, outer_radius_nm``,
then optional columns (``source``, QC) and any unknown columns, passed through untouched.
Pixel coordinates are zero-based on the *input* tomogram grid
with voxel centers at integer positions; nm coordinates are ``px * voxel_size_nm``
(no origin offset). ``radius_nm`` is the radius of the *middle of the bilayer*;
``outer_radius_nm`` the radius of the outer membrane surface; ``radius_px`` is
``radius_nm`` in voxels of the x axis.

This module also holds the JSON form and :func:`read_vesicles`, which reads any supported
vesicle file (``.csv``, ``.json``, ``.star`` via :mod:`synapseg.io.star`, ``.mod`` via
:mod:`synapseg.io.imod`).
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

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path
from synapseg.io.schema import (
    CENTER_NM,
    CENTER_PX,
    COLUMNS,
    CORE_COLUMNS,
    DEFAULT_MEMBRANE_THICKNESS_NM,
    RowIssue,
    coerce_numeric,
    complete_ids,
    make_table,
    order_columns,
    require_core,
    resolve_radius,
)

log = logging.getLogger(__name__)


def write_table_csv(
    path: str | os.PathLike,
    table: pd.DataFrame,
    *,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the table as CSV (core columns first) and, if given, provenance as ``<path>.json``
    sidecar (``<stem>.provenance.json``)."""
    path = Path(path)
    ordered = order_columns(table)
    with atomic_path(path, overwrite) as tmp:
        ordered.to_csv(tmp, index=False, float_format="%.4f")
    if provenance is not None:
        sidecar = path.with_suffix(".provenance.json")
        with atomic_path(sidecar, overwrite=True) as tmp:
            tmp.write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    return path


def read_table_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a vesicle table CSV written by synapseg (or by hand, with at least the centers in
    px or nm and a radius)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "table file not found", "check the path")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV table ({exc})", "check the file") from exc
    has_centers = all(c in table.columns for c in CENTER_PX) or all(
        c in table.columns for c in CENTER_NM
    )
    if not has_centers or not {"radius_nm", "radius_px", "outer_radius_nm"} & set(table.columns):
        raise InputError(
            path,
            "table lacks center columns (center_z_px.. or center_z_nm..) or a radius column",
            "use synapseg's column names (see docs)",
        )
    return table


# --------------------------------------------------------------------------- JSON

JSON_FORMAT = "synapseg-vesicles"
JSON_VERSION = 1


def _json_value(value: Any) -> Any:
    """Plain JSON value: numpy scalars to Python, NaN/inf to ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_table_json(
    path: str | os.PathLike,
    table: pd.DataFrame,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the vesicle table as JSON: one object per vesicle plus provenance.

    Layout: ``{"format": "synapseg-vesicles", "version": 1, "columns": [...],
    "units": {...}, "provenance": {...}, "vesicles": [{column: value, ...}, ...]}``.
    Non-finite numbers are written as ``null`` and read back as NaN.
    """
    path = Path(path)
    require_core(table)
    columns = CORE_COLUMNS + [c for c in table.columns if c not in CORE_COLUMNS]
    rows = [
        {c: _json_value(v) for c, v in zip(columns, row)}
        for row in table[columns].itertuples(index=False, name=None)
    ]
    doc = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "columns": columns,
        "units": {
            c: f"{COLUMNS[c].unit or '-'}, {COLUMNS[c].description}"
            for c in columns
            if c in COLUMNS
        },
        "provenance": provenance or {},
        "vesicles": rows,
    }
    text = json.dumps(doc, indent=1, default=str, allow_nan=False)
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_table_json(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table_json`; provenance lands in ``df.attrs``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "table file not found", "check the path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})", "check the file") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("vesicles"), list):
        raise InputError(
            path,
            "not a synapseg vesicle JSON (no 'vesicles' list)",
            "write it with synapseg or use the documented layout (docs/formats.md)",
        )
    columns = doc.get("columns") or (list(doc["vesicles"][0]) if doc["vesicles"] else CORE_COLUMNS)
    try:
        table = pd.DataFrame.from_records(doc["vesicles"], columns=columns)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"malformed 'vesicles' records ({exc})", "check the file") from exc
    for col in table.columns:
        if col != "id" and table[col].dtype == object:
            converted = pd.to_numeric(table[col], errors="coerce")
            if converted.notna().sum() == table[col].notna().sum():
                table[col] = converted
    table.attrs["provenance"] = doc.get("provenance", {})
    return table


# --------------------------------------------------------------------------- any format


def normalize_table(
    table: pd.DataFrame,
    voxel_size_nm: float | Sequence[float] | None,
    *,
    path: str | os.PathLike | None = None,
    require_radius: bool = True,
    issues: list[RowIssue] | None = None,
) -> pd.DataFrame:
    """Turn a hand-made or partial table into a full :func:`make_table` table.

    Centers come from ``center_*_px`` (preferred) or ``center_*_nm``; the radius from
    ``radius_nm``, ``radius_px`` (x voxels) or ``outer_radius_nm`` (see
    :func:`synapseg.io.schema.resolve_radius` for edited tables whose radius columns
    disagree); ``outer_radius_nm`` is derived from the radius. ``voxel_size_nm`` may be
    omitted when both px and nm centers are present (it is then inferred from their ratio).
    Extra columns are kept untouched after the core columns.

    Cells that are not numbers are read as NaN and reported: appended to ``issues`` when a
    list is given, otherwise an :class:`InputError` names the rows.
    """
    table, bad_cells = coerce_numeric(table)
    if bad_cells and issues is None:
        listed = "; ".join(str(b) for b in bad_cells[:3])
        more = f" and {len(bad_cells) - 3} more" if len(bad_cells) > 3 else ""
        raise InputError(path, f"non-numeric cells: {listed}{more}", "fix or delete those rows")
    if issues is not None:
        issues.extend(bad_cells)
    has_px = all(c in table for c in CENTER_PX)
    has_nm = all(c in table for c in CENTER_NM)
    if voxel_size_nm is None and has_px and has_nm:
        px = table[CENTER_PX].to_numpy(dtype=float)
        nm = table[CENTER_NM].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.abs(px) > 1e-6, nm / px, np.nan)
        voxel_size_nm = np.nanmedian(ratio, axis=0) if np.isfinite(ratio).any() else None
        if voxel_size_nm is not None and not np.all(np.isfinite(voxel_size_nm)):
            voxel_size_nm = None
    if voxel_size_nm is None:
        raise InputError(path, "the voxel size is needed to read this table", "pass --voxel-size")
    vs = voxel_size_zyx(voxel_size_nm)
    if has_px:
        centers = table[CENTER_PX].to_numpy(dtype=float)
    elif has_nm:
        centers = table[CENTER_NM].to_numpy(dtype=float) / vs
    else:
        raise InputError(
            path, "table lacks center columns (center_z_px.. or center_z_nm..)", "see docs"
        )
    if not {"radius_nm", "radius_px", "outer_radius_nm"} & set(table.columns):
        if require_radius:
            raise InputError(path, "table lacks a radius column", "add radius_nm (see docs)")
        table = table.assign(radius_nm=np.nan)
    radius, notes = resolve_radius(table, float(vs[2]))
    for note in notes:
        log.warning("%s: %s", path, note)
    qc = {c: table[c].to_numpy() for c in table.columns if c not in CORE_COLUMNS}
    outer = None
    if "outer_shrunk_nm" in qc:
        shrink = np.clip(np.nan_to_num(np.asarray(qc["outer_shrunk_nm"], float)), 0, None)
        outer = radius + np.clip(DEFAULT_MEMBRANE_THICKNESS_NM / 2 - shrink, 0.0, None)
    score = table["score"].to_numpy(dtype=float) if "score" in table else None
    ids = complete_ids(table["id"], path) if "id" in table else None
    return make_table(centers, radius, vs, score=score, outer_radius_nm=outer, ids=ids, **qc)


def read_vesicles(
    path: str | os.PathLike,
    *,
    voxel_size_nm: float | Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    binning: float | None = None,
    allow_missing_radius: bool = False,
    tomogram_name: str | None = None,
    issues: list[RowIssue] | None = None,
) -> pd.DataFrame:
    """Read vesicles from ``.csv``, ``.json``, ``.star`` or ``.mod`` into a vesicle table.

    Parameters
    ----------
    voxel_size_nm
        Needed for STAR files, for CSV tables without both px and nm centers, and for
        ``.mod`` files whose header has no pixel size in nm; JSON written by synapseg
        carries it.
    shape
        (z, y, x) tomogram size; needed for STAR files with only RELION-5 centered
        coordinates.
    binning
        Tomogram binning relative to the tilt series, for STAR files holding only RELION-4
        ``rlnCoordinate`` values (RELION-5 centered Å columns are used when ``shape`` is
        given and do not need it).
    allow_missing_radius
        Give NaN radii (for callers that re-fit radii from centers) instead of raising
        ``InputError`` when the file holds no radius.
    tomogram_name
        Selects the rows of one ``rlnTomoName`` in a STAR file holding several tomograms.
    issues
        A list that collects per-row problems (non-numeric cells of CSV/JSON tables) as
        :class:`synapseg.io.schema.RowIssue`; without it such cells raise ``InputError``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    require_radius = not allow_missing_radius
    if suffix == ".csv":
        raw = _read_csv_loose(path)
        return normalize_table(
            raw, voxel_size_nm, path=path, require_radius=require_radius, issues=issues
        )
    if suffix == ".json":
        raw = read_table_json(path)
        vs = voxel_size_nm
        if vs is None:
            vs = raw.attrs.get("provenance", {}).get("voxel_size_nm")
        out = normalize_table(raw, vs, path=path, require_radius=require_radius, issues=issues)
        out.attrs.update(raw.attrs)
        return out
    if suffix == ".star":
        from synapseg.io.star import STAR_RADIUS, read_table_star

        out = read_table_star(
            path,
            voxel_size_nm=voxel_size_nm,
            shape=shape,
            binning=binning,
            tomogram_name=tomogram_name,
        )
        if require_radius and out["radius_nm"].isna().all() and len(out):
            raise InputError(
                path, f"STAR file has no {STAR_RADIUS} column", "add radii or re-fit them"
            )
        return out
    if suffix == ".mod":
        from synapseg.io.imod import imod_to_table

        return imod_to_table(
            path, voxel_size_nm=voxel_size_nm, shape=shape, require_radius=require_radius
        )
    raise InputError(
        path, f"unknown vesicle file type '{suffix}'", "use .csv, .json, .star or .mod"
    )


def _read_csv_loose(path: Path) -> pd.DataFrame:
    """CSV with centers; a radius column is optional here (checked by the caller)."""
    if not path.is_file():
        raise InputError(path, "table file not found", "check the path")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV table ({exc})", "check the file") from exc

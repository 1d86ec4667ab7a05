"""The vesicle table's schema: columns, units, dtypes and row validation, in one place.

Every reader and writer in :mod:`synapseg.io` (CSV, JSON, STAR, IMOD) takes its column
names from here. A vesicle table is a :class:`pandas.DataFrame` with the :data:`CORE`
columns (in this order) followed by any other columns; the known optional columns are listed
in :data:`OPTIONAL`, and unknown extra columns pass through every reader and writer
untouched.

Geometry: one sphere per vesicle, given by its center and its *bilayer-midline* radius
``radius_nm``. ``radius_px`` (x voxels) and ``outer_radius_nm`` are derived from it:
``outer_radius_nm = radius_nm + membrane_thickness_nm / 2 - outer_shrunk_nm`` (the last term
is the overlap correction of the QC filter, 0 when absent). See :func:`resolve_radius`
for how an edited table whose three radius columns disagree is read.

Tables are built here too (:func:`make_table`, :func:`complete_ids`), so the format modules
(:mod:`synapseg.io.star`, :mod:`synapseg.io.imod`) depend on this module only, never on
:mod:`synapseg.io.tables` (which dispatches to them): no import circle inside io.

Row validation (:func:`validate_rows`) returns one entry per bad row (``row`` = 1-based
data row, i.e. line ``row + 1`` of a CSV file; ``id``; ``reason``) instead of failing at
the first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CENTER_NM",
    "CENTER_PX",
    "COLUMNS",
    "CORE",
    "CORE_COLUMNS",
    "DEFAULT_MEMBRANE_THICKNESS_NM",
    "MAX_ID",
    "OPTIONAL",
    "RADIUS_RANGE_NM",
    "Column",
    "RowIssue",
    "coerce_numeric",
    "complete_ids",
    "derive_outer_radius",
    "make_table",
    "order_columns",
    "require_core",
    "resolve_radius",
    "validate_rows",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """One column of the vesicle table: name, dtype (``int``, ``float``, ``str``), unit."""

    name: str
    dtype: str
    unit: str
    description: str


CORE: tuple[Column, ...] = (
    Column("id", "int", "", "vesicle id, unique integer 1..65535 (label value)"),
    Column("center_z_px", "float", "voxel", "center z, zero-based, voxel centers at integers"),
    Column("center_y_px", "float", "voxel", "center y"),
    Column("center_x_px", "float", "voxel", "center x"),
    Column("center_z_nm", "float", "nm", "center_z_px x voxel size z (no origin offset)"),
    Column("center_y_nm", "float", "nm", "center_y_px x voxel size y"),
    Column("center_x_nm", "float", "nm", "center_x_px x voxel size x"),
    Column("radius_nm", "float", "nm", "bilayer-midline radius: the one radius"),
    Column("radius_px", "float", "voxel", "radius_nm in x voxels (derived)"),
    Column("score", "float", "", "detection score 0..1; empty for hand-placed vesicles"),
    Column("outer_radius_nm", "float", "nm", "outer membrane surface (derived)"),
)
OPTIONAL: tuple[Column, ...] = (
    Column("source", "str", "", "auto (found by segment) or manual (placed by hand)"),
    Column("membrane_contrast", "float", "noise σ", "cytoplasm minus membrane"),
    Column("lumen_contrast", "float", "noise σ", "cytoplasm minus lumen"),
    Column("inner_contrast", "float", "noise σ", "inner lumen minus membrane"),
    Column("profile_correlation", "float", "", "correlation with a bilayer template"),
    Column("fit_residual_nm", "float", "nm", "RMS of the per-direction radii"),
    Column("wedge_coverage", "float", "", "fraction of the recorded membrane seen"),
    Column("shift_nm", "float", "nm", "distance the fit moved the center"),
    Column("outer_shrunk_nm", "float", "nm", "outer radius reduction resolving an overlap"),
    Column(
        "az_distance_nm",
        "float",
        "nm",
        "bilayer-midline sphere to active-zone midplane (empty: no AZ; docs/context.md)",
    ),
    Column("az_nearest_z_nm", "float", "nm", "nearest active-zone midplane point, z"),
    Column("az_nearest_y_nm", "float", "nm", "nearest active-zone midplane point, y"),
    Column("az_nearest_x_nm", "float", "nm", "nearest active-zone midplane point, x"),
    Column("pool", "str", "", "docked / proximal / distal by az_distance_nm (empty: no AZ)"),
    Column("n_connectors", "int", "", "connectors to other vesicles (filaments stage)"),
    Column("n_tethers", "int", "", "tethers to the active-zone membrane (filaments stage)"),
)
COLUMNS: dict[str, Column] = {c.name: c for c in CORE + OPTIONAL}
CORE_COLUMNS = [c.name for c in CORE]
CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
CENTER_NM = ["center_z_nm", "center_y_nm", "center_x_nm"]
NUMERIC = [c.name for c in CORE + OPTIONAL if c.dtype in ("int", "float")]
# Lipid bilayer ≈ 4-5 nm: the midline lies half of it inside the outer surface.
DEFAULT_MEMBRANE_THICKNESS_NM = 4.5
RADIUS_RANGE_NM = (5.0, 100.0)
"""Accepted bilayer-midline radii (nm): synaptic vesicles are 10-35 nm, dense-core vesicles
and small endosomes up to ~100 nm; anything else is a typing error."""
MAX_ID = int(np.iinfo(np.uint16).max)
_TOL_NM = 0.02  # CSV values are written with 4 decimals


@dataclass(frozen=True)
class RowIssue:
    """A bad row: ``row`` (1-based data row), ``id`` (as read, may be None), ``reason``."""

    row: int
    id: object
    reason: str

    def __str__(self) -> str:
        ident = "" if self.id is None else f", id {self.id}"
        return f"row {self.row}{ident}: {self.reason}"

    def to_json(self) -> dict:
        ident = self.id.item() if isinstance(self.id, np.generic) else self.id
        return {"row": int(self.row), "id": ident, "reason": self.reason}


def _row_id(table: pd.DataFrame, i: int) -> object:
    if "id" not in table:
        return None
    v = table["id"].iloc[i]
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    try:
        return int(v) if float(v) == int(float(v)) else v
    except (TypeError, ValueError):
        return str(v)


def require_core(table: pd.DataFrame) -> None:
    """Raise ``ValueError`` when a table to be written lacks a core column."""
    missing = [c for c in CORE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"vesicle table lacks columns {missing}")


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Core columns first (schema order), then every other column in its given order."""
    require_core(table)
    return table[CORE_COLUMNS + [c for c in table.columns if c not in CORE_COLUMNS]]


def coerce_numeric(table: pd.DataFrame) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Convert the schema's numeric columns to float; non-numeric cells become NaN.

    Empty cells are NaN without comment (e.g. a hand-placed row without a radius); a cell
    holding text that is not a number is reported as a :class:`RowIssue`. ``id`` is left
    as read (see :func:`synapseg.io.tables.complete_ids`). Other columns are untouched.
    """
    out = table.copy()
    issues: list[RowIssue] = []
    for col in NUMERIC:
        if col not in out or col == "id" or pd.api.types.is_numeric_dtype(out[col]):
            continue
        raw = out[col]
        conv = pd.to_numeric(raw, errors="coerce")
        blank = raw.isna() | raw.astype(str).str.strip().isin(["", "nan", "NaN", "None"])
        for i in np.flatnonzero(conv.isna().to_numpy() & ~blank.to_numpy()):
            issues.append(
                RowIssue(int(i) + 1, _row_id(out, i), f"{col} is not a number ({raw.iloc[i]!r})")
            )
        out[col] = conv.astype(float)
    return out, sorted(issues, key=lambda issue: issue.row)


def derive_outer_radius(
    table: pd.DataFrame, membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM
) -> np.ndarray:
    """``radius_nm + t / 2 - outer_shrunk_nm`` (the shrink clipped to 0..t/2)."""
    r = table["radius_nm"].to_numpy(float)
    shrink = np.zeros(len(table))
    if "outer_shrunk_nm" in table:
        shrink = np.clip(np.nan_to_num(table["outer_shrunk_nm"].to_numpy(float)), 0.0, None)
    return r + np.clip(membrane_thickness_nm / 2 - shrink, 0.0, None)


def resolve_radius(
    table: pd.DataFrame,
    voxel_size_x_nm: float,
    membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM,
) -> tuple[np.ndarray, list[str]]:
    """The midline radius of each row of an edited table whose radius columns may disagree.

    ``radius_nm``, ``radius_px`` and ``outer_radius_nm`` are three views of one radius.
    When they disagree (by more than 0.02 nm) the one that differs from the two others is
    the one that was edited, and it wins: an edited ``outer_radius_nm`` alone sets
    ``radius_nm = outer_radius_nm - t / 2`` (and drops any overlap shrink); an edited
    ``radius_px`` alone sets ``radius_nm = radius_px x voxel size``. When only two are
    present and disagree, or all three disagree, ``radius_nm`` wins. Rows without
    ``radius_nm`` take it from ``radius_px``, then from ``outer_radius_nm``; rows with none
    stay NaN (hand-placed, to be fitted).

    Returns the radii and one note per row where a column other than ``radius_nm`` won or
    a disagreement was overridden (for the user's log).
    """
    n = len(table)

    def col(name: str) -> np.ndarray:
        return table[name].to_numpy(float) if name in table else np.full(n, np.nan)

    r_nm = col("radius_nm")
    r_px = col("radius_px") * voxel_size_x_nm
    outer = col("outer_radius_nm")
    shrink = np.nan_to_num(col("outer_shrunk_nm")) if "outer_shrunk_nm" in table else np.zeros(n)
    r_outer = outer - membrane_thickness_nm / 2 + np.clip(shrink, 0.0, membrane_thickness_nm / 2)
    r_outer_plain = outer - membrane_thickness_nm / 2
    radius = r_nm.copy()
    notes: list[str] = []
    px_tol = _TOL_NM + 1e-4 * voxel_size_x_nm
    for i in range(n):
        a, b, c = r_nm[i], r_px[i], r_outer[i]
        if not np.isfinite(a):
            radius[i] = b if np.isfinite(b) else (r_outer_plain[i] if np.isfinite(c) else np.nan)
            continue
        ab = not np.isfinite(b) or abs(a - b) <= px_tol
        ac = not np.isfinite(c) or abs(a - c) <= _TOL_NM
        if ab and ac:
            continue
        ident = f"row {i + 1}" + (f" (id {_row_id(table, i)})" if "id" in table else "")
        bc = np.isfinite(b) and np.isfinite(c) and abs(b - c) <= px_tol
        if not ac and ab and np.isfinite(b):  # outer edited alone
            radius[i] = r_outer_plain[i]
            notes.append(f"{ident}: outer_radius_nm edited, radius_nm set to {radius[i]:.2f}")
        elif not ab and ac and np.isfinite(c):  # radius_px edited alone
            radius[i] = b
            notes.append(f"{ident}: radius_px edited, radius_nm set to {radius[i]:.2f}")
        elif not (np.isfinite(b) and np.isfinite(c)) or not bc:
            notes.append(f"{ident}: radius columns disagree, radius_nm {a:.2f} kept")
        # else: radius_nm edited (the two derived columns agree or are absent): it wins
    return radius, notes


def validate_rows(
    table: pd.DataFrame,
    *,
    shape: Sequence[int] | None = None,
    radius_range_nm: tuple[float, float] = RADIUS_RANGE_NM,
    allow_missing_radius: bool = False,
) -> list[RowIssue]:
    """Check every row of a vesicle table; return one :class:`RowIssue` per bad row.

    Checks: the center is finite and (with ``shape``) inside the volume (voxel centers at
    integers, so ``-0.5 <= c < size - 0.5``); ``radius_nm`` is finite and within
    ``radius_range_nm`` (NaN allowed with ``allow_missing_radius``); ``id`` is an integer
    in 1..65535 when present.
    """
    issues: list[RowIssue] = []
    n = len(table)
    centers = table[CENTER_PX].to_numpy(float) if all(c in table for c in CENTER_PX) else None
    radius = table["radius_nm"].to_numpy(float) if "radius_nm" in table else np.full(n, np.nan)
    ids = pd.to_numeric(table["id"], errors="coerce").to_numpy(float) if "id" in table else None
    lo, hi = radius_range_nm
    for i in range(n):
        reasons = []
        if centers is None or not np.all(np.isfinite(centers[i])):
            reasons.append("center missing or not a number")
        elif shape is not None:
            size = np.asarray(shape, float)
            if np.any(centers[i] < -0.5) or np.any(centers[i] >= size - 0.5):
                zyx = ", ".join(f"{v:.1f}" for v in centers[i])
                reasons.append(f"center (z, y, x) = ({zyx}) px outside the volume {tuple(shape)}")
        r = radius[i]
        if np.isnan(r):
            if not allow_missing_radius:
                reasons.append("radius missing")
        elif not np.isfinite(r) or r <= 0:
            reasons.append(f"radius_nm {r:g} is not positive")
        elif not lo <= r <= hi:
            reasons.append(f"radius_nm {r:g} outside the accepted {lo:g}-{hi:g} nm")
        if ids is not None and np.isfinite(ids[i]):
            if ids[i] != np.round(ids[i]) or not 1 <= ids[i] <= MAX_ID:
                reasons.append(f"id {table['id'].iloc[i]} is not an integer in 1..{MAX_ID}")
        if reasons:
            issues.append(RowIssue(i + 1, _row_id(table, i), "; ".join(reasons)))
    return issues


# --------------------------------------------------------------------------- building tables


def make_table(
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float],
    *,
    score: np.ndarray | None = None,
    outer_radius_nm: np.ndarray | None = None,
    membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM,
    ids: np.ndarray | None = None,
    **qc: np.ndarray,
) -> pd.DataFrame:
    """Build a vesicle table from (n, 3) zyx centers in input voxels and midline radii in nm.

    ``outer_radius_nm`` defaults to ``radius_nm + membrane_thickness_nm / 2``; extra
    keyword arrays become QC columns after the core columns.
    """
    centers_px = np.asarray(centers_px, dtype=float).reshape(-1, 3)
    n = len(centers_px)
    radius_nm = np.broadcast_to(np.asarray(radius_nm, dtype=float), (n,))
    vs = np.asarray(voxel_size_nm, dtype=float).reshape(-1)
    vs = np.broadcast_to(vs, (3,))
    if outer_radius_nm is None:
        outer_radius_nm = radius_nm + membrane_thickness_nm / 2
    data: dict[str, Any] = {
        "id": np.arange(1, n + 1) if ids is None else np.asarray(ids, dtype=int),
    }
    for i, px in enumerate(CENTER_PX):
        data[px] = centers_px[:, i]
    for i, nm in enumerate(CENTER_NM):
        data[nm] = centers_px[:, i] * vs[i]
    data["radius_nm"] = radius_nm
    data["radius_px"] = radius_nm / vs[2]
    data["score"] = np.ones(n) if score is None else np.asarray(score, dtype=float)
    data["outer_radius_nm"] = np.broadcast_to(np.asarray(outer_radius_nm, dtype=float), (n,))
    for key, values in qc.items():
        data[key] = np.asarray(values)
    return pd.DataFrame(data)


def complete_ids(ids: Sequence[Any], path: str | os.PathLike | None = None) -> np.ndarray:
    """Vesicle ids from user-edited input: keep valid unique ids (integers >= 1), give the
    missing, invalid or repeated ones (after their first use) new ids above the largest."""
    values = pd.to_numeric(pd.Series(list(ids), dtype=object), errors="coerce").to_numpy(float)
    ok = np.isfinite(values) & (values >= 1) & (values == np.round(values))
    out = np.where(ok, values, 0).astype(np.int64)
    seen: set[int] = set()
    for i, v in enumerate(out):
        if v and v in seen:
            out[i] = 0
        seen.add(int(v))
    new = out == 0
    if new.any():
        start = int(out.max()) + 1
        out[new] = np.arange(start, start + int(new.sum()))
        log.info(
            "%s: %d vesicle(s) without a valid unique id got ids %d..%d",
            path,
            int(new.sum()),
            start,
            start + int(new.sum()) - 1,
        )
    return out

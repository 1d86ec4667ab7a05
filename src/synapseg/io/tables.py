"""The vesicle table: the one object that flows after sphere fitting, and its CSV form.

Columns (CSV header, in this order): ``id, center_z_px, center_y_px, center_x_px,
center_z_nm, center_y_nm, center_x_nm, radius_nm, radius_px, score, outer_radius_nm``,
then optional QC columns. Pixel coordinates are zero-based on the *input* tomogram grid
with voxel centers at integer positions; nm coordinates are ``px * voxel_size_nm``
(no origin offset). ``radius_nm`` is the radius of the *middle of the bilayer*;
``outer_radius_nm`` the radius of the outer membrane surface; ``radius_px`` is
``radius_nm`` in voxels of the x axis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path

CORE_COLUMNS = [
    "id",
    "center_z_px",
    "center_y_px",
    "center_x_px",
    "center_z_nm",
    "center_y_nm",
    "center_x_nm",
    "radius_nm",
    "radius_px",
    "score",
    "outer_radius_nm",
]
CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
CENTER_NM = ["center_z_nm", "center_y_nm", "center_x_nm"]
# Lipid bilayer ≈ 4-5 nm: the midline lies half of it inside the outer surface.
DEFAULT_MEMBRANE_THICKNESS_NM = 4.5


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
    missing = [c for c in CORE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"vesicle table lacks columns {missing}")
    ordered = table[CORE_COLUMNS + [c for c in table.columns if c not in CORE_COLUMNS]]
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

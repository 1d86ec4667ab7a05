"""Filament outputs on disk: table, labels, IMOD paths, Pyto files, summary JSON and plot.

Names (``<name>`` = the tomogram's stem): ``<name>_filaments.csv`` (+ provenance
sidecar), ``<name>_filaments.mrc`` (uint16 ids), ``<name>_filaments.mod`` (IMOD open
contours, objects ``connectors`` and ``tethers``), ``<name>_pyto_connectors.{mrc,dat}``
and ``<name>_pyto_tethers.{mrc,dat}``, ``<name>_filaments_summary.json`` and ``.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "read_filament_table",
    "register_filament_stores",
    "write_filament_imod",
    "write_filament_outputs",
    "write_filament_table",
]


def write_filament_table(
    path: Path, table: pd.DataFrame, provenance: dict | None = None, overwrite: bool = False
) -> Path:
    """The CSV (4 decimals) and, with ``provenance``, ``<stem>.provenance.json``."""
    from synapseg.io.atomic import atomic_path

    with atomic_path(path, overwrite) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if provenance is not None:
        with atomic_path(path.with_suffix(".provenance.json"), overwrite=True) as tmp:
            tmp.write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    return path


def read_filament_table(path: str | Path) -> pd.DataFrame:
    """Read ``<name>_filaments.csv`` (``vesicle_b`` empty for tethers)."""
    from synapseg.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "filament table not found", "check the path")
    table = pd.read_csv(path, keep_default_na=True)
    missing = {"id", "kind", "vesicle_a", "vesicle_b", "length_nm"} - set(table)
    if missing and "filament_id" not in table:
        raise InputError(
            path, f"not a filament table (no {', '.join(sorted(missing))})", "give *_filaments.csv"
        )
    if "vesicle_b" in table:
        table["vesicle_b"] = table["vesicle_b"].astype("Int64")
    return table


def write_filament_imod(
    path: Path, table: pd.DataFrame, voxel_size_nm: Any, shape: Sequence[int], overwrite: bool
) -> Path:
    """The paths (``path_px``) as IMOD open contours, one object per kind."""
    from synapseg.filaments.measure import parse_path
    from synapseg.io.imod_contours import write_imod_contours

    objects = []
    for kind, color in (("connector", (1.0, 0.6, 0.0)), ("tether", (0.0, 0.8, 1.0))):
        sel = table[table["kind"] == kind]
        paths = [parse_path(t) for t in sel["path_px"]]
        objects.append((kind + "s", color, paths, [str(int(i)) for i in sel["id"]]))
    return write_imod_contours(
        path, objects, voxel_size_nm=voxel_size_nm, shape=shape, overwrite=overwrite
    )


def write_summary(
    folder: Path, name: str, summary: dict, table: pd.DataFrame, overwrite: bool
) -> dict[str, Path]:
    """``<name>_filaments_summary.json`` and ``.png``."""
    import matplotlib.pyplot as plt

    from synapseg.filaments.summary import summary_figure
    from synapseg.io.atomic import atomic_path, write_text_atomic

    js = write_text_atomic(
        folder / f"{name}_filaments_summary.json", json.dumps(summary, indent=1), overwrite
    )
    fig = summary_figure(summary, table)
    png = folder / f"{name}_filaments_summary.png"
    with atomic_path(png, overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return {"summary_json": js, "summary_png": png}


def write_filament_outputs(
    folder: Path,
    name: str,
    table: pd.DataFrame,
    labels: np.ndarray,
    vesicles: pd.DataFrame,
    image: np.ndarray,
    *,
    voxel_size_nm: Any,
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
    provenance: dict | None = None,
    summary: dict | None = None,
    pyto_ids: dict[int, int] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Every filament output of one tomogram (see the module docstring); returns key → path.

    ``vesicles`` (with ``n_connectors``/``n_tethers``) is written as
    ``<name>_vesicles.csv``; ``pyto_ids`` maps synapseg vesicle ids to the Pyto ids of the
    boundaries (default: 10, 11, ... in table order).
    """
    from synapseg.filaments.summary import filament_summary
    from synapseg.io.pyto_filaments import default_pyto_ids, write_pyto_filaments
    from synapseg.io.tables import write_table_csv
    from synapseg.io.volume_writer import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["table"] = write_filament_table(
        folder / f"{name}_filaments.csv", table, provenance, overwrite
    )
    out["labels"] = write_volume(
        folder / f"{name}_filaments.mrc",
        np.asarray(labels, np.uint16),
        voxel_size_nm,
        origin_nm,
        overwrite=overwrite,
        label="synapseg filaments",
    )
    out["imod"] = write_filament_imod(
        folder / f"{name}_filaments.mod", table, voxel_size_nm, labels.shape, overwrite
    )
    ids = pyto_ids or default_pyto_ids(vesicles["id"].to_numpy(int))
    out.update(
        write_pyto_filaments(
            folder / f"{name}_pyto",
            table,
            labels,
            image,
            voxel_size_nm=voxel_size_nm,
            id_map=ids,
            overwrite=overwrite,
        )
    )
    out["vesicles"] = write_table_csv(
        folder / f"{name}_vesicles.csv", vesicles, provenance=provenance, overwrite=overwrite
    )
    out.update(
        write_summary(folder, name, summary or filament_summary(vesicles, table), table, overwrite)
    )
    return out


def register_filament_stores() -> None:
    """How the file runner keeps the stage's outputs (see :mod:`synapseg.filaments.stage`)."""
    from synapseg.core.runner import Store, register_store

    def save_table(path: Path, value: Any, runner: Any) -> None:
        if value is None:
            return
        write_filament_table(path, value, runner.provenance, overwrite=True)
        shape = runner.grid.shape
        write_filament_imod(
            path.with_suffix(".mod"), value, runner.grid.voxel_size_nm, shape, overwrite=True
        )
        summary = runner.state.get("stages", {}).get("filaments", {}).get("summary")
        vesicles = runner.artifacts.get("vesicles_with_filaments")
        if summary is None and vesicles is not None:
            from synapseg.filaments.summary import filament_summary

            summary = filament_summary(vesicles, value)
        if summary is not None:
            write_summary(path.parent, runner.name, summary, value, overwrite=True)

    def load_table(path: Path, runner: Any) -> Any:
        return read_filament_table(path)

    def save_labels(path: Path, value: Any, runner: Any) -> None:
        if value is None:
            return
        from synapseg.io.volume_writer import write_volume

        write_volume(
            path,
            np.asarray(value, np.uint16),
            runner.grid.voxel_size_nm,
            runner.grid.origin_nm,
            overwrite=True,
            label="synapseg filaments",
        )

    def load_labels(path: Path, runner: Any) -> Any:
        from synapseg.io.volume import read_volume

        return read_volume(path, runner.grid.voxel_size_nm).data

    def save_vesicles(path: Path, value: Any, runner: Any) -> None:
        if value is None:
            return
        from synapseg.io.tables import write_table_csv

        write_table_csv(path, value, provenance=runner.provenance, overwrite=True)

    def load_vesicles(path: Path, runner: Any) -> Any:
        from synapseg.io.tables import read_table_csv

        return read_table_csv(path)

    register_store("filaments", Store("_filaments.csv", load_table, save_table))
    register_store("filament_labels", Store("_filaments.mrc", load_labels, save_labels))
    register_store("vesicles_with_filaments", Store("_vesicles.csv", load_vesicles, save_vesicles))

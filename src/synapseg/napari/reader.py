"""The npe2 reader: tomograms and synapseg outputs as napari layers.

:func:`get_reader` is the reader contribution of ``napari.yaml``. It answers

* a tomogram (``.mrc/.rec/.map/.st/.ali``, ``.tif/.tiff``, OME-Zarr): one lazy image layer
  (memmap/zarr, nothing volume-sized is read; contrast from a ~1 M voxel sample);
* a vesicle table (``<name>_vesicles.csv|.json|.star``, or any table with synapseg's center
  columns): a Points layer, plus whatever sits beside it with the same ``<name>``:
  ``<name>_vesicles.mrc`` (labels), ``<name>_membranes.mrc``, ``<name>_az.mrc``,
  ``<name>_pyto_labels.mrc`` (labels), ``<name>_filaments.csv`` (paths); the report
  ``<name>_report.json`` and the table's provenance go into the layer metadata;
* a synapseg label file on its own (``*_vesicles.mrc``, ``*_membranes.mrc``, ``*_az.mrc``,
  ``*_pyto_labels.mrc``): a Labels layer; ``*_probabilities.mrc``: an image layer 0-255.

Bad files raise :class:`~synapseg.errors.InputError`; napari shows its one-line message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from synapseg.errors import InputError
from synapseg.io.volume import MRC_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES, is_zarr, read_volume
from synapseg.napari.layers import (
    LayerData,
    filaments_layer,
    labels_layer,
    metadata,
    tomogram_layer,
    vesicles_layer,
)

log = logging.getLogger(__name__)

LABEL_SUFFIXES = {
    "_vesicles": ("vesicle labels", "vesicle_labels"),
    "_membranes": ("membranes", "membranes"),
    "_az": ("active zone", "az"),
    "_compartment": ("presynaptic compartment", "compartment"),
    "_pyto_labels": ("pyto labels", "pyto_labels"),
}
"""Output names (before the file suffix) read as Labels layers: (layer name, role)."""
TABLE_SUFFIXES = (".csv", ".json", ".star")


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader contribution: a reader function for ``path``, or ``None`` (not ours)."""
    if isinstance(path, (list, tuple)):
        if not path:
            return None
        path = path[0]
    p = Path(path)
    lower = p.name.lower()
    if lower.endswith(TABLE_SUFFIXES):
        return read_outputs if _is_vesicle_table(p) else None
    if is_zarr(p) or lower.endswith(MRC_SUFFIXES + TIFF_SUFFIXES):
        return read_path
    return None


def read_path(path: str | list[str]) -> list[LayerData]:
    """Read a tomogram, a synapseg label/probability volume or a vesicle table."""
    if isinstance(path, (list, tuple)):
        return [layer for p in path for layer in read_path(p)]
    p = Path(path)
    if p.name.lower().endswith(TABLE_SUFFIXES):
        return read_outputs(p)
    stem, role = output_role(p)
    if role == "probabilities":
        vol = read_volume(p)
        layer = tomogram_layer(vol, name=p.name)
        layer[1].update(contrast_limits=(0, 255), colormap="magma", blending="additive")
        layer[1]["metadata"] = metadata("probabilities", vol.voxel_size_nm)
        return [layer]
    if role is not None:
        vol = read_volume(p)
        title, kind = LABEL_SUFFIXES[role]
        return [labels_layer(vol.data, vol.voxel_size_nm, f"{stem} {title}", kind)]
    return read_tomogram(p)


def read_tomogram(path: str | os.PathLike) -> list[LayerData]:
    """One lazy image layer: scale = voxel size in nm, robust contrast limits."""
    return [tomogram_layer(read_volume(path))]


def output_role(path: Path) -> tuple[str, str | None]:
    """(``<name>``, role) of a synapseg volume output, role ``None`` for other files."""
    name = path.name
    for suffix in ZARR_SUFFIXES + MRC_SUFFIXES + TIFF_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for role in (*LABEL_SUFFIXES, "_probabilities"):
        if name.endswith(role):
            return name[: -len(role)], ("probabilities" if role == "_probabilities" else role)
    return name, None


def _is_vesicle_table(path: Path) -> bool:
    if path.stem.endswith("_vesicles") or path.suffix.lower() == ".star":
        return True
    if path.suffix.lower() == ".csv" and path.is_file():
        try:
            head = pd.read_csv(path, nrows=0).columns
        except (ValueError, OSError):
            return False
        return {"center_z_px", "center_y_px", "center_x_px"} <= set(head)
    return False


def read_report(folder: Path, name: str) -> dict[str, Any] | None:
    """``<name>_report.json`` beside the table, or ``None``."""
    report = folder / f"{name}_report.json"
    if not report.is_file():
        return None
    try:
        return json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: not readable (%s); layers opened without it", report, exc)
        return None


def _report_voxel_size(report: dict[str, Any] | None) -> Any:
    if not report:
        return None
    vs = report.get("voxel_size_nm_zyx") or report.get("voxel_size_nm")
    return None if vs is None else tuple(float(v) for v in vs)


def read_outputs(path: str | os.PathLike | list[str]) -> list[LayerData]:
    """A vesicle table as a Points layer, with the outputs found beside it.

    The voxel size comes from the table (px and nm centers), its provenance or the report;
    a STAR file needs the report (RELION coordinates are in Å or tilt-series pixels).
    """
    if isinstance(path, (list, tuple)):
        path = path[0]
    from synapseg.io.tables import read_vesicles

    p = Path(path)
    name = p.stem[: -len("_vesicles")] if p.stem.endswith("_vesicles") else p.stem
    report = read_report(p.parent, name)
    vs = _report_voxel_size(report)
    shape = None
    labels_path = p.parent / f"{name}_vesicles.mrc"
    if labels_path.is_file():
        lab = read_volume(labels_path, vs)
        vs, shape = vs or lab.voxel_size_nm, lab.shape
    table = read_vesicles(p, voxel_size_nm=vs, shape=shape)
    if vs is None:
        vs = _table_voxel_size(table, p)
    provenance = _provenance(p, table)
    extra: dict[str, Any] = {"path": str(p), "output_name": name}
    if report is not None:
        extra["report"] = report
    if provenance:
        extra["provenance"] = provenance
    layers: list[LayerData] = [vesicles_layer(table, vs, name=f"{name} vesicles", **extra)]
    for suffix, (title, kind) in LABEL_SUFFIXES.items():
        f = p.parent / f"{name}{suffix}.mrc"
        if f.is_file():
            vol = read_volume(f, vs)
            layers.insert(0, labels_layer(vol.data, vs, f"{name} {title}", kind))
    fil = p.parent / f"{name}_filaments.csv"
    if fil.is_file():
        layer = filaments_layer(pd.read_csv(fil), vs, name=f"{name} filaments")
        if layer is None:
            log.warning("%s: filament table layout not recognised; not shown", fil)
        else:
            layers.append(layer)
    return layers


def _table_voxel_size(table: pd.DataFrame, path: Path) -> Any:
    import numpy as np

    px = table[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(float)
    nm = table[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nanmedian(np.where(np.abs(px) > 1e-6, nm / px, np.nan), axis=0)
    if not np.all(np.isfinite(ratio)) or not np.all(ratio > 0):
        raise InputError(
            path,
            "the voxel size of this table is unknown (no report beside it, no nm centers)",
            "open it from the folder synapseg wrote it to, or add center_*_nm columns",
        )
    return tuple(float(v) for v in ratio)


def _provenance(path: Path, table: pd.DataFrame) -> dict[str, Any]:
    if table.attrs.get("provenance"):
        return dict(table.attrs["provenance"])
    sidecar = path.with_suffix(".provenance.json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
    return {}

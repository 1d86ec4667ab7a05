"""napari layer-data tuples ``(data, kwargs, layer_type)`` from synapseg objects.

Pure functions, no napari import: the reader returns these tuples and the widgets add them
with ``viewer._add_layer_from_data``-style calls (``viewer.add_<type>(data, **kwargs)``).

Physical units everywhere: every layer's ``scale`` is the voxel size (z, y, x) in nm, so the
tomogram, the vesicle points, the labels and the filaments line up in nm. Points are stored
in input voxels (``center_*_px``); a point's ``size`` is the vesicle's outer diameter in
voxels of x, which the layer scale turns into the diameter in nm on screen. The table's
columns become the points' ``features`` (ids kept), and each layer's ``metadata`` carries
``synapseg`` facts: the role of the layer, the voxel size and, when known, the report.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.io.volume_base import Volume

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

ROLE = "synapseg_role"
"""Key of ``layer.metadata`` naming what a layer is (``tomogram``, ``vesicles`` ...)."""

CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
AUTO_COLOR = (1.0, 0.6, 0.0, 1.0)  # orange: found by segment
MANUAL_COLOR = (0.0, 0.9, 1.0, 1.0)  # cyan: placed or edited by hand
_SAMPLE_SECTIONS = 9
_SAMPLE_VOXELS = 1_000_000


def contrast_limits(
    data: Any, percentiles: tuple[float, float] = (1.0, 99.0), seed: int = 0
) -> tuple[float, float]:
    """Robust display range of a (z, y, x) tomogram from a small sample of its specimen.

    Reads at most ~1 M voxels: :data:`_SAMPLE_SECTIONS` z-sections spread over the middle
    third of z (where the specimen is in any sensible tomogram; vacuum/ice slabs lie at the
    top and bottom), strided in y and x. Values further than 5 robust sigmas from the
    median (gold beads, hot pixels) are dropped before the percentiles are taken.

    Parameters
    ----------
    data
        (z, y, x) array-like (memmap, zarr or dask array); only the sampled sections are read.
    percentiles
        Lower and upper percentile of the kept values.
    seed
        Seed of the random offset of the y/x stride.

    Returns
    -------
    (low, high)
        Display limits; ``high > low`` always.
    """
    nz, ny, nx = (int(s) for s in data.shape[-3:])
    lo, hi = nz // 3, max(nz // 3 + 1, (2 * nz) // 3)
    zs = np.unique(np.linspace(lo, hi - 1, min(_SAMPLE_SECTIONS, hi - lo)).round().astype(int))
    per_sec = max(1, _SAMPLE_VOXELS // len(zs))
    stride = max(1, int(np.sqrt(ny * nx / per_sec)))
    oy, ox = np.random.default_rng(seed).integers(0, stride, size=2)
    values = np.concatenate(
        [np.asarray(data[z, oy::stride, ox::stride], dtype=np.float64).ravel() for z in zs]
    )
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    med = float(np.median(values))
    sigma = float(1.4826 * np.median(np.abs(values - med))) or float(values.std())
    if sigma > 0:
        values = values[np.abs(values - med) <= 5 * sigma]
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        high = low + 1.0
    return low, high


def metadata(role: str, voxel_size_nm: Sequence[float] | float, **extra: Any) -> dict[str, Any]:
    """A layer's ``metadata``: its role, the voxel size (z, y, x nm) and ``extra`` facts."""
    vs = [float(v) for v in voxel_size_zyx(voxel_size_nm)]
    return {ROLE: role, "voxel_size_nm": vs, **extra}


def tomogram_layer(volume: Any, name: str | None = None) -> LayerData:
    """Image layer of a :class:`~synapseg.io.volume.Volume`, data kept lazy (never copied)."""
    vs = tuple(float(v) for v in volume.voxel_size_nm)
    path = getattr(volume, "path", None)
    kwargs = {
        "name": name or getattr(volume, "name", "tomogram"),
        "scale": vs,
        "contrast_limits": contrast_limits(volume.data),
        "colormap": "gray",
        "metadata": metadata(
            "tomogram",
            vs,
            path=None if path is None else str(path),
            voxel_size_source=getattr(volume, "voxel_size_source", "memory"),
            origin_nm=[float(v) for v in getattr(volume, "origin_nm", (0.0, 0.0, 0.0))],
            header=dict(getattr(volume, "header", {}) or {}),
        ),
    }
    return volume.data, kwargs, "image"


def point_sizes(table: pd.DataFrame, voxel_size_nm: Sequence[float] | float) -> np.ndarray:
    """Marker size per vesicle: the outer diameter in x voxels (nm on screen via the scale).

    ``outer_radius_nm`` when present and finite, else ``radius_nm`` + 2.25 nm (half a
    bilayer), else 20 nm (a vesicle being fitted).
    """
    from synapseg.io.schema import DEFAULT_MEMBRANE_THICKNESS_NM

    vs = voxel_size_zyx(voxel_size_nm)
    radius = table["radius_nm"].to_numpy(float) if "radius_nm" in table else np.full(len(table), 20)
    outer = radius + DEFAULT_MEMBRANE_THICKNESS_NM / 2
    if "outer_radius_nm" in table:
        given = table["outer_radius_nm"].to_numpy(float)
        outer = np.where(np.isfinite(given), given, outer)
    outer = np.where(np.isfinite(outer), outer, 20.0)
    return 2.0 * outer / float(vs[2])


def point_colors(table: pd.DataFrame) -> np.ndarray:
    """Border colour per vesicle: orange for ``auto``, cyan for hand-placed or edited rows."""
    n = len(table)
    manual = np.zeros(n, bool)
    if "source" in table:
        manual |= table["source"].astype(str).to_numpy() == "manual"
    if "correction" in table:
        manual |= table["correction"].fillna("").astype(str).str.len().to_numpy() > 0
    colors = np.tile(np.asarray(AUTO_COLOR), (n, 1))
    colors[manual] = MANUAL_COLOR
    return colors


def shown_mask(table: pd.DataFrame, min_confidence: float) -> np.ndarray:
    """Vesicles shown at a confidence cut: ``confidence >= min_confidence``; rows without a
    confidence (placed by hand) are always shown."""
    if "confidence" not in table or min_confidence <= 0:
        return np.ones(len(table), bool)
    conf = pd.to_numeric(table["confidence"], errors="coerce").to_numpy(float)
    return ~(conf < min_confidence)  # NaN compares False: shown


def sphere_display() -> dict[str, Any]:
    """Points kwargs that draw each vesicle as the circle where the slice cuts its sphere.

    napari >= 0.9: ``projection_mode="rescale_spherical"`` (shown within the viewer's thick
    slice margins, see :func:`synapseg.napari.points.show_spheres`); older napari:
    ``out_of_slice_display=True``.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(v) for v in version("napari").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return {}
    if (major, minor) >= (0, 9):
        return {"projection_mode": "rescale_spherical"}
    return {"out_of_slice_display": True}


def vesicles_layer(
    table: pd.DataFrame,
    voxel_size_nm: Sequence[float] | float,
    name: str = "vesicles",
    **extra_metadata: Any,
) -> LayerData:
    """Points layer of a vesicle table: centers in voxels, size = outer diameter, features =
    the table's columns (ids kept), border colour by source."""
    vs = tuple(float(v) for v in voxel_size_zyx(voxel_size_nm))
    data = np.array(table[CENTER_PX], dtype=float).reshape(-1, 3)  # a writable copy (drags)
    kwargs = {
        "name": name,
        "scale": vs,
        "size": point_sizes(table, vs),
        "features": table.reset_index(drop=True),
        "face_color": "transparent",
        "border_color": point_colors(table),
        "border_width": 0.05,
        "border_width_is_relative": True,
        **sphere_display(),
        "metadata": metadata("vesicles", vs, **extra_metadata),
    }
    return data, kwargs, "points"


def labels_layer(data: Any, voxel_size_nm: Sequence[float] | float, name: str, role: str):
    """Labels layer (lazy data kept as is) with the physical scale."""
    vs = tuple(float(v) for v in voxel_size_zyx(voxel_size_nm))
    return data, {"name": name, "scale": vs, "metadata": metadata(role, vs)}, "labels"


def filaments_layer(
    table: pd.DataFrame, voxel_size_nm: Sequence[float] | float, name: str = "filaments"
) -> LayerData | None:
    """Shapes layer (paths) of a filament table; ``None`` when its layout is not understood.

    Two layouts are read: polylines (one row per point: ``filament_id``, optional
    ``point_index``, ``z_px, y_px, x_px`` or ``z_nm, y_nm, x_nm``) and segments (one row per
    filament: ``start_{z,y,x}_px`` and ``end_{z,y,x}_px``, or ``_nm``).
    """
    vs = voxel_size_zyx(voxel_size_nm)
    paths: list[np.ndarray] = []
    ids: list[Any] = []
    kinds: list[str] = []
    cols = set(table.columns)

    def _xyz(prefix: str, suffix: str) -> list[str]:
        return [f"{prefix}{a}{suffix}" for a in "zyx"]

    if {"start_z_px", "end_z_px"} <= cols or {"start_z_nm", "end_z_nm"} <= cols:
        unit = "_px" if "start_z_px" in cols else "_nm"
        a = table[_xyz("start_", unit)].to_numpy(float)
        b = table[_xyz("end_", unit)].to_numpy(float)
        if unit == "_nm":
            a, b = a / vs, b / vs
        paths = [np.stack([p, q]) for p, q in zip(a, b)]
        ids = list(table.get("filament_id", table.get("id", pd.Series(range(1, len(a) + 1)))))
        kinds = [str(k) for k in table.get("kind", pd.Series([""] * len(a)))]
    elif ({"z_px", "y_px", "x_px"} <= cols or {"z_nm", "y_nm", "x_nm"} <= cols) and (
        "filament_id" in cols or "id" in cols
    ):
        key = "filament_id" if "filament_id" in cols else "id"
        unit = "_px" if "z_px" in cols else "_nm"
        for fid, rows in table.groupby(key, sort=True):
            if "point_index" in rows:
                rows = rows.sort_values("point_index")
            pts = rows[_xyz("", unit)].to_numpy(float)
            if unit == "_nm":
                pts = pts / vs
            if len(pts) >= 2:
                paths.append(pts)
                ids.append(fid)
                kinds.append(str(rows["kind"].iloc[0]) if "kind" in rows else "")
    else:
        return None
    kwargs = {
        "name": name,
        "scale": tuple(float(v) for v in vs),
        "shape_type": "path",
        "edge_color": "magenta",
        "edge_width": 1.0,
        "features": pd.DataFrame({"filament_id": ids, "kind": kinds}),
        "metadata": metadata("filaments", vs),
    }
    return paths, kwargs, "shapes"


@dataclass
class LayerVolume(Volume):
    """A :class:`~synapseg.io.volume.Volume` named after its layer when it has no file."""

    layer_name: str = "volume"

    @property
    def name(self) -> str:
        return super().name if self.path is not None else self.layer_name


def volume_from_layer(layer: Any) -> Any:
    """A :class:`~synapseg.io.volume.Volume` over an image layer's data (not copied): voxel
    size = the layer's scale (nm), path and voxel-size source from its metadata; outputs of
    a layer without a file are named after the layer."""
    meta = getattr(layer, "metadata", {}) or {}
    vs = tuple(float(v) for v in np.asarray(layer.scale, float)[-3:])
    path = meta.get("path")
    origin = tuple(float(v) for v in meta.get("origin_nm", (0.0, 0.0, 0.0)))
    source = meta.get("voxel_size_source", "memory")
    header = dict(meta.get("header", {}) or {})
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(layer, "name", ""))).strip("._")
    return LayerVolume(
        layer.data,
        vs,
        origin,
        None if path is None else Path(path),
        source,
        header,
        layer_name=name or "volume",
    )

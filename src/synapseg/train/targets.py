"""Annotations -> training targets on the model grid.

An annotation is one of

* a label volume (MRC/TIFF/Zarr) on the tomogram grid: 0 background, any other value a
  vesicle (instance ids or a binary mask), filled to the outer membrane surface;
* an IMOD model (``.mod``) of scattered-point spheres with per-point sizes;
* a vesicle table (``.csv``, ``.json``, ``.star``) with centers and radii.

Whatever the format, the target is an instance-label volume *on the model grid*: tables
and ``.mod`` spheres are rendered directly at the model voxel size (exact), label volumes
are resampled with nearest-neighbour interpolation. Grid convention everywhere: voxel
``i`` of a grid with voxel size ``v`` sits at ``i * v`` nm (voxel centers at integer
positions, no origin offset; the same as :mod:`synapseg.io.tables`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError, VoxelSizeError
from synapseg.io.tables import CENTER_PX, DEFAULT_MEMBRANE_THICKNESS_NM, make_table

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".json", ".star", ".mod")
VOXEL_SIZE_RTOL = 0.01


@dataclass
class Annotation:
    """Vesicle annotation of one tomogram, either as a table or as a label volume.

    Attributes
    ----------
    path
        Source file (for error messages).
    table
        Vesicle table (``make_table`` layout, centers in tomogram voxels) or ``None``.
    labels
        (z, y, x) label volume on the tomogram grid (0 background) or ``None``.
    """

    path: Path
    table: pd.DataFrame | None = None
    labels: np.ndarray | None = None

    @property
    def n_vesicles(self) -> int:
        if self.table is not None:
            return len(self.table)
        assert self.labels is not None
        ids = np.unique(self.labels)
        n = int((ids != 0).sum())
        if n == 1:  # binary mask: count connected components
            n = int(ndimage.label(self.labels != 0)[1])
        return n


def _voxel_triple(voxel_size_nm: float | Sequence[float]) -> np.ndarray:
    return voxel_size_zyx(voxel_size_nm)


def _read_table(path: Path, shape: Sequence[int], voxel_size_nm: np.ndarray, binning: float | None):
    """Read a .csv/.json/.star/.mod table with :func:`synapseg.io.tables.read_vesicles`.

    IMOD sphere sizes are bilayer-midline radii (synapseg's .mod convention, see
    docs/formats.md); the outer radius is the midline radius + half a membrane.
    """
    from synapseg.io.tables import read_vesicles

    return read_vesicles(
        path, voxel_size_nm=tuple(voxel_size_nm), shape=tuple(shape), binning=binning
    )


def _complete_table(table: pd.DataFrame, path: Path, voxel_size_nm: np.ndarray) -> pd.DataFrame:
    """Make sure centers in px and an outer radius in nm are present."""
    table = table.copy()
    if not all(c in table.columns for c in CENTER_PX):
        nm_cols = ["center_z_nm", "center_y_nm", "center_x_nm"]
        if not all(c in table.columns for c in nm_cols):
            raise InputError(path, "table has no vesicle centers", "add center columns")
        for px, nm, v in zip(CENTER_PX, nm_cols, voxel_size_nm):
            table[px] = table[nm] / v
    if "outer_radius_nm" not in table.columns or table["outer_radius_nm"].isna().all():
        if "radius_nm" in table.columns:
            table["outer_radius_nm"] = table["radius_nm"] + DEFAULT_MEMBRANE_THICKNESS_NM / 2
        elif "radius_px" in table.columns:
            table["outer_radius_nm"] = (
                table["radius_px"] * voxel_size_nm[2] + DEFAULT_MEMBRANE_THICKNESS_NM / 2
            )
        else:
            raise InputError(path, "table has no vesicle radii", "add a radius_nm column")
    radii = table["outer_radius_nm"].to_numpy(dtype=float)
    if len(radii) and (not np.all(np.isfinite(radii)) or np.any(radii <= 0)):
        raise InputError(path, "table has missing or non-positive radii", "fix the radius column")
    if "id" not in table.columns or table["id"].duplicated().any():
        table["id"] = np.arange(1, len(table) + 1)
    return table


def load_annotation(
    path: str | os.PathLike,
    *,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    binning: float | None = None,
    allow_empty: bool = False,
) -> Annotation:
    """Read a vesicle annotation for a tomogram of ``shape`` and ``voxel_size_nm``.

    Parameters
    ----------
    path
        Label volume (.mrc/.rec/.tif/.zarr), IMOD model (.mod) or table (.csv/.json/.star).
    shape, voxel_size_nm
        Geometry of the tomogram the annotation belongs to.
    binning
        Binning of the tomogram relative to the tilt series (RELION-4 STAR coordinates).
    allow_empty
        Accept an annotation without any vesicle (a purely negative example).

    Raises
    ------
    InputError
        Missing file, shape or voxel-size mismatch, .mod without sphere sizes, no vesicles.
    """
    path = Path(path)
    vs = _voxel_triple(voxel_size_nm)
    shape = tuple(int(s) for s in shape)
    if not path.exists():
        raise InputError(path, "annotation file not found", "check the path in the data config")
    if path.suffix.lower() in TABLE_SUFFIXES:
        table = _complete_table(_read_table(path, shape, vs, binning), path, vs)
        ann = Annotation(path=path, table=table)
    else:
        from synapseg.io.volume import read_volume

        try:
            vol = read_volume(path)
        except VoxelSizeError:  # label files often carry no voxel size: use the tomogram's
            vol = read_volume(path, voxel_size_nm=tuple(vs))
        if vol.shape != shape:
            raise InputError(
                path,
                f"label volume shape {vol.shape} does not match the tomogram's {shape}",
                "give labels on the tomogram's grid (same shape and voxel size)",
            )
        if vol.voxel_size_source == "header" and not np.allclose(
            vol.voxel_size_nm, vs, rtol=VOXEL_SIZE_RTOL
        ):
            raise VoxelSizeError(
                path,
                f"label voxel size {tuple(round(v, 4) for v in vol.voxel_size_nm)} nm does not "
                f"match the tomogram's {tuple(round(float(v), 4) for v in vs)} nm",
                "resample the labels to the tomogram grid or fix the header",
            )
        labels = np.asarray(vol.data)
        if labels.dtype.kind == "f":
            labels = np.rint(labels)
        ann = Annotation(path=path, labels=labels.astype(np.int64))
    if ann.n_vesicles == 0 and not allow_empty:
        raise InputError(
            path,
            "annotation holds no vesicles",
            "annotate at least one vesicle, or mark the item `negative: true` in the data config",
        )
    return ann


def grid_shape(shape: Sequence[int], src_voxel_nm: Sequence[float], dst_voxel_nm: Sequence[float]):
    """Shape of the model grid covering a volume of ``shape`` at ``src_voxel_nm``."""
    src = _voxel_triple(src_voxel_nm)
    dst = _voxel_triple(dst_voxel_nm)
    return tuple(int(np.floor((n - 1) * s / d + 1e-6)) + 1 for n, s, d in zip(shape, src, dst))


def resample_nearest(
    labels: np.ndarray, src_voxel_nm: Sequence[float], dst_voxel_nm: Sequence[float]
) -> np.ndarray:
    """Resample a label/mask volume to another voxel size (nearest neighbour)."""
    src = _voxel_triple(src_voxel_nm)
    dst = _voxel_triple(dst_voxel_nm)
    if np.allclose(src, dst, rtol=1e-6):
        return labels
    out_shape = grid_shape(labels.shape, src, dst)
    idx = [
        np.clip(np.rint(np.arange(n) * d / s), 0, m - 1).astype(np.intp)
        for n, d, s, m in zip(out_shape, dst, src, labels.shape)
    ]
    return labels[np.ix_(*idx)]


def instance_targets(
    annotation: Annotation,
    src_voxel_nm: float | Sequence[float],
    dst_voxel_nm: float | Sequence[float],
    dst_shape: Sequence[int],
) -> np.ndarray:
    """Instance labels (uint16, 0 = background) on the model grid of ``dst_shape``."""
    from synapseg.post.render import render_labels

    src = _voxel_triple(src_voxel_nm)
    dst = _voxel_triple(dst_voxel_nm)
    if annotation.table is not None:
        table = annotation.table.copy()
        centers = table[CENTER_PX].to_numpy(dtype=float) * src / dst
        for i, col in enumerate(CENTER_PX):
            table[col] = centers[:, i]
        table["id"] = np.arange(1, len(table) + 1)
        return render_labels(table, dst_shape, dst, radius_column="outer_radius_nm")
    assert annotation.labels is not None
    labels = resample_nearest(annotation.labels, src, dst)
    labels = labels[tuple(slice(0, n) for n in dst_shape)]
    if len(np.unique(labels)) <= 2:  # binary mask -> instances by connectivity
        labels = ndimage.label(labels != 0)[0]
    return labels.astype(np.uint16)


def boundary_target(instances: np.ndarray) -> np.ndarray:
    """Voxels of a vesicle whose 6-neighbourhood holds another label (incl. background).

    Used as the optional second output channel ("boundary") that helps to split
    touching vesicles.
    """
    inst = instances.astype(np.int64)
    edge = np.zeros(inst.shape, dtype=bool)
    for axis in range(3):
        for shift in (1, -1):
            nb = np.roll(inst, shift, axis=axis)
            edge |= nb != inst
    return (edge & (inst != 0)).astype(np.uint8)


def centers_from_instances(
    instances: np.ndarray, voxel_size_nm: float | Sequence[float]
) -> pd.DataFrame:
    """Table (``make_table`` layout) of instance centroids and equivalent-volume radii."""
    vs = _voxel_triple(voxel_size_nm)
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if len(ids) == 0:
        return make_table(np.zeros((0, 3)), np.zeros(0), vs)
    centers = np.asarray(ndimage.center_of_mass(np.ones_like(instances), instances, ids))
    counts = ndimage.sum_labels(np.ones_like(instances, dtype=np.int64), instances, ids)
    outer = np.cbrt(3 * counts * np.prod(vs) / (4 * np.pi))
    return make_table(centers, outer - DEFAULT_MEMBRANE_THICKNESS_NM / 2, vs, outer_radius_nm=outer)

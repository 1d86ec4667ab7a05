"""RELION particle STAR files for vesicle tables (written and read with ``starfile``).

One ``data_particles`` loop holds each vesicle center:

* ``rlnCenteredCoordinateX/Y/ZAngst`` (always): RELION-5, Å from the tomogram center
  ``size / 2.0`` (float division, also for odd sizes); these do not depend on the binning;
* ``rlnCoordinateX/Y/Z`` (only when the binning is given): RELION-4 (and RELION >= 4.1
  zero-origin) pixels of the *unbinned* tilt series, ``center_px * binning``. Without a
  known binning they are not written: binned pixels labelled as unbinned would be wrong.

Radii, ids and scores travel in ``synapseg*`` columns (RELION keeps unknown labels).
See docs/formats.md for the conventions and the RELION sources they were checked against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path
from synapseg.io.schema import CENTER_PX, make_table

STAR_COORD = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]
STAR_CENTERED = [
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
]
STAR_RADIUS = "synapsegRadiusAngst"  # bilayer-midline radius, Å (not a RELION label)
STAR_OUTER_RADIUS = "synapsegOuterRadiusAngst"
STAR_ID = "synapsegVesicleId"
STAR_SCORE = "synapsegScore"
STAR_SOURCE = "synapsegSource"  # auto / manual
STAR_AZ_DISTANCE = "synapsegAzDistanceAngst"  # az_distance_nm x 10 (docs/context.md)
STAR_POOL = "synapsegPool"  # docked / proximal / distal
STAR_N_CONNECTORS = "synapsegNConnectors"  # n_connectors (docs/filaments.md)
STAR_N_TETHERS = "synapsegNTethers"  # n_tethers


def binning_from_tilt_series(
    tilt_series_size_xy: Sequence[int], shape: Sequence[int], path: Path | str | None = None
) -> float:
    """Binning of a tomogram of ``shape`` (z, y, x) reconstructed from a tilt series of
    ``tilt_series_size_xy`` (x, y) unbinned pixels: ``size_x / shape_x`` (y must agree).

    A ratio within 1 % of an integer is rounded (IMOD's binning floors odd sizes); a ratio
    that x and y do not agree on is an ``InputError``.
    """
    ts = np.asarray(tilt_series_size_xy, dtype=float).reshape(-1)
    shp = np.asarray(shape, dtype=float).reshape(-1)
    if ts.size != 2 or np.any(ts <= 0) or shp.size != 3:
        raise InputError(path, f"invalid tilt-series size {tilt_series_size_xy}", "give X,Y px")
    ratio = ts / shp[[2, 1]]  # x, y
    if abs(ratio[0] - ratio[1]) > 0.01 * ratio.mean():
        raise InputError(
            path,
            f"tilt-series size {tuple(int(v) for v in ts)} (x, y) is not a binning of the "
            f"tomogram's {int(shp[2])} x {int(shp[1])} (ratios {ratio[0]:.3f}, {ratio[1]:.3f})",
            "give the unbinned tilt-series image size, or --star-binning",
        )
    b = float(ratio.mean())
    return float(round(b)) if abs(b - round(b)) <= 0.01 * b else b


def _star_geometry(
    path: Path,
    voxel_size_nm: float | Sequence[float] | None,
    shape: Sequence[int] | None,
    binning: float | None,
    need_shape: bool,
    need_binning: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Validate the STAR conversion arguments; return zyx voxel size, zyx shape, binning."""
    if voxel_size_nm is None:
        raise InputError(
            path, "STAR coordinates need the tomogram's voxel size", "pass --voxel-size in nm"
        )
    vs = voxel_size_zyx(voxel_size_nm)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(path, f"invalid voxel size {voxel_size_nm} nm", "give e.g. 1.4")
    if binning is None and not need_binning:
        pass
    elif binning is None or not np.isfinite(binning) or binning <= 0:
        raise InputError(
            path,
            f"RELION-4 rlnCoordinateX/Y/Z need the binning of the tomogram relative to the "
            f"tilt series, got {binning}",
            "pass --star-binning (1 for an unbinned tomogram, 4 for bin-4)",
        )
    shp = None
    if shape is not None:
        shp = np.asarray(shape, dtype=float).reshape(-1)
        if shp.size != 3 or np.any(shp <= 0):
            raise InputError(path, f"invalid tomogram shape {shape}", "give (z, y, x) sizes")
    elif need_shape:
        raise InputError(
            path,
            "RELION-5 centered coordinates need the tomogram shape",
            "pass --tomogram so the shape is known",
        )
    return vs, shp, None if binning is None else float(binning)


def write_table_star(
    path: str | os.PathLike,
    table: pd.DataFrame,
    *,
    tomogram_name: str,
    voxel_size_nm: float | Sequence[float] | None,
    shape: Sequence[int] | None,
    binning: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write vesicle centers as a RELION particle STAR file (RELION 5; RELION 4 on request).

    * ``rlnCoordinateX/Y/Z`` (only when ``binning`` is given): RELION-4 (and RELION >= 4.1
      zero-origin) pixels of the *unbinned* tilt series: ``center_px * binning``.
    * ``rlnCenteredCoordinateX/Y/ZAngst``: RELION-5, Å from the tomogram center, defined
      by RELION as ``size / 2.0`` in unbinned pixels (float division, also for odd sizes):
      ``(center_px - shape / 2) * voxel_size_nm * 10``.
    * ``rlnTomoName``; plus ``synapsegVesicleId``, ``synapsegRadiusAngst`` (bilayer
      midline), ``synapsegOuterRadiusAngst`` and ``synapsegScore`` (RELION keeps unknown
      labels with a warning).

    Parameters
    ----------
    tomogram_name
        Value of ``rlnTomoName`` (must match the tomogram's name in RELION's tomograms.star).
    voxel_size_nm
        Voxel size of the (binned) tomogram in nm, scalar or (z, y, x).
    shape
        (z, y, x) size of the (binned) tomogram in voxels.
    binning
        Tomogram voxel size / tilt-series pixel size (1 for an unbinned tomogram); ``None``
        (default) writes only the binning-independent RELION-5 columns.
    """
    path = Path(path)
    import starfile

    vs, shp, b = _star_geometry(
        path, voxel_size_nm, shape, binning, need_shape=True, need_binning=False
    )
    assert shp is not None
    if not tomogram_name:
        raise InputError(path, "STAR export needs a tomogram name", "pass the tomogram name")
    centers = table[CENTER_PX].to_numpy(dtype=float)  # zyx
    n = len(table)
    data: dict[str, Any] = {"rlnTomoName": [str(tomogram_name)] * n}
    if b is not None:
        for k, label in enumerate(STAR_COORD):  # x, y, z -> zyx index 2, 1, 0
            data[label] = centers[:, 2 - k] * b
    for k, label in enumerate(STAR_CENTERED):
        axis = 2 - k
        data[label] = (centers[:, axis] - shp[axis] / 2.0) * vs[axis] * 10.0
    data[STAR_ID] = table["id"].to_numpy(dtype=int)
    data[STAR_RADIUS] = table["radius_nm"].to_numpy(dtype=float) * 10.0
    if "outer_radius_nm" in table:
        data[STAR_OUTER_RADIUS] = table["outer_radius_nm"].to_numpy(dtype=float) * 10.0
    if "score" in table:
        data[STAR_SCORE] = table["score"].to_numpy(dtype=float)
    if "source" in table:
        data[STAR_SOURCE] = table["source"].fillna("").astype(str).to_numpy()
    if "az_distance_nm" in table:
        data[STAR_AZ_DISTANCE] = table["az_distance_nm"].to_numpy(dtype=float) * 10.0
    if "pool" in table:
        data[STAR_POOL] = table["pool"].fillna("").astype(str).to_numpy()
    for col, label in (("n_connectors", STAR_N_CONNECTORS), ("n_tethers", STAR_N_TETHERS)):
        if col in table:
            n = pd.to_numeric(table[col], errors="coerce").fillna(-1)  # -1: not counted
            data[label] = n.astype(int).to_numpy()
    df = pd.DataFrame(data)
    with atomic_path(path, overwrite) as tmp:
        starfile.write({"particles": df}, tmp, float_format="%.6f")
    return path


def read_table_star(
    path: str | os.PathLike,
    *,
    voxel_size_nm: float | Sequence[float] | None,
    shape: Sequence[int] | None = None,
    binning: float | None = None,
    tomogram_name: str | None = None,
) -> pd.DataFrame:
    """Read vesicles from a RELION particle STAR file into a vesicle table.

    Uses the RELION-5 ``rlnCentered...Angst`` columns when present and ``shape`` is known
    (they do not depend on the binning), otherwise ``rlnCoordinateX/Y/Z`` divided by
    ``binning`` (which must then be given). Radii come from
    ``synapsegRadiusAngst`` (or NaN when absent). With several ``rlnTomoName`` values,
    ``tomogram_name`` selects the rows.
    """
    path = Path(path)
    import starfile

    if not path.is_file():
        raise InputError(path, "STAR file not found", "check the path")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many types on malformed text
        raise InputError(path, f"not a readable STAR file ({exc})", "check the file") from exc
    df = next(
        (b for b in blocks.values() if isinstance(b, pd.DataFrame) and _has_star_coords(b)),
        None,
    )
    if df is None:
        raise InputError(
            path,
            "no particle block with rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst",
            "give a RELION particle STAR file",
        )
    if "rlnTomoName" in df:
        names = df["rlnTomoName"].astype(str)
        if tomogram_name is not None:
            df = df[names == str(tomogram_name)]
        elif names.nunique() > 1:
            raise InputError(
                path,
                f"holds {names.nunique()} tomograms ({', '.join(sorted(names.unique())[:5])})",
                "choose one with the tomogram name",
            )
    has_centered = all(c in df for c in STAR_CENTERED)
    use_px = all(c in df for c in STAR_COORD) and not (has_centered and shape is not None)
    vs, shp, b = _star_geometry(
        path, voxel_size_nm, shape, binning, need_shape=not use_px, need_binning=use_px
    )
    xyz = np.zeros((len(df), 3))
    for k in range(3):
        axis = 2 - k
        if use_px:
            assert b is not None
            xyz[:, axis] = df[STAR_COORD[k]].to_numpy(dtype=float) / b
        else:
            assert shp is not None
            angst = df[STAR_CENTERED[k]].to_numpy(dtype=float)
            xyz[:, axis] = angst / (vs[axis] * 10.0) + shp[axis] / 2.0
    radius = (
        df[STAR_RADIUS].to_numpy(dtype=float) / 10.0
        if STAR_RADIUS in df
        else np.full(len(df), np.nan)
    )
    outer = df[STAR_OUTER_RADIUS].to_numpy(dtype=float) / 10.0 if STAR_OUTER_RADIUS in df else None
    score = df[STAR_SCORE].to_numpy(dtype=float) if STAR_SCORE in df else np.full(len(df), np.nan)
    ids = df[STAR_ID].to_numpy(dtype=int) if STAR_ID in df else None
    extra = {"source": df[STAR_SOURCE].astype(str).to_numpy()} if STAR_SOURCE in df else {}
    if STAR_AZ_DISTANCE in df:
        extra["az_distance_nm"] = pd.to_numeric(df[STAR_AZ_DISTANCE], errors="coerce") / 10.0
    if STAR_POOL in df:
        extra["pool"] = df[STAR_POOL].fillna("").astype(str).replace("nan", "").to_numpy()
    for col, label in (("n_connectors", STAR_N_CONNECTORS), ("n_tethers", STAR_N_TETHERS)):
        if label in df:
            n = pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=float)
            extra[col] = np.where(n >= 0, n, np.nan)  # -1: not counted
    return make_table(xyz, radius, vs, score=score, outer_radius_nm=outer, ids=ids, **extra)


def _has_star_coords(df: pd.DataFrame) -> bool:
    return all(c in df for c in STAR_COORD) or all(c in df for c in STAR_CENTERED)

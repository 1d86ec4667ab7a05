"""Read tomograms (MRC/REC/MAP, TIFF stacks, OME-Zarr) with their voxel size.

Arrays are always (z, y, x). Voxel sizes and origins are in nm inside synapseg; the
MRC header stores Å and is converted here, once. Reading is lazy: MRC data is a
read-only ``numpy.memmap``, OME-Zarr data a ``zarr`` array, so opening a 30 GB
tomogram costs nothing until slices are read.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.errors import InputError, VoxelSizeError
from synapseg.io.volume_base import (  # noqa: F401 - re-exported: the public names
    _UNSET_VOXEL_SIZES_A,
    IMOD_FLAG_SIGNED_BYTES,
    IMOD_STAMP,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    Volume,
    VoxelSize,
    _resolve_voxel_size,
    as_voxel_size,
)

log = logging.getLogger(__name__)


def find_first(folder: Path, stems: Sequence[str], suffixes: Sequence[str]) -> Path | None:
    """The first ``folder/<stem><suffix>`` that exists, stems tried in order, then suffixes.

    Returns ``None`` when none exists.
    """
    for stem in stems:
        for suffix in suffixes:
            candidate = folder / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
    return None


# --------------------------------------------------------------------------- reading


def read_volume(
    path: str | os.PathLike,
    voxel_size_nm: float | Sequence[float] | None = None,
    *,
    require_3d: bool = True,
) -> Volume:
    """Open a tomogram lazily.

    Parameters
    ----------
    path
        MRC/REC/MAP/ST/ALI, TIFF stack, or OME-Zarr folder.
    voxel_size_nm
        Overrides the header's voxel size (scalar or (z, y, x), nm). Needed when the
        header holds none (0 or 1 Å, or no metadata).
    require_3d
        Raise for 2D images (one section); ``info`` turns this off to report them.

    Returns
    -------
    Volume

    Raises
    ------
    InputError
        Missing, unreadable, truncated, 2D or unsupported files; unknown voxel size.
    """
    if voxel_size_nm is not None:
        voxel_size_nm = as_voxel_size(voxel_size_nm)
    if is_url(path):  # an OME-Zarr store behind fsspec (s3://, gs://, https://, file://)
        vol = _read_zarr(str(path), voxel_size_nm)  # type: ignore[arg-type]
        _check_dtype(Path(str(path)), vol.dtype)
        return vol
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    lower = path.name.lower()
    if is_zarr(path):
        vol = _read_zarr(path, voxel_size_nm)
    elif path.is_dir():
        raise InputError(
            path, "is a folder, not a tomogram file", "give an MRC, TIFF or OME-Zarr path"
        )
    elif path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)", "check that the copy or export finished")
    elif lower.endswith(MRC_SUFFIXES):
        from synapseg.io.mrc_read import read_mrc

        vol = read_mrc(path, voxel_size_nm)
    elif lower.endswith(TIFF_SUFFIXES):
        vol = _read_tiff(path, voxel_size_nm)
    else:
        raise InputError(
            path,
            f"unknown file type '{path.suffix}'",
            "use MRC (.mrc/.rec/.map), TIFF (.tif) or OME-Zarr (.zarr)",
        )
    _check_dtype(path, vol.dtype)
    if len(vol.shape) > 3:
        raise InputError(
            path,
            f"is a {len(vol.shape)}D/stack array (shape {vol.shape}), not a 3D tomogram",
            "extract one volume and give that",
        )
    if require_3d and (len(vol.shape) != 3 or vol.shape[0] < 2):
        raise InputError(
            path,
            f"is a 2D image (shape {vol.shape}), not a 3D tomogram",
            "give a reconstructed volume",
        )
    return vol


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise InputError(
            path,
            f"unsupported data type {dtype} (complex or non-numeric)",
            "convert it to float32 or int16, e.g. with IMOD's newstack -mode 2",
        )


def _tiff_voxel_size_nm(tif: Any) -> VoxelSize | None:
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower().replace("\\u00c5", "å")
    scale = {"nm": 1.0, "nanometer": 1.0, "å": 0.1, "a": 0.1, "angstrom": 0.1}
    scale.update({"micron": 1e3, "um": 1e3, "µm": 1e3, "micrometer": 1e3})
    if unit not in scale:
        return None
    tags = page.tags
    try:
        num, den = tags["XResolution"].value
        x = den / num * scale[unit]
        num, den = tags["YResolution"].value
        y = den / num * scale[unit]
    except (KeyError, ZeroDivisionError):
        return None
    z = float(ij.get("spacing", x / scale[unit])) * scale[unit]
    vs = (z, y, x)
    if any(not math.isfinite(v) or v <= 0 or abs(v - 1.0 * scale[unit]) < 1e-9 for v in vs):
        return None
    return vs


def _read_tiff(path: Path, user_vs: VoxelSize | None) -> Volume:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            header_nm = _tiff_voxel_size_nm(tif)
            ij_meta = tif.imagej_metadata or {}
            series = tif.series[0]
            shape, dtype = series.shape, series.dtype
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(path, f"not a readable TIFF file ({exc})", "check the file") from exc
    try:
        data = tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or non-contiguous: read it
        log.info("%s: TIFF is not memory-mappable (compressed?), reading into memory", path)
        data = tifffile.imread(path)
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise InputError(path, f"TIFF has shape {shape}, not a 3D stack", "give a z-stack")
    vs, source = _resolve_voxel_size(path, header_nm, user_vs)
    info = {"format": "TIFF", "file_dtype": str(dtype), "series_shape": list(shape)}
    origin = tuple(float(ij_meta.get(f"origin_{a}_nm", 0.0)) for a in "zyx")
    return Volume(data, vs, origin, path, source, info)  # type: ignore[arg-type]


def is_url(path: str | os.PathLike) -> bool:
    """A URL (``scheme://...``) rather than a local path.

    Examples
    --------
    >>> is_url("s3://bucket/tomo.zarr"), is_url("data/tomo.zarr")
    (True, False)
    """
    return isinstance(path, str) and "://" in path


def is_zarr(path: Path) -> bool:
    """A Zarr store: named ``*.zarr`` or a folder holding Zarr metadata."""
    if path.name.lower().endswith(ZARR_SUFFIXES):
        return True
    return path.is_dir() and any((path / n).exists() for n in (".zattrs", ".zgroup", "zarr.json"))


_ZARR_UNITS_NM = {
    "nanometer": 1.0,
    "nm": 1.0,
    "angstrom": 0.1,
    "micrometer": 1e3,
    "micron": 1e3,
    "millimeter": 1e6,
}


def _read_zarr(path: Path, user_vs: VoxelSize | None) -> Volume:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise InputError(path, f"not a readable OME-Zarr group ({exc})", "check the path") from exc
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests metadata under "ome"
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise InputError(
            path,
            "OME-Zarr has no 'multiscales' metadata, so its voxel size and axes are unknown",
            "write it with an NGFF-compliant tool (e.g. ome-zarr-py or synapseg)",
        )
    ms = multiscales[0]
    dataset = ms["datasets"][0]
    data = group[dataset["path"]]
    axes = ms.get("axes") or [{"name": n} for n in "zyx"[-data.ndim :]]
    axes = [a if isinstance(a, dict) else {"name": a} for a in axes]
    names = [a["name"] for a in axes]
    scale = None
    translation = None
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = [float(s) for s in transform["scale"]]
        elif transform.get("type") == "translation":
            translation = [float(t) for t in transform["translation"]]
    # Drop singleton non-spatial axes (t, c) so the data is (z, y, x).
    index: list[Any] = []
    spatial: list[int] = []
    for i, (name, n) in enumerate(zip(names, data.shape)):
        if name in ("z", "y", "x"):
            index.append(slice(None))
            spatial.append(i)
        elif n == 1:
            index.append(0)
        else:
            raise InputError(
                path, f"axis '{name}' has {n} entries", "export a single-channel volume"
            )
    if [names[i] for i in spatial] != ["z", "y", "x"][-len(spatial) :]:
        raise InputError(path, f"axes {names} are not in z, y, x order", "reorder the axes")
    if any(s != slice(None) for s in index):
        data = data.oindex[tuple(index)] if hasattr(data, "oindex") else data[tuple(index)]
    header_nm = None
    if scale is not None:
        units = [axes[i].get("unit") for i in spatial]
        if all(u in _ZARR_UNITS_NM for u in units):
            header_nm = tuple(scale[i] * _ZARR_UNITS_NM[u] for i, u in zip(spatial, units))
        if header_nm is not None and len(header_nm) == 2:
            header_nm = (header_nm[0],) + header_nm
    if header_nm is None and user_vs is None:
        raise VoxelSizeError(
            path,
            "OME-Zarr has no physical scale (coordinateTransformations with units)",
            "pass --voxel-size in nm, e.g. --voxel-size 1.4",
        )
    vs, source = _resolve_voxel_size(path, header_nm, user_vs)  # type: ignore[arg-type]
    origin = (0.0, 0.0, 0.0)
    if translation is not None and header_nm is not None:
        units = [axes[i].get("unit") for i in spatial]
        origin = tuple(translation[i] * _ZARR_UNITS_NM[u] for i, u in zip(spatial, units))
    info = {"format": "OME-Zarr", "file_dtype": str(data.dtype), "axes": names}
    if is_url(path):  # the URL is kept in the header; the path only names the outputs
        info["url"] = str(path)
        path = Path(str(path).split("://", 1)[1])
    return Volume(data, vs, origin, path, source, info)  # type: ignore[arg-type]

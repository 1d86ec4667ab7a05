"""The tomogram value object (:class:`Volume`) and voxel-size handling, for every reader.

Split from :mod:`synapseg.io.volume` so that the format readers (``mrc_read``) import this
module and not the dispatcher that imports them (no import cycle inside ``io``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.errors import VoxelSizeError

log = logging.getLogger("synapseg.io.volume")  # messages as before the split

MRC_SUFFIXES = (".mrc", ".rec", ".map", ".mrcs", ".st", ".ali")
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".ome.zarr", ".zarr")  # longest first: names drop the whole suffix
IMOD_STAMP = 1146047817  # "IMOD" as a little-endian int32, at header byte 152
IMOD_FLAG_SIGNED_BYTES = 1
_UNSET_VOXEL_SIZES_A = (0.0, 1.0)

VoxelSize = tuple[float, float, float]


@dataclass
class Volume:
    """A tomogram: lazily-read (z, y, x) data plus its physical geometry.

    Attributes
    ----------
    data
        (z, y, x) array-like (``numpy.memmap``, ``numpy.ndarray`` or ``zarr`` array).
        Index it to read: ``np.asarray(vol.data[k])`` reads one z-section.
    voxel_size_nm
        Voxel size (z, y, x) in nm.
    origin_nm
        Physical coordinate (z, y, x) in nm of voxel (0, 0, 0), as stored in the file.
    path
        Source file, or ``None`` for an in-memory volume.
    voxel_size_source
        Where the voxel size came from: ``"header"``, ``"user"`` or ``"memory"``.
    header
        Format-specific header facts (plain Python values, JSON-serialisable).
    """

    data: Any
    voxel_size_nm: VoxelSize
    origin_nm: VoxelSize = (0.0, 0.0, 0.0)
    path: Path | None = None
    voxel_size_source: str = "memory"
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def name(self) -> str:
        """File stem used to name outputs (``tomo.rec`` -> ``tomo``)."""
        if self.path is None:
            return "volume"
        name = self.path.name
        for suffix in ZARR_SUFFIXES + MRC_SUFFIXES + TIFF_SUFFIXES:
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return self.path.stem

    @property
    def extent_nm(self) -> VoxelSize:
        return tuple(n * v for n, v in zip(self.shape, self.voxel_size_nm))  # type: ignore[return-value]


# --------------------------------------------------------------------------- voxel size


def as_voxel_size(value: float | Sequence[float], source: str = "--voxel-size") -> VoxelSize:
    """Turn a scalar or (z, y, x) voxel size in nm into a validated triple.

    Raises
    ------
    VoxelSizeError
        A value is not a finite positive number.
    """
    values = [value] * 3 if np.isscalar(value) else list(value)  # type: ignore[list-item]
    if len(values) != 3:
        raise VoxelSizeError(source, f"needs 1 or 3 values, got {len(values)}", "give e.g. 1.4")
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError) as exc:
            raise VoxelSizeError(
                source, f"voxel size {v!r} is not a number", "give it in nm, e.g. 1.4"
            ) from exc
        if not math.isfinite(f) or f <= 0:
            raise VoxelSizeError(
                source, f"voxel size must be a positive number of nm, got {v}", "give e.g. 1.4"
            )
        out.append(f)
    return tuple(out)  # type: ignore[return-value]


def _resolve_voxel_size(
    path: Path, header_nm: VoxelSize | None, user_nm: float | Sequence[float] | None
) -> tuple[VoxelSize, str]:
    if user_nm is not None:
        vs = as_voxel_size(user_nm)
        if header_nm is not None and not np.allclose(vs, header_nm, rtol=1e-3):
            log.info(
                "%s: using --voxel-size %s nm instead of the header's %s nm", path, vs, header_nm
            )
        return vs, "user"
    if header_nm is None:
        raise VoxelSizeError(
            path,
            "voxel size is missing or unset in the file header (0 or 1 Å means unset)",
            "pass --voxel-size in nm, e.g. --voxel-size 1.4",
        )
    # A tiny header value (nm written as Å?) is reported by synapseg.summary: a warning in
    # `info`, an error in `segment`/`predict` unless --voxel-size is given.
    return header_nm, "header"

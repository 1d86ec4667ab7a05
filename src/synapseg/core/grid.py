"""The geometry of a tomogram: :class:`Grid` (shape, voxel size, origin, missing wedge).

A ``Grid`` travels with the arrays through :func:`synapseg.segment`: stages read the voxel
size and the acquisition geometry from it instead of loose arguments. Coordinates follow
:class:`synapseg.io.volume.Volume`: voxel index ``i`` (z, y, x) lies at
``origin_nm + i * voxel_size_nm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from synapseg.core.units import voxel_size_zyx
from synapseg.specimen.wedge import WedgeEstimate

__all__ = ["Grid", "voxel_size_zyx"]


@dataclass(frozen=True)
class Grid:
    """Shape, voxel size, origin and acquisition geometry of a (z, y, x) volume.

    Attributes
    ----------
    shape
        (z, y, x) voxels.
    voxel_size_nm
        (z, y, x) voxel size in nm (a scalar is broadcast).
    origin_nm
        Physical (z, y, x) position in nm of voxel (0, 0, 0).
    wedge
        The missing wedge (tilt axis, tilt range, dual axis; given or estimated, see
        :func:`synapseg.specimen.wedge.resolve_wedge`), or ``None`` while unknown.

    Examples
    --------
    >>> g = Grid((10, 20, 30), 2.0)
    >>> g.voxel_size_nm
    (2.0, 2.0, 2.0)
    >>> g.to_nm([1, 2, 3]).tolist()
    [2.0, 4.0, 6.0]
    >>> g.to_px(g.to_nm([1.5, 0, 2])).tolist()
    [1.5, 0.0, 2.0]
    >>> g.extent_nm
    (20.0, 40.0, 60.0)
    """

    shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    origin_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wedge: WedgeEstimate | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"a grid needs 3 positive sizes (z, y, x), got {self.shape}")
        vs = voxel_size_zyx(self.voxel_size_nm)
        if not np.all(np.isfinite(vs) & (vs > 0)):
            raise ValueError(f"voxel size must be positive nm, got {self.voxel_size_nm}")
        origin = voxel_size_zyx(self.origin_nm)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "voxel_size_nm", tuple(float(v) for v in vs))
        object.__setattr__(self, "origin_nm", tuple(float(v) for v in origin))

    @classmethod
    def of(cls, volume: Any, voxel_size_nm: float | Sequence[float] | None = None) -> Grid:
        """The grid of a :class:`~synapseg.io.volume.Volume` or of an array.

        Parameters
        ----------
        volume
            A ``Volume`` (its voxel size and origin are used) or any (z, y, x) array.
        voxel_size_nm
            Required for a plain array; overrides a ``Volume``'s voxel size.

        Examples
        --------
        >>> Grid.of(np.zeros((4, 5, 6)), 1.5).shape
        (4, 5, 6)
        """
        vs = voxel_size_nm if voxel_size_nm is not None else getattr(volume, "voxel_size_nm", None)
        if vs is None:
            raise ValueError("an array has no voxel size: pass voxel_size_nm")
        origin = getattr(volume, "origin_nm", (0.0, 0.0, 0.0))
        return cls(tuple(volume.shape), vs, origin)

    def with_wedge(self, wedge: WedgeEstimate | None) -> Grid:
        """A copy with the acquisition geometry set."""
        return replace(self, wedge=wedge)

    @property
    def tilt_axis(self) -> str | None:
        """``"y"``, ``"x"``, ``"dual"`` (see ``WedgeEstimate.wedge_axis``) or ``None``."""
        return None if self.wedge is None else self.wedge.wedge_axis

    @property
    def tilt_range_deg(self) -> float | None:
        """Half tilt range α in degrees (60 for ±60°), or ``None`` while unknown."""
        return None if self.wedge is None else float(self.wedge.tilt_range_deg)

    @property
    def extent_nm(self) -> tuple[float, float, float]:
        """(z, y, x) size of the volume in nm."""
        return tuple(float(n * v) for n, v in zip(self.shape, self.voxel_size_nm))  # type: ignore[return-value]

    def to_nm(self, points_px: Any) -> np.ndarray:
        """Physical positions (nm, origin applied) of (..., 3) voxel coordinates (z, y, x)."""
        p = np.asarray(points_px, dtype=np.float64)
        return np.asarray(self.origin_nm) + p * np.asarray(self.voxel_size_nm)

    def to_px(self, points_nm: Any) -> np.ndarray:
        """Voxel coordinates (z, y, x; fractional) of (..., 3) physical positions in nm."""
        p = np.asarray(points_nm, dtype=np.float64)
        return (p - np.asarray(self.origin_nm)) / np.asarray(self.voxel_size_nm)

    def lengths_px(self, length_nm: float) -> np.ndarray:
        """A length in nm as (z, y, x) voxel counts (e.g. a radius on anisotropic voxels)."""
        return float(length_nm) / np.asarray(self.voxel_size_nm)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for reports; the inverse of :meth:`from_json`.

        Examples
        --------
        >>> g = Grid((2, 3, 4), (2.0, 1.0, 1.0))
        >>> Grid.from_json(g.to_json()) == g
        True
        """
        return {
            "shape_zyx": list(self.shape),
            "voxel_size_nm_zyx": list(self.voxel_size_nm),
            "origin_nm_zyx": list(self.origin_nm),
            "acquisition": None if self.wedge is None else self.wedge.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grid:
        """The grid written by :meth:`to_json`."""
        wedge = data.get("acquisition")
        if wedge is not None:
            wedge = dict(wedge)
            wedge["quality"] = float("nan") if wedge.get("quality") is None else wedge["quality"]
            wedge = WedgeEstimate(**{k: wedge[k] for k in WedgeEstimate.__dataclass_fields__})
        return cls(
            tuple(data["shape_zyx"]), data["voxel_size_nm_zyx"], data["origin_nm_zyx"], wedge
        )

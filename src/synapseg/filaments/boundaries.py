"""Boundaries for filament detection: vesicle balls and the active-zone membrane in a box.

Pyto's connectivity segmentation works between *boundaries*: labelled regions a filament
must touch at both ends. Here they are the vesicles of the table (balls to their outer
membrane surface plus ``margin_nm``, rendered with :func:`synapseg.geometry.render_labels`)
and the active-zone membrane (a boolean mask, grown by ``margin_nm``). Work is done box by
box around each vesicle, so only the band near the boundaries is ever looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.geometry import render_labels

CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
AZ_LABEL = 65535  # the active-zone boundary inside a box (vesicle ids stay < 65535)


@dataclass(frozen=True)
class Boundaries:
    """The vesicles as arrays: ids, centers (px), outer radii (nm), and the AZ mask."""

    ids: np.ndarray
    centers_px: np.ndarray
    outer_nm: np.ndarray
    voxel_size_nm: np.ndarray
    shape: tuple[int, int, int]
    az_mask: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_table(
        cls,
        vesicles: pd.DataFrame,
        shape: Sequence[int],
        voxel_size_nm: float | Sequence[float],
        az_mask: np.ndarray | None = None,
        membrane_thickness_nm: float = 4.5,
    ) -> Boundaries:
        """From a vesicle table (``id``, ``center_*_px`` and ``outer_radius_nm`` or
        ``radius_nm``); rows with a non-finite center or radius are dropped."""
        if "outer_radius_nm" in vesicles:
            outer = vesicles["outer_radius_nm"].to_numpy(float)
        else:
            outer = vesicles["radius_nm"].to_numpy(float) + membrane_thickness_nm / 2
        centers = vesicles[CENTER_PX].to_numpy(float).reshape(-1, 3)
        ids = vesicles["id"].to_numpy(int)
        ok = np.all(np.isfinite(centers), axis=1) & np.isfinite(outer) & (outer > 0)
        return cls(
            ids[ok],
            centers[ok],
            outer[ok],
            voxel_size_zyx(voxel_size_nm),
            tuple(int(s) for s in shape),
            az_mask,
        )

    @property
    def centers_nm(self) -> np.ndarray:
        return self.centers_px * self.voxel_size_nm

    def gaps_nm(self) -> np.ndarray:
        """Outer-surface gaps between every pair of vesicles (n, n), ∞ on the diagonal."""
        c = self.centers_nm
        d = np.linalg.norm(c[:, None] - c[None], axis=2) - self.outer_nm[:, None] - self.outer_nm
        np.fill_diagonal(d, np.inf)
        return d

    def box(self, i: int, reach_nm: float) -> tuple[slice, ...]:
        """The box around vesicle ``i`` reaching ``reach_nm`` beyond its outer surface."""
        half = (self.outer_nm[i] + reach_nm) / self.voxel_size_nm
        c = self.centers_px[i]
        lo = np.maximum(np.floor(c - half).astype(int), 0)
        hi = np.minimum(np.ceil(c + half).astype(int) + 1, self.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def pair_box(
        self, i: int, other_px: np.ndarray, j: int, pad_nm: float, halo_nm: float
    ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """The box around the line from vesicle ``i``'s surface to vesicle ``j``'s (or to
        the point ``other_px`` when ``j < 0``), ``pad_nm`` wide, grown by ``halo_nm`` for
        filtering; returns (grown box, the inner box relative to it)."""
        vs = self.voxel_size_nm
        ci = self.centers_px[i] * vs
        co = np.asarray(other_px, float) * vs
        u = (co - ci) / max(float(np.linalg.norm(co - ci)), 1e-9)
        a = ci + u * self.outer_nm[i]
        b = co - u * self.outer_nm[j] if j >= 0 else co
        lo_nm = np.minimum(a, b) - pad_nm
        hi_nm = np.maximum(a, b) + pad_nm
        lo = np.maximum(np.floor(lo_nm / vs).astype(int), 0)
        hi = np.minimum(np.ceil(hi_nm / vs).astype(int) + 1, self.shape)
        g = np.ceil(halo_nm / vs).astype(int)
        glo = np.maximum(lo - g, 0)
        ghi = np.minimum(hi + g, self.shape)
        grown = tuple(slice(int(x), int(y)) for x, y in zip(glo, ghi))
        inner = tuple(slice(int(x - gx), int(y - gx)) for x, y, gx in zip(lo, hi, glo))
        return grown, inner

    def render(self, box: tuple[slice, ...], margin_nm: float, members: np.ndarray) -> np.ndarray:
        """uint16 boundary labels in ``box``: vesicles ``members`` (row indices) grown by
        ``margin_nm``, and the AZ (label :data:`AZ_LABEL`) grown by the same margin."""
        lo = np.array([s.start for s in box], float)
        shape = tuple(s.stop - s.start for s in box)
        table = pd.DataFrame(
            {
                "id": self.ids[members],
                "center_z_px": self.centers_px[members, 0] - lo[0],
                "center_y_px": self.centers_px[members, 1] - lo[1],
                "center_x_px": self.centers_px[members, 2] - lo[2],
                "boundary_nm": self.outer_nm[members] + margin_nm,
            }
        )
        labels = render_labels(table, shape, self.voxel_size_nm, radius_column="boundary_nm")
        grown = self.az_grown(margin_nm)
        if grown is not None:
            off, mask = grown
            lo_i = np.array([s.start for s in box])
            hi_i = np.array([s.stop for s in box])
            a = np.maximum(lo_i, off)
            b = np.minimum(hi_i, off + np.array(mask.shape))
            if np.all(b > a):
                sub = mask[tuple(slice(x - o, y - o) for x, y, o in zip(a, b, off))]
                tgt = labels[tuple(slice(x - lo, y - lo) for x, y, lo in zip(a, b, lo_i))]
                tgt[sub & (tgt == 0)] = AZ_LABEL
        return labels

    def az_grown(self, margin_nm: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The AZ mask grown by ``margin_nm`` on its bounding box: (offset, mask), cached."""
        if self.az_mask is None:
            return None
        key = ("az_grown", float(margin_nm))
        if key not in self._cache:
            az = np.asarray(self.az_mask, bool)
            if not az.any():
                self._cache[key] = None
            else:
                pad = int(np.ceil(margin_nm / self.voxel_size_nm.min())) + 1
                nz = np.nonzero(az.any(axis=(1, 2)))[0], np.nonzero(az.any(axis=(0, 2)))[0]
                nx = np.nonzero(az.any(axis=(0, 1)))[0]
                lo = np.maximum([nz[0][0] - pad, nz[1][0] - pad, nx[0] - pad], 0)
                hi = np.minimum(
                    [nz[0][-1] + pad + 1, nz[1][-1] + pad + 1, nx[-1] + pad + 1], self.shape
                )
                crop = az[tuple(slice(a, b) for a, b in zip(lo, hi))]
                self._cache[key] = (lo, grow(crop, margin_nm, self.voxel_size_nm))
        return self._cache[key]

    def near(self, box: tuple[slice, ...], pad_nm: float) -> np.ndarray:
        """Row indices of the vesicles whose grown ball reaches into ``box``."""
        lo = np.array([s.start for s in box], float) * self.voxel_size_nm
        hi = np.array([s.stop - 1 for s in box], float) * self.voxel_size_nm
        c = self.centers_nm
        d = np.linalg.norm(np.clip(c, lo, hi) - c, axis=1)
        return np.nonzero(d <= self.outer_nm + pad_nm)[0]


def grow(mask: np.ndarray, margin_nm: float, voxel_size_nm: np.ndarray) -> np.ndarray:
    """``mask`` dilated by ``margin_nm`` (Euclidean, anisotropic voxels allowed)."""
    if margin_nm <= 0:
        return mask
    dist = ndimage.distance_transform_edt(~mask, sampling=voxel_size_nm)
    return dist <= margin_nm


def az_nearest(
    az_mask: np.ndarray | None, points_px: np.ndarray, voxel_size_nm: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance (nm) from each point (n, 3 px) to the nearest AZ voxel and that voxel
    (px); NaN and ``None`` without an AZ."""
    points_px = np.asarray(points_px, float).reshape(-1, 3)
    if az_mask is None or not np.any(az_mask):
        return np.full(len(points_px), np.nan), None
    from scipy.spatial import cKDTree

    az = np.argwhere(np.asarray(az_mask))
    tree = cKDTree(az * voxel_size_nm)
    d, k = tree.query(points_px * voxel_size_nm)
    return np.asarray(d, float), az[k].astype(float)


def az_distance_nm(
    az_mask: np.ndarray | None, points_px: np.ndarray, voxel_size_nm: np.ndarray
) -> np.ndarray:
    """Distance (nm) from each point (n, 3 px) to the nearest AZ voxel (NaN without an AZ)."""
    return az_nearest(az_mask, points_px, voxel_size_nm)[0]

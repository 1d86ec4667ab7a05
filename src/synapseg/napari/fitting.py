"""Sphere fits behind the correction tools, with the pipeline's own code.

:class:`VesicleFitter` holds a tomogram (array-like, may be a memmap: only the
neighbourhood of a vesicle is read), its voxel size, the missing wedge and the contrast
polarity, and fits

* a point clicked by hand (:meth:`~VesicleFitter.add`): :func:`synapseg.post.seeds.refine_points`,
  the same coarse search + fine fit as ``synapseg export`` (robust to a start 4-5 nm off);
* a refit of a moved/resized vesicle (:meth:`~VesicleFitter.refit`):
  :func:`synapseg.post.spheres.refine_spheres`;
* a merge of several detections (:meth:`~VesicleFitter.merge`): one sphere searched around
  their volume-weighted center, over an offset that covers them all;
* a split of one detection into two (:meth:`~VesicleFitter.split`): pairs of starting
  points half a radius on either side of the center, along ~40 axes, are scored by a small
  search; the 4 best axes get the full coarse search (radii no larger than the
  detection's), the pair of distinct spheres with the deepest membrane dips wins and both
  are refined;
* the radial profile of the QC panel (:meth:`~VesicleFitter.profile`).

Pure numpy; no napari.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError

log = logging.getLogger(__name__)


def _split_axes(n: int = 80) -> np.ndarray:
    """About ``n / 2`` axes spread over half a sphere (an axis and its opposite are one)."""
    from synapseg.post.profiles import fibonacci_directions

    d = fibonacci_directions(n)
    return d[d[:, 0] > 0]


class FitError(InputError):
    """A correction could not be fitted (no vesicle membrane found there)."""


@dataclass
class VesicleFitter:
    """Fits on one tomogram (see the module docstring).

    Attributes
    ----------
    tomogram
        (z, y, x) array-like.
    voxel_size_nm
        Scalar or (z, y, x) voxel size in nm.
    tilt_range_deg, tilt_axis
        The missing wedge (``None``: estimated from the tomogram on first use).
    polarity
        +1 dark densities, -1 inverted; ``None``: decided on first use
        (:meth:`ensure_polarity`: the table's vesicles, else the first points fitted).
    """

    tomogram: Any
    voxel_size_nm: Sequence[float] | float
    tilt_range_deg: float | None = None
    tilt_axis: str | None = None
    polarity: int | None = None
    _background: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def vs(self) -> np.ndarray:
        return voxel_size_zyx(self.voxel_size_nm)

    def sphere_params(self) -> Any:
        """The :class:`~synapseg.post.spheres.SphereParams` with this tomogram's wedge."""
        from synapseg.post.spheres import SphereParams

        if self.tilt_range_deg is None or self.tilt_axis is None:
            from synapseg.specimen.wedge import resolve_wedge

            wedge, note = resolve_wedge(
                self.tomogram, tuple(self.vs), self.tilt_range_deg, self.tilt_axis
            )
            if note:
                log.warning("%s", note)
            self.tilt_range_deg, self.tilt_axis = wedge.tilt_range_deg, wedge.wedge_axis
        return SphereParams(tilt_range_deg=self.tilt_range_deg, tilt_axis=self.tilt_axis)

    def background(self) -> tuple[float, float]:
        if self._background is None:
            from synapseg.post.profiles import estimate_background

            self._background = estimate_background(self.tomogram)
        return self._background

    def ensure_polarity(
        self, table: pd.DataFrame | None = None, points_px: np.ndarray | None = None
    ) -> int:
        """The polarity, decided once when unknown, as ``synapseg export`` decides it
        (:func:`synapseg.post.seeds.choose_polarity`): from the fitted vesicles of ``table``
        (three or more), else by the deeper membrane dip around ``points_px``; +1 when
        there is nothing to judge."""
        if self.polarity is None:
            from synapseg.post.seeds import choose_polarity

            if (table is None or len(table) == 0) and points_px is not None:
                pts = np.asarray(points_px, float).reshape(-1, 3)
                table = pd.DataFrame(pts, columns=["center_z_px", "center_y_px", "center_x_px"])
                table["radius_nm"] = np.nan
            if table is None or len(table) == 0:
                self.polarity = 1
            else:
                self.polarity = choose_polarity(
                    self.tomogram,
                    table,
                    self.vs,
                    sphere_params=self.sphere_params(),
                    background=self.background(),
                )
        return int(self.polarity)

    # ------------------------------------------------------------------ fits

    def _points(self, centers_px: np.ndarray, **point_params: Any) -> pd.DataFrame:
        from synapseg.post.seeds import PointParams, refine_points

        pts = np.asarray(centers_px, float).reshape(-1, 3)
        return refine_points(
            self.tomogram,
            pts,
            self.vs,
            params=PointParams(**point_params),
            sphere_params=self.sphere_params(),
            polarity=self.ensure_polarity(points_px=pts),
            background=self.background(),
        )

    def add(self, point_px: Sequence[float]) -> pd.Series:
        """Fit the vesicle around a point placed by hand (zyx voxels).

        Returns the fitted row (center px, ``radius_nm``, fit QC columns).

        Raises
        ------
        FitError
            No membrane could be fitted around the point (outside the tomogram).
        """
        row = self._points(np.asarray(point_px, float)).iloc[0]
        return self._checked(row, point_px)

    def refit(self, center_px: Sequence[float], radius_nm: float) -> pd.Series:
        """Refine a sphere from its current center and radius (the pipeline's fine fit)."""
        from synapseg.post.spheres import refine_spheres

        fit = refine_spheres(
            self.tomogram,
            np.asarray(center_px, float).reshape(1, 3),
            np.array([float(radius_nm)]),
            self.vs,
            params=self.sphere_params(),
            polarity=self.ensure_polarity(),
            background=self.background(),
        )
        return self._checked(fit.iloc[0], center_px)

    def merge(self, centers_px: np.ndarray, radii_nm: np.ndarray) -> pd.Series:
        """One sphere over several detections: searched around their volume-weighted
        center, over an offset that reaches every detection's center."""
        centers = np.asarray(centers_px, float).reshape(-1, 3)
        radii = np.asarray(radii_nm, float).reshape(-1)
        w = np.clip(np.nan_to_num(radii, nan=10.0), 1.0, None) ** 3
        start = (centers * w[:, None]).sum(axis=0) / w.sum()
        reach = float(np.max(np.linalg.norm((centers - start) * self.vs, axis=1)))
        max_r = float(max(36.0, np.nanmax(radii) + reach))
        row = self._points(
            start,
            max_offset_nm=min(max(5.0, reach + 1.5), 12.0),
            max_radius_nm=max_r,
            grid_nm=1.5 if reach < 6 else 2.0,
        ).iloc[0]
        return self._checked(row, start)

    def split(self, center_px: Sequence[float], radius_nm: float) -> pd.DataFrame:
        """Two spheres in place of one detection (two rows, the one nearer the start first).

        Raises
        ------
        FitError
            No pair of distinct vesicles was found inside the detection.
        """
        from synapseg.post.seeds import PointParams, coarse_spheres

        c = np.asarray(center_px, float)
        r = float(radius_nm)
        max_r = max(10.0, min(36.0, r))

        def search(axes: np.ndarray, **kw: Any) -> tuple[np.ndarray, ...]:
            offset_px = 0.5 * r * axes / self.vs
            starts = np.concatenate([c + offset_px, c - offset_px])
            params = PointParams(min_radius_nm=8.0, max_radius_nm=max_r, **kw)
            return coarse_spheres(
                self.tomogram,
                starts,
                self.vs,
                params=params,
                sphere_params=self.sphere_params(),
                polarity=self.ensure_polarity(),
                background=self.background(),
            )

        # 1. which axis: ~40 axes (half a sphere), a small search around each start
        axes = _split_axes()
        _, _, dip = search(axes, max_offset_nm=2.0, grid_nm=2.0, n_directions=60)
        n = len(axes)
        pair = np.nan_to_num(dip[:n], nan=-9) + np.nan_to_num(dip[n:], nan=-9)
        axes = axes[np.argsort(-pair)[:4]]
        # 2. the best axes: the full coarse search, pairs of distinct spheres
        cen, rad, dip = search(axes, max_offset_nm=5.0, grid_nm=2.0, n_directions=100)
        n = len(axes)
        best, best_score = None, -np.inf
        for a, b in zip(range(n), range(n, 2 * n)):
            if not (np.isfinite(rad[a]) and np.isfinite(rad[b]) and dip[a] > 0 and dip[b] > 0):
                continue
            gap = float(np.linalg.norm((cen[a] - cen[b]) * self.vs))
            if gap < 0.7 * (rad[a] + rad[b]):
                continue  # the same vesicle twice
            if dip[a] + dip[b] > best_score:
                best, best_score = (a, b), dip[a] + dip[b]
        if best is None:
            raise FitError(
                None,
                "no two distinct vesicles found inside this detection",
                "delete it and add the vesicles by clicking on their centers",
            )
        from synapseg.post.spheres import refine_spheres

        fits = refine_spheres(
            self.tomogram,
            cen[list(best)],
            rad[list(best)],
            self.vs,
            params=self.sphere_params(),
            polarity=self.ensure_polarity(),
            background=self.background(),
        )
        for _, row in fits.iterrows():
            self._checked(row, c)
        return fits

    def profile(
        self, center_px: Sequence[float], radius_nm: float, n_directions: int = 300
    ) -> tuple[np.ndarray, np.ndarray]:
        """Wedge-weighted spherically averaged profile (noise σ, membrane dark) from the
        center to 2 x the radius: ``(r_nm, profile)`` for the QC panel."""
        from synapseg.post.profiles import fibonacci_directions, sample_profiles, wedge_weights

        sp = self.sphere_params()
        med, sigma = self.background()
        step = 0.5 * float(self.vs.min())
        r_nm = np.arange(0.0, 2.0 * float(radius_nm) + step, step)
        dirs = fibonacci_directions(n_directions)
        wdir = wedge_weights(dirs, sp.tilt_range_deg, sp.tilt_axis, sp.wedge_softness_deg)
        wdir = sp.wedge_floor + (1.0 - sp.wedge_floor) * wdir
        norm = (med, sigma, float(self.ensure_polarity()))
        prof = sample_profiles(
            self.tomogram, np.asarray(center_px, float), r_nm[None, :], dirs, self.vs, norm
        )[0]
        valid = np.isfinite(prof)
        wsum = (wdir[:, None] * valid).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = (wdir[:, None] * np.where(valid, prof, 0.0)).sum(axis=0) / wsum
        return r_nm, np.where(wsum > 0, avg, np.nan)

    def _checked(self, row: pd.Series, start: Any) -> pd.Series:
        if not np.isfinite(float(row["radius_nm"])):
            where = ", ".join(f"{v:.1f}" for v in np.asarray(start, float).reshape(-1))
            raise FitError(
                None,
                f"no vesicle membrane could be fitted around ({where}) voxels (z, y, x)",
                "click nearer the vesicle's center, inside the tomogram",
            )
        return row


def fit_context(report: dict[str, Any] | None) -> dict[str, Any]:
    """``tilt_range_deg``, ``tilt_axis`` and ``polarity`` that ``segment`` used, read from
    its report (empty when unknown)."""
    if not report:
        return {}
    params = (report.get("stages", {}).get("vesicles", {}) or {}).get("params", {}) or {}
    out: dict[str, Any] = {}
    if params.get("tilt_range_deg") is not None:
        out["tilt_range_deg"] = float(params["tilt_range_deg"])
    if params.get("tilt_axis") is not None:
        out["tilt_axis"] = str(params["tilt_axis"])
    if params.get("invert") in ("yes", "no"):
        out["polarity"] = -1 if params["invert"] == "yes" else 1
    return out

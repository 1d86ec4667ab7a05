"""``detect_filaments``: connectors and tethers of a tomogram from plain arrays."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synapseg.filaments.boundaries import Boundaries, az_distance_nm
from synapseg.filaments.detect import FilamentParams, candidate_pairs, find_between, noise_stats
from synapseg.filaments.lines import line_candidates
from synapseg.filaments.measure import TABLE_COLUMNS, row, trace

log = logging.getLogger(__name__)

__all__ = ["detect_filaments", "empty_table"]


def densities_bright(image: np.ndarray, vesicles: pd.DataFrame, voxel_size_nm: Any) -> bool:
    """True when the vesicle membranes are brighter than the volume's median (inverted
    contrast): the mean of up to 50 membrane shells against the median of their boxes."""
    bounds = Boundaries.from_table(vesicles, image.shape, voxel_size_nm)
    diffs = []
    for i in range(0, len(bounds.ids), max(1, len(bounds.ids) // 50)):
        box = bounds.box(i, 6.0)
        lo = np.array([s.start for s in box])
        grid = np.indices(tuple(s.stop - s.start for s in box)).reshape(3, -1).T + lo
        r = np.linalg.norm((grid - bounds.centers_px[i]) * bounds.voxel_size_nm, axis=1)
        crop = np.asarray(image[box], np.float32).ravel()
        shell = np.abs(r - (bounds.outer_nm[i] - 2.25)) <= 1.5
        if shell.any():
            diffs.append(float(crop[shell].mean() - np.median(crop)))
    return bool(diffs) and float(np.median(diffs)) > 0


def empty_table() -> pd.DataFrame:
    """A filament table without rows (the columns of docs/formats.md)."""
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in ("kind", "path_px") else float) for c in TABLE_COLUMNS}
    )


def detect_filaments(
    image: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    vesicles: pd.DataFrame,
    az_mask: np.ndarray | None = None,
    params: FilamentParams | None = None,
    *,
    labels_out: np.ndarray | None = None,
    facts: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Find the connectors (vesicle–vesicle) and tethers (vesicle–AZ) of a tomogram.

    Parameters
    ----------
    image
        (z, y, x) grey values (an array or memmap; densities dark unless
        ``params.invert``).
    voxel_size_nm
        Voxel size, scalar or (z, y, x).
    vesicles
        Vesicle table: ``id``, ``center_*_px`` and ``outer_radius_nm`` (or ``radius_nm``).
    az_mask
        Boolean (z, y, x) active-zone membrane on the same grid; ``None``: no tethers.
    params
        :class:`FilamentParams` (defaults when ``None``).
    labels_out
        Optional uint16 array of the image's shape to paint the filament ids into (e.g. a
        memmap); a new array otherwise.
    facts
        Optional dict that receives counts and timings.

    Returns
    -------
    table : pandas.DataFrame
        One row per filament, columns :data:`~synapseg.filaments.measure.TABLE_COLUMNS`.
    labels : numpy.ndarray
        uint16 (z, y, x): each filament's core voxels carry its ``id``.
    """
    p = params or FilamentParams()
    t0 = time.perf_counter()
    shape = tuple(int(s) for s in image.shape)
    if az_mask is not None and tuple(az_mask.shape) != shape:
        raise ValueError(f"az_mask shape {tuple(az_mask.shape)} differs from the image's {shape}")
    bounds = Boundaries.from_table(vesicles, shape, voxel_size_nm, az_mask, p.membrane_thickness_nm)
    labels = labels_out if labels_out is not None else np.zeros(shape, np.uint16)
    pairs, az_near = candidate_pairs(bounds, p)
    unknown = set(p.lines_for) - {"connector", "tether"}
    if unknown:
        raise ValueError(f"FilamentParams.lines_for: unknown kinds {sorted(unknown)}")
    thresholded = "connector" not in p.lines_for or "tether" not in p.lines_for
    isotropic = pairs and thresholded and p.along_nm <= 0
    stats = noise_stats(image, bounds, p) if isotropic else (0.0, 1.0)
    conns = []
    for i, j in pairs:
        point = az_near[i] if j < 0 and az_near is not None else None
        if ("connector" if j >= 0 else "tether") in p.lines_for:
            found = line_candidates(image, bounds, i, j, p, point)
            extra = max(p.line_threshold, p.line_threshold_extra)
            conns.extend(
                c
                for c in found
                if c.stats["score"] >= (p.line_threshold if c.stats["rank"] == 0 else extra)
            )
        else:
            conns.extend(find_between(image, bounds, i, j, p, stats, point))
    t_detect = time.perf_counter() - t0
    az_d = az_distance_nm(az_mask, bounds.centers_px, bounds.voxel_size_nm) - bounds.outer_nm
    rows = []
    for conn in conns:
        try:
            traced = trace(conn, bounds)
        except (ValueError, IndexError) as exc:  # no path through the core: skip it
            log.debug("filament of vesicle %s not traced: %s", bounds.ids[conn.vesicle_a], exc)
            continue
        rows.append(row(conn, bounds, image, p, traced, float(az_d[conn.vesicle_a])))
        fid = len(rows)
        shape_box = tuple(s.stop - s.start for s in conn.box)
        view = labels[conn.box]
        local = np.unravel_index(conn.voxels, shape_box)
        view[local] = fid
        labels[conn.box] = view
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "id"])
    table.insert(0, "id", np.arange(1, len(table) + 1))
    if len(table) == 0:
        table = empty_table()
    table["vesicle_b"] = table["vesicle_b"].astype("Int64")
    if facts is not None:
        kinds = table["kind"].value_counts().to_dict() if len(table) else {}
        facts.update(
            n_connectors=int(kinds.get("connector", 0)),
            n_tethers=int(kinds.get("tether", 0)),
            n_pairs_searched=len(pairs),
            noise=[round(v, 5) for v in stats] if p.along_nm <= 0 else "per box",
            detect_seconds=round(t_detect, 3),
            seconds=round(time.perf_counter() - t0, 3),
            params=p.to_json(),
        )
    return table, labels

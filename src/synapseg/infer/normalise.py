"""Robust normalisation of the network's input, with statistics from the specimen only.

Part of the one preprocessing implementation (:mod:`synapseg.infer.preprocess` re-exports
everything here): percentile-clipped z-score (:class:`NormStats`) whose statistics come from a
bounded sample of the model grid inside the specimen (:func:`stats_sample`), and a neutral value
(0, the specimen's mean) outside it (:func:`neutral_outside`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.specimen.mask import SpecimenMask

log = logging.getLogger(__name__)

SAMPLE_VOXELS = 2_000_000
"""Voxels sampled for the normalisation statistics."""


@dataclass(frozen=True)
class NormStats:
    """Robust z-score parameters: clip to ``[lo, hi]``, subtract ``mean``, divide by ``std``."""

    lo: float
    hi: float
    mean: float
    std: float

    def apply(
        self, data: np.ndarray, invert: bool = False, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Normalised float32 copy of ``data`` (times -1 when ``invert``), written into
        ``out`` (a float32 array of ``data``'s shape) when given."""
        out = np.clip(np.asarray(data, dtype=np.float32), self.lo, self.hi, out=out)
        out -= self.mean
        out *= (-1.0 if invert else 1.0) / self.std
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def normalise_stats(
    sample: np.ndarray, clip_percentiles: Sequence[float] = (0.5, 99.5)
) -> NormStats:
    """Percentile-clipped mean and std of a sample of voxels.

    Parameters
    ----------
    sample
        Any array of voxel values (e.g. a strided sample of the model-grid volume);
        non-finite values are ignored.
    clip_percentiles
        Lower and upper percentile to clip to before the mean and std.

    Raises
    ------
    InputError
        No finite values, or constant data.
    """
    values = np.asarray(sample, dtype=np.float32).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(None, "no finite voxel values to normalise", "check the tomogram")
    lo, hi = (float(v) for v in np.percentile(values, list(clip_percentiles)))
    clipped = np.clip(values, lo, hi)
    mean, std = float(clipped.mean(dtype=np.float64)), float(clipped.std(dtype=np.float64))
    if not std > 0:
        raise InputError(None, "the volume is constant after clipping", "check the tomogram")
    return NormStats(lo, hi, mean, std)


def stats_sample(
    arr: np.ndarray,
    max_voxels: int = SAMPLE_VOXELS,
    specimen: SpecimenMask | None = None,
    voxel_size_nm: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Evenly spaced rows, strided in y and x: a bounded sample of a (z, y, x) grid.

    With a ``specimen`` mask (and the grid's ``voxel_size_nm``) the rows are spread over the
    specimen's z-range and only specimen voxels are returned (flattened).
    """
    nz, ny, nx = arr.shape
    z_lo, z_hi = 0, nz - 1
    if specimen is not None:
        zr = specimen.facts.get("specimen_z_range_nm")
        d = float(voxel_size_zyx(voxel_size_nm)[0])
        if zr is not None:
            z_lo = int(np.clip(np.ceil(zr[0] / d), 0, nz - 1))
            z_hi = int(np.clip(np.floor(zr[1] / d) - 1, z_lo, nz - 1))
    zs = np.unique(np.linspace(z_lo, z_hi, min(z_hi - z_lo + 1, 32)).round().astype(int))
    stride = max(1, int(np.ceil(np.sqrt(ny * nx * len(zs) / max_voxels))))
    sample = np.stack([np.asarray(arr[int(z), ::stride, ::stride]) for z in zs])
    if specimen is None:
        return sample
    keep = specimen.sample_grid(
        (zs, np.arange(0, ny, stride), np.arange(0, nx, stride)), voxel_size_nm
    )
    if keep.sum() < 1000:  # too little specimen to trust: whole-volume statistics
        log.warning("specimen mask holds too few voxels for statistics; using the whole volume")
        return sample
    return sample[keep]


def neutral_outside(
    tile: np.ndarray,
    specimen: SpecimenMask | None,
    slices: Sequence[slice],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """Set the voxels of a normalised model-grid ``tile`` (at ``slices`` of the model grid)
    that lie outside the specimen to 0, the specimen's mean (in place; returns ``tile``).

    Vacuum, ice and gold then look neutral to the network instead of a wall of clipped
    extreme values next to the specimen's surface.
    """
    if specimen is None or specimen.coarse.all():
        return tile
    idx = [np.arange(sl.start or 0, sl.stop) for sl in slices]
    tile[~specimen.sample_grid(idx, model_voxel_nm)] = 0.0
    return tile


def normalise_config(card_normalisation: dict[str, Any]) -> tuple[float, float]:
    """Clip percentiles from a model card's ``normalisation`` entry.

    Raises
    ------
    InputError
        An unknown normalisation method.
    """
    method = card_normalisation.get("method", "percentile_zscore")
    if method != "percentile_zscore":
        raise InputError(
            None,
            f"unknown normalisation method {method!r} in the model card",
            "use a model written by this synapseg version",
        )
    lo, hi = card_normalisation.get("clip_percentiles", (0.5, 99.5))
    return float(lo), float(hi)


STATISTICS = ("specimen", "volume")


def normalise_statistics(card_normalisation: dict[str, Any]) -> str:
    """Where a model card's normalisation takes its statistics: ``"specimen"`` (inside the
    specimen mask, 0 outside it; the default, also for cards written before the entry
    existed) or ``"volume"`` (the whole volume, nothing neutralised).

    Raises
    ------
    InputError
        An unknown value.
    """
    value = card_normalisation.get("statistics", "specimen")
    if value not in STATISTICS:
        raise InputError(
            None,
            f"unknown normalisation statistics {value!r} in the model card",
            f"use one of {', '.join(STATISTICS)}",
        )
    return str(value)

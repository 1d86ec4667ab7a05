"""The decisions made once per tomogram, on the whole volume, before any block runs.

Blocks agree with the single-process run because every decision that looks at the whole
tomogram is taken here, by the same code the single-process run uses, and handed to every
block: the specimen mask, the contrast polarity and the missing wedge (the registered
``specimen``, ``polarity`` and ``acquisition`` stages of :func:`synapseg.segment`), the
network's normalisation statistics (the same strided sample of the model grid as
:func:`synapseg.infer.predict.predict_volume`, computed row by row without rescaling the
volume), the tile plan of the whole model grid, the grey-value background of the sphere
fit and, after the probabilities exist, the automatic threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from synapseg.core.grid import Grid
from synapseg.distributed.regrid import ModelGridRows
from synapseg.infer.normalise import NormStats
from synapseg.infer.tiling import TilePlan
from synapseg.specimen.mask import SpecimenMask
from synapseg.specimen.wedge import WedgeEstimate

log = logging.getLogger(__name__)

__all__ = ["Decisions", "decide"]


@dataclass(frozen=True)
class Decisions:
    """Everything a block needs besides its own voxels (small and picklable).

    Attributes
    ----------
    grid
        The input grid (shape, voxel size, origin, wedge).
    model
        Model name or folder (each worker loads it once).
    specimen
        The whole volume's specimen mask (bounds the sphere fit and its background).
    network_mask
        Whether the network's input is neutralised outside the specimen (``False`` when
        the model card asks for whole-volume statistics).
    polarity
        The contrast decision (``invert`` and its evidence).
    stats
        Normalisation statistics of the model grid.
    plan
        Tile plan of the whole model grid.
    factors
        Model voxels per input voxel (z, y, x).
    wedge
        The missing wedge for the sphere fit.
    background
        (median, sigma) of the grey values inside the specimen.
    threshold
        Probability threshold (0-1): given, or set from the map by :func:`with_threshold`.
    params
        The stage parameters of the run (``min_radius_nm``, ``min_confidence``, ...).
    facts
        The stages' facts for the report.
    """

    grid: Grid
    model: str
    specimen: SpecimenMask
    network_mask: bool
    polarity: dict[str, Any]
    stats: NormStats
    plan: TilePlan
    factors: tuple[float, float, float]
    wedge: WedgeEstimate
    background: tuple[float, float]
    threshold: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def invert(self) -> bool:
        return bool(self.polarity["invert"])

    @property
    def mask_for_network(self) -> SpecimenMask | None:
        return self.specimen if self.network_mask else None

    def with_threshold(self, probability: Any) -> Decisions:
        """A copy with the threshold: the given one, else Otsu's on a strided sample of
        the probability map (:func:`synapseg.post.instances.auto_threshold`)."""
        if self.threshold is not None:
            return self
        from synapseg.post.instances import auto_threshold

        return replace(self, threshold=auto_threshold(probability))


def decide(
    volume: Any,
    model: str = "default",
    params: dict[str, Any] | None = None,
    tile_size: int | None = None,
) -> Decisions:
    """Take the whole-volume decisions for ``volume`` (a :class:`~synapseg.io.volume.Volume`).

    Parameters
    ----------
    volume
        The tomogram (read lazily: a memmap or zarr array is streamed, never loaded).
    model
        Model name or folder.
    params
        Stage parameters (``invert``, ``tilt_range_deg``, ``tilt_axis``, ``threshold``,
        ``device``, ...), as for :func:`synapseg.segment`.
    tile_size
        Network tile edge in model voxels (default: the network's default).
    """
    import synapseg
    from synapseg.infer.normalise import (
        normalise_config,
        normalise_statistics,
        normalise_stats,
        stats_sample,
    )
    from synapseg.infer.preprocess import check_rescale, grid_shape
    from synapseg.infer.tiling import choose_tiling
    from synapseg.model.registry import load_model
    from synapseg.post.profiles import estimate_background

    p = dict(params or {})
    seg = synapseg.segment(
        volume,
        model,
        outputs=["specimen", "polarity", "wedge"],
        **{k: v for k, v in p.items() if k in ("invert", "device", "tilt_range_deg", "tilt_axis")},
    )
    specimen: SpecimenMask = seg["specimen"]
    _, card = load_model(model, device="cpu")
    factors = check_rescale(volume.voxel_size_nm, card.voxel_size_nm, volume.path)
    model_shape = grid_shape(volume.shape, volume.voxel_size_nm, card.voxel_size_nm)
    mask: SpecimenMask | None = specimen
    if normalise_statistics(card.normalisation) == "volume":
        mask = None
    rows = ModelGridRows(volume.data, factors, model_shape)
    sample = stats_sample(rows, specimen=mask, voxel_size_nm=card.voxel_size_nm)
    stats = normalise_stats(sample, normalise_config(card.normalisation))
    plan = choose_tiling(card.config, model_shape, tile_size)
    background = estimate_background(volume.data, specimen=specimen)
    facts = dict(seg.facts)
    facts["model"] = {"name": card.name, "sha256": card.sha256, "voxel_size_nm": card.voxel_size_nm}
    return Decisions(
        grid=seg.grid,
        model=str(model),
        specimen=specimen,
        network_mask=mask is not None,
        polarity=dict(seg["polarity"]),
        stats=stats,
        plan=plan,
        factors=tuple(float(f) for f in factors),  # type: ignore[arg-type]
        wedge=seg["wedge"],
        background=(float(background[0]), float(background[1])),
        threshold=p.get("threshold"),
        params=p,
        facts=facts,
    )

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

import dataclasses
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from synapseg.core.grid import Grid
from synapseg.distributed.regrid import ModelGridRows
from synapseg.infer.normalise import NormStats
from synapseg.infer.tiling import TilePlan
from synapseg.specimen.mask import SpecimenMask
from synapseg.specimen.wedge import WedgeEstimate

log = logging.getLogger(__name__)

__all__ = ["Decisions", "ZSlabs", "block_tiling", "decide"]


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


class ZSlabs:
    """Read-through cache of whole z-slabs of a chunked array (zarr) for the whole-volume
    passes, which read whole (y, x) sections in z order: on a store chunked 64 deep, reading
    4 sections at a time would read every chunk 16 times. Requests over most of each section
    (strides allowed, in z too) are served from the one cached slab of chunk depth (a request
    across a slab border takes its head from the old slab before the next one is read, so one
    slab is held at a time); others (small windows) go straight to the array.
    """

    MAX_BYTES = 2 * 2**30

    def __init__(self, data: Any, depth: int) -> None:
        self.data = data
        self.depth = int(depth)
        self.shape = tuple(int(n) for n in data.shape)
        self.dtype = np.dtype(data.dtype)
        self._z0 = -1
        self._slab: np.ndarray | None = None

    @classmethod
    def wrap(cls, data: Any) -> Any:
        """``data`` itself when it is in memory, memory-mapped or not chunked in z."""
        chunks = getattr(data, "chunks", None)
        if isinstance(data, np.ndarray) or not chunks or int(chunks[0]) <= 1:
            return data
        slab = int(chunks[0]) * int(np.prod(data.shape[1:])) * np.dtype(data.dtype).itemsize
        return cls(data, int(chunks[0])) if slab <= cls.MAX_BYTES else data

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        zk, rest = key[0], key[1:]
        full = all(  # most of each section: worth a slab
            isinstance(k, slice) and len(range(*k.indices(n))) * abs(k.step or 1) >= n // 2
            for k, n in zip(rest, self.shape[1:])
        )
        if isinstance(zk, int | np.integer):
            z0, z1, step = int(zk), int(zk) + 1, 1
        elif isinstance(zk, slice) and (zk.step or 1) > 0:
            z0, z1, step = zk.indices(self.shape[0])
        else:
            full = False
        if not full or z1 - z0 > self.depth or z1 <= z0:
            return np.asarray(self.data[key])
        if self._slab is None or not self._z0 <= z0 < self._z0 + len(self._slab):
            self._z0 = z0 // self.depth * self.depth
            self._slab = None  # free the old slab first
            self._slab = np.asarray(self.data[self._z0 : self._z0 + self.depth])
        end = self._z0 + len(self._slab)
        if isinstance(zk, int | np.integer):
            return self._slab[(zk - self._z0, *rest)]
        local = self._slab[(slice(z0 - self._z0, z1 - self._z0, step), *rest)]
        if z1 <= end:
            return local
        head = local.copy()  # the rest lies in the next slab
        z_next = z0 + len(head) * step
        if z_next >= z1:
            return head
        return np.concatenate([head, self[(slice(z_next, z1, step), *rest)]])


def block_tiling(config: Any, model_shape: Any, tile_size: int | None = None) -> TilePlan:
    """The tile plan of the block-wise path: the given tile size, else fixed
    :data:`~synapseg.infer.tiling.DEFAULT_TILE` (256³) tiles, not the single-process
    default (:func:`~synapseg.infer.tiling.default_tile_shape`, fewest computed voxels
    within a budget). A block computes every tile its halo reaches, so the budgeted tiles
    (e.g. 384×288×288 on a 4k grid) made the largest block of the 1024×4096×4096 plan
    peak at 2.97 GB per worker, against 1.85 GB with 256³ tiles (issue 17)."""
    from synapseg.infer.tiling import DEFAULT_TILE, choose_tiling

    if tile_size is None:
        m = int(config.size_multiple)
        tile_size = -(-max(DEFAULT_TILE, int(config.min_tile)) // m) * m
    return choose_tiling(config, model_shape, tile_size)


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
        Network tile edge in model voxels (default: 256, see :func:`block_tiling`).
    """
    import synapseg
    from synapseg.infer.normalise import (
        normalise_config,
        normalise_statistics,
        normalise_stats,
        stats_sample,
    )
    from synapseg.infer.preprocess import check_rescale, grid_shape
    from synapseg.model.registry import load_model
    from synapseg.post.profiles import estimate_background

    p = dict(params or {})
    volume = dataclasses.replace(volume, data=ZSlabs.wrap(volume.data))
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
    plan = block_tiling(card.config, model_shape, tile_size)
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
        threshold=_card_threshold(p, card),
        params=p,
        facts=facts,
    )


def _card_threshold(params: dict[str, Any], card: Any) -> float | None:
    """The given threshold, else the one the model card calibrated, else ``None`` (Otsu's on
    the map, :meth:`Decisions.with_threshold`), as the single-process run decides it."""
    from synapseg.model.registry import card_post_params

    if params.get("threshold") is not None:
        return float(params["threshold"])
    found = card_post_params(card).get("threshold")
    return None if found is None else float(found)

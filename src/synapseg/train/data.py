"""Training data: the data config, preparation on the model grid, balanced patch sampling.

Two ways to describe training data (see docs/training.md):

* **A folder.** Each subfolder (or the folder itself) is one tomogram: a ``tomogram.*``
  file (``.mrc``/``.rec``/``.tif``/``.zarr``), an annotation (``vesicle_labels.*`` or
  ``labels.*`` label volume, else ``vesicles.csv|json|star|mod``) and optionally
  ``mask.*`` (nonzero = annotated region). ``synapseg simulate``'s output folder is in this
  layout, so it works directly.
* **A YAML file** with ``items:`` each holding ``tomogram``, ``annotation``, optional
  ``mask``, ``voxel_size_nm`` (overrides the header), ``binning`` (RELION-4 STAR),
  ``split`` (``train``/``val``) and ``negative`` (``true``: no vesicles, all background).
  Relative paths are relative to the YAML file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.infer.preprocess import normalise_config, normalise_statistics, prepare_image
from synapseg.io.volume import find_first
from synapseg.io.volume_base import Volume
from synapseg.model.registry import DEFAULT_NORMALISATION
from synapseg.train.targets import (
    boundary_target,
    centers_from_instances,
    instance_targets,
    load_annotation,
    resample_nearest,
)

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".mrc", ".rec", ".map", ".tif", ".tiff", ".zarr")
TABLE_SUFFIXES = (".csv", ".json", ".star", ".mod")
MAX_FG_COORDS = 50_000


@dataclass
class DataItem:
    """One annotated tomogram in the training data."""

    tomogram: Path
    annotation: Path | None
    mask: Path | None = None
    voxel_size_nm: float | tuple[float, float, float] | None = None
    binning: float | None = None
    split: str | None = None
    negative: bool = False

    @property
    def name(self) -> str:
        stem = self.tomogram.name.split(".")[0]
        return f"{self.tomogram.parent.name}/{stem}"


def _item_from_folder(folder: Path) -> DataItem | None:
    tomo = find_first(folder, ["tomogram", "tomo"], VOLUME_SUFFIXES)
    if tomo is None:
        return None
    ann = find_first(folder, ["vesicle_labels", "labels"], VOLUME_SUFFIXES) or find_first(
        folder, ["vesicles"], TABLE_SUFFIXES
    )
    if ann is None:
        raise InputError(
            folder,
            "holds a tomogram but no annotation",
            "add vesicle_labels.mrc, labels.mrc or vesicles.csv/.json/.star/.mod",
        )
    mask = find_first(folder, ["mask"], VOLUME_SUFFIXES)
    return DataItem(tomogram=tomo, annotation=ann, mask=mask)


def load_data_config(path: str | os.PathLike) -> list[DataItem]:
    """Read a data folder or YAML config into a list of :class:`DataItem`.

    Raises
    ------
    InputError
        Missing path, unreadable YAML, items without tomogram/annotation, no items.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "training data not found", "give a data folder or a YAML file")
    if path.is_dir():
        items = []
        own = _item_from_folder(path)
        if own is not None:
            items.append(own)
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            item = _item_from_folder(sub)
            if item is not None:
                items.append(item)
    else:
        items = _items_from_yaml(path)
    if not items:
        raise InputError(
            path,
            "no training tomograms found",
            "use one subfolder per tomogram holding tomogram.mrc + vesicles.csv (or labels), "
            "or a YAML config (see docs/training.md)",
        )
    return items


def _items_from_yaml(path: Path) -> list[DataItem]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable YAML file ({exc})", "check the syntax") from exc
    if isinstance(doc, list):
        doc = {"items": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise InputError(path, "YAML config lacks an `items:` list", "see docs/training.md")
    base = path.parent
    items = []
    for k, entry in enumerate(doc["items"]):
        if not isinstance(entry, dict) or "tomogram" not in entry:
            raise InputError(path, f"item {k} has no `tomogram:`", "give a path per item")
        negative = bool(entry.get("negative", False))
        if "annotation" not in entry and not negative:
            raise InputError(
                path, f"item {k} has no `annotation:`", "give labels/.mod/table or negative: true"
            )

        def _p(key: str, entry: dict = entry) -> Path | None:
            return None if entry.get(key) is None else (base / str(entry[key]))

        vs = entry.get("voxel_size_nm", doc.get("voxel_size_nm"))
        items.append(
            DataItem(
                tomogram=_p("tomogram"),  # type: ignore[arg-type]
                annotation=_p("annotation"),
                mask=_p("mask"),
                voxel_size_nm=tuple(vs) if isinstance(vs, list) else vs,
                binning=None if entry.get("binning") is None else float(entry["binning"]),
                split=entry.get("split"),
                negative=negative,
            )
        )
    return items


# --------------------------------------------------------------------------- preparation


@dataclass
class PreparedVolume:
    """A training tomogram on the model grid, normalised, with its targets."""

    name: str
    image: np.ndarray  # float32 (z, y, x), normalised
    instances: np.ndarray  # uint16 (z, y, x)
    weight: np.ndarray  # uint8 (z, y, x): 1 where the loss counts (annotated region)
    source_voxel_size_nm: tuple[float, float, float]
    source_shape: tuple[int, int, int]
    fg_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int32))
    boundary: np.ndarray | None = None

    @property
    def n_vesicles(self) -> int:
        return int(len(np.unique(self.instances)) - (self.instances == 0).any())

    def gt_table(self, voxel_size_nm: float | Sequence[float]) -> pd.DataFrame:
        """Instances as a table on the model grid (for validation F1)."""
        return centers_from_instances(self.instances, voxel_size_nm)


def training_image(
    path: str | os.PathLike,
    voxel_size_nm: float | Sequence[float] | None,
    model_voxel_nm: float | Sequence[float],
    normalisation: dict | None = None,
    *,
    invert: bool = False,
) -> tuple[Volume, np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Read a training tomogram, check it, and bring it to the model grid.

    Returns ``(volume, image, source voxel size, model voxel size)``: the volume is checked
    for non-finite values (the whole volume, not a sample: issue 13) and usability, and the
    image goes through :func:`synapseg.infer.preprocess.prepare_image`, the one
    preprocessing implementation shared with inference (statistics inside the specimen,
    neutral outside it; ``normalisation`` is the model card's entry, default the registry's).
    """
    from synapseg.io.scan import TRAIN_NONFINITE_FIX, check_finite
    from synapseg.io.volume import read_volume
    from synapseg.summary import check_usable

    vol = read_volume(path, voxel_size_nm)
    check_finite(vol, fix=TRAIN_NONFINITE_FIX)
    check_usable(vol)
    src_vs = tuple(float(v) for v in vol.voxel_size_nm)
    dst_vs = tuple(voxel_size_zyx(model_voxel_nm))
    norm = normalisation or DEFAULT_NORMALISATION
    image, _ = prepare_image(
        np.asarray(vol.data, dtype=np.float32),
        src_vs,
        dst_vs,
        normalise_config(norm),
        specimen=normalise_statistics(norm) == "specimen",
        invert=invert,
    )
    return vol, image, src_vs, dst_vs


def prepare_item(
    item: DataItem,
    model_voxel_nm: float | Sequence[float],
    *,
    boundary: bool = False,
    invert: bool = False,
    normalisation: dict | None = None,
) -> PreparedVolume:
    """Read, rescale to the model voxel size and normalise one item; build its targets.

    The image goes through :func:`synapseg.infer.preprocess.prepare_image`, exactly what
    inference does. ``invert`` multiplies the normalised image by -1 (for bright-density
    data); ``normalisation`` is the model card's entry (default: the registry's default).
    """
    from synapseg.io.volume import read_volume

    vol, image, src_vs, dst_vs = training_image(
        item.tomogram, item.voxel_size_nm, model_voxel_nm, normalisation, invert=invert
    )
    if item.annotation is None:
        instances = np.zeros(image.shape, dtype=np.uint16)
    else:
        ann = load_annotation(
            item.annotation,
            shape=vol.shape,
            voxel_size_nm=src_vs,
            binning=item.binning,
            allow_empty=item.negative,
        )
        instances = instance_targets(ann, src_vs, dst_vs, image.shape)
    if item.mask is not None:
        mask_vol = read_volume(item.mask, src_vs)
        if mask_vol.shape != vol.shape:
            raise InputError(
                item.mask,
                f"mask shape {mask_vol.shape} does not match the tomogram's {vol.shape}",
                "give the mask on the tomogram's grid",
            )
        mask = resample_nearest(np.asarray(mask_vol.data) != 0, src_vs, dst_vs)
        weight = mask[tuple(slice(0, n) for n in image.shape)].astype(np.uint8)
        if not weight.any():
            raise InputError(item.mask, "mask is empty", "mark the annotated region nonzero")
    else:
        weight = np.ones(image.shape, dtype=np.uint8)
    fg = np.argwhere((instances != 0) & (weight != 0)).astype(np.int32)
    if len(fg) > MAX_FG_COORDS:
        fg = fg[np.random.default_rng(0).choice(len(fg), MAX_FG_COORDS, replace=False)]
    return PreparedVolume(
        name=item.name,
        image=image,
        instances=instances,
        weight=weight,
        source_voxel_size_nm=src_vs,  # type: ignore[arg-type]
        source_shape=vol.shape,
        fg_coords=fg,
        boundary=boundary_target(instances) if boundary else None,
    )


def split_items(
    items: list[DataItem], val_fraction: float, seed: int
) -> tuple[list[DataItem], list[DataItem]]:
    """Use explicit ``split:`` values; otherwise hold out ``val_fraction`` of the items
    (at least one when there are two or more; none when there is only one)."""
    val = [it for it in items if it.split == "val"]
    train = [it for it in items if it.split == "train"]
    rest = [it for it in items if it.split not in ("train", "val")]
    if not val and len(items) >= 2 and val_fraction > 0:
        n_val = max(1, int(round(val_fraction * len(rest))))
        order = np.random.default_rng(seed).permutation(len(rest))
        val = [rest[i] for i in sorted(order[:n_val])]
        rest = [rest[i] for i in sorted(order[n_val:])]
    return train + rest, val


# --------------------------------------------------------------------------- sampling


class PatchSampler:
    """Draw training patches, a fraction of them centred on (random) vesicle voxels.

    Parameters
    ----------
    volumes
        Prepared training volumes.
    patch_size
        (z, y, x) patch size in model voxels.
    fg_fraction
        Probability that a patch is centred on an annotated vesicle voxel (the rest are
        drawn uniformly, which mostly gives background/empty regions).
    """

    def __init__(
        self,
        volumes: list[PreparedVolume],
        patch_size: Sequence[int],
        fg_fraction: float = 0.6,
    ) -> None:
        self.volumes = volumes
        self.patch_size = tuple(int(p) for p in patch_size)
        self.fg_fraction = fg_fraction
        for vol in volumes:
            if any(n < p for n, p in zip(vol.image.shape, self.patch_size)):
                raise InputError(
                    vol.name,
                    f"is smaller than a training patch on the model grid "
                    f"({vol.image.shape} < {self.patch_size} voxels)",
                    "use a smaller --patch-size or larger training tomograms",
                )
        sizes = np.array([v.image.size for v in volumes], dtype=float)
        self._vol_p = sizes / sizes.sum()

    def set_volume_probabilities(self, p: Sequence[float]) -> None:
        """Draw volume ``k`` with probability ``p[k]`` instead of in proportion to its size
        (e.g. a fixed share for rehearsal volumes, :mod:`synapseg.train.rehearsal`)."""
        p = np.asarray(p, dtype=float)
        if p.shape != (len(self.volumes),) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"need {len(self.volumes)} non-negative probabilities summing to 1")
        self._vol_p = p

    def corner(self, rng: np.random.Generator) -> tuple[int, tuple[int, int, int]]:
        """Pick a volume index and the patch corner."""
        k = int(rng.choice(len(self.volumes), p=self._vol_p))
        vol = self.volumes[k]
        shape = np.array(vol.image.shape)
        p = np.array(self.patch_size)
        if len(vol.fg_coords) and rng.random() < self.fg_fraction:
            center = vol.fg_coords[rng.integers(len(vol.fg_coords))]
            jitter = rng.integers(-(p // 4), p // 4 + 1)
            lo = center + jitter - p // 2
        else:
            lo = rng.integers(0, shape - p + 1)
        lo = np.clip(lo, 0, shape - p)
        return k, tuple(int(v) for v in lo)  # type: ignore[return-value]

    def patch(self, k: int, lo: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (z,y,x), target (C,z,y,x) float32 and weight (z,y,x) float32 at ``lo``."""
        vol = self.volumes[k]
        sl = tuple(slice(a, a + n) for a, n in zip(lo, self.patch_size))
        image = vol.image[sl]
        channels = [(vol.instances[sl] != 0).astype(np.float32)]
        if vol.boundary is not None:
            channels.append(vol.boundary[sl].astype(np.float32))
        return image.copy(), np.stack(channels), vol.weight[sl].astype(np.float32)

    def sample(
        self, rng: np.random.Generator, batch_size: int, augment=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch: images (B,1,z,y,x), targets (B,C,z,y,x), weights (B,1,z,y,x)."""
        imgs, tgts, wts = [], [], []
        for _ in range(batch_size):
            k, lo = self.corner(rng)
            image, target, weight = self.patch(k, lo)
            if augment is not None:
                image, target, weight = augment(image, target, weight, rng)
            imgs.append(image[None])
            tgts.append(target)
            wts.append(weight[None])
        return (
            np.ascontiguousarray(np.stack(imgs), dtype=np.float32),
            np.ascontiguousarray(np.stack(tgts), dtype=np.float32),
            np.ascontiguousarray(np.stack(wts), dtype=np.float32),
        )

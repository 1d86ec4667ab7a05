"""Training the membrane network: prepared volumes, patch sampling and a Dice-driven trainer.

The image goes through :func:`synapseg.infer.preprocess.prepare_image`, the one
preprocessing implementation that inference uses (specimen-aware percentile z-score); the
targets are :func:`synapseg.train.membrane_targets.membrane_targets`. Training reuses
:class:`synapseg.train.trainer.Trainer` (AdamW, warm-up, checkpoints that resume exactly,
best weights) with two changes: patches carry the soft membrane targets, and validation
(and the choice of the best weights) is the voxel Dice of the ``membrane`` channel on the
held-out volumes.

With signed-distance targets (:func:`synapseg.train.membrane_targets.membrane_sd_targets`,
``MembraneTrainer(..., distance=DistanceLoss(...))``) a third term regresses the ``membrane``
logit to the clipped signed distance: ``weight * mean |tau * clamp(logit) - (-d)|`` in nm,
``d`` read back from the target (``-tau * logit(target)``), both clamped to
``±clip_nm``, so voxels far from any membrane on the right side cost nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from synapseg.train.data import PatchSampler, PreparedVolume, training_image
from synapseg.train.membrane_targets import MembraneItem, membrane_sd_targets, membrane_targets
from synapseg.train.trainer import Trainer
from synapseg.train.validation import predict_prepared

log = logging.getLogger(__name__)


@dataclass
class MembraneVolume(PreparedVolume):
    """A prepared volume whose targets are soft membrane fractions (C, z, y, x)."""

    targets: np.ndarray = field(default_factory=lambda: np.zeros((2, 0, 0, 0), np.float32))


def prepare_membrane_item(
    item: MembraneItem,
    model_voxel_nm: float,
    normalisation: dict | None = None,
    max_fg: int = 50_000,
    fg_channels: Sequence[int] | None = None,
    signed_distance: dict | None = None,
) -> MembraneVolume:
    """Read one simulated folder; image and targets on the model grid.

    Patches are centred (with ``fg_fraction``) on voxels where a target exceeds 0.5: any
    channel's (``fg_channels=None``) or only the listed channels' (``(0,)``: the
    non-vesicle membranes, so that plasma and organelle membranes are not outnumbered by the
    hundreds of vesicles). ``signed_distance`` (``{"tau_nm": ..., "clip_nm": ...}``) gives
    channel 0 the signed-distance target of :func:`membrane_sd_targets`.
    """
    from synapseg.io.volume import read_volume

    vol, image, src_vs, dst_vs = training_image(item.tomogram, None, model_voxel_nm, normalisation)
    labels = np.asarray(read_volume(item.labels, src_vs).data)
    if signed_distance:
        targets = membrane_sd_targets(labels, src_vs, dst_vs, **signed_distance)
    else:
        targets = membrane_targets(labels, src_vs, dst_vs)
    targets = targets[(slice(None),) + tuple(slice(0, n) for n in image.shape)]
    chosen = targets if fg_channels is None else targets[list(fg_channels)]
    fg = np.argwhere(chosen.max(axis=0) > 0.5).astype(np.int32)
    if len(fg) > max_fg:
        fg = fg[np.random.default_rng(0).choice(len(fg), max_fg, replace=False)]
    return MembraneVolume(
        name=item.name,
        image=image,
        instances=(targets[0] > 0.5).astype(np.uint16),
        weight=np.ones(image.shape, np.uint8),
        source_voxel_size_nm=src_vs,  # type: ignore[arg-type]
        source_shape=vol.shape,
        fg_coords=fg,
        targets=targets,
    )


@dataclass(frozen=True)
class DistanceLoss:
    """The signed-distance term of the membrane loss (channel 0; see the module docstring)."""

    tau_nm: float = 1.0
    clip_nm: float = 6.0
    weight: float = 0.25  # per nm of mean absolute error

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean absolute error (nm, clamped) of channel 0, times ``weight``."""
        lim = self.clip_nm / self.tau_nm
        t = targets[:, 0].clamp(1e-6, 1 - 1e-6)
        truth = torch.logit(t).clamp(-lim, lim)
        pred = logits[:, 0].clamp(-lim, lim)
        return self.weight * self.tau_nm * (pred - truth).abs().mean()


class MembraneSampler(PatchSampler):
    """:class:`PatchSampler` whose patches carry the soft membrane targets (the last batch's
    targets are kept in ``last_targets`` for the distance term)."""

    last_targets: np.ndarray | None = None

    def sample(self, rng, batch_size, augment=None):
        images, targets, weights = super().sample(rng, batch_size, augment)
        self.last_targets = targets
        return images, targets, weights

    def patch(self, k: int, lo: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vol = self.volumes[k]
        sl = tuple(slice(a, a + n) for a, n in zip(lo, self.patch_size))
        target = vol.targets[(slice(None),) + sl]  # type: ignore[attr-defined]
        return vol.image[sl].copy(), target.copy(), vol.weight[sl].astype(np.float32)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Voxel Dice of two boolean masks (1.0 when both are empty)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


class MembraneTrainer(Trainer):
    """:class:`Trainer` on membrane volumes; best weights by validation membrane Dice."""

    def __init__(
        self,
        net: torch.nn.Module,
        config,
        train_volumes,
        val_volumes,
        *args,
        distance: DistanceLoss | None = None,
        **kw,
    ):
        super().__init__(net, config, train_volumes, val_volumes, *args, **kw)
        self.sampler = MembraneSampler(train_volumes, config.patch_size, config.fg_fraction)
        self.distance = distance

    def extra_loss(self, x, logits, parts):
        """The signed-distance term (with ``distance``), logged as ``distance``."""
        if self.distance is None or self.sampler.last_targets is None:
            return None
        y = torch.from_numpy(self.sampler.last_targets).to(logits.device)
        term = self.distance(logits, y)
        parts["distance"] = float(term.detach())
        return term

    def validate(self) -> dict[str, Any]:
        """Dice (threshold 0.5) of both channels on the held-out volumes, pooled."""
        if not self.val_volumes:
            return {}
        inter = np.zeros(2)
        total = np.zeros(2)
        per_volume = []
        for vol in self.val_volumes:
            prob = predict_prepared(self.net, vol.image, self.size_multiple, self.device)
            truth = vol.targets > 0.5  # type: ignore[attr-defined]
            pred = prob > 0.5
            inter += [(pred[c] & truth[c]).sum() for c in range(2)]
            total += [pred[c].sum() + truth[c].sum() for c in range(2)]
            per_volume.append({"name": vol.name, "dice": dice(pred[0], truth[0])})
        d = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
        return {
            "dice": float(d[0]),
            "dice_vesicle_membrane": float(d[1]),
            "volumes": per_volume,
        }

    def _is_better(self, metrics: dict[str, Any]) -> bool:
        return self.best is None or metrics.get("dice", 0.0) > self.best.get("dice", 0.0)

"""The fine-tuning loop of ``synapseg adapt``: :class:`Trainer` plus flip consistency,
source rehearsal (a share of the patches from labeled simulated tomograms) and L2-SP
anchoring towards the base weights (:mod:`synapseg.train.rehearsal`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from synapseg.train.rehearsal import anchor_penalty, volume_probabilities
from synapseg.train.trainer import Trainer


class ConsistencyTrainer(Trainer):
    """:class:`Trainer` plus a flip-consistency term (mean-teacher style, the teacher being
    the same network on a flipped copy, without gradient). Flips of z, y, x map a single-axis
    missing wedge onto itself, so the term is wedge-safe.

    Parameters
    ----------
    consistency_weight
        Weight of the flip-consistency term (0 disables it).
    rehearsal
        Names of the training volumes that are rehearsal data (labeled simulations).
    rehearsal_fraction
        Share of the patches drawn from those volumes (the rest from the user's).
    anchor
        Base-model parameters for the L2-SP term (None: no anchoring).
    anchor_weight
        α of ``α · Σ (w − w_base)²``.
    freeze_batch_norm
        Keep every batch-norm layer in inference mode while fine-tuning: the base model's
        running statistics normalise every batch and are written unchanged (the affine
        weights still learn). Fine-tuning batches hold two patches, so their statistics are
        noisy, and the running averages of a few dozen such batches would replace what the
        base model learnt over its whole training world.
    """

    def __init__(
        self,
        *args: Any,
        consistency_weight: float = 1.0,
        rehearsal: Iterable[str] = (),
        rehearsal_fraction: float = 0.0,
        anchor: dict[str, torch.Tensor] | None = None,
        anchor_weight: float = 0.0,
        freeze_batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.consistency_weight = float(consistency_weight)
        self.anchor = anchor if anchor_weight > 0 else None
        self.anchor_weight = float(anchor_weight)
        self.freeze_batch_norm = bool(freeze_batch_norm)
        names = set(rehearsal)
        if names:
            vols = self.sampler.volumes
            self.sampler.set_volume_probabilities(
                volume_probabilities(
                    [v.name for v in vols], [v.image.size for v in vols], names, rehearsal_fraction
                )
            )

    def set_train_mode(self) -> None:
        """Training mode, with the batch-norm layers in inference mode when frozen."""
        self.net.train()
        if self.freeze_batch_norm:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def extra_loss(
        self, x: torch.Tensor, logits: torch.Tensor, parts: dict[str, float]
    ) -> torch.Tensor | None:
        """Mean squared difference to the prediction on a randomly flipped copy, plus the
        anchoring term."""
        flip = self.rng.random(3) < 0.5  # drawn after the batch, as before
        if not flip.any():
            flip[int(self.rng.integers(3))] = True
        total = None
        if self.consistency_weight > 0:
            dims = [int(d) + 2 for d in np.flatnonzero(flip)]
            with torch.no_grad():
                teacher = torch.sigmoid(self.net(torch.flip(x, dims))).flip(dims)
            cons = torch.mean((torch.sigmoid(logits) - teacher) ** 2)
            parts["consistency"] = float(cons.detach())
            total = self.consistency_weight * cons
        if self.anchor is not None:
            pen = anchor_penalty(self.net, self.anchor)
            parts["anchor"] = float(pen.detach())
            term = self.anchor_weight * pen
            total = term if total is None else total + term
        return total

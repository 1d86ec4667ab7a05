"""The fine-tuning loop of ``synapseg adapt``: :class:`Trainer` plus flip consistency."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synapseg.train.trainer import Trainer


class ConsistencyTrainer(Trainer):
    """:class:`Trainer` plus a flip-consistency term (mean-teacher style, the teacher being
    the same network on a flipped copy, without gradient). Flips of z, y, x map a single-axis
    missing wedge onto itself, so the term is wedge-safe."""

    def __init__(self, *args: Any, consistency_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consistency_weight = float(consistency_weight)

    def extra_loss(
        self, x: torch.Tensor, logits: torch.Tensor, parts: dict[str, float]
    ) -> torch.Tensor | None:
        """Mean squared difference to the prediction on a randomly flipped copy."""
        flip = self.rng.random(3) < 0.5  # drawn after the batch, as before
        if not flip.any():
            flip[int(self.rng.integers(3))] = True
        if self.consistency_weight <= 0:
            return None
        dims = [int(d) + 2 for d in np.flatnonzero(flip)]
        with torch.no_grad():
            teacher = torch.sigmoid(self.net(torch.flip(x, dims))).flip(dims)
        cons = torch.mean((torch.sigmoid(logits) - teacher) ** 2)
        parts["consistency"] = float(cons.detach())
        return self.consistency_weight * cons

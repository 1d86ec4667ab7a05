"""The fine-tuning loop of ``synapseg adapt``: :class:`Trainer` plus flip consistency."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from synapseg.train.losses import masked_dice_bce
from synapseg.train.trainer import Trainer, learning_rate


class ConsistencyTrainer(Trainer):
    """:class:`Trainer` plus a flip-consistency term (mean-teacher style, the teacher being
    the same network on a flipped copy, without gradient). Flips of z, y, x map a single-axis
    missing wedge onto itself, so the term is wedge-safe."""

    def __init__(self, *args: Any, consistency_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consistency_weight = float(consistency_weight)

    def train_step(self) -> dict[str, float]:  # noqa: D102 - see Trainer.train_step
        cfg = self.config
        images, targets, weights = self.sampler.sample(self.rng, cfg.batch_size, self.augment)
        flip = self.rng.random(3) < 0.5
        if not flip.any():
            flip[int(self.rng.integers(3))] = True
        dims = [int(d) + 2 for d in np.flatnonzero(flip)]
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(targets).to(self.device)
        w = torch.from_numpy(weights).to(self.device)
        lr = learning_rate(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(x)
        loss, parts = masked_dice_bce(logits, y, w, pos_weight=cfg.pos_weight)
        if self.consistency_weight > 0:
            with torch.no_grad():
                teacher = torch.sigmoid(self.net(torch.flip(x, dims))).flip(dims)
            cons = torch.mean((torch.sigmoid(logits) - teacher) ** 2)
            loss = loss + self.consistency_weight * cons
            parts["consistency"] = float(cons.detach())
        if not math.isfinite(float(loss.detach())):
            self._diverged(f"the loss is {float(loss.detach())}")
        loss.backward()
        if cfg.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            if not math.isfinite(float(norm)):
                self._diverged(f"the gradient norm is {float(norm)}")
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "lr": lr, **parts}

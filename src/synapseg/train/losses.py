"""Masked Dice + weighted BCE for the vesicle (and optional boundary) channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def masked_dice_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    pos_weight: Sequence[float] | float = 2.0,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    eps: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Dice + BCE on (B, C, z, y, x) logits, counted only where ``weight`` > 0.

    Parameters
    ----------
    logits, target
        Network output (before sigmoid) and 0/1 targets, (B, C, z, y, x).
    weight
        (B, 1, z, y, x) loss mask: 1 inside the annotated region, 0 outside (partial
        annotations); voxels with weight 0 contribute nothing to either term.
    pos_weight
        BCE weight of positive voxels per channel (class weighting: vesicles are a
        minority of voxels).
    dice_weight, bce_weight
        Weights of the two terms.

    Returns
    -------
    loss, parts
        Scalar loss and a dict with the per-term values (floats) for logging.
    """
    c = logits.shape[1]
    pw = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device).reshape(-1)
    pw = pw.expand(c) if pw.numel() == 1 else pw
    w = weight.expand_as(logits)
    denom = w.sum().clamp_min(1.0)
    bce_map = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none", pos_weight=pw.view(1, c, 1, 1, 1)
    )
    bce = (bce_map * w).sum() / denom
    prob = torch.sigmoid(logits) * w
    tgt = target * w
    dims = (0, 2, 3, 4)
    inter = (prob * tgt).sum(dims)
    dice = 1 - (2 * inter + eps) / (prob.sum(dims) + tgt.sum(dims) + eps)
    dice = dice.mean()
    loss = dice_weight * dice + bce_weight * bce
    return loss, {"dice_loss": float(dice.detach()), "bce": float(bce.detach())}

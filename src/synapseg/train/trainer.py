"""The training loop: patches -> Dice+BCE -> AdamW, validation, best and resumable checkpoints.

Everything random (patch positions, augmentation) is drawn from one numpy ``Generator``
seeded by ``TrainConfig.seed``; its state, torch's and Python's RNG states, the model,
the optimiser and the step are in every checkpoint, so ``resume`` continues exactly as
an uninterrupted run would (tested).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synapseg.errors import InputError
from synapseg.train.augment import Augmenter, AugmentParams
from synapseg.train.checkpoint import BEST_NAME, CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from synapseg.train.data import PatchSampler, PreparedVolume
from synapseg.train.losses import masked_dice_bce
from synapseg.train.validation import validate

log = logging.getLogger(__name__)


class TrainingDivergedError(InputError):
    """The loss or the gradients became NaN/inf: training stops before the weights change."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (stored in checkpoints and the model card)."""

    steps: int = 1000
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (48, 64, 64)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    schedule: str = "constant"  # "constant" (extendable runs) or "cosine" (to `steps`)
    decay_start: int | None = None  # cosine: constant lr until this step (default: warm-up end)
    fg_fraction: float = 0.6
    pos_weight: float = 2.0
    boundary: bool = False
    val_every: int = 200
    # "components", "post" (F1 through synapseg.post.vesicles.find_vesicles) or "post-nogate"
    # (the same without the vesicle-free gate)
    val_method: str = "components"
    checkpoint_every_s: float = 180.0
    seed: int = 0
    grad_clip: float = 5.0
    augment: AugmentParams = field(default_factory=AugmentParams)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        aug = d.pop("augment", None) or {}
        d["patch_size"] = tuple(d.get("patch_size", (48, 64, 64)))
        params = AugmentParams(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
        )
        return cls(**d, augment=params)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate at ``step``: linear warm-up, then constant or cosine decay.

    With ``schedule="cosine"`` the rate stays constant until ``decay_start`` (default: the
    end of the warm-up) and then follows a cosine down to 5% at ``steps``; a constant-rate run
    can thus be resumed with a decay phase.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        start = max(config.warmup_steps, config.decay_start or 0)
        if step < start:
            return config.lr
        t = min(1.0, (step - start) / max(1, config.steps - start))
        return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
    return config.lr


class Trainer:
    """Train ``net`` on prepared volumes; write checkpoints into ``work_dir``.

    Parameters
    ----------
    net
        A ``synapseg.model.unet.UNet3D`` (or any module with ``config.size_multiple``).
    config
        Hyper-parameters.
    train_volumes, val_volumes
        Prepared volumes on the model grid.
    voxel_size_nm
        The model voxel size (zyx), for validation metrics in nm.
    work_dir
        Folder for ``checkpoint.pt`` (latest), ``best.pt`` and ``history.jsonl``.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        config: TrainConfig,
        train_volumes: list[PreparedVolume],
        val_volumes: list[PreparedVolume],
        voxel_size_nm: tuple[float, float, float],
        work_dir: str | Path,
        device: str = "cpu",
    ) -> None:
        self.net = net.to(device)
        self.config = config
        self.device = device
        self.voxel_size_nm = voxel_size_nm
        self.sampler = PatchSampler(train_volumes, config.patch_size, config.fg_fraction)
        self.val_volumes = val_volumes
        self.augment = Augmenter(config.augment)
        self.rng = np.random.default_rng(config.seed)
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.saved_step: int | None = None  # step of the checkpoint on disk
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        m = getattr(getattr(net, "config", None), "size_multiple", 1)
        self.size_multiple = int(m)
        if any(p % self.size_multiple for p in config.patch_size):
            from synapseg.errors import InputError

            raise InputError(
                "--patch-size",
                f"patch size {config.patch_size} is not a multiple of {self.size_multiple}",
                f"use multiples of {self.size_multiple} (the network's depth requires it)",
            )

    # ------------------------------------------------------------------ state
    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save(self) -> Path:
        """Write the latest checkpoint (atomic)."""
        self.saved_step = self.step
        return save_checkpoint(
            self.checkpoint_path,
            model=self.net,
            optimizer=self.optimizer,
            step=self.step,
            rng=self.rng,
            extra={"best": self.best, "config": self.config.to_dict()},
        )

    def resume(self, path: str | Path | None = None) -> int:
        """Restore the latest checkpoint; returns the step it continues from."""
        state = load_checkpoint(
            path or self.checkpoint_path, model=self.net, optimizer=self.optimizer, rng=self.rng
        )
        self.step = int(state["step"])
        self.saved_step = self.step
        self.best = state["extra"].get("best")
        log.info("resumed from step %d", self.step)
        return self.step

    # ------------------------------------------------------------------ loop
    def train_step(self) -> dict[str, float]:
        """One optimiser step on one batch; returns the logged values."""
        cfg = self.config
        images, targets, weights = self.sampler.sample(self.rng, cfg.batch_size, self.augment)
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(targets).to(self.device)
        w = torch.from_numpy(weights).to(self.device)
        lr = learning_rate(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.set_train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(x)
        loss, parts = masked_dice_bce(logits, y, w, pos_weight=cfg.pos_weight)
        extra = self.extra_loss(x, logits, parts)
        if extra is not None:
            loss = loss + extra
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

    def set_train_mode(self) -> None:
        """Put the network in training mode before a step (subclasses may keep parts frozen)."""
        self.net.train()

    def extra_loss(
        self, x: torch.Tensor, logits: torch.Tensor, parts: dict[str, float]
    ) -> torch.Tensor | None:
        """A term added to the loss by subclasses (e.g. consistency); log it into ``parts``."""
        return None

    def _diverged(self, what: str) -> None:
        """Stop before a non-finite update reaches the weights; name what is kept."""
        kept = (
            f"the checkpoint {self.checkpoint_path} (step {self.saved_step}) is kept and no "
            "model was written"
            if self.saved_step is not None and self.checkpoint_path.exists()
            else "no model was written"
        )
        raise TrainingDivergedError(
            None,
            f"training stopped at step {self.step + 1}: {what}; {kept}",
            "check the training tomograms for extreme values, lower --lr, then train again "
            "(--resume continues from the checkpoint)",
        )

    def validate(self) -> dict[str, Any]:
        """Validation metrics (no RNG is consumed, so validation never changes a run)."""
        if not self.val_volumes:
            return {}
        return validate(
            self.net,
            self.val_volumes,
            self.voxel_size_nm,
            self.size_multiple,
            device=self.device,
            use_post=self.config.val_method in ("post", "post-nogate"),
            gate=self.config.val_method != "post-nogate",
        )

    def _is_better(self, metrics: dict[str, Any]) -> bool:
        if self.best is None:
            return True
        key = (metrics.get("f1", 0.0), metrics.get("dice", 0.0))
        return key > (self.best.get("f1", 0.0), self.best.get("dice", 0.0))

    def _keep_best(self, metrics: dict[str, Any]) -> None:
        if metrics and self._is_better(metrics):
            self.best = {**{k: v for k, v in metrics.items() if k != "volumes"}, "step": self.step}
            tmp = self.work_dir / (BEST_NAME + ".tmp")
            torch.save({"model": self.net.state_dict(), "best": self.best}, tmp)
            tmp.replace(self.work_dir / BEST_NAME)

    def run(
        self,
        steps: int | None = None,
        callback: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Train until ``steps`` (default ``config.steps``); returns the last logs.

        Validates every ``val_every`` steps and at the end, keeps the best weights in
        ``best.pt`` (by validation F1, then Dice; the latest weights when there is no
        validation data), checkpoints every ``checkpoint_every_s`` seconds and at the end.
        """
        total = self.config.steps if steps is None else steps
        last_ckpt = time.monotonic()
        logs: dict[str, Any] = {}
        history = self.work_dir / "history.jsonl"
        window: list[float] = []
        while self.step < total:
            logs = self.train_step()
            window = (window + [logs["loss"]])[-50:]
            logs["loss_avg"] = float(np.mean(window))
            is_last = self.step >= total
            if self.val_volumes and (self.step % self.config.val_every == 0 or is_last):
                metrics = self.validate()
                logs["val"] = {k: v for k, v in metrics.items() if k != "volumes"}
                self._keep_best(metrics)
                with open(history, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": self.step, **logs}, default=str) + "\n")
            if is_last or time.monotonic() - last_ckpt > self.config.checkpoint_every_s:
                self.save()
                last_ckpt = time.monotonic()
            if callback is not None:
                callback(self.step, logs)
        if not self.val_volumes:
            self.best = {"step": self.step, "loss_avg": logs.get("loss_avg")}
            torch.save(
                {"model": self.net.state_dict(), "best": self.best}, self.work_dir / BEST_NAME
            )
        return logs

    def load_best(self) -> dict[str, Any]:
        """Load the best weights into ``self.net``; returns their metrics."""
        path = self.work_dir / BEST_NAME
        if not path.exists():
            return self.best or {}
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.net.load_state_dict(state["model"])
        return state["best"]


def steps_per_epoch(volumes: list[PreparedVolume], patch_size, batch_size: int) -> int:
    """Batches needed to draw as many patch voxels as the training volumes hold."""
    total = sum(v.image.size for v in volumes)
    return max(1, math.ceil(total / (np.prod(patch_size) * batch_size)))

"""Fine-tuning prepares its training images exactly as the base model's card says."""

from __future__ import annotations

import torch

import synapseg.train.run as run_mod
from synapseg.model.registry import load_model
from synapseg.train.run import train_model
from synapseg.train.trainer import TrainConfig


def test_fine_tuning_uses_the_base_cards_normalisation(toy_data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    _, base = load_model("test-random")
    seen = []
    real = run_mod.prepare_item

    def spy(*args, **kwargs):
        seen.append(kwargs.get("normalisation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "prepare_item", spy)
    config = TrainConfig(steps=1, batch_size=1, patch_size=(32, 32, 32), val_every=1, seed=0)
    train_model(toy_data, tmp_path / "tuned", config=config, from_model="test-random")
    assert seen and all(n == base.normalisation for n in seen)

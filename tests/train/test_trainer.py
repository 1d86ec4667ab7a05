"""Training loop: the loss goes down, resume is exact, the model folder loads and verifies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.errors import InputError
from synapseg.model.registry import load_model
from synapseg.model.unet import UNetConfig, build_unet
from synapseg.train.checkpoint import load_checkpoint
from synapseg.train.data import load_data_config, prepare_item
from synapseg.train.losses import masked_dice_bce
from synapseg.train.run import train_model
from synapseg.train.trainer import TrainConfig, Trainer, learning_rate

from .conftest import VOXEL_NM

TINY_UNET = {"base_channels": 4, "depth": 2}
VS3 = (VOXEL_NM,) * 3


@pytest.fixture(scope="module")
def volumes(toy_data):
    return [prepare_item(it, VS3) for it in load_data_config(toy_data)]


def _config(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        patch_size=(16, 32, 32),
        batch_size=2,
        lr=5e-3,
        warmup_steps=2,
        val_every=1000,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def _trainer(volumes, tmp_path, **kw) -> Trainer:
    torch.set_num_threads(1)
    net = build_unet(UNetConfig(**TINY_UNET), seed=0)
    return Trainer(net, _config(**kw), volumes[:2], volumes[2:], VS3, tmp_path)


def test_a_short_run_reduces_the_loss(volumes, tmp_path):
    trainer = _trainer(volumes, tmp_path, steps=40)
    rng = np.random.default_rng(123)
    x, y, w = (torch.from_numpy(a) for a in trainer.sampler.sample(rng, 4))

    def fixed_loss() -> float:
        trainer.net.train()  # batch statistics: BN running averages lag after a few steps
        with torch.no_grad():
            return float(masked_dice_bce(trainer.net(x), y, w)[0])

    before = fixed_loss()
    trainer.run()
    assert fixed_loss() < 0.8 * before
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "best.pt").exists()


def test_resume_continues_exactly(volumes, tmp_path):
    straight = _trainer(volumes, tmp_path / "a")
    straight.run()
    first = _trainer(volumes, tmp_path / "b")
    first.run(steps=3)  # writes a checkpoint at its last step
    resumed = _trainer(volumes, tmp_path / "b")
    assert resumed.resume() == 3
    resumed.run()
    assert resumed.step == straight.step == 6
    for (k, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), k
    # the sampler continues from the same RNG state too
    assert straight.rng.bit_generator.state == resumed.rng.bit_generator.state


def test_resume_needs_a_matching_checkpoint(volumes, tmp_path):
    trainer = _trainer(volumes, tmp_path)
    with pytest.raises(InputError, match="checkpoint not found"):
        trainer.resume()
    trainer.run(steps=1)
    other = build_unet(UNetConfig(base_channels=6, depth=2))
    with pytest.raises(InputError, match="different architecture"):
        load_checkpoint(tmp_path / "checkpoint.pt", model=other)


def test_learning_rate_schedule():
    cfg = _config(steps=100, warmup_steps=10, lr=1.0, schedule="cosine")
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 100) == pytest.approx(0.05)
    late = _config(steps=100, warmup_steps=10, lr=1.0, schedule="cosine", decay_start=60)
    assert learning_rate(late, 59) == 1.0 and learning_rate(late, 80) == pytest.approx(0.525)
    assert learning_rate(late, 100) == pytest.approx(0.05)


def test_train_model_writes_a_verified_model_and_fine_tunes(toy_data, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "model"
    result = train_model(
        toy_data, out, config=_config(steps=4, val_every=2), unet=TINY_UNET, voxel_size_nm=VOXEL_NM
    )
    assert result.steps == 4 and "f1" in result.best
    net, card = load_model(out)  # verifies sha256
    assert card.voxel_size_nm == VOXEL_NM and card.trained and card.tta_rot90
    assert card.training_data["train"]["n_tomograms"] == 2
    assert card.training_data["validation"]["n_tomograms"] == 1
    assert "f1" in card.metrics["validation"]
    with pytest.raises(InputError, match="already holds a model"):
        train_model(toy_data, out, config=_config(steps=1), unet=TINY_UNET)
    # fine-tune: starts from the model's weights and keeps its voxel size
    tuned = tmp_path / "tuned"
    train_model(toy_data, tuned, config=_config(steps=2), from_model=str(out), voxel_size_nm=3.0)
    _, card2 = load_model(tuned)
    assert card2.voxel_size_nm == VOXEL_NM
    assert card2.training_data["fine_tuned_from"]["sha256"] == card.sha256


def test_cli_train_and_resume(toy_data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m"
    args = [
        "train",
        "--data",
        str(toy_data),
        "-o",
        str(out),
        "--steps",
        "3",
        "--patch-size",
        "16,32,32",
        "--threads",
        "1",
        "--model-voxel-size",
        str(VOXEL_NM),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["steps"] == 3
    assert (out / "model.json").exists() and (out / "checkpoints" / "checkpoint.pt").exists()
    res = runner.invoke(app, args[:6] + ["4"] + args[7:] + ["--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["steps"] == 4
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "already holds a model" in res.output
    res = runner.invoke(app, args[:8] + ["20"] + args[9:] + ["--overwrite"])
    assert res.exit_code == 2 and "not a multiple" in res.output


def test_validation_through_find_vesicles(volumes):
    from synapseg.train.validation import validate

    net = build_unet(UNetConfig(**TINY_UNET), seed=0)
    metrics = validate(net, volumes[2:], VS3, net.config.size_multiple, use_post=True)
    assert metrics["method"] == "find_vesicles"
    assert 0.0 <= metrics["f1"] <= 1.0 and metrics["volumes"][0]["n_gt"] == 6


@pytest.mark.parametrize("method, gate", [("post", True), ("post-nogate", False)])
def test_validation_with_or_without_the_vesicle_free_gate(
    volumes, tmp_path, monkeypatch, method, gate
):
    """``val_method="post-nogate"`` validates through find_vesicles without the vesicle-free
    gate (issue 11: the 0.9 gate emptied whole validation tomograms of a less confident
    network, so its best checkpoint swung by ±0.1); ``"post"`` keeps the pipeline default."""
    import synapseg.post.vesicles as vesicles

    seen = []
    real = vesicles.find_vesicles

    def spy(image, probability, voxel_size_nm, params=None, specimen=None):
        seen.append(params)
        return real(image, probability, voxel_size_nm, params)

    monkeypatch.setattr(vesicles, "find_vesicles", spy)
    metrics = _trainer(volumes, tmp_path, val_method=method).validate()
    assert metrics["method"] == "find_vesicles" and len(seen) == len(volumes[2:])
    default = vesicles.PostParams().min_best_score
    assert all(p.min_best_score == (default if gate else None) for p in seen)

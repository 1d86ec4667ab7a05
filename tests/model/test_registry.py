"""Tests for model cards, checksums and model resolution."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from synapseg.errors import ModelError, OutputExistsError
from synapseg.model import registry
from synapseg.model.registry import (
    ModelCard,
    create_random_model,
    load_model,
    resolve_model,
    save_model,
)
from synapseg.model.unet import UNetConfig, build_unet

SMALL = UNetConfig(base_channels=2, depth=2, convs_per_level=1)


@pytest.fixture
def model_dir(tmp_path):
    return create_random_model(tmp_path / "m", config=SMALL, voxel_size_nm=1.5, seed=1)


def test_save_load_round_trip(tmp_path):
    net = build_unet(SMALL, seed=2)
    card = ModelCard(name="x", architecture={}, voxel_size_nm=1.7, tta_rot90=True)
    out = save_model(tmp_path / "x", net, card)
    assert (out / "model.pt").is_file() and (out / "model.json").is_file()
    loaded, card2 = load_model(out)
    assert not loaded.training
    assert card2.sha256 == registry.sha256_file(out / "model.pt")
    assert card2.architecture == SMALL.to_dict()
    assert card2.tta_rot90 is True and card2.voxel_size_nm == 1.7
    assert card2.receptive_field == SMALL.receptive_field and card2.halo == SMALL.halo
    sd, sd2 = net.state_dict(), loaded.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    # the card file and the folder both resolve
    assert load_model(out / "model.json")[1].name == "x"


def test_save_refuses_to_overwrite(model_dir):
    net = build_unet(SMALL)
    card = ModelCard(name="y", architecture={}, voxel_size_nm=1.5)
    with pytest.raises(OutputExistsError):
        save_model(model_dir, net, card)
    save_model(model_dir, net, card, overwrite=True)
    assert load_model(model_dir)[1].name == "y"


def test_flipped_byte_is_caught(model_dir):
    weights = model_dir / "model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as info:
        load_model(model_dir)
    assert str(weights) in info.value.message


def test_corrupt_card_is_caught(model_dir):
    card = model_dir / "model.json"
    card.write_text(card.read_text()[:-20])
    with pytest.raises(ModelError, match="corrupt") as info:
        load_model(model_dir)
    assert str(card) in info.value.message


def test_mismatched_architecture_is_caught(model_dir):
    card = json.loads((model_dir / "model.json").read_text())
    card["architecture"]["base_channels"] = 3
    (model_dir / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not load"):
        load_model(model_dir)


def test_missing_weights_and_unknown_names(tmp_path, model_dir):
    (model_dir / "model.pt").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(model_dir)
    with pytest.raises(ModelError, match="unknown model name.*test-random"):
        resolve_model("no-such-model")
    with pytest.raises(ModelError, match="no model.json"):
        resolve_model(tmp_path)


def test_unknown_card_keys_are_kept():
    card = ModelCard.from_dict(
        {"name": "z", "architecture": {}, "voxel_size_nm": 2.0, "future_field": 1}
    )
    assert card.extra == {"future_field": 1}


def test_default_resolves_to_shipped_untrained_model(caplog):
    assert registry.default_model_name() in registry.available_models()
    assert resolve_model("default") == registry.default_model_path()
    logger = logging.getLogger("synapseg")
    logger.addHandler(caplog.handler)  # the CLI may have turned propagation off
    try:
        with caplog.at_level(logging.WARNING, logger="synapseg"):
            net, card = load_model("default")
    finally:
        logger.removeHandler(caplog.handler)
    if not card.trained:
        assert "untrained" in caplog.text
    assert card.output_channels[0] == "vesicle"
    assert card.config.out_channels == len(card.output_channels)


def test_shipped_test_model_is_small_and_valid():
    card_path = resolve_model("test-random")
    assert (card_path.parent / "model.pt").stat().st_size < 500_000
    net, card = load_model("test-random")
    assert card.trained is False and card.name == "test-random"


def test_sim_unet_v2_ships_rebuildable_with_its_calibration_and_tube_rejection():
    """The v2 model (issue 11) is shipped by name, next to the default: its weights match
    its card, the card names the recipe with the data hashes and the short-rebuild
    reference, and the vesicles stage takes its calibrated post-processing, including the
    tube-section rejection, from the card."""
    from types import SimpleNamespace

    from synapseg.core.builtin import vesicle_params

    assert "sim-unet-v2" in registry.available_models()
    _, card = registry.load_model("sim-unet-v2")  # verifies the sha256
    data = card.training_data
    assert "train_default.py --version v2" in data["recipe"]
    assert data["data_hashes"]["tomograms"] and data["rebuild_reference"]
    wedge = SimpleNamespace(tilt_range_deg=60.0, wedge_axis="y")
    got = vesicle_params({"model": "sim-unet-v2"}, wedge, "no")
    assert got["max_tube_score"] == 0.8
    assert got["threshold"] == 0.35 and got["min_best_score"] == 0.852
    assert "max_tube_score" not in vesicle_params({"model": "sim-unet-v1"}, wedge, "no")

"""The contrast polarity is settled with the network before the full prediction."""

from __future__ import annotations

import logging

import pytest

from synapseg.infer.polarity import central_crop, network_polarity
from synapseg.io.volume import Volume
from synapseg.model.registry import load_model
from synapseg.simulate import SimulationParams, simulate_tomogram


@pytest.fixture(scope="module")
def tomogram():
    params = SimulationParams(shape=(64, 144, 144), voxel_size_nm=1.68, seed=5, n_vesicles=20)
    return simulate_tomogram(params).tomogram


@pytest.fixture(scope="module")
def model():
    net, card = load_model("default")
    if card.name.startswith("test-random"):
        pytest.skip("the shipped default model is untrained")
    return net, card


def test_central_crop_is_centred_and_bounded(tomogram):
    crop = central_crop(Volume(tomogram, (1.68,) * 3), (50.0, 100.0, 100.0))
    assert crop.shape == (30, 60, 60)
    assert (crop.data == tomogram[17:47, 42:102, 42:102]).all()


def test_dark_densities_are_kept(tomogram, model):
    decision = network_polarity(Volume(tomogram, (1.68,) * 3), model, "cpu")
    assert decision["invert"] is False
    assert decision["ratio"] >= 2


def test_inverted_contrast_is_detected_and_announced(tomogram, model, caplog):
    with caplog.at_level(logging.WARNING, logger="synapseg"):
        decision = network_polarity(Volume(-tomogram, (1.68,) * 3), model, "cpu")
    assert decision["invert"] is True
    assert "inverted" in caplog.text and "--invert no" in caplog.text

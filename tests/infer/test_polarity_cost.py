"""The polarity decision's cost: one inference-ready network, one batch of two per crop."""

from __future__ import annotations

import numpy as np
import pytest

import synapseg.infer.forward as forward
from synapseg.infer import polarity
from synapseg.infer.preprocess import grid_shape
from synapseg.io.volume import Volume
from synapseg.model.registry import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("default")


def test_vesicle_free_volume_costs_one_batch_per_crop(model, monkeypatch):
    prepared, batches = [], []
    real_prepare = forward.prepare_net

    def count_prepare(net, device):
        prepared.append(1)
        return real_prepare(net, device)

    def no_vesicles(net, batch, device, channels=(0,), transforms=(((), 0),)):
        batches.append(batch.copy())
        return np.zeros((batch.shape[0], len(channels), *batch.shape[2:]), np.float32)

    monkeypatch.setattr(forward, "prepare_net", count_prepare)
    monkeypatch.setattr(forward, "forward_batch", no_vesicles)
    rng = np.random.default_rng(4)
    data = rng.normal(0, 1, (72, 300, 300)).astype(np.float32)
    decision = polarity.decide_polarity(Volume(data, (1.68,) * 3), model, "cpu")
    # no evidence: every crop is judged, each in one batch (normal, inverted)
    assert decision["evidence"] == "none" and decision["invert"] is False
    assert len(decision["crops"]) == polarity.MAX_CROPS == len(batches)
    assert len(prepared) == 1
    m = model[0].config.size_multiple
    for batch in batches:
        assert batch.shape[:2] == (2, 1)
        assert all(n % m == 0 for n in batch.shape[2:])
        np.testing.assert_array_equal(batch[1], -batch[0])
        assert np.abs(batch[0]).mean() > 0.1  # the crop, normalised, not zeros


def test_model_grid_crop_goes_to_the_nearest_size_multiple(model, monkeypatch):
    shapes = []

    def record(net, batch, device, channels=(0,), transforms=(((), 0),)):
        shapes.append(batch.shape[2:])
        return np.zeros((batch.shape[0], len(channels), *batch.shape[2:]), np.float32)

    monkeypatch.setattr(forward, "forward_batch", record)
    net, card = model
    m = net.config.size_multiple
    # the reference volume's crop: 67 model voxels in z (3 above 64: trimmed), 122 in y and x
    # (6 below 128: padded)
    n_in = (82, 150, 150)
    assert grid_shape(n_in, 1.469, card.voxel_size_nm) == (67, 122, 122)
    crop = Volume(np.random.default_rng(1).normal(0, 1, n_in).astype(np.float32), (1.469,) * 3)
    polarity.confident_fractions(crop, net, card, forward.select_device("cpu"))
    assert shapes == [(4 * m, 8 * m, 8 * m)]

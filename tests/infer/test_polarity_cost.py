"""The polarity decision's cost: one inference-ready network, one batch of two per crop."""

from __future__ import annotations

import numpy as np
import pytest

import synapseg.infer.forward as forward
from synapseg.infer import polarity
from synapseg.infer.predict import predict_volume
from synapseg.infer.preprocess import grid_shape
from synapseg.io.volume import Volume
from synapseg.model.registry import load_model
from synapseg.simulate import SimulationParams, simulate_tomogram


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


def test_crop_fits_the_network_tile(model, monkeypatch):
    shapes = []

    def record(net, batch, device, channels=(0,), transforms=(((), 0),)):
        shapes.append(batch.shape[2:])
        return np.zeros((batch.shape[0], len(channels), *batch.shape[2:]), np.float32)

    monkeypatch.setattr(forward, "forward_batch", record)
    net, card = model
    m = net.config.size_multiple
    # the reference volume (1.469 nm): 120 nm in z would be 67 model voxels, padded to 80
    volume = Volume(np.zeros((261, 512, 512), np.float32), (1.469,) * 3)
    size_nm = polarity.network_crop_nm(volume, card, net)
    crop = polarity.central_crop(volume, size_nm)
    assert all(n <= t for n, t in zip(grid_shape(crop.shape, 1.469, card.voxel_size_nm),
                                      (4 * m, 8 * m, 8 * m)))  # fmt: skip
    crop.data[:] = np.random.default_rng(1).normal(0, 1, crop.shape)
    polarity.confident_fractions(crop, net, card, forward.select_device("cpu"))
    assert shapes == [(4 * m, 8 * m, 8 * m)]


def test_fractions_are_those_of_the_full_prediction(model):
    """The one-batch path counts on the crop's own grid, as ``predict_volume`` (on whose
    fractions the thresholds were calibrated): on the model grid small spurious blobs count
    up to 1.6x more, which flipped a vesicle-free crop to 'inverted'."""
    net, card = model
    params = SimulationParams(shape=(40, 96, 96), voxel_size_nm=1.68, seed=5, n_vesicles=12)
    crop = Volume(simulate_tomogram(params, keep_phantom=False).tomogram, (1.68,) * 3)
    dev = forward.select_device("cpu")
    got = polarity.confident_fractions(crop, forward.prepare_net(net, dev), card, dev)
    want = [
        float((predict_volume(crop, model=model, device="cpu", invert=inv) > 0.9).mean())
        for inv in (False, True)
    ]
    assert want[0] > 0.01  # vesicles: a non-trivial fraction
    np.testing.assert_allclose(got, want, atol=2e-5)

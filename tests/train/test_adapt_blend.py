"""``synapseg adapt --interpolate``: weights interpolated towards the base model (WiSE-FT)."""

from __future__ import annotations

import pytest
import torch

from synapseg.errors import InputError
from synapseg.train import adapt, adapt_blend, adapt_post, forgetting, rehearsal

from .conftest import table_as_pseudo_labels


def test_blend_state_interpolates_floats_and_keeps_integer_buffers():
    base = {"w": torch.zeros(3), "n": torch.tensor(1)}
    tuned = {"w": torch.tensor([2.0, 4.0, -2.0]), "n": torch.tensor(7)}
    half = adapt_blend.blend_state(base, tuned, 0.5)
    assert torch.equal(half["w"], torch.tensor([1.0, 2.0, -1.0])) and int(half["n"]) == 7
    assert torch.equal(adapt_blend.blend_state(base, tuned, 0.0)["w"], base["w"])
    assert torch.equal(adapt_blend.blend_state(base, tuned, 1.0)["w"], tuned["w"])
    with pytest.raises(ValueError):
        adapt_blend.blend_state(base, tuned, 1.5)
    with pytest.raises(ValueError):
        adapt_blend.blend_state(base, {"w": torch.zeros(4), "n": torch.tensor(1)}, 0.5)


def test_interpolation_is_checked():
    with pytest.raises(InputError):
        adapt.AdaptConfig(interpolation=0.0)
    with pytest.raises(InputError):
        adapt.AdaptConfig(interpolation=1.2)
    assert adapt.AdaptConfig().interpolation == adapt_blend.DEFAULT_LAMBDA


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_adapt_writes_the_interpolated_weights(tmp_path, monkeypatch, lam):
    """Fast: pipeline stand-in, no rehearsal or guard; one step per round. The written
    weights lie at lam of the way from the base to the fine-tuned weights."""
    from synapseg.model.registry import load_model

    from .conftest import write_item

    monkeypatch.setattr(adapt, "label_tomogram", table_as_pseudo_labels)
    monkeypatch.setattr(
        adapt_post, "probe_radii",
        lambda t, s, c: {"radii_nm": [13.0, 16.0, 19.0], "current_min_radius_nm": 10.0},
    )  # fmt: skip
    monkeypatch.setattr(rehearsal, "simulate_set", lambda *a, **k: [])
    monkeypatch.setattr(forgetting, "simulate_set", lambda *a, **k: [])
    tomo = write_item(tmp_path / "toy", seed=1, shape=(40, 64, 64)) / "tomogram.mrc"
    config = adapt.AdaptConfig(
        rounds=1, steps=2, patch_size=(32, 32, 32), seed=3, rehearsal=0.0, anchor_weight=0.0,
        check_forgetting=False, interpolation=lam, lr=1e-2,
    )  # fmt: skip
    rec = adapt.adapt_model([tomo], tmp_path / "a", from_model="sim-unet-v1", config=config)
    net, card = load_model(str(tmp_path / "a"))  # the card's sha256 matches the new weights
    base, _ = load_model("sim-unet-v1")
    if lam == 1.0:
        assert "interpolation" not in rec and "interpolated" not in card.description
        return
    blend = card.extra["adaptation"]["interpolation"]
    assert blend["lambda"] == 0.5 and "WiSE-FT" in blend["method"]
    assert blend["drift_fine_tuned"] > 0
    assert blend["drift_written"] == pytest.approx(0.25 * blend["drift_fine_tuned"], rel=1e-3)
    ref = dict(base.named_parameters())
    moved = sum(float(torch.sum((p - ref[k]) ** 2)) for k, p in net.named_parameters())
    assert moved == pytest.approx(blend["drift_written"], rel=1e-3)
    assert blend["buffer_drift_written"] == pytest.approx(
        0.25 * blend["buffer_drift_fine_tuned"], rel=1e-3
    )
    assert "w_base + 0.5 x (w_fine_tuned - w_base)" in card.description

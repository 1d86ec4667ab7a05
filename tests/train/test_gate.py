"""The vesicle-free gate calibrated per model: scores, threshold choice, card round trip."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.model.registry import (
    ModelCard,
    card_post_params,
    create_random_model,
    read_card,
    resolve_model,
    save_model,
)
from synapseg.train.gate import best_candidate_score, choose_min_best_score


def test_separated_sets_give_the_max_margin_midpoint():
    out = choose_min_best_score([0.93, 0.88, 0.97], [0.61, 0.74])
    assert out["min_best_score"] == pytest.approx((0.88 + 0.74) / 2)
    assert out["errors"] == 0
    assert out["margin"] == pytest.approx((0.88 - 0.74) / 2)


def test_overlapping_sets_minimise_misclassified_tomograms():
    # one vesicle-free tomogram scores above one with vesicles: one error is unavoidable
    out = choose_min_best_score([0.95, 0.80, 0.97, 0.96], [0.5, 0.85, 0.6])
    assert out["errors"] == 1
    gate = out["min_best_score"]
    pos, neg = np.array([0.95, 0.80, 0.97, 0.96]), np.array([0.5, 0.85, 0.6])
    assert int(np.sum(pos < gate) + np.sum(neg >= gate)) == 1


def test_gate_needs_both_kinds():
    with pytest.raises(ValueError, match="with and without"):
        choose_min_best_score([0.9], [])


def _shell_map(shape, centers, radius_px, value):
    z, y, x = np.indices(shape)
    prob = np.zeros(shape, np.float32)
    for c, v in zip(centers, value, strict=True):
        d = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
        prob[d <= radius_px] = v
    return prob


def test_best_candidate_score_is_the_most_confident_vesicle():
    shape = (40, 64, 64)
    prob = _shell_map(shape, [(20, 18, 18), (20, 44, 44)], 9, [0.7, 0.95])
    score = best_candidate_score(prob, 2.0)
    assert score == pytest.approx(0.95, abs=0.02)
    assert best_candidate_score(np.zeros(shape, np.float32), 2.0) == 0.0


def test_card_post_params_come_from_the_card_and_survive_a_round_trip(tmp_path):
    folder = create_random_model(tmp_path / "m")
    card = read_card(resolve_model(folder))
    assert card_post_params(card) == {}  # no calibration: the pipeline keeps its 0.9
    card.postprocessing = {"min_best_score": 0.81, "not_a_post_param": 3}
    import torch

    from synapseg.model.registry import load_model

    net, _ = load_model(folder)
    save_model(folder, net, card, overwrite=True)
    again = read_card(resolve_model(folder))
    assert card_post_params(again) == {"min_best_score": 0.81}
    assert isinstance(torch.load(folder / "model.pt", weights_only=True), dict)
    assert card_post_params(None) == {}
    assert card_post_params(ModelCard(name="x", architecture={}, voxel_size_nm=1.0)) == {}


def test_the_pipeline_reads_the_gate_from_the_model_card(tmp_path):
    """A card's ``postprocessing.min_best_score`` replaces the pipeline's 0.9: an impossible
    gate (1.01) declares a tomogram with vesicles vesicle-free, the same weights without it
    find them."""
    import json
    import shutil

    import synapseg

    plain = tmp_path / "plain"
    shutil.copytree(resolve_model("default").parent, plain)
    strict = tmp_path / "strict"
    shutil.copytree(plain, strict)
    card = json.loads((strict / "model.json").read_text())
    card["postprocessing"] = {"min_best_score": 1.01}
    (strict / "model.json").write_text(json.dumps(card))
    sim = synapseg.simulate(shape=(32, 80, 80), voxel_size_nm=1.68, seed=3, n_vesicles=4)
    found = synapseg.segment(sim.tomogram, model=plain, voxel_size_nm=1.68, device="cpu")
    assert len(found.vesicles) > 0
    gated = synapseg.segment(sim.tomogram, model=strict, voxel_size_nm=1.68, device="cpu")
    assert len(gated.vesicles) == 0
    assert "< 1.01" in gated.facts["vesicles"]["statement"]

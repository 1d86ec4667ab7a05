"""synapseg.train.post_calibration: the instance step calibrated on a network's own maps."""

from __future__ import annotations

import json
import shutil

import pytest

from synapseg.model.registry import card_post_params, read_card, resolve_model
from synapseg.train.post_calibration import (
    choose_instance_settings,
    evaluate_instance_settings,
    instance_settings,
)


def _result(settings, counts):
    return {
        "settings": settings,
        "per_tomogram": {
            name: {"tp": tp, "fp": fp, "fn": fn, "n_gt": tp + fn}
            for name, (tp, fp, fn) in counts.items()
        },
    }


def test_instance_settings_cover_the_grid_with_defaults_left_out():
    grid = instance_settings((None, 0.4), (None, 7))
    assert grid == [{}, {"min_separation_nm": 7.0}, {"threshold": 0.4},
                    {"threshold": 0.4, "min_separation_nm": 7.0}]  # fmt: skip


def test_the_best_mean_f1_wins_and_ties_keep_the_defaults():
    default = _result({}, {"a": (9, 0, 1), "b": (8, 0, 2)})  # F1 0.947, 0.889
    better = _result({"threshold": 0.4}, {"a": (10, 0, 0), "b": (9, 1, 1)})
    tie = _result({"min_separation_nm": 7.0}, {"a": (9, 0, 1), "b": (8, 0, 2)})
    worse = _result({"threshold": 0.6}, {"a": (5, 0, 5), "b": (8, 0, 2)})
    choice = choose_instance_settings([default, tie, worse, better])
    assert choice["postprocessing"] == {"threshold": 0.4}
    assert choice["mean_f1"] > choice["default_mean_f1"]
    assert [row["settings"] for row in choice["table"]] == [{}, {"min_separation_nm": 7.0},
                                                           {"threshold": 0.6},
                                                           {"threshold": 0.4}]  # fmt: skip
    # a tie with the defaults keeps the defaults
    assert choose_instance_settings([default, tie])["postprocessing"] == {}
    # a gain below min_gain keeps the defaults too
    assert choose_instance_settings([default, better], min_gain=0.2)["postprocessing"] == {}


def test_settings_must_be_scored_on_the_same_tomograms():
    with pytest.raises(ValueError, match="same tomograms"):
        choose_instance_settings(
            [_result({}, {"a": (1, 0, 0)}), _result({"threshold": 0.4}, {"b": (1, 0, 0)})]
        )
    with pytest.raises(ValueError, match="no settings"):
        choose_instance_settings([])


def test_card_carries_instance_settings_to_the_pipeline(tmp_path):
    """The card's ``threshold`` replaces the automatic one in ``segment``; a threshold given
    to ``segment`` still wins over the card's."""
    import synapseg

    model = tmp_path / "m"
    shutil.copytree(resolve_model("default").parent, model)
    card = json.loads((model / "model.json").read_text())
    card["postprocessing"] = {"threshold": 0.61, "min_separation_nm": 8.0}
    (model / "model.json").write_text(json.dumps(card))
    assert card_post_params(read_card(model / "model.json")) == card["postprocessing"]
    sim = synapseg.simulate(shape=(32, 80, 80), voxel_size_nm=1.68, seed=3, n_vesicles=4)
    seg = synapseg.segment(
        sim.tomogram, model=model, voxel_size_nm=1.68, device="cpu", outputs=["vesicles"]
    )
    assert seg.facts["vesicles"]["threshold"] == pytest.approx(0.61)
    plain = synapseg.segment(sim.tomogram, voxel_size_nm=1.68, device="cpu", outputs=["vesicles"])
    assert plain.facts["vesicles"]["threshold"] != pytest.approx(0.61)
    user = synapseg.segment(
        sim.tomogram,
        model=model,
        voxel_size_nm=1.68,
        device="cpu",
        threshold=0.45,
        outputs=["vesicles"],
    )
    assert user.facts["vesicles"]["threshold"] == pytest.approx(0.45)


def test_evaluate_scores_each_setting_through_the_vesicles_stage():
    """Each setting reaches the vesicles stage (the threshold it used is recorded; a near-1
    threshold keeps no more vesicles than the automatic one) and is scored."""
    import synapseg
    from synapseg.io.volume import Volume

    sim = synapseg.simulate(shape=(32, 80, 80), voxel_size_nm=1.68, seed=3, n_vesicles=4)
    tomos = {"t": (Volume(sim.tomogram, (1.68,) * 3), sim.vesicles, {"device": "cpu"})}
    results = evaluate_instance_settings("default", tomos, [{}, {"threshold": 0.999}])
    default, strict = (r["per_tomogram"]["t"] for r in results)
    assert default["n_gt"] == strict["n_gt"] == len(sim.vesicles) > 0
    assert strict["threshold"] == pytest.approx(0.999)
    assert 0.3 <= default["threshold"] <= 0.7  # automatic (Otsu, clipped)
    assert strict["tp"] + strict["fp"] <= default["tp"] + default["fp"]  # fewer candidates
    choice = choose_instance_settings(results)
    strict_wins = choice["table"][1]["mean_f1"] > choice["table"][0]["mean_f1"]
    assert choice["postprocessing"] == ({"threshold": 0.999} if strict_wins else {})

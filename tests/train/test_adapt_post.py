"""``synapseg adapt`` adapts the post-processing too: the size check's radius floor
(:mod:`synapseg.train.adapt_post`, issue 11, H1)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from synapseg.train import adapt_post
from synapseg.train.adapt_post import (
    PHYSICAL_MIN_RADIUS_NM,
    adapt_postprocessing,
    estimate_min_radius,
)

from .conftest import table_as_pseudo_labels

VOXEL_NM = 1.68


def _normal_radii(n: int = 120, seed: int = 0) -> np.ndarray:
    """Midline radii of ordinary synaptic vesicles (outer 15-30 nm): none below 10 nm."""
    return np.random.default_rng(seed).uniform(12.75, 22.0, n)


def _small_radii(seed: int = 0) -> np.ndarray:
    """A specimen of small vesicles: 60 confident fits at 9-13 nm, 9 of them below 10."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(9.2, 9.9, 9), rng.uniform(10.1, 12.8, 51)])


def test_normal_sizes_leave_the_floor_unchanged():
    new, record = estimate_min_radius(_normal_radii(), 10.0)
    assert new is None
    assert record["truncated"] is False and record["below_current_floor"] == 0
    assert record["decision"].startswith("unchanged")


def test_a_few_small_outliers_are_not_a_truncated_distribution():
    """Two confident fits below the floor among 120 (a false blob, a bad fit) change nothing."""
    radii = np.concatenate([_normal_radii(), [8.5, 9.0]])
    new, record = estimate_min_radius(radii, 10.0)
    assert new is None and record["below_current_floor"] == 2


def test_truncated_sizes_lower_the_floor_below_the_smallest_confident_vesicles():
    radii = _small_radii()
    new, record = estimate_min_radius(radii, 10.0)
    assert new is not None and PHYSICAL_MIN_RADIUS_NM <= new < 10.0
    assert new <= np.quantile(radii, adapt_post.QUANTILE) - adapt_post.MARGIN_NM + 1e-9
    assert new * 2 == int(new * 2)  # rounded down to 0.5 nm
    assert (radii >= new).mean() >= 0.98
    assert record["truncated"] is True and record["below_current_floor"] == 9


def test_the_floor_never_goes_below_the_physical_floor():
    radii = np.concatenate([_small_radii(), np.full(10, 6.0)])
    new, _ = estimate_min_radius(radii, 10.0)
    assert new == PHYSICAL_MIN_RADIUS_NM


def test_adapt_postprocessing_writes_only_the_size_check_floor():
    probes = [
        {"radii_nm": list(_small_radii(1)), "current_min_radius_nm": 10.0},
        {"radii_nm": list(_small_radii(2)), "current_min_radius_nm": 10.0},
    ]
    base = {"threshold": 0.4}
    post, record = adapt_postprocessing(probes, base)
    assert set(post) == {"threshold", "qc_min_radius_nm"} and post["threshold"] == 0.4
    assert record["changed"] == {"qc_min_radius_nm": post["qc_min_radius_nm"]}
    assert record["per_tomogram_below_floor"] == [9, 9] and record["rule"] == adapt_post.RULE
    assert base == {"threshold": 0.4}  # not modified

    normal = [{"radii_nm": list(_normal_radii()), "current_min_radius_nm": 10.0}]
    same, record = adapt_postprocessing(normal, base)
    assert same == base and record["changed"] == {}


@pytest.fixture(scope="module")
def small_scene():
    """A simulated tomogram of small vesicles (outer radius 11-12.5 nm, midline 8.8-10.3 nm)
    with a blurred ground-truth map as the 'network'."""
    from synapseg.simulate import simulate_tomogram

    sim = simulate_tomogram(
        shape=(48, 112, 112),
        voxel_size_nm=VOXEL_NM,
        seed=11,
        radius_mean_nm=11.8,
        radius_sd_nm=0.5,
        radius_range_nm=(11.0, 12.5),
    )
    prob = ndimage.gaussian_filter((sim.vesicle_labels > 0).astype(np.float32), 1.5)
    return sim, prob


def test_qc_floor_keeps_small_vesicles_the_instance_step_unchanged(small_scene):
    """``qc_min_radius_nm`` lowers the size check only: the same candidates are fitted, and
    the ones rejected as "radius below min" at the default floor are kept."""
    from synapseg.post.vesicles import PostParams, find_vesicles

    sim, prob = small_scene
    gate = {"min_best_score": None}  # the blurred map of small balls never reaches 0.9
    base_t, base_rej, base_info = find_vesicles(sim.tomogram, prob, VOXEL_NM, PostParams(**gate))
    low = PostParams(qc_min_radius_nm=PHYSICAL_MIN_RADIUS_NM, **gate)
    low_t, _, low_info = find_vesicles(sim.tomogram, prob, VOXEL_NM, low)
    small = int((base_rej["reason"] == "radius below min").sum())
    assert small >= 3  # the default floor loses small vesicles
    assert base_info["counts"]["fitted"] == low_info["counts"]["fitted"]
    assert len(low_t) >= len(base_t) + small - 1
    assert (low_t["radius_nm"] < 10.0).sum() >= small - 1


def test_a_cards_qc_floor_reaches_the_pipeline_and_a_users_floor_wins(tmp_path):
    from synapseg.core.builtin import vesicle_params
    from synapseg.model.registry import resolve_model
    from synapseg.specimen.wedge import WedgeEstimate  # noqa: F401 - only its two fields used

    folder = tmp_path / "adapted"
    shutil.copytree(resolve_model("default").parent, folder)
    card = json.loads((folder / "model.json").read_text())
    card["postprocessing"] = {"qc_min_radius_nm": 8.0}
    (folder / "model.json").write_text(json.dumps(card))

    class Wedge:
        tilt_range_deg, wedge_axis = 60.0, "y"

    params = vesicle_params({"model": str(folder)}, Wedge(), "no")
    assert params["qc_min_radius_nm"] == 8.0 and "min_radius_nm" not in params
    mine = vesicle_params({"model": str(folder), "min_radius_nm": 12.0}, Wedge(), "no")
    assert mine["min_radius_nm"] == 12.0 and "qc_min_radius_nm" not in mine
    assert "qc_min_radius_nm" not in vesicle_params({"model": "default"}, Wedge(), "no")


@pytest.mark.parametrize("truncated", [False, True])
def test_adapt_model_changes_the_card_only_when_sizes_are_truncated(
    truncated, tmp_path, monkeypatch
):
    from synapseg.model.registry import read_card, resolve_model
    from synapseg.train import adapt

    from .conftest import write_item

    seen = []

    def probe(tomogram, segment_dir, min_confidence):
        seen.append((segment_dir, min_confidence))
        radii = _small_radii() if truncated else _normal_radii()
        return {"radii_nm": list(radii), "current_min_radius_nm": 10.0}

    monkeypatch.setattr(adapt, "label_tomogram", table_as_pseudo_labels)
    monkeypatch.setattr(adapt_post, "probe_radii", probe)
    tomo = write_item(tmp_path / "toy", seed=3, shape=(40, 64, 64)) / "tomogram.mrc"
    config = adapt.AdaptConfig(
        rounds=2, steps=1, patch_size=(32, 32, 32), seed=2, rehearsal=0.0, check_forgetting=False,
        check_gain=False,  # equal toy counts: keep the fine-tuned weights (the round-2 pass)
    )  # fmt: skip
    record = adapt.adapt_model([tomo], tmp_path / "out", config=config)
    card = read_card(tmp_path / "out" / "model.json")
    base = read_card(resolve_model("default"))
    assert [s[0].parent.parent.name for s in seen] == ["round2"] and seen[0][1] == 0.8
    entry = record["postprocessing_adapted"]
    if truncated:
        assert set(card.postprocessing) == set(base.postprocessing) | {"qc_min_radius_nm"}
        assert card.postprocessing["qc_min_radius_nm"] < 10.0
        assert entry["changed"] and "qc_min_radius_nm" in card.description
    else:
        assert card.postprocessing == base.postprocessing  # unchanged card
        assert entry["changed"] == {} and "Post-processing adapted" not in card.description
    assert card.extra["adaptation"]["postprocessing_adapted"]["rule"] == adapt_post.RULE

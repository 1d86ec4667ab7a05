"""Tube sections among vesicle candidates (:mod:`synapseg.post.tubes`): the measure on
simulated microtubules (flat and steep) and vesicles, the QC rejection and the card key."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from synapseg.post.filters import FilterParams, qc_filter
from synapseg.post.tubes import tube_scores, with_tube_scores
from synapseg.post.vesicles import PostParams
from synapseg.simulate import SimulationParams, simulate_tomogram

VS = 1.68
SHAPE = (48, 128, 128)
CENTERS = ["center_z_px", "center_y_px", "center_x_px"]


@functools.cache
def _scene(tilt: tuple[float, float]):
    p = SimulationParams(
        shape=SHAPE, voxel_size_nm=VS, seed=7, n_vesicles=10, n_microtubules=2,
        microtubule_tilt_deg=tilt, filaments=False, distractors=False, cleft=False,
        plasma_membrane=False,
    )  # fmt: skip
    return simulate_tomogram(p)


def _axis_points(sim) -> np.ndarray:
    """A point on each microtubule axis inside the volume (mid-depth for steep axes)."""
    mid = np.asarray(SHAPE) / 2
    out = []
    for mt in sim.info["microtubules"]:
        a, d = np.asarray(mt["point_px"]), np.asarray(mt["direction"])
        s = (mid[0] - a[0]) / d[0] if abs(d[0]) > 0.3 else float(np.dot(mid - a, d))
        out.append(a + s * d)
    return np.array(out)


@pytest.mark.parametrize("tilt", [(0.0, 10.0), (40.0, 50.0)], ids=["flat", "steep"])
def test_tube_sections_score_high_and_vesicles_low(tilt):
    sim = _scene(tilt)
    points = _axis_points(sim)
    assert np.all((points >= 0) & (points < np.asarray(SHAPE)))
    # a sphere fit on a microtubule: centred on the axis, radius ≈ the wall (10-12.5 nm)
    tubes = tube_scores(sim.tomogram, points, np.full(len(points), 11.0), VS)
    assert np.all(tubes > 0.8)
    v = sim.vesicles
    ves = tube_scores(sim.tomogram, v[CENTERS].to_numpy(), v["radius_nm"].to_numpy(), VS)
    assert len(ves) >= 8
    assert np.all(np.nan_to_num(ves) < 0.5)
    assert np.nanmax(ves) < tubes.min() - 0.5


def test_chunks_in_threads_give_the_scores_of_one_chunk():
    """The candidates are sampled in chunks by parallel threads; the scores come back in the
    candidates' order, as from one chunk."""
    sim = _scene((40.0, 50.0))
    points = np.vstack([_axis_points(sim), sim.vesicles[CENTERS].to_numpy()])
    radii = np.concatenate([np.full(2, 11.0), sim.vesicles["radius_nm"].to_numpy()])
    one = tube_scores(sim.tomogram, points, radii, VS, chunk=len(points))
    many = tube_scores(sim.tomogram, points, radii, VS, chunk=3)
    np.testing.assert_array_equal(many, one)
    assert np.all(one[:2] > 0.8) and np.all(np.nan_to_num(one[2:]) < 0.5)


def test_default_post_params_measure_nothing():
    sim = _scene((0.0, 10.0))
    fits = sim.vesicles[[*CENTERS, "radius_nm"]].copy()
    assert PostParams().max_tube_score is None
    same = with_tube_scores(fits, sim.tomogram, VS, PostParams(), 4.5, 1, None)
    assert same is fits and "tube_score" not in same
    scored = with_tube_scores(fits, sim.tomogram, VS, PostParams(max_tube_score=0.8), 4.5, 1, None)
    assert np.all(np.isfinite(scored["tube_score"]))


def _fits(tube_score, score):
    n = len(tube_score)
    return pd.DataFrame(
        {
            "center_z_px": np.full(n, 20.0),
            "center_y_px": 20.0 + 30.0 * np.arange(n),
            "center_x_px": np.full(n, 20.0),
            "radius_nm": np.full(n, 18.0),
            "membrane_contrast": np.full(n, 0.8),
            "profile_correlation": np.full(n, 0.9),
            "fit_residual_nm": np.full(n, 0.5),
            "shift_nm": np.zeros(n),
            "score": score,
            "tube_score": tube_score,
        }
    )


def test_qc_rejects_tube_sections_and_asks_the_gate_again():
    legacy = {"min_confidence": None, "max_tube_score": 0.8, "min_best_score": 0.9}
    fits = _fits([0.1, 1.3, np.nan], [0.95, 0.97, 0.6])
    kept, rej = qc_filter(fits, VS, FilterParams(**legacy))
    assert len(kept) == 2 and list(rej["reason"]) == ["tube section"]
    # the only confident candidate is a tube section: the tomogram holds no vesicles
    fits = _fits([0.1, 1.3], [0.7, 0.97])
    kept, rej = qc_filter(fits, VS, FilterParams(**legacy))
    assert len(kept) == 0
    assert rej["reason"].iloc[1] == "tube section"
    assert rej["reason"].iloc[0].startswith("no confident vesicle besides tube sections")
    # off by default: the same fits all kept
    kept, _ = qc_filter(fits, VS, FilterParams(min_confidence=None))
    assert len(kept) == 2


def test_the_pipeline_reads_max_tube_score_from_the_model_card(tmp_path):
    """A card's ``postprocessing.max_tube_score`` switches the rejection on: an impossible
    value (every fit counts as a tube section) empties a tomogram with vesicles."""
    import synapseg
    from synapseg.core.builtin import vesicle_params
    from synapseg.model.registry import resolve_model
    from synapseg.specimen.wedge import WedgeEstimate

    plain = tmp_path / "plain"
    shutil.copytree(resolve_model("default").parent, plain)
    card = json.loads((plain / "model.json").read_text())
    card["postprocessing"] = {}
    (plain / "model.json").write_text(json.dumps(card))
    strict = tmp_path / "strict"
    shutil.copytree(plain, strict)
    card["postprocessing"] = {"max_tube_score": -1e9}
    (strict / "model.json").write_text(json.dumps(card))
    wedge = WedgeEstimate(tilt_range_deg=60.0)
    assert "max_tube_score" not in vesicle_params({"model": plain}, wedge, "no")
    assert vesicle_params({"model": strict}, wedge, "no")["max_tube_score"] == -1e9
    sim = synapseg.simulate(shape=(32, 80, 80), voxel_size_nm=VS, seed=3, n_vesicles=4)
    found = synapseg.segment(sim.tomogram, model=plain, voxel_size_nm=VS, device="cpu")
    assert len(found.vesicles) > 0
    tubed = synapseg.segment(sim.tomogram, model=strict, voxel_size_nm=VS, device="cpu")
    assert len(tubed.vesicles) == 0
    reasons = [r["reason"] for r in tubed.facts["vesicles"]["rejected"]]
    assert "tube section" in reasons

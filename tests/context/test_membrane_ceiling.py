"""Ceilings of the membrane metric (synapseg.train.membrane_ceiling) on small exact volumes."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.train.membrane_ceiling import (
    grid_round_trip,
    oracle_ceiling,
    score,
    truth_ceiling,
)

VS = 1.5  # nm


def slab(shape=(24, 40, 40), x0=18, thickness=4) -> np.ndarray:
    """A flat membrane: ``thickness`` voxels from x = ``x0``, normal along x."""
    t = np.zeros(shape, bool)
    t[:, :, x0 : x0 + thickness] = True
    return t


def test_score_of_truth_is_perfect():
    t = slab()
    s = score(t, t, VS)
    assert s["dice"] == 1.0 and s["sd_median_nm"] == 0.0


def test_truth_ceiling_shift_along_normal_costs_one_voxel():
    t = slab()
    c = truth_ceiling(t, VS, model_voxel_nm=(2.4,))
    # a 4-voxel slab moved by one voxel along its normal: 3 of 4 voxels overlap
    assert c["shift_x+1"]["dice"] == pytest.approx(0.75)
    assert c["shift_x+1"]["sd_median_nm"] == pytest.approx(VS)
    # along the sheet only the row shifted out of the volume is lost
    assert c["shift_y-1"]["dice"] == pytest.approx(2 * 39 / 79)
    assert c["shift_y-1"]["sd_median_nm"] == 0.0
    # one voxel thicker on both sides: 4 / 6
    assert c["dilate_1"]["dice"] == pytest.approx(2 * 4 / (4 + 6))
    assert c["erode_1"]["dice"] == pytest.approx(2 * 2 / (2 + 4))
    # a 6 nm membrane survives the 2.4 nm grid's round trip
    assert c["grid_2.4"]["dice"] > 0.9


def test_grid_round_trip_keeps_the_shape_and_loses_a_thin_membrane_on_a_coarse_grid():
    t = slab(thickness=2)  # 3 nm
    assert grid_round_trip(t, VS, 2.4).shape == t.shape
    assert not grid_round_trip(t, VS, 9.6).any()  # 3 nm of membrane in a 9.6 nm voxel


def test_oracle_ceiling_removes_far_pieces_and_scores_locally():
    t = slab()
    pred = np.roll(t, 1, axis=2)  # one voxel off
    pred[2:6, 2:6, 2:6] = True  # a far false piece (> 5 nm from the membrane)
    pred[:, 30:, :] = False  # half the membrane missed
    c = oracle_ceiling(pred, t, VS, far_nm=5.0)
    assert c["no_far"]["precision"] == pytest.approx(0.75)
    assert c["no_far_pieces"]["dice"] == pytest.approx(c["no_far"]["dice"])
    assert c["no_far"]["dice"] > c["as_is"]["dice"]
    # locally (near both): the one-voxel offset is left, and the missed rows next to the
    # found ones (within 5 nm of the prediction)
    assert c["no_far"]["dice"] < c["local"]["dice"] < 0.76
    # as thick as the truth; the truth near the prediction has 3 missed rows more (4.5 nm)
    assert c["thickness_ratio"] == pytest.approx(30 / 33)


def test_oracle_ceiling_other_thresholds_of_a_map():
    t = slab()
    m = np.zeros(t.shape, np.uint8)
    m[t] = 200
    m[:, :, 17] = 100  # one voxel outside, below 0.5
    c = oracle_ceiling(m, t, VS, thresholds=(0.3,))
    assert c["local"]["dice"] == pytest.approx(1.0)
    assert c["local_at"]["0.3"]["dice"] == pytest.approx(2 * 4 / 9)
    assert oracle_ceiling(m >= 128, t, VS, thresholds=(0.3,))["local_at"] == {}


def test_local_ceiling_is_undefined_when_nothing_was_predicted():
    """An empty prediction has no local score (not Dice 1.0 of two empty regions)."""
    t = np.zeros((8, 16, 16), bool)
    t[:, :, 8] = True
    c = oracle_ceiling(np.zeros_like(t), t, VS)
    assert c["local"] is None and c["as_is"]["dice"] == 0.0

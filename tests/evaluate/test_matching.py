from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import InputError
from synapseg.evaluate.matching import assign, match_vesicles, resolve_table
from synapseg.io.tables import CENTER_NM, CENTER_PX, make_table

VOXEL_NM = (1.5, 1.0, 1.0)  # the grid tables' voxel size (conftest.grid_table)


def test_perfect_prediction_matches_every_vesicle_to_itself(gt_table):
    m = match_vesicles(gt_table, gt_table.copy())
    assert m.tp == len(gt_table) and m.fp == 0 and m.fn == 0
    np.testing.assert_array_equal(m.gt_ids, m.pred_ids)
    np.testing.assert_allclose(m.distance_nm, 0.0)


def test_match_threshold_is_strict_fraction_of_gt_radius():
    gt = make_table([[10, 10, 10]], 20.0, 1.0)
    just_inside = make_table([[10, 10, 19.999]], 20.0, 1.0)
    exactly = make_table([[10, 10, 20]], 20.0, 1.0)  # distance 10 nm == 0.5 * 20
    assert match_vesicles(gt, just_inside).tp == 1
    assert match_vesicles(gt, exactly).tp == 0
    assert match_vesicles(gt, exactly, match_fraction=0.51).tp == 1


def test_hungarian_prefers_more_matches_over_greedy_nearest():
    # Ids are 1-based. Greedy nearest would pair gt1-pred1 (1.5 nm) and leave gt2 (radius 10,
    # accepts only pred1 at 2.5 nm) unmatched; the optimum pairs gt2-pred1 and gt1-pred2 (7 nm).
    gt = make_table([[0, 0, 0], [0, 0, 4]], [20.0, 10.0], 1.0)
    pred = make_table([[0, 0, 1.5], [0, 0, -7]], 20.0, 1.0)
    m = match_vesicles(gt, pred)
    assert m.tp == 2
    assert dict(zip(m.gt_ids.tolist(), m.pred_ids.tolist())) == {1: 2, 2: 1}


def test_each_prediction_matches_at_most_once(gt_table):
    dup = pd.concat([gt_table, gt_table], ignore_index=True)
    dup["id"] = np.arange(1, len(dup) + 1)
    m = match_vesicles(gt_table, dup)
    assert m.tp == len(gt_table) and m.fp == len(gt_table)
    assert len(set(m.pred_ids.tolist())) == m.tp


def test_empty_tables_do_not_crash(gt_table):
    empty = gt_table.iloc[:0]
    m = match_vesicles(gt_table, empty)
    assert (m.tp, m.fp, m.fn) == (0, 0, len(gt_table))
    m = match_vesicles(empty, gt_table)
    assert (m.tp, m.fp, m.fn) == (0, len(gt_table), 0)
    assert assign(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))[0].size == 0


def test_tables_on_different_grids_are_compared_in_nm(gt_table):
    # Prediction made on a 2x finer grid: px coordinates double, nm stay.
    fine = make_table(
        gt_table[CENTER_PX].to_numpy() * 2,
        gt_table["radius_nm"].to_numpy(),
        [v / 2 for v in VOXEL_NM],
    )
    m = match_vesicles(gt_table, fine)
    assert m.tp == len(gt_table)
    np.testing.assert_allclose(m.distance_nm, 0.0, atol=1e-9)


def test_pixel_only_table_needs_voxel_size(gt_table):
    px_only = gt_table.drop(columns=CENTER_NM)
    with pytest.raises(InputError, match="pixel centers only.*voxel size"):
        match_vesicles(gt_table, px_only, pred_name="pred.csv")
    m = match_vesicles(gt_table, px_only, pred_voxel_size_nm=VOXEL_NM)
    assert m.tp == len(gt_table)


def test_nm_only_against_px_only_is_reconciled_with_voxel_size(gt_table):
    nm_only = gt_table.drop(columns=CENTER_PX + ["radius_px"])
    px_only = gt_table.drop(columns=CENTER_NM + ["radius_nm", "outer_radius_nm"])
    m = match_vesicles(nm_only, px_only, pred_voxel_size_nm=VOXEL_NM)
    assert m.tp == len(gt_table)
    np.testing.assert_allclose(m.radius_error_nm, 0.0, atol=1e-9)


def test_contradicting_voxel_size_is_rejected(gt_table):
    with pytest.raises(InputError, match="imply a voxel size"):
        resolve_table(gt_table, 2.0, name="gt.csv")


def test_radii_in_different_units_are_rejected(gt_table):
    in_px = gt_table.copy()
    in_px["radius_nm"] = in_px["radius_nm"] * 10  # Å written as nm
    with pytest.raises(InputError, match="different units"):
        match_vesicles(gt_table, in_px)


def test_missing_columns_are_reported_with_the_file_name():
    bad = pd.DataFrame({"x": [1.0], "radius_nm": [20.0]})
    with pytest.raises(InputError, match="bad.csv: table has no center columns"):
        resolve_table(bad, name="bad.csv")


def test_outer_radius_only_gives_midline_radius(make_grid):
    t = make_grid(1).drop(columns=["radius_nm", "radius_px"])
    r = resolve_table(t, membrane_thickness_nm=4.0)
    np.testing.assert_allclose(r.radius_nm, t["outer_radius_nm"] - 2.0)


def test_assignment_equals_brute_force_on_crowded_random_scenes():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = rng.integers(1, 8, size=2)
        g, p = rng.uniform(0, 30, (n, 3)), rng.uniform(0, 30, (m, 3))
        r = rng.uniform(5, 20, n)
        gi, pi, d = assign(g, r, p, 0.5)
        dist = np.linalg.norm(g[:, None] - p[None], axis=2)
        cost = np.where(dist < 0.5 * r[:, None], dist, 1e6)
        rr, cc = linear_sum_assignment(cost)
        ok = cost[rr, cc] < 1e6
        assert len(gi) == ok.sum() == len(set(pi.tolist()))
        assert d.sum() == pytest.approx(cost[rr, cc][ok].sum())
        np.testing.assert_allclose(d, dist[gi, pi])

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import InputError
from synapseg.evaluate.matching import resolve_table
from synapseg.evaluate.metrics import (
    compute_metrics,
    f_beta,
    sweep_match_fraction,
    sweep_score,
    voxel_metrics,
)
from synapseg.io.tables import CENTER_PX, make_table

VOXEL_NM = (1.5, 1.0, 1.0)


def _shifted(table, shift_px, radius_bias_nm=0.0):
    return make_table(
        table[CENTER_PX].to_numpy() + np.asarray(shift_px),
        table["radius_nm"].to_numpy() + radius_bias_nm,
        VOXEL_NM,
        score=table["score"].to_numpy(),
        ids=table["id"].to_numpy(),
    )


def test_perfect_prediction_gives_f1_one_and_zero_errors(gt_table):
    m = compute_metrics(gt_table, gt_table.copy())
    assert m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["f_beta"] == {"1": 1.0, "4": 1.0}
    assert (m["tp"], m["fp"], m["fn"]) == (27, 0, 0)
    assert m["center_error_nm"]["median"] == 0 and m["center_error_nm"]["p90"] == 0
    assert m["radius_error_nm"] == {"median_signed": 0.0, "median_abs": 0.0, "mean_signed": 0.0}
    assert m["false_positive_ids"] == [] and m["false_negative_ids"] == []
    json.dumps(m)  # JSON-serialisable


def test_jitter_by_known_amount_gives_that_center_error(gt_table):
    # 2 px along z (1.5 nm/px) + 4 px along x (1 nm/px): |(3, 0, 4)| = 5 nm for every vesicle.
    m = compute_metrics(gt_table, _shifted(gt_table, [2, 0, 4]))
    assert m["tp"] == 27
    for key in ("median", "mean", "p90", "max"):
        assert m["center_error_nm"][key] == pytest.approx(5.0)
    assert m["center_error_axis_nm"] == pytest.approx({"z": 3.0, "y": 0.0, "x": 4.0})


def test_jitter_beyond_match_fraction_unmatches(gt_table):
    # 11 nm > 0.5 * (20..24 nm): radius-20/21 vesicles lose their match, 22..24 keep it.
    m = compute_metrics(gt_table, _shifted(gt_table, [0, 11, 0]))
    n_large = int((gt_table["radius_nm"] > 22).sum())  # 11 < 0.5 * r  <=>  r > 22
    assert m["tp"] == n_large and m["fn"] == 27 - n_large and m["fp"] == 27 - n_large


def test_deletions_and_insertions_give_exact_counts(gt_table):
    pred = gt_table.iloc[3:].copy()  # delete ids 1, 2, 3
    extra = make_table([[500, 500, 500], [600, 10, 10]], 20.0, VOXEL_NM, ids=np.array([101, 102]))
    pred = pd.concat([pred, extra], ignore_index=True)
    m = compute_metrics(gt_table, pred)
    assert (m["n_gt"], m["n_pred"], m["tp"], m["fp"], m["fn"]) == (27, 26, 24, 2, 3)
    assert m["precision"] == pytest.approx(24 / 26)
    assert m["recall"] == pytest.approx(24 / 27)
    assert m["f1"] == pytest.approx(2 * 24 / (2 * 24 + 3 + 2))
    assert m["f_beta"]["4"] == pytest.approx(17 * 24 / (17 * 24 + 16 * 3 + 2))
    assert m["false_negative_ids"] == [1, 2, 3]
    assert m["false_positive_ids"] == [101, 102]


def test_radius_bias_is_reported_signed_and_absolute(gt_table):
    m = compute_metrics(gt_table, _shifted(gt_table, [0, 0, 0], radius_bias_nm=-1.5))
    assert m["tp"] == 27
    assert m["radius_error_nm"]["median_signed"] == pytest.approx(-1.5)
    assert m["radius_error_nm"]["median_abs"] == pytest.approx(1.5)
    assert m["center_error_nm"]["max"] == 0


def test_empty_prediction_gives_recall_zero(gt_table):
    m = compute_metrics(gt_table, gt_table.iloc[:0])
    assert m["recall"] == 0.0 and m["precision"] == 0.0 and m["f1"] == 0.0
    assert m["center_error_nm"]["median"] is None
    assert m["false_negative_ids"] == list(range(1, 28))
    json.dumps(m)


def test_both_empty_is_perfect(gt_table):
    m = compute_metrics(gt_table.iloc[:0], gt_table.iloc[:0])
    assert m["precision"] == m["recall"] == m["f1"] == 1.0


def test_f_beta_formula():
    assert f_beta(8, 2, 4, 1) == pytest.approx(2 * 8 / (2 * 8 + 4 + 2))
    assert f_beta(8, 2, 4, 4) == pytest.approx(17 * 8 / (17 * 8 + 16 * 4 + 2))
    assert f_beta(0, 0, 0, 4) == 1.0


def test_radius_bins_split_recall_by_true_radius(gt_table):
    pred = gt_table[gt_table["radius_nm"] < 22].copy()  # miss every vesicle with r >= 22
    m = compute_metrics(gt_table, pred, radius_bins_nm=(0, 22, 100))
    small, large = m["per_radius_bin"]
    assert small["recall"] == 1.0 and small["n_gt"] == len(pred)
    assert large["recall"] == 0.0 and large["n_gt"] == 27 - len(pred)
    assert large["n_pred"] == 0 and large["precision"] is None
    assert small["label"] == "0–22"


def test_z_slabs_show_where_vesicles_are_missed(gt_table):
    # Grid z centers at 40, 100, 160 px → 60, 150, 240 nm. Drop the deepest layer.
    pred = gt_table[gt_table["center_z_px"] < 150].copy()
    m = compute_metrics(gt_table, pred, z_slabs=3)
    assert [s["recall"] for s in m["per_z_slab"]] == [1.0, 1.0, 0.0]
    assert m["per_z_slab"][0]["z_nm"] == pytest.approx([60.0, 120.0])
    assert sum(s["n_gt"] for s in m["per_z_slab"]) == 27


def test_voxel_dice_and_matched_iou():
    gt = np.zeros((4, 10, 10), np.uint16)
    pred = np.zeros_like(gt)
    gt[:, :, :4] = 1  # 160 voxels
    pred[:, :, 2:6] = 7  # 160 voxels, overlap 80
    gt[:, :, 8:] = 2
    v = voxel_metrics(gt, pred, np.array([1, 2]), np.array([7, 9]))
    assert v["dice"] == pytest.approx(2 * 80 / (240 + 160))
    assert v["matched_iou"] == pytest.approx([80 / 240, 0.0])
    assert v["mean_matched_iou"] == pytest.approx(40 / 240)
    assert v["voxels"] == {"gt": 240, "pred": 160, "intersection": 80}
    with pytest.raises(InputError, match="different shapes"):
        voxel_metrics(gt, pred[:2], np.array([1]), np.array([7]))


def test_compute_metrics_with_labels_reports_iou_per_match():
    t = make_table([[5, 5, 5]], 3.0, 1.0)
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[3:8, 3:8, 3:8] = 1
    m = compute_metrics(t, t.copy(), gt_labels=labels, pred_labels=labels.copy())
    assert m["voxel"]["dice"] == 1.0 and m["voxel"]["mean_matched_iou"] == 1.0
    assert m["matches"][0]["iou"] == 1.0
    with pytest.raises(InputError, match="only one label volume"):
        compute_metrics(t, t, gt_labels=labels)


def test_sweeps(gt_table):
    gt = resolve_table(gt_table)
    pred = resolve_table(_shifted(gt_table, [0, 8, 0]))  # 8 nm off
    s = sweep_match_fraction(gt, pred, [0.1, 0.5])
    assert s["recall"] == [0.0, 1.0]
    ps = sweep_score(gt, resolve_table(gt_table), n_thresholds=5)
    assert ps["precision"] == [1.0] * len(ps["threshold"])
    assert ps["recall"][0] == 1.0 and ps["recall"][-1] == pytest.approx(1 / 27)


def test_voxel_metrics_counted_slab_by_slab_equal_one_pass(monkeypatch):
    import synapseg.evaluate.voxels as metrics_module

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (9, 6, 5)).astype(np.uint16)
    pred = rng.integers(0, 4, (9, 6, 5)).astype(np.uint16)
    one = voxel_metrics(gt, pred, np.array([1, 2, 3]), np.array([2, 1, 3]))
    monkeypatch.setattr(metrics_module, "_SLAB_VOXELS", 30)  # one z section per slab
    slabs = voxel_metrics(gt, pred, np.array([1, 2, 3]), np.array([2, 1, 3]))
    assert slabs == one
    inter = ((gt == 1) & (pred == 2)).sum()
    assert one["matched_iou"][0] == pytest.approx(inter / ((gt == 1) | (pred == 2)).sum())
    empty = voxel_metrics(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3), np.uint8), [], [])
    assert empty["dice"] == 1.0 and empty["mean_matched_iou"] is None


def test_expected_calibration_error_and_bins():
    from synapseg.evaluate.metrics import expected_calibration_error, reliability_bins

    conf = np.array([0.05, 0.15, 0.95, 0.95, 1.0, np.nan])
    correct = np.array([0, 1, 1, 1, 0, 1])
    bins = reliability_bins(conf, correct, 10)
    assert [b["n"] for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]  # 1.0 in the last bin
    assert bins[2]["accuracy"] is None and bins[9]["accuracy"] == pytest.approx(2 / 3)
    expected = (0.05 + 0.85 + 3 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3)) / 5
    assert expected_calibration_error(conf, correct) == pytest.approx(expected)
    # calibrated by construction: in each bin the fraction correct equals the confidence
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, 20000)
    assert expected_calibration_error(c, rng.uniform(0, 1, c.size) < c) < 0.02
    assert expected_calibration_error(np.full(3, np.nan), np.ones(3)) is None


def test_compute_metrics_reports_calibration_of_a_confidence_column(gt_table):
    pred = gt_table.copy()
    pred["confidence"] = 0.8
    m = compute_metrics(gt_table, pred)
    assert m["calibration"]["ece"] == pytest.approx(0.2)  # all matched at confidence 0.8
    assert "calibration" not in compute_metrics(gt_table, gt_table.copy())

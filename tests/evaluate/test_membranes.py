"""Membrane scores: Dice and symmetric surface distance in nm; the evaluate CLI options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synapseg.errors import InputError
from synapseg.evaluate.membranes import (
    find_membrane_inputs,
    membrane_mask,
    score_membranes,
    surface,
    surface_distances_nm,
)
from synapseg.io.volume_writer import write_volume


def _slab(shape, x0, width, cls=1):
    labels = np.zeros(shape, np.uint8)
    labels[:, :, x0 : x0 + width] = cls
    return labels


def test_perfect_prediction_scores_one_and_zero_distance():
    truth = _slab((8, 20, 30), 10, 4)
    out = score_membranes(truth != 0, truth, 1.5)
    assert out["dice"] == 1.0
    assert out["surface_distance_nm"]["median"] == 0.0
    assert out["surface_distance_nm"]["p95"] == 0.0


def test_shifted_slab_distances_follow_the_voxel_size_along_the_shift():
    truth = _slab((8, 20, 30), 10, 4)
    pred = np.roll(truth != 0, 1, axis=2)  # one voxel along x
    vs = (3.0, 2.0, 1.25)  # anisotropic: only x counts for a shift along x
    out = score_membranes(pred, truth, vs)
    inter = ((truth != 0) & pred).sum()
    assert out["dice"] == pytest.approx(2 * inter / ((truth != 0).sum() + pred.sum()))
    d_pt, d_tp = surface_distances_nm(pred, truth != 0, vs)
    assert set(np.round(np.concatenate([d_pt, d_tp]), 6)) <= {0.0, 1.25}
    assert out["surface_distance_nm"]["p95"] == pytest.approx(1.25)


def test_vesicle_membranes_are_not_membranes_to_find():
    truth = _slab((8, 20, 30), 10, 4, cls=1)
    truth[:, :, 20:23] = 2  # a vesicle membrane: not part of the truth
    truth[:, :, 25:27] = 3  # another membrane: part of it
    pred = (truth == 1) | (truth == 3)
    assert score_membranes(pred, truth, 1.0)["dice"] == 1.0
    assert score_membranes(truth != 0, truth, 1.0)["dice"] < 1.0


def test_uint8_maps_are_thresholded_at_half():
    prob = np.array([0, 127, 128, 255], np.uint8)
    assert membrane_mask(prob).tolist() == [False, False, True, True]
    assert membrane_mask(prob.astype(np.float32) / 255).tolist() == [False, False, True, True]


def test_surface_ignores_the_volume_faces():
    mask = np.ones((4, 5, 6), bool)
    assert not surface(mask).any()
    mask[:, :, 3:] = False
    assert surface(mask)[:, :, 2].all() and surface(mask).sum() == 4 * 5


def test_empty_prediction_has_no_surface_distance():
    truth = _slab((8, 20, 30), 10, 4)
    out = score_membranes(np.zeros(truth.shape, bool), truth, 1.0)
    assert out["dice"] == 0.0 and out["surface_distance_nm"]["median"] is None
    assert out["recall"] == 0.0 and out["precision"] is None


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="shape"):
        score_membranes(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 5), np.uint8), 1.0)


def test_inputs_are_found_beside_the_vesicle_files(tmp_path):
    gt_dir, out = tmp_path / "sim_000", tmp_path / "out"
    gt_dir.mkdir()
    out.mkdir()
    (gt_dir / "vesicles.csv").write_text("x\n")
    (out / "tomo_vesicles.csv").write_text("x\n")
    assert find_membrane_inputs(gt_dir / "vesicles.csv", out / "tomo_vesicles.csv") is None
    write_volume(gt_dir / "membrane_labels.mrc", _slab((4, 8, 8), 2, 2), 1.0)
    write_volume(out / "tomo_membrane_probabilities.mrc", np.zeros((4, 8, 8), np.uint8), 1.0)
    found = find_membrane_inputs(gt_dir / "vesicles.csv", out / "tomo_vesicles.csv")
    assert found == (gt_dir / "membrane_labels.mrc", out / "tomo_membrane_probabilities.mrc")
    with pytest.raises(InputError, match="not found"):
        find_membrane_inputs(gt_dir / "vesicles.csv", out / "x.csv", prediction=out / "no.mrc")


def test_evaluate_cli_scores_membranes(tmp_path):
    from synapseg.cli import app
    from synapseg.io.tables import make_table, write_table_csv

    vs = 1.5
    table = make_table(np.array([[4.0, 10.0, 10.0]]), np.array([12.0]), (vs, vs, vs))
    write_table_csv(tmp_path / "gt.csv", table)
    write_table_csv(tmp_path / "pred.csv", table)
    truth = _slab((8, 20, 30), 10, 4)
    prob = np.roll(truth != 0, 1, axis=2).astype(np.uint8) * 255
    write_volume(tmp_path / "truth.mrc", truth, vs)
    write_volume(tmp_path / "prob.mrc", prob, vs)
    args = ["evaluate", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")]
    args += ["-o", str(tmp_path / "rep"), "--membranes-truth", str(tmp_path / "truth.mrc")]
    args += ["--membranes-pred", str(tmp_path / "prob.mrc")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    expected = score_membranes(prob, truth, vs)
    assert metrics["membranes"]["dice"] == pytest.approx(expected["dice"])
    assert metrics["membranes"]["surface_distance_nm"]["p95"] == pytest.approx(vs)
    assert "membranes (prob.mrc): Dice" in result.output


def test_evaluate_cli_refuses_membrane_files_in_batch_mode(tmp_path):
    from synapseg.cli import app

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    args = ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    args += ["-o", str(tmp_path / "rep"), "--membranes-truth", str(tmp_path / "t.mrc")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "batch mode" in result.output


def test_the_segmentation_beside_the_map_is_scored_and_the_raw_map_kept(tmp_path):
    from synapseg.evaluate.membranes import membrane_metrics, membrane_summary

    gt_dir, out = tmp_path / "sim_000", tmp_path / "out"
    gt_dir.mkdir()
    out.mkdir()
    truth = _slab((6, 12, 16), 6, 3)
    write_volume(gt_dir / "membrane_labels.mrc", truth, 1.0)
    prob = np.where(truth != 0, 255, 0).astype(np.uint8)
    prob[:, :2, :2] = 200  # a false blob in the raw map
    write_volume(out / "tomo_membrane_probabilities.mrc", prob, 1.0)
    raw = membrane_metrics(gt_dir / "vesicles.csv", out / "tomo_vesicles.csv")
    assert raw["scored"].startswith("probabilities") and raw["dice"] < 1.0
    assert "raw_map" not in raw
    classes = np.where(truth != 0, 1, 0).astype(np.uint8)  # presynaptic class, no blob
    classes[:, 10, 0:3] = 2  # a vesicle shell: not a membrane to find
    write_volume(out / "tomo_membranes.mrc", classes, 1.0)
    got = membrane_metrics(gt_dir / "vesicles.csv", out / "tomo_vesicles.csv")
    assert got["scored"] == "segmentation" and got["dice"] == 1.0
    assert got["raw_map"]["dice"] == pytest.approx(raw["dice"])
    assert "raw map at 0.5: Dice" in membrane_summary(got)

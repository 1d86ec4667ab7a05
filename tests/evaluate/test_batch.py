from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.errors import InputError
from synapseg.evaluate.batch import (
    load_vesicles,
    pair_folders,
    pool_matches,
    pooled_metrics,
)
from synapseg.evaluate.matching import match_vesicles
from synapseg.evaluate.metrics import metrics_from_match, sweep_match_fraction, voxel_metrics
from synapseg.io.tables import CENTER_NM, make_table, write_table_csv
from synapseg.io.volume_writer import write_volume
from synapseg.post.render import render_labels


def _touch_table(path, n=2):
    table = make_table(np.arange(n * 3).reshape(n, 3) * 30.0 + 20, 18.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table_csv(path, table)
    return table


def test_pairs_simulate_layout_with_segment_outputs(tmp_path):
    for stem in ("syn_a", "syn_b", "syn_c"):
        _touch_table(tmp_path / "gt" / stem / "vesicles.csv")
        (tmp_path / "gt" / stem / "tomogram.mrc").write_bytes(b"")
    _touch_table(tmp_path / "pred" / "syn_a_vesicles.csv")
    _touch_table(tmp_path / "pred" / "syn_b" / "tomogram_vesicles.csv")  # per-tomogram folder
    _touch_table(tmp_path / "pred" / "other_vesicles.csv")
    pairing = pair_folders(tmp_path / "gt", tmp_path / "pred")
    got = {
        p.stem: (p.gt.relative_to(tmp_path).as_posix(), p.pred.name, p.tomogram.name)
        for p in pairing.pairs
    }
    assert got == {
        "syn_a": ("gt/syn_a/vesicles.csv", "syn_a_vesicles.csv", "tomogram.mrc"),
        "syn_b": ("gt/syn_b/vesicles.csv", "tomogram_vesicles.csv", "tomogram.mrc"),
    }
    assert pairing.pred_without_gt == ["other"]
    assert pairing.gt_without_pred == ["syn_c"]


def test_pairs_stem_prefixed_csv_files_to_the_longest_stem(tmp_path):
    _touch_table(tmp_path / "gt" / "a_gt.csv")
    _touch_table(tmp_path / "gt" / "a_b_gt.csv")  # fits "a" and "a_b": belongs to "a_b"
    _touch_table(tmp_path / "pred" / "a_vesicles.csv")
    _touch_table(tmp_path / "pred" / "a_b_vesicles.csv")
    pairing = pair_folders(tmp_path / "gt", tmp_path / "pred")
    assert {p.stem: p.gt.name for p in pairing.pairs} == {"a": "a_gt.csv", "a_b": "a_b_gt.csv"}


def test_ambiguous_ground_truth_is_refused(tmp_path):
    _touch_table(tmp_path / "gt" / "t1_manual.csv")
    _touch_table(tmp_path / "gt" / "t1_auto.csv")
    _touch_table(tmp_path / "pred" / "t1_vesicles.csv")
    with pytest.raises(InputError, match="'t1' has 2 ground-truth candidates"):
        pair_folders(tmp_path / "gt", tmp_path / "pred")


def test_no_common_stem_and_empty_folders_are_clear_errors(tmp_path):
    _touch_table(tmp_path / "gt" / "x_gt.csv")
    _touch_table(tmp_path / "pred" / "y_vesicles.csv")
    with pytest.raises(InputError, match="no prediction matches a ground-truth stem"):
        pair_folders(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no predictions"):
        pair_folders(tmp_path / "gt", tmp_path / "empty")


def test_pooled_metrics_sum_counts_over_tomograms():
    gt1 = make_table([[0, 0, 0], [0, 0, 100]], 20.0, 1.0)
    gt2 = make_table([[0, 0, 0]], 20.0, 1.0)
    m1 = match_vesicles(gt1, gt1.iloc[:1])  # tp 1, fn 1
    m2 = match_vesicles(gt2, make_table([[0, 0, 1], [50, 50, 50]], 20.0, 1.0))  # tp 1, fp 1
    pooled = pool_matches([m1, m2])
    assert (pooled.tp, pooled.fp, pooled.fn) == (2, 1, 1)
    per = {"a": metrics_from_match(m1), "b": metrics_from_match(m2)}
    lab = np.zeros((2, 4, 4), np.uint8)
    lab[0] = 1
    lab2 = np.zeros_like(lab)
    lab2[:, :2] = 1
    v1 = voxel_metrics(lab, lab, np.array([1]), np.array([1]))  # 16 / 16 / 16
    v2 = voxel_metrics(lab, lab2, np.array([1]), np.array([1]))  # 16 / 16 / 8
    per["a"]["voxel"], per["b"]["voxel"] = v1, v2
    out = pooled_metrics([m1, m2], per)
    assert out["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert out["center_error_nm"]["max"] == pytest.approx(1.0)
    assert out["macro_f1"] == pytest.approx((per["a"]["f1"] + per["b"]["f1"]) / 2)
    assert set(out["tomograms"]) == {"a", "b"} and "false_positive_ids" not in out
    assert out["voxel"]["dice"] == pytest.approx(2 * 24 / 64)
    assert out["voxel"]["mean_matched_iou"] == pytest.approx((1 + 8 / 24) / 2)
    # re-matching the pooled tables (the report's curves) never pairs across tomograms
    sweep = sweep_match_fraction(pooled.gt, pooled.pred, [0.5, 10.0])
    assert sweep["recall"] == [2 / 3, 2 / 3]


def test_load_label_volume_and_px_only_table(tmp_path):
    table = make_table([[20, 30, 30], [20, 30, 80]], 17.0, 1.5)
    labels = render_labels(table, (40, 60, 110), 1.5)
    write_volume(tmp_path / "labels.mrc", labels, (1.5, 1.5, 1.5))
    loaded = load_vesicles(tmp_path / "labels.mrc")
    assert loaded.labels is not None and loaded.voxel_size_nm == pytest.approx((1.5,) * 3, rel=1e-5)
    np.testing.assert_allclose(loaded.table.centers_nm, table[CENTER_NM], atol=0.1)
    # with ids, other segments become background (they must not count in the voxel Dice)
    only_2 = load_vesicles(tmp_path / "labels.mrc", ids=[2])
    assert set(np.unique(only_2.labels).tolist()) == {0, 2}
    assert only_2.table.ids.tolist() == [2]
    px_only = table.drop(columns=CENTER_NM)
    px_only.to_csv(tmp_path / "px.csv", index=False)
    with pytest.raises(InputError, match="px.csv: the table has pixel centers only"):
        load_vesicles(tmp_path / "px.csv")
    fallback = load_vesicles(tmp_path / "px.csv", default_voxel_size_nm=1.5)
    np.testing.assert_allclose(fallback.table.centers_nm, table[CENTER_NM])
    with pytest.raises(InputError, match="ids select labels"):
        load_vesicles(tmp_path / "px.csv", ids=[1])


@pytest.mark.parametrize("suffix", [".json", ".star", ".mod"])
def test_other_table_formats_load_to_the_same_vesicles(tmp_path, suffix):
    from synapseg.io.imod import write_imod_spheres
    from synapseg.io.star import write_table_star
    from synapseg.io.tables import write_table_json

    table = make_table([[20, 30, 30], [22, 30, 80]], [17.0, 19.0], 1.5)
    path = tmp_path / f"t{suffix}"
    if suffix == ".json":
        write_table_json(path, table, provenance={"voxel_size_nm": [1.5] * 3})
    elif suffix == ".star":
        write_table_star(path, table, tomogram_name="t", voxel_size_nm=1.5, shape=(40, 60, 110))
    else:
        write_imod_spheres(path, table, voxel_size_nm=1.5, shape=(40, 60, 110))
    loaded = load_vesicles(path, voxel_size_nm=1.5, shape=(40, 60, 110))
    np.testing.assert_allclose(loaded.table.centers_nm, table[CENTER_NM], atol=0.02)
    np.testing.assert_allclose(loaded.table.radius_nm, table["radius_nm"], atol=0.02)


def test_prediction_named_after_its_tomogram_pairs_by_its_source(tmp_path):
    """`segment sim/sim_000/tomogram.mrc -o pred` writes pred/tomogram_vesicles.csv: its
    provenance names the simulate folder it came from, so it pairs with gt/sim_000."""
    for stem in ("sim_000", "sim_001"):
        _touch_table(tmp_path / "gt" / stem / "vesicles.csv")
        (tmp_path / "gt" / stem / "tomogram.mrc").write_bytes(b"")
    source = tmp_path / "gt" / "sim_001" / "tomogram.mrc"
    _touch_table(tmp_path / "pred" / "tomogram_vesicles.csv")
    sidecar = tmp_path / "pred" / "tomogram_vesicles.provenance.json"
    sidecar.write_text(json.dumps({"tomogram": str(source)}))
    pairing = pair_folders(tmp_path / "gt", tmp_path / "pred")
    assert [(p.stem, p.pred.name) for p in pairing.pairs] == [("sim_001", "tomogram_vesicles.csv")]
    assert pairing.pred_without_gt == [] and pairing.gt_without_pred == ["sim_000"]


def test_simulate_segment_evaluate_pair_up_through_the_cli(tmp_path):
    """The first-hour loop: simulate 2 tomograms, segment the folder, evaluate the pair
    (a single tomogram segmented on its own is covered by the provenance test above)."""
    run = CliRunner().invoke
    sim, out = tmp_path / "sim", tmp_path / "out"
    args = ["simulate", str(sim), "-n", "2", "--shape", "32", "96", "96", "--seed", "3"]
    assert run(app, args).exit_code == 0
    result = run(app, ["segment", str(sim), "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = run(app, ["evaluate", "--gt", str(sim), "--pred", str(out), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert sorted(metrics["tomograms"]) == ["sim_000", "sim_001"]

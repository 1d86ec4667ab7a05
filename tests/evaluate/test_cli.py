from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.io.tables import CENTER_NM, CENTER_PX, make_table, write_table_csv
from synapseg.io.volume_writer import write_volume
from synapseg.post.render import render_labels

runner = CliRunner()
VS = (1.5, 1.5, 1.5)


def _tables(seed=0, n=6):
    rng = np.random.default_rng(seed)
    centers = np.array([[12, 15 + 28 * (i % 3), 15 + 28 * (i // 3)] for i in range(n)], float)
    gt = make_table(centers, rng.uniform(15, 18, n), VS)
    pred = make_table(centers[1:] + 0.4, gt["radius_nm"].to_numpy()[1:] - 0.5, VS)
    return gt, pred  # id 1 missed; ids shift by one in the prediction


def _evaluate_ok(args: list[str], out: Path) -> dict:
    """Run ``synapseg evaluate <args> -o out``, check it succeeds, return its metrics.json."""
    result = runner.invoke(app, ["evaluate", *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_one_tomogram_writes_metrics_and_report(tmp_path):
    gt, pred = _tables()
    write_table_csv(tmp_path / "gt.csv", gt)
    write_table_csv(tmp_path / "pred.csv", pred)
    tomo = np.random.default_rng(1).normal(size=(24, 90, 70)).astype(np.float32)
    write_volume(tmp_path / "tomo.mrc", tomo, VS)
    args = ["evaluate", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")]
    args += ["--tomogram", str(tmp_path / "tomo.mrc"), "-o", str(tmp_path / "rep")]
    for name, table in (("gt", gt), ("pred", pred)):
        write_volume(tmp_path / f"{name}.mrc", render_labels(table, (24, 90, 70), VS), VS)
        args += [f"--{name}-labels", str(tmp_path / f"{name}.mrc")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "F1" in result.stdout and "0.909" in result.stdout  # 5 TP, 0 FP, 1 FN
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (5, 0, 1)
    assert metrics["false_negative_ids"] == [1]
    assert metrics["radius_error_nm"]["median_signed"] == np.float64(-0.5).item()
    assert metrics["per_z_slab"][-1]["z_nm"][1] == 24 * 1.5  # slabs span the tomogram
    assert 0.5 < metrics["voxel"]["dice"] < 0.95 and len(metrics["voxel"]["matched_iou"]) == 5
    assert (tmp_path / "rep" / "report.html").stat().st_size > 50_000
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists" in again.output and "--overwrite" in again.output


def test_px_only_prediction_against_nm_only_truth(tmp_path):
    gt, pred = _tables()
    gt.drop(columns=CENTER_PX).to_csv(tmp_path / "gt.csv", index=False)
    pred.drop(columns=CENTER_NM + ["radius_nm", "outer_radius_nm"]).to_csv(
        tmp_path / "pred.csv", index=False
    )
    base = ["evaluate", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")]
    bad = runner.invoke(app, base + ["-o", str(tmp_path / "r1")])
    assert bad.exit_code == 2
    assert "pred.csv: the table has pixel centers only" in bad.output
    assert not (tmp_path / "r1").exists()


def test_evaluate_label_ground_truth_with_ids(tmp_path):
    gt, pred = _tables()
    labels = render_labels(gt, (24, 90, 70), VS).astype(np.int16)
    labels[0, 0, :3] = 9  # a non-vesicle segment (e.g. a membrane), excluded by --gt-ids
    write_volume(tmp_path / "gt_labels.mrc", labels, VS)
    write_table_csv(tmp_path / "pred.csv", pred)
    write_volume(tmp_path / "pred_labels.mrc", render_labels(pred, (24, 90, 70), VS), VS)
    metrics = _evaluate_ok(
        ["--gt", str(tmp_path / "gt_labels.mrc"), "--gt-ids", "1,2,3,4,5,6"]
        + ["--pred", str(tmp_path / "pred.csv")]
        + ["--pred-labels", str(tmp_path / "pred_labels.mrc")],
        out=tmp_path / "rep2",
    )
    assert (metrics["n_gt"], metrics["tp"]) == (6, 5)
    assert 0.8 < metrics["voxel"]["mean_matched_iou"] < 1.0
    assert metrics["center_error_nm"]["median"] < 1.2  # 0.4 px * 1.5 nm * sqrt(3) ≈ 1.04


def test_evaluate_many_tomograms_per_tomogram_and_pooled(tmp_path):
    for k, stem in enumerate(("syn_0", "syn_1")):
        gt, pred = _tables(seed=k)
        write_table_csv(tmp_path / "sim" / stem / "vesicles.csv", gt)
        write_table_csv(tmp_path / "seg" / f"{stem}_vesicles.csv", pred if k == 0 else gt)
    # simulate's and segment's label volumes → voxel metrics for syn_1
    labels = render_labels(gt, (24, 90, 70), VS)
    write_volume(tmp_path / "sim" / "syn_1" / "vesicle_labels.mrc", labels, VS)
    write_volume(tmp_path / "seg" / "syn_1_vesicles.mrc", labels, VS)
    out = tmp_path / "rep"
    args = ["evaluate", "--gt", str(tmp_path / "sim"), "--pred", str(tmp_path / "seg")]
    result = runner.invoke(app, args + ["-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "syn_0" in result.stdout and "pooled" in result.stdout
    pooled = json.loads((out / "metrics.json").read_text())
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (11, 0, 1)
    assert pooled["tomograms"]["syn_1"]["f1"] == 1.0
    assert pooled["tomograms"]["syn_1"]["voxel"]["dice"] == 1.0
    assert "voxel" not in pooled["tomograms"]["syn_0"] and "voxel" not in pooled
    assert pooled["macro_f1"] == np.mean([2 * 5 / 11, 1.0]).item()
    assert (out / "syn_0" / "report.html").is_file() and (out / "syn_1" / "slices.png").is_file()
    html = (out / "report.html").read_text()
    assert "href='syn_0/report.html'" in html
    mixed = runner.invoke(
        app,
        [
            "evaluate",
            "--gt",
            str(tmp_path / "sim"),
            "--pred",
            str(tmp_path / "seg" / "syn_0_vesicles.csv"),
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert mixed.exit_code == 2 and "one of --gt/--pred is a folder" in mixed.output


PYTO = Path(__file__).resolve().parents[2].parent / "shared/reference/pyto-presynaptic-example"


@pytest.mark.reference("pyto-presynaptic-example")
def test_real_pyto_table_against_its_own_labels(tmp_path):
    # Pyto's vesicle table (centers x y z px, radius mean px) as a prediction, its labels
    # file as ground truth, vesicle ids read from its parameter script.
    rows = [
        [float(t) for t in line.split()]
        for line in (PYTO / "vesicles_tomo_vesicles.dat").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    vs = 1.684
    ids = np.array([int(r[0]) for r in rows])
    centers_px = np.array([[r[-5], r[-6], r[-7]] for r in rows])  # z y x
    outer_nm = np.array([r[-4] for r in rows]) * vs
    table = make_table(centers_px, outer_nm - 2.25, vs, outer_radius_nm=outer_nm, ids=ids)
    write_table_csv(tmp_path / "pyto.csv", table)
    m = _evaluate_ok(
        ["--gt", str(PYTO / "viz_labels.mrc"), "--gt-ids", str(PYTO / "common_tomo_info.py")]
        + ["--radius-convention", "pyto", "--pred", str(tmp_path / "pyto.csv")],
        out=tmp_path / "rep",
    )
    assert (m["n_gt"], m["tp"], m["fp"]) == (9, 9, 0)
    assert m["center_error_nm"]["max"] < 1e-3  # CSV keeps 4 decimals
    assert abs(m["radius_error_nm"]["median_signed"]) < 0.06 * vs  # .dat rounds to 0.1 px
    assert all(a["gt_id"] == a["pred_id"] for a in m["matches"])

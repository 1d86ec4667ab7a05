"""``synapseg export`` outputs that agree (issue 13 items 4 and 9, issue 16 "fix the CLI loop").

Each test failed before its fix: an edited ``radius_nm`` left ``outer_radius_nm`` and the
labels behind; bad rows were exported with a wrong count (or a traceback for a non-numeric
cell); hand-placed points got wrong radii, unrefined centers, score 1.0, lost ids and QC
columns; the STAR file labelled binned pixels as unbinned ``rlnCoordinate``.
"""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.io.volume_writer import write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

SHAPE = (48, 128, 128)
VS = 1.68
PX = ["center_z_px", "center_y_px", "center_x_px"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A simulated tomogram (seed 11) and its ground truth as a 'segment' CSV."""
    root = tmp_path_factory.mktemp("export")
    sim = simulate_tomogram(SimulationParams(shape=SHAPE, voxel_size_nm=VS, seed=11, n_vesicles=10))
    tomo = write_volume(root / "tomo.mrc", sim.tomogram, VS)
    gt = sim.vesicles.copy()
    gt["id"] = gt["id"] * 3 + 4  # gapped ids, as after deleting rows
    gt["score"] = np.linspace(0.6, 0.9, len(gt))
    gt["membrane_contrast"] = np.linspace(0.3, 0.5, len(gt))
    gt["source"] = "auto"
    inside = np.all(
        (gt[PX].to_numpy() * VS - gt["outer_radius_nm"].to_numpy()[:, None] > 2)
        & (
            gt[PX].to_numpy() * VS + gt["outer_radius_nm"].to_numpy()[:, None]
            < np.array(SHAPE) * VS - 2
        ),
        axis=1,
    )
    return {"root": root, "tomo": tomo, "gt": gt, "inside": np.flatnonzero(inside)}


def _export(case, table: pd.DataFrame, name: str, *extra: str):
    src = case["root"] / f"{name}.csv"
    table.to_csv(src, index=False)
    out = case["root"] / name
    res = CliRunner().invoke(
        app, ["export", str(src), "-t", str(case["tomo"]), "-o", str(out), *extra]
    )
    return res, out


def _labels(out):
    with mrcfile.open(out / "tomo_vesicles.mrc", permissive=True) as m:
        return np.asarray(m.data)


def test_edited_radius_moves_outer_radius_and_labels(case):
    t = case["gt"].copy()
    k = case["inside"][0]
    vid = int(t["id"].iloc[k])
    t.loc[t.index[k], "radius_nm"] = t["radius_nm"].iloc[k] - 4.0  # radius_px/outer now stale
    res, out = _export(case, t, "radius")
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(out / "tomo_vesicles.csv")
    row = csv[csv["id"] == vid].iloc[0]
    assert row["outer_radius_nm"] == pytest.approx(row["radius_nm"] + 2.25, abs=1e-3)
    assert row["radius_nm"] == pytest.approx(t["radius_nm"].iloc[k], abs=1e-3)
    assert row["radius_px"] == pytest.approx(row["radius_nm"] / VS, abs=1e-3)
    # the label ball shrank with it: its extent along x is the new outer diameter
    lab = _labels(out)
    zz, yy, xx = np.nonzero(lab == vid)
    extent_nm = (xx.max() - xx.min() + 1) * VS
    assert abs(extent_nm - 2 * row["outer_radius_nm"]) < 2 * VS
    # the STAR radius agrees too
    star = starfile.read(out / "tomo_vesicles.star")
    srow = star[star["synapsegVesicleId"] == vid].iloc[0]
    assert srow["synapsegRadiusAngst"] == pytest.approx(10 * row["radius_nm"], abs=0.01)


def test_edited_outer_radius_alone_sets_the_radius(case):
    t = case["gt"].copy()
    k = case["inside"][1]
    t.loc[t.index[k], "outer_radius_nm"] = t["outer_radius_nm"].iloc[k] + 3.0
    res, out = _export(case, t, "outer")
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(out / "tomo_vesicles.csv")
    row = csv[csv["id"] == t["id"].iloc[k]].iloc[0]
    assert row["radius_nm"] == pytest.approx(t["radius_nm"].iloc[k] + 3.0, abs=1e-3)
    assert row["outer_radius_nm"] == pytest.approx(t["outer_radius_nm"].iloc[k], abs=1e-3)


def test_bad_rows_reported_per_row_and_counts_agree(case):
    t = case["gt"].copy().astype({"radius_nm": object})
    bad = {0: -5.0, 1: 0.0, 2: 500.0}
    for i, v in bad.items():
        t.loc[t.index[i], "radius_nm"] = v
    t.loc[t.index[3], "center_x_px"] = SHAPE[2] + 20.0  # outside the volume
    t.loc[t.index[4], "radius_nm"] = "abc"  # not a number
    res, out = _export(case, t, "bad")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    for row in (1, 2, 3, 4, 5):  # 1-based data rows
        assert f"row {row}, id {int(t['id'].iloc[row - 1])}" in res.output
    assert "is not a number ('abc')" in res.output
    assert "outside the volume" in res.output and "outside the accepted" in res.output
    n_ok = len(t) - 5
    assert f"{n_ok} vesicles written (5 of {len(t)} rows skipped" in res.output
    csv = pd.read_csv(out / "tomo_vesicles.csv")
    assert len(csv) == n_ok
    ids = set(np.unique(_labels(out))) - {0}
    assert ids == set(csv["id"])
    assert f"the label volume holds {n_ok} ids" in res.output
    report = json.loads((out / "tomo_export_report.json").read_text())
    assert [s["row"] for s in report["skipped"]] == [1, 2, 3, 4, 5]
    # --strict refuses with one line and writes nothing
    res2, out2 = _export(case, t, "strict", "--strict")
    assert res2.exit_code == 2 and "Traceback" not in res2.output
    assert "5 of" in res2.output and not (out2 / "tomo_vesicles.csv").exists()


def test_hand_placed_points_refined_ids_and_qc_kept(case):
    gt = case["gt"]
    t = gt.copy()
    rng = np.random.default_rng(3)
    picks = case["inside"][:3]
    for k in picks:  # a hand-placed point: center 3 nm off, no radius, no id, no score
        d = rng.normal(size=3)
        t.loc[t.index[k], PX] = gt[PX].iloc[k].to_numpy() + 3.0 * d / np.linalg.norm(d) / VS
        for col in ("radius_nm", "radius_px", "outer_radius_nm", "score", "id", "source"):
            t.loc[t.index[k], col] = np.nan
        t.loc[t.index[k], "membrane_contrast"] = np.nan
    res, out = _export(case, t, "manual")
    assert res.exit_code == 0, res.output
    assert "refined center and radius of 3 hand-placed" in res.output
    csv = pd.read_csv(out / "tomo_vesicles.csv")
    report = json.loads((out / "tomo_export_report.json").read_text())
    assert report["hand_placed_ids"] == csv["id"].iloc[picks].tolist()
    assert len(csv) == len(gt)
    kept = [k for k in range(len(gt)) if k not in picks]
    # pipeline rows: same ids, QC columns and source survive the round trip
    assert csv["id"].iloc[kept].tolist() == gt["id"].iloc[kept].tolist()
    assert "membrane_contrast" in csv and "min_gap_nm" in csv
    assert (csv["source"].iloc[kept] == "auto").all()
    np.testing.assert_allclose(csv["score"].iloc[kept], gt["score"].iloc[kept], atol=1e-4)
    for k in picks:
        row = csv.iloc[k]
        assert row["source"] == "manual" and np.isnan(row["score"])
        assert row["id"] > gt["id"].max()
        assert np.isfinite(row["membrane_contrast"])
        assert abs(row["radius_nm"] - gt["radius_nm"].iloc[k]) < 1.0
        err = np.linalg.norm((row[PX].to_numpy(float) - gt[PX].iloc[k].to_numpy()) * VS)
        assert err < 1.5
    # second round trip: the manual rows keep their source and are not refitted
    res2, out2 = _export(case, csv, "manual2")
    assert res2.exit_code == 0, res2.output
    assert "hand-placed" not in res2.output
    again = pd.read_csv(out2 / "tomo_vesicles.csv")
    assert again["source"].tolist() == csv["source"].tolist()
    assert again["id"].tolist() == csv["id"].tolist()


def test_export_star_is_relion5_unless_binning_given(case):
    res, out = _export(case, case["gt"], "star")
    assert res.exit_code == 0, res.output
    star = starfile.read(out / "tomo_vesicles.star")
    assert "rlnCoordinateX" not in star and "rlnCenteredCoordinateXAngst" in star
    res4, out4 = _export(case, case["gt"], "star4", "--star-binning", "4")
    assert res4.exit_code == 0, res4.output
    star4 = starfile.read(out4 / "tomo_vesicles.star")
    np.testing.assert_allclose(star4["rlnCoordinateX"], case["gt"]["center_x_px"] * 4, atol=1e-3)


def test_tilt_series_size_derives_the_star_binning(case):
    res, out = _export(
        case, case["gt"], "ts", "--tilt-series-size", f"{SHAPE[2] * 4},{SHAPE[1] * 4}"
    )
    assert res.exit_code == 0, res.output
    star = starfile.read(out / "tomo_vesicles.star")
    np.testing.assert_allclose(star["rlnCoordinateY"], case["gt"]["center_y_px"] * 4, atol=1e-3)
    bad, _ = _export(case, case["gt"], "ts_bad", "--tilt-series-size", "1000,3000")
    assert bad.exit_code == 2 and "not a binning" in bad.output and "Traceback" not in bad.output

"""``synapseg evaluate`` scores the AZ (found or not), az_distance_nm and the pool."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.evaluate.context import context_metrics, pooled_context
from synapseg.io.schema import make_table
from synapseg.io.tables import write_table_csv


def _table(dist, pool=None, n=6):
    centers = np.c_[np.full(n, 20.0), np.arange(n) * 30.0 + 20, np.full(n, 40.0)]
    t = make_table(centers, np.full(n, 20.0), 1.0)
    if dist is not None:
        t["az_distance_nm"] = dist
    if pool is not None:
        t["pool"] = pool
    return t


def test_scores_distance_and_pool():
    gt = _table(np.array([3.0, 20.0, 44.0, 60.0, 150.0, 99.0]))
    pred = _table(
        np.array([3.5, 21.0, 46.0, 59.0, 10.0, 99.5]),
        np.array(["docked", "proximal", "distal", "distal", "proximal", "distal"], object),
    )
    idx = np.arange(6)
    m = context_metrics(gt, pred, idx, idx)
    assert m["az_outcome"] == "tp"
    d = m["az_distance"]
    assert d["n"] == 5  # the one at 150 nm is not scored
    assert d["median_abs_error_nm"] == 1.0
    assert m["pool"]["n"] == 6 and m["pool"]["accuracy"] == 4 / 6
    assert m["pool"]["confusion_true_by_predicted"]["proximal"]["distal"] == 1


def test_az_outcomes_and_pooling():
    no_az = _table(np.full(6, np.nan), np.full(6, "", object))
    idx = np.arange(6)
    with_az = _table(np.full(6, 10.0))
    assert context_metrics(no_az, no_az, idx, idx)["az_outcome"] == "tn"
    assert context_metrics(with_az, no_az, idx, idx)["az_outcome"] == "fn"
    assert context_metrics(_table(None), with_az, idx, idx)["az_outcome"] == "fp"
    assert context_metrics(_table(None), _table(None), idx, idx) is None
    pooled = pooled_context(
        [
            context_metrics(with_az, with_az, idx, idx),
            context_metrics(with_az, no_az, idx, idx),
            context_metrics(no_az, with_az, idx, idx),
        ]
    )
    assert pooled["az_found_rate"] == 0.5 and pooled["az_claimed_without"] == 1
    assert pooled["pool_accuracy"] == 1.0


def _evaluate(gt, pred, out, voxel_size_nm):
    """``synapseg evaluate --gt GT --pred PRED -o OUT``: its metrics.json."""
    args = ["evaluate", "--gt", str(gt), "--pred", str(pred), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--voxel-size", str(voxel_size_nm)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_cli_reports_the_context(tmp_path):
    gt = _table(np.array([3.0, 20.0, 44.0, 60.0, 150.0, 99.0]))
    pred = _table(np.array([3.2, 20.5, 44.1, 61.0, 149.0, 98.0]))
    pred["pool"] = pd.Series(["docked", "proximal", "proximal", "distal", "distal", "distal"])
    write_table_csv(tmp_path / "gt.csv", gt)
    write_table_csv(tmp_path / "pred.csv", pred)
    out = tmp_path / "report"
    metrics = _evaluate(tmp_path / "gt.csv", tmp_path / "pred.csv", out, 1)
    assert metrics["context"]["az_found"] and metrics["context"]["pool"]["accuracy"] == 1.0
    assert metrics["context"]["az_distance"]["n"] == 5
    assert "pool accuracy" in (out / "report.html").read_text()


def test_evaluate_a_simulator_folder(synapse, synapse_context, tmp_path):
    """The truth's AZ columns come from the simulator folder's info.json."""
    folder = tmp_path / "sim"
    folder.mkdir()
    write_table_csv(folder / "vesicles.csv", synapse.vesicles)
    (folder / "info.json").write_text(json.dumps(synapse.info, default=str))
    write_table_csv(tmp_path / "pred.csv", synapse_context.vesicles)
    out = tmp_path / "report"
    ctx = _evaluate(folder / "vesicles.csv", tmp_path / "pred.csv", out, 1.68)["context"]
    assert ctx["az_outcome"] == "tp"
    assert ctx["az_distance"]["median_abs_error_nm"] < 1.0 and ctx["pool"]["accuracy"] >= 0.95

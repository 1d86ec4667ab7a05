"""The evaluate summary reports the per-axis center errors (issue 10 item 5)."""

from __future__ import annotations

import numpy as np

from synapseg.evaluate.metrics import compute_metrics
from synapseg.evaluate.report import summary_rows
from synapseg.io.tables import make_table

VOXEL_NM = (1.5, 1.0, 1.0)


def test_summary_prints_median_center_error_per_axis(gt_table):
    centers = gt_table[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    rng = np.random.default_rng([20261204, 300])
    offset_nm = np.array([0.8, 0.3, 0.1]) * rng.choice([-1.0, 1.0], size=centers.shape)
    pred = make_table(centers + offset_nm / VOXEL_NM, gt_table["radius_nm"].to_numpy(), VOXEL_NM)
    metrics = compute_metrics(gt_table, pred)
    axis = metrics["center_error_axis_nm"]
    np.testing.assert_allclose([axis["z"], axis["y"], axis["x"]], [0.8, 0.3, 0.1], atol=1e-3)
    rows = dict(summary_rows(metrics))
    assert rows["center error median |z| / |y| / |x|"] == "0.80 / 0.30 / 0.10 nm"

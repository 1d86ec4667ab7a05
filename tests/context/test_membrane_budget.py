"""The membrane error budget: categories add up and sort errors where they belong."""

from __future__ import annotations

import numpy as np

from synapseg.evaluate.membrane_budget import membrane_error_budget, sheet_normals
from synapseg.evaluate.membranes import score_membranes


def _shell(shape=(48, 64, 64), radius=18.0, half=1.6):
    z, y, x = np.indices(shape)
    c = (np.array(shape) - 1) / 2
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    return np.abs(r - radius) <= half, (z - c[0]) / np.maximum(r, 1e-9)


def test_sheet_normals_of_a_shell_are_radial():
    shell, nz_true = _shell()
    n = sheet_normals(shell, shell, 1.0, 3.0)
    assert np.median(np.abs(np.abs(n[:, 0]) - np.abs(nz_true[shell]))) < 0.05


def test_budget_splits_wedge_caps_thickness_and_far_errors():
    shell, nz = _shell()
    labels = shell.astype(np.uint8) * 3  # an organelle membrane
    labels[5:8, 5:10, 5:10] = 2  # a bit of vesicle membrane
    pred = shell & (np.abs(nz) < 0.8)  # caps erased (|n_z| >= cos 37°)
    pred = pred | np.roll(pred, 1, axis=2)  # one voxel too thick along x
    pred[5:8, 5:10, 5:10] = True  # on the vesicle membrane
    pred[40:44, 50:54, 50:54] = True  # something far away
    b = membrane_error_budget(pred, labels, 1.0)
    cats = {k: v["voxels"] for k, v in b["categories"].items()}
    truth = labels == 3
    assert cats["fn_wedge_facing"] + cats["fn_near_prediction"] + cats["fn_missed"] == int(
        (truth & ~pred).sum()
    )
    fp = int((pred & ~truth).sum())
    assert cats["fp_near_truth"] + cats["fp_vesicle_membrane"] + cats["fp_far"] == fp
    assert cats["fn_wedge_facing"] > cats["fn_missed"] > 0  # the caps (30° of them: wedge)
    assert cats["fp_vesicle_membrane"] == 75 and cats["fp_far"] == 64
    assert cats["fp_near_truth"] > 0
    assert 0.1 < b["wedge_fraction"] < 0.17  # 1 - cos 30° of a sphere's area
    assert abs(b["dice"] - score_membranes(pred, labels, 1.0)["dice"]) < 1e-12
    for v in b["categories"].values():
        assert v["dice_without"] >= b["dice"]
    frac = b["surface"]["fraction_at_voxels"]
    assert abs(sum(frac.values()) - 1) < 1e-9
    assert (
        b["surface"]["truth_to_pred_median_nm_wedge_facing"]
        > (b["surface"]["truth_to_pred_median_nm_other"])
    )

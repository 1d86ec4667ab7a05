"""Scoring filaments: same boundaries or endpoints within 3 nm; P/R/F1 by kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tests.filaments.conftest import gt_table

from synapseg.evaluate.filaments import score_filaments


def _pred(rows):
    out = []
    for i, (kind, a, b, pa, pb, length) in enumerate(rows, start=1):
        r = {"id": i, "kind": kind, "vesicle_a": a, "vesicle_b": b, "length_nm": length}
        for name, p in (("a", pa), ("b", pb)):
            for k, ax in enumerate("zyx"):
                r[f"contact_{name}_{ax}_nm"] = p[k]
        out.append(r)
    t = pd.DataFrame(out)
    t["vesicle_b"] = t["vesicle_b"].astype("Int64")
    return t


GT = {
    "connector": (np.array([0.0, 0, 10]), np.array([0.0, 0, 22])),
    "tether": (np.array([0.0, 20, 0]), np.array([0.0, 35, 0])),
}


def test_perfect_and_length_error():
    gt = gt_table(GT)
    pred = _pred(
        [
            ("connector", 2, 1, GT["connector"][1], GT["connector"][0], 13.0),
            ("tether", 2, None, GT["tether"][0], GT["tether"][1], 14.0),
        ]
    )
    s = score_filaments(gt, pred)
    assert s["connector"]["f1"] == 1.0 and s["tether"]["f1"] == 1.0
    assert s["connector"]["length_error_median_nm"] == 1.0  # 13 vs 12
    assert s["tether"]["length_bias_nm"] == -1.0  # 14 vs 15


def test_wrong_pair_but_close_endpoints_matches_and_far_does_not():
    gt = gt_table(GT)
    near = GT["connector"][0] + [0, 2.0, 0]
    far = GT["connector"][0] + [0, 5.0, 0]
    s = score_filaments(gt, _pred([("connector", 7, 8, near, GT["connector"][1], 12.0)]))
    assert s["connector"]["tp"] == 1
    s = score_filaments(gt, _pred([("connector", 7, 8, far, GT["connector"][1], 12.0)]))
    assert s["connector"]["tp"] == 0 and s["connector"]["fp"] == 1 and s["connector"]["fn"] == 1
    assert s["tether"]["recall"] == 0.0


def test_one_prediction_matches_one_truth():
    gt = gt_table(GT)
    c = GT["connector"]
    s = score_filaments(gt, _pred([("connector", 1, 2, *c, 12.0), ("connector", 1, 2, *c, 12.0)]))
    assert s["connector"]["tp"] == 1 and s["connector"]["fp"] == 1
    assert s["connector"]["precision"] == 0.5


def test_vesicle_id_map():
    gt = gt_table(GT)
    c = GT["connector"]
    far = (c[0] + 10, c[1] + 10)
    pred = _pred([("connector", 11, 12, *far, 12.0)])
    assert score_filaments(gt, pred)["connector"]["tp"] == 0
    assert score_filaments(gt, pred, id_map={11: 1, 12: 2})["connector"]["tp"] == 1


def test_endpoint_error_tells_a_located_match_from_a_pair_only_match():
    gt = gt_table(GT)
    a, b = GT["tether"]
    shifted = np.array([0.0, 0.0, 6.0])  # same vesicle and AZ, 6 nm beside the true tether
    exact = score_filaments(gt, _pred([("tether", 2, None, a, b, 15.0)]))
    beside = score_filaments(gt, _pred([("tether", 2, None, a + shifted, b + shifted, 15.0)]))
    assert exact["tether"]["tp"] == beside["tether"]["tp"] == 1
    assert exact["tether"]["endpoint_error_median_nm"] == 0.0
    assert beside["tether"]["endpoint_error_median_nm"] == 6.0

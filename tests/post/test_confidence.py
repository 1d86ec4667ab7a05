import json

import numpy as np
import pandas as pd
import pytest

from synapseg.post.confidence import (
    FEATURES,
    MODEL_PATH,
    candidate_features,
    load_model,
    low_confidence_reasons,
    predict_confidence,
)

VOXEL_NM = 1.5


def _population(n=12, contrast=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "center_z_px": np.full(n, 40.0),
            "center_y_px": np.full(n, 60.0),
            "center_x_px": 40.0 + 40.0 * np.arange(n),
            "radius_nm": rng.normal(19.0, 1.5, n),
            "membrane_contrast": contrast * rng.uniform(0.8, 1.2, n),
            "lumen_contrast": contrast * rng.uniform(0.0, 0.2, n),
            "inner_contrast": contrast * rng.uniform(0.5, 0.8, n),
            "profile_correlation": rng.uniform(0.85, 0.97, n),
            "fit_residual_nm": rng.uniform(0.3, 1.0, n),
            "wedge_coverage": np.full(n, 0.8),
            "shift_nm": rng.uniform(0.0, 1.0, n),
            "score": rng.uniform(0.7, 0.95, n),
        }
    )


def test_features_are_relative_to_the_tomogram():
    fits = _population()
    faint = fits.copy()
    for c in ("membrane_contrast", "lumen_contrast", "inner_contrast"):
        faint[c] *= 0.3  # the same vesicles at a third of the contrast (wider wedge, more noise)
    a = candidate_features(fits, VOXEL_NM, shape=(80, 200, 800))
    b = candidate_features(faint, VOXEL_NM, shape=(80, 200, 800))
    assert list(a.columns) == FEATURES
    pd.testing.assert_frame_equal(a, b)
    assert abs(np.median(a["contrast_rel"]) - 1.0) < 0.15


def test_neighbour_and_edge_features():
    fits = _population(n=8)
    r_px = fits["radius_nm"].iloc[0] / VOXEL_NM
    fits.loc[1, ["center_x_px", "radius_nm"]] = [
        fits.loc[0, "center_x_px"] + 3.0,
        fits.loc[0, "radius_nm"],
    ]
    fits.loc[7, "center_x_px"] = 2.0  # at the x = 0 face
    f = candidate_features(fits, VOXEL_NM, shape=(80, 200, 800))
    assert f.loc[0, "gap_rel"] < 0 and f.loc[1, "gap_rel"] < 0  # overlapping pair
    assert f.loc[4, "gap_rel"] > 0
    assert f.loc[7, "edge_rel"] < 0.2 < f.loc[4, "edge_rel"]
    assert r_px > 2  # the edge candidate is cut by the face


def test_ineligible_candidates_do_not_set_the_reference():
    fits = _population(n=10)
    junk = _population(n=10, contrast=5.0, seed=1)  # very strong, but failed the hard limits
    both = pd.concat([fits, junk], ignore_index=True)
    eligible = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    f = candidate_features(both, VOXEL_NM, eligible=eligible)
    assert abs(np.median(f["contrast_rel"][:10]) - 1.0) < 0.15


def _toy_model(calibration=None):
    n = len(FEATURES)
    coef = np.zeros(n)
    coef[FEATURES.index("contrast_rel")] = 4.0
    coef[FEATURES.index("corr")] = 2.0
    return {
        "features": FEATURES,
        "mean": [0.0] * n,
        "scale": [1.0] * n,
        "coef_linear": coef.tolist(),
        "coef_square": [0.0] * n,
        "intercept": -4.0,
        "positive_mean": [1.0] * n,
        "calibration": calibration,
    }


def test_confidence_and_reasons_from_a_model():
    fits = _population()
    fits.loc[3, "membrane_contrast"] = 0.01
    f = candidate_features(fits, VOXEL_NM)
    model = _toy_model()
    p = predict_confidence(f, model)
    assert p.shape == (len(fits),) and np.all((p >= 0) & (p <= 1))
    assert p[3] == p.min() and p[3] < 0.2 < np.median(p)
    why = low_confidence_reasons(f, model)
    assert why[3].startswith("weak membrane")
    # a calibration map is applied after the logistic model
    cal = _toy_model({"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.3]})
    q = predict_confidence(f, cal)
    assert np.all((q >= 0.2) & (q <= 0.3))
    flat = predict_confidence(f, _toy_model({"method": "platt", "a": 0.0, "b": 0.0}))
    np.testing.assert_allclose(flat, 0.5)
    steep = predict_confidence(f, _toy_model({"method": "platt", "a": 2.0, "b": 0.0}))
    assert steep[3] < p[3] and np.all(np.argsort(steep) == np.argsort(p))
    assert predict_confidence(f.iloc[:0], model).shape == (0,)


def test_shipped_model_is_complete_and_calibrated():
    model = load_model()
    raw = json.loads(MODEL_PATH.read_text())
    assert model["features"] == FEATURES == raw["features"]
    for key in ("mean", "scale", "coef_linear", "coef_square", "positive_mean"):
        assert len(model[key]) == len(FEATURES)
    cal = model["calibration"]
    assert cal["method"] in ("platt", "isotonic")
    if cal["method"] == "platt":
        assert cal["a"] > 0  # calibration keeps the order of the raw scores
    else:
        assert np.all(np.diff(cal["y"]) >= 0)
    assert model["trained_by"] == "scripts/train_confidence.py"
    assert "20261203" in model["seeds"] and model["synapseg_version"]
    ece = model["metrics"]["test"]["ece_10"]
    assert ece is not None and 0 <= ece <= 0.05


def test_shipped_model_ranks_junk_below_vesicles():
    fits = _population(n=12)
    junk = {
        "membrane_contrast": 0.1,  # faint, solid, badly fitting, low network score
        "inner_contrast": 0.0,
        "lumen_contrast": 0.1,
        "profile_correlation": 0.3,
        "fit_residual_nm": 2.5,
        "score": 0.35,
    }
    for k, v in junk.items():
        fits.loc[5, k] = v
    f = candidate_features(fits, VOXEL_NM, shape=(80, 200, 800))
    p = predict_confidence(f)
    assert p[5] < 0.5 <= np.median(np.delete(p, 5))
    assert p[5] == pytest.approx(p.min())


def test_segment_option_min_confidence_is_checked():
    from synapseg.errors import InputError
    from synapseg.pipeline import SegmentOptions

    assert SegmentOptions().min_confidence == 0.5
    with pytest.raises(InputError, match="--min-confidence"):
        SegmentOptions(min_confidence=1.5)


def test_confidence_model_belongs_to_the_network(tmp_path):
    from synapseg.core.builtin import _confidence_model
    from synapseg.model.registry import confidence_model_path, create_random_model

    assert confidence_model_path("sim-unet-v1") is None  # the packaged one is used
    assert _confidence_model("sim-unet-v1") is None
    assert _confidence_model("sim-unet-v2") == str(confidence_model_path("sim-unet-v2"))
    folder = tmp_path / "net"
    create_random_model(folder)
    assert confidence_model_path(folder) is None
    own = folder / "confidence_model.json"
    own.write_text(json.dumps(load_model()))
    assert confidence_model_path(folder) == own
    assert _confidence_model(str(folder)) == str(own)
    assert _confidence_model(folder / "model.json") == str(own)


def test_shipped_model_does_not_extrapolate():
    # square weights <= 0 (each feature linear or concave: no U-shapes learned from a few
    # negatives) and z clipped to the training range: beyond it the confidence stays put
    model = load_model()
    assert np.all(np.asarray(model["coef_square"]) <= 0)
    lo, hi = (np.asarray(v) for v in model["z_clip"])
    assert np.all(lo < 0) and np.all(hi > 0)
    fits = _population(n=12)
    out = []
    for residual_nm in (50.0, 500.0):  # absurd residuals: both beyond the training range
        fits.loc[3, "fit_residual_nm"] = residual_nm
        out.append(predict_confidence(candidate_features(fits, VOXEL_NM, shape=(80, 200, 800))))
    assert out[0][3] == pytest.approx(out[1][3], abs=1e-12)
    unclipped = {k: v for k, v in model.items() if k != "z_clip"}
    f = candidate_features(fits, VOXEL_NM, shape=(80, 200, 800))
    assert predict_confidence(f, unclipped)[3] != pytest.approx(out[1][3], abs=1e-6)


def test_training_fit_keeps_square_weights_concave(load_script):
    # scripts/train_confidence.py: a U-shaped truth (both tails positive) cannot be learned as a
    # convex bowl; the fit stays concave in every feature
    mod = load_script("scripts/train_confidence.py")
    rng = np.random.default_rng(20261208)
    z = rng.standard_normal((400, 2))
    y = (np.abs(z[:, 0]) > 1.0).astype(int)  # U-shape in feature 0
    design = np.hstack([z, z**2])
    w, b = mod.fit_concave_logistic(design, y, 1.0)
    assert np.all(w[2:] <= 1e-12)
    unconstrained = np.linalg.lstsq(np.hstack([design, np.ones((400, 1))]), 2 * y - 1, rcond=None)
    assert unconstrained[0][2] > 0  # the data do ask for a convex term

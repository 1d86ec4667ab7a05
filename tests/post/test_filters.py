import numpy as np
import pandas as pd

from synapseg.post.filters import FilterParams, qc_filter

VOXEL_NM = 1.68


def _fits(rows):
    base = {
        "membrane_contrast": 0.6,
        "lumen_contrast": 0.1,
        "inner_contrast": 0.4,
        "profile_correlation": 0.95,
        "fit_residual_nm": 0.7,
        "shift_nm": 1.0,
    }
    out = []
    for r in rows:
        row = dict(base)
        row.update(r)
        out.append(row)
    return pd.DataFrame(out)


def test_legacy_thresholds_remove_each_outlier_with_its_reason():
    good = {"center_z_px": 20.0, "center_y_px": 20.0, "center_x_px": 20.0, "radius_nm": 18.0}

    def at(x, **kw):
        return {**good, "center_x_px": float(x), **kw}

    fits = _fits(
        [
            at(20),
            at(80, radius_nm=60.0),
            at(140, radius_nm=6.0),
            at(200, membrane_contrast=0.05),
            at(260, profile_correlation=0.2),
            at(320, fit_residual_nm=5.0),
            at(380, lumen_contrast=0.55),
            at(410, inner_contrast=0.05),
            at(440, shift_nm=15.0),
            at(500, radius_nm=np.nan),
        ]
    )
    kept, rejected = qc_filter(fits, VOXEL_NM, FilterParams(min_confidence=None))
    assert len(kept) == 1 and kept["center_x_px"].iloc[0] == 20
    assert list(rejected["reason"]) == [
        "radius above max",
        "radius below min",
        "weak membrane",
        "low profile correlation",
        "inconsistent membrane",
        "dark lumen",
        "no lumen (solid)",
        "fit drifted",
        "fit failed",
    ]


def test_duplicates_are_removed_and_small_overlaps_shrunk():
    r = 18.0
    outer = r + 2.25
    touch_px = 2 * outer / VOXEL_NM
    fits = _fits(
        [
            # a duplicate of the first, slightly worse: removed
            {"center_z_px": 30, "center_y_px": 30, "center_x_px": 30, "radius_nm": r},
            {
                "center_z_px": 30,
                "center_y_px": 31,
                "center_x_px": 30,
                "radius_nm": r,
                "membrane_contrast": 0.5,
            },
            # a neighbour whose outer surface overlaps the first by 1 nm: both shrink 0.5 nm
            {
                "center_z_px": 30,
                "center_y_px": 30,
                "center_x_px": 30 + touch_px - 1 / VOXEL_NM,
                "radius_nm": r,
            },
        ]
    )
    # cut-off 0: every candidate passes the confidence test, the overlap rule alone decides
    kept, rejected = qc_filter(fits, VOXEL_NM, FilterParams(min_confidence=0.0))
    assert list(rejected["reason"]) == ["overlaps a better vesicle"]
    assert rejected["center_y_px"].iloc[0] == 31
    np.testing.assert_allclose(kept["outer_shrunk_nm"], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(kept["outer_radius_nm"], outer - 0.5, atol=1e-6)
    assert np.all(kept["outer_radius_nm"] >= kept["radius_nm"])


def test_empty_input():
    cols = [
        "center_z_px",
        "center_y_px",
        "center_x_px",
        "radius_nm",
        "membrane_contrast",
        "lumen_contrast",
        "profile_correlation",
        "fit_residual_nm",
        "shift_nm",
    ]
    kept, rejected = qc_filter(pd.DataFrame({c: np.zeros(0) for c in cols}), VOXEL_NM)
    assert len(kept) == 0 and len(rejected) == 0
    assert "outer_radius_nm" in kept and "reason" in rejected


def _toy_model(path):
    """A confidence model that only looks at the relative membrane contrast."""
    import json

    from synapseg.post.confidence import FEATURES

    n = len(FEATURES)
    coef = [0.0] * n
    coef[FEATURES.index("contrast_rel")] = 10.0
    model = {
        "features": FEATURES,
        "mean": [0.0] * n,
        "scale": [1.0] * n,
        "coef_linear": coef,
        "coef_square": [0.0] * n,
        "intercept": -5.0,  # p = 0.5 at contrast_rel = 0.5
        "positive_mean": [1.0] * n,
        "calibration": None,
    }
    path.write_text(json.dumps(model))
    return str(path)


def _row_of_candidates(contrasts, radius_nm=18.0, **extra):
    return _fits(
        [
            {
                "center_z_px": 30.0,
                "center_y_px": 30.0,
                "center_x_px": 30.0 + 40.0 * i,
                "radius_nm": radius_nm,
                "membrane_contrast": c,
                "score": 0.9,
                **extra,
            }
            for i, c in enumerate(contrasts)
        ]
    )


def test_confidence_cut_replaces_absolute_thresholds(tmp_path):
    model = _toy_model(tmp_path / "m.json")
    # a faint tomogram: every membrane is below the legacy 0.15 σ, one is much fainter still
    fits = _row_of_candidates([0.1, 0.11, 0.1, 0.12, 0.1, 0.1, 0.02])
    legacy_kept, _ = qc_filter(fits, VOXEL_NM, FilterParams(min_confidence=None))
    assert len(legacy_kept) == 0
    kept, rejected = qc_filter(
        fits, VOXEL_NM, FilterParams(min_confidence=0.5, confidence_model=model)
    )
    assert len(kept) == 6 and "confidence" in kept
    assert np.all(kept["confidence"] >= 0.5)
    assert len(rejected) == 1 and rejected["center_x_px"].iloc[0] == 30.0 + 40.0 * 6
    reason = rejected["reason"].iloc[0]
    assert reason.startswith("confidence 0.") and "< 0.5: weak membrane" in reason


def test_hard_limits_still_apply_in_confidence_mode(tmp_path):
    model = _toy_model(tmp_path / "m.json")
    fits = _row_of_candidates([0.6] * 6)
    fits.loc[1, "radius_nm"] = 60.0
    fits.loc[2, "shift_nm"] = 15.0
    kept, rejected = qc_filter(
        fits, VOXEL_NM, FilterParams(min_confidence=0.5, confidence_model=model)
    )
    assert list(rejected["reason"]) == ["radius above max", "fit drifted"]
    assert rejected["confidence"].isna().all()  # hard rejects are not scored
    assert len(kept) == 4


def test_min_confidence_must_be_a_probability():
    import pytest

    with pytest.raises(ValueError, match="min_confidence"):
        FilterParams(min_confidence=1.5)


def test_a_tomogram_of_junk_gives_an_empty_table_not_forced_detections():
    # every candidate is junk (faint, solid, badly fitting, low network score): relative to each
    # other they look "typical", but the shipped model must still reject them all
    rng = np.random.default_rng(3)
    n = 8
    fits = _row_of_candidates(
        list(rng.uniform(0.02, 0.06, n)),
        radius_nm=11.0,
        inner_contrast=0.0,
        lumen_contrast=0.05,
        profile_correlation=0.35,
        fit_residual_nm=2.5,
    )
    fits["score"] = rng.uniform(0.35, 0.5, n)
    kept, rejected = qc_filter(fits, VOXEL_NM, FilterParams(), shape=(64, 128, 400))
    assert len(kept) == 0 and len(rejected) == n
    assert rejected["reason"].str.startswith("confidence ").all()


def test_reason_category_drops_the_candidate_confidence():
    from synapseg.post.filters import reason_category

    assert reason_category("confidence 0.12 < 0.5: weak membrane") == (
        "confidence < 0.5: weak membrane"
    )
    assert reason_category("radius above max") == "radius above max"

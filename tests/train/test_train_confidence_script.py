"""scripts/train_confidence.py: the candidates a network's confidence model is trained on."""

from __future__ import annotations

import json

import pandas as pd


def test_candidates_are_collected_without_the_vesicle_free_gate(tmp_path, monkeypatch, load_script):
    """The 0.9 default gate emptied every tomogram whose network's best candidate scored
    below it (the v2 candidate's 0.86-0.89), so its confidence model lost those tomograms:
    the candidates are now collected with ``min_best_score=None``."""
    import synapseg.post.vesicles as vesicles
    from synapseg.post.confidence import FEATURES

    script = load_script("scripts/train_confidence.py")
    neutral = tmp_path / "neutral.json"
    neutral.write_text(json.dumps(script.neutral_model(list(FEATURES))))
    seen = []

    def spy(image, probability, voxel_size_nm, params):
        seen.append(params)
        return pd.DataFrame(), pd.DataFrame(), {}

    monkeypatch.setattr(vesicles, "find_vesicles", spy)
    out = script.candidates_of(0, (32, 64, 64), neutral, "cpu", "default")
    assert len(seen) == 1 and out.empty
    assert seen[0].min_best_score is None
    assert seen[0].min_confidence == 0.0


def test_tube_set_adds_microtubules_and_er_tubules_without_moving_the_other_sets(load_script):
    """Set 3 (``--n-tubes``, issue 11): world draws with microtubules and ER tubules added,
    whose cut-across tubes a network takes for vesicles; sets 1 and 2 draw exactly as before
    (the packaged confidence model's data), and set 3's ids keep the ``% 5`` split apart."""
    script = load_script("scripts/train_confidence.py")
    shape = (32, 64, 64)
    for k in range(3):
        params, domain, threshold = script.set_params(k, shape, "tube")
        assert domain == "tubes" and params.shape == shape
        assert 4 <= params.n_microtubules <= 8 and 1 <= params.n_er_tubules <= 3
        assert threshold in script.THRESHOLDS
    for wide, fn in ((False, script.domain_params), (True, script.wide_params)):
        assert script.set_params(2, shape, wide)[0] == fn(2, shape)[0]
    assert script.tube_params(0, shape)[0] != script.wide_params(0, shape)[0]
    df = pd.DataFrame(
        {
            "center_z_px": [10.0, 20.0],
            "center_y_px": [30.0, 30.0],
            "center_x_px": [30.0, 30.0],
            "radius_nm": [12.0, 14.0],
            "membrane_contrast": [0.5, 0.4],
            "profile_correlation": [0.9, 0.8],
            "voxel_size_nm": [1.5, 1.5],
        }
    )
    out = script.with_features(df, 3, "tube", shape)
    assert set(out["set"]) == {"tube"} and set(out["tomogram"]) == {2003}
    assert set(script.with_features(df, 3, True, shape)["tomogram"]) == {1003}

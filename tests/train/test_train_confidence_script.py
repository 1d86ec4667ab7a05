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

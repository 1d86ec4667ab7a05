"""``synapseg adapt``'s pseudo-labelling run: what it asks of the pipeline (issue 11, H1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synapseg.train.adapt import AdaptConfig

from .conftest import table_as_pseudo_labels


class _Stop(Exception):
    pass


def test_label_run_skips_the_synapse_context(monkeypatch, tmp_path):
    """The context (membranes, AZ, filaments) adds columns and never changes a vesicle, so
    the pseudo-labelling segment runs without it (it cost most of a round's time)."""
    import synapseg.pipeline as pipeline
    from synapseg.train.pseudo_labels import label_tomogram

    seen = {}

    def fake(tomogram, out, options):
        seen["options"] = options
        raise _Stop

    monkeypatch.setattr(pipeline, "segment_tomogram", fake)
    config = AdaptConfig(low_confidence=0.1, high_confidence=0.7)
    with pytest.raises(_Stop):
        label_tomogram(Path("t.mrc"), tmp_path / "lab", "default", config)
    options = seen["options"]
    assert options.context is False
    assert options.min_confidence == 0.1 and options.model == "default"


def test_blob_margin_keeps_a_faint_vesicle_out_of_the_background():
    """A faint vesicle lights up as a small blob on one side: with the default 4 nm shell the
    rest of it is trained as background; ``blob_margin_nm`` ignores it up to that distance."""
    import numpy as np
    import pandas as pd

    from synapseg.io.tables import make_table
    from synapseg.train.pseudo_labels import pseudo_labels

    vs = 2.0
    prob = np.zeros((40, 64, 64), np.float32)
    prob[18:22, 30:34, 20:24] = 0.15  # an arc of a vesicle centred at (20, 32, 32)
    table = make_table(np.zeros((0, 3)), np.zeros(0), (vs,) * 3)
    table["confidence"] = pd.Series(dtype=float)
    rejected = pd.DataFrame(columns=["center_z_px", "center_y_px", "center_x_px", "radius_nm"])
    centre = (20, 32, 32)  # the blob spans x 20-23: the centre is 9 px = 18 nm from it
    base = AdaptConfig(ignore_probability=0.1)
    _, weight, _ = pseudo_labels(table, rejected, prob, vs, base)
    assert weight[centre] == 1  # 18 nm from the blob: background with the 4 nm shell
    wide = AdaptConfig(ignore_probability=0.1, blob_margin_nm=20.0)
    _, weight, _ = pseudo_labels(table, rejected, prob, vs, wide)
    assert weight[centre] == 0 and weight[20, 32, 60] == 1  # ignored; far away still counts
    low = AdaptConfig(ignore_probability=0.25, blob_margin_nm=20.0)
    _, weight, _ = pseudo_labels(table, rejected, prob, vs, low)
    assert weight[centre] == 1  # a blob below --ignore-probability is background


def test_blob_settings_are_checked():
    from synapseg.errors import InputError

    with pytest.raises(InputError, match="ignore-probability"):
        AdaptConfig(ignore_probability=0.0)
    with pytest.raises(InputError, match="blob-margin"):
        AdaptConfig(blob_margin_nm=-1.0)


def test_adapt_keeps_the_base_models_calibration(tmp_path, monkeypatch):
    """A calibrated base (card ``postprocessing`` + ``confidence_model.json``, as the v2
    candidates have) keeps both in every round's model and in the adapted one; before, the
    adapted model fell back to the pipeline defaults (gate 0.9, packaged confidence model)."""
    import json
    import shutil

    from synapseg.model.registry import CONFIDENCE_NAME, card_post_params, read_card, resolve_model
    from synapseg.post.confidence import MODEL_PATH
    from synapseg.train import adapt, adapt_post

    from .conftest import write_item

    base = tmp_path / "base"
    default = resolve_model("default")
    shutil.copytree(default.parent, base)
    card = json.loads((base / "model.json").read_text())
    card["postprocessing"] = {"threshold": 0.35, "min_best_score": 0.852}
    (base / "model.json").write_text(json.dumps(card))
    shutil.copyfile(MODEL_PATH, base / CONFIDENCE_NAME)

    monkeypatch.setattr(adapt, "label_tomogram", table_as_pseudo_labels)
    monkeypatch.setattr(
        adapt_post,
        "probe_radii",
        lambda *a: {"radii_nm": [13.0, 16.0, 19.0], "current_min_radius_nm": 10.0},
    )
    tomo = write_item(tmp_path / "toy", seed=2, shape=(40, 64, 64)) / "tomogram.mrc"
    config = AdaptConfig(
        rounds=2, steps=1, patch_size=(32, 32, 32), seed=1, rehearsal=0.0, check_forgetting=False
    )
    record = adapt.adapt_model([tomo], tmp_path / "out", from_model=str(base), config=config)
    for folder in (tmp_path / "out" / "rounds" / "round1", tmp_path / "out"):
        adapted = read_card(folder / "model.json")
        assert card_post_params(adapted) == {"threshold": 0.35, "min_best_score": 0.852}
        assert (folder / CONFIDENCE_NAME).read_bytes() == (base / CONFIDENCE_NAME).read_bytes()
    assert record["calibration"]["confidence_model"] == "base model's"
    assert "carried over" in read_card(tmp_path / "out" / "model.json").description

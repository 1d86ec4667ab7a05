"""``synapseg adapt`` keeps fine-tuned weights only when they find clearly more confident
vesicles on the user's tomograms (:mod:`synapseg.train.adapt_guard`, issue 11, H1)."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.train import adapt_post
from synapseg.train.adapt_guard import RULE, weights_decision


@pytest.mark.parametrize(
    ("counts", "kept", "checked"),
    [
        ([57, 54], False, True),
        ([73, 96], True, True),
        ([15, 99], True, True),
        ([57, 57], False, True),  # no gain: only the risk of forgetting elsewhere
        ([55, 56], False, True),  # +2 %: below the 10 % the weights must pay
        ([20, 22], True, True),
        ([9], True, False),
    ],
)
def test_weights_decision(counts, kept, checked):
    d = weights_decision(counts)
    assert d["kept"] is kept and d["checked"] is checked and d["rule"] == RULE
    assert not checked or str(counts[-1]) in d["decision"]


def test_weights_decision_can_be_switched_off():
    assert weights_decision([57, 10], check=False)["kept"] is True


def _labels_fewer_in_round2(tomogram, folder, model, config, device="cpu"):
    """Stand-in for the pipeline: the toy table; the round-2 pass reports fewer vesicles."""
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume import read_volume
    from synapseg.io.volume_writer import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    vol = read_volume(tomogram)
    write_volume(folder / "mask.mrc", np.ones(vol.shape, np.uint8), vol.voxel_size_nm)
    n = len(read_table_csv(tomogram.parent / "vesicles.csv"))
    n -= 2 * (folder.parent.name == "round2")
    return {"tomogram": str(tomogram), "annotation": str(tomogram.parent / "vesicles.csv"),
            "mask": str(folder / "mask.mrc"), "inverted": False, "positive": n,
            "uncertain": 0, "negative_candidates": 0}  # fmt: skip


def test_fewer_confident_vesicles_keep_the_base_weights(tmp_path, monkeypatch):
    from synapseg.model.registry import load_model, read_card, resolve_model
    from synapseg.train import adapt

    from .conftest import write_item

    probed = []

    def probe(tomogram, segment_dir, min_confidence):
        probed.append(segment_dir.parent.parent.name)
        return {"radii_nm": [13.0, 16.0, 19.0], "current_min_radius_nm": 10.0}

    monkeypatch.setattr(adapt, "label_tomogram", _labels_fewer_in_round2)
    monkeypatch.setattr(adapt_post, "probe_radii", probe)
    tomo = write_item(tmp_path / "toy", seed=4, shape=(40, 64, 64)) / "tomogram.mrc"
    config = adapt.AdaptConfig(
        rounds=2,
        steps=1,
        patch_size=(32, 32, 32),
        seed=3,
        check_gain=True,
        rehearsal=0.0,
        check_forgetting=False,
    )
    record = adapt.adapt_model([tomo], tmp_path / "out", config=config)
    base = resolve_model("default")
    assert record["weights"]["kept"] is False
    assert (tmp_path / "out" / "model.pt").read_bytes() == (base.parent / "model.pt").read_bytes()
    net, card = load_model(str(tmp_path / "out"))  # loadable, sha256 verified
    assert card.sha256 == read_card(base).sha256 and card.name == "out"
    assert "Base model's weights kept" in card.description
    assert card.extra["adaptation"]["weights"]["pseudo_labels_per_round"] == [6, 4]
    assert probed == ["round1"]  # sizes probed on the pass of the model written
    assert (tmp_path / "out" / "rounds" / "round1" / "model.pt").is_file()  # trained, dropped

    # the default (since the batch-norm statistics are frozen): no gain guard
    off = adapt.AdaptConfig(
        rounds=2, steps=1, patch_size=(32, 32, 32), seed=3, rehearsal=0.0, check_forgetting=False
    )
    record = adapt.adapt_model([tomo], tmp_path / "kept", config=off)
    assert record["weights"]["kept"] is True
    assert read_card(tmp_path / "kept" / "model.json").sha256 != card.sha256

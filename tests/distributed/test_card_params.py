"""The block-wise path takes a model card's calibrated post-processing settings (threshold,
seed separation, vesicle-free gate) and the network's own confidence model from the same
place as the single-process run (:func:`synapseg.core.builtin.vesicle_params`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

CENTERS = ["center_z_px", "center_y_px", "center_x_px"]
CARD_POST = {
    "threshold": 0.62,
    "min_separation_nm": 13.0,
    "min_best_score": 0.8,
    "max_tube_score": 0.8,
}


@pytest.fixture(scope="module")
def card_model(tmp_path_factory):
    """The default network in a folder whose card calibrates the instance step and gate,
    with its own confidence model (a copy of the packaged one)."""
    from synapseg.model.registry import resolve_model
    from synapseg.post.confidence import MODEL_PATH

    card_path = resolve_model("default")
    folder = tmp_path_factory.mktemp("card_model") / "calibrated"
    shutil.copytree(card_path.parent, folder)
    card = json.loads((folder / card_path.name).read_text())
    card["postprocessing"] = dict(CARD_POST)
    (folder / "model.json").write_text(json.dumps(card))
    shutil.copy(MODEL_PATH, folder / "confidence_model.json")
    return folder


def test_post_params_take_the_card_and_its_confidence_model(card_model):
    from synapseg.distributed.block_post import post_params
    from synapseg.distributed.decisions import Decisions, _card_threshold
    from synapseg.model.registry import read_card
    from synapseg.specimen.wedge import WedgeEstimate

    wedge = WedgeEstimate(tilt_axis="y", tilt_range_deg=60.0, source="given")
    card = read_card(card_model / "model.json")
    d = Decisions(
        grid=None,  # type: ignore[arg-type]
        model=str(card_model),
        specimen=None,  # type: ignore[arg-type]
        network_mask=True,
        polarity={"invert": False},
        stats=None,  # type: ignore[arg-type]
        plan=None,  # type: ignore[arg-type]
        factors=(1.0, 1.0, 1.0),
        wedge=wedge,
        background=(0.0, 1.0),
        threshold=_card_threshold({}, card),
    )
    p = post_params(d)
    assert (p.threshold, p.min_separation_nm, p.min_best_score) == (0.62, 13.0, 0.8)
    assert p.confidence_model == str(card_model / "confidence_model.json")
    assert _card_threshold({"threshold": 0.4}, card) == 0.4  # the user's wins


@pytest.mark.slow  # two network runs of a 32×224×224 volume: ~20 s under load
def test_blockwise_equals_single_process_with_a_calibrated_card(sim_mrc, card_model, caplog):
    """Including the card's opt-in tube-section test: the block-wise path scores the merged
    fits against the whole volume, as one process does."""
    import logging

    import synapseg
    from synapseg.distributed.run import segment_blocks

    volume = synapseg.read_volume(sim_mrc)
    kw = {"tile_size": 208, "invert": "no"}
    ref = synapseg.segment(volume, model=str(card_model), device="cpu", outputs=["vesicles"], **kw)
    logger = logging.getLogger("synapseg")
    logger.addHandler(caplog.handler)  # the CLI may have turned propagation off
    try:
        with caplog.at_level(logging.WARNING, logger="synapseg"):
            blocks = segment_blocks(
                volume, str(card_model), tiles_per_block=1, post_block=(32, 112, 112), **kw
            )
    finally:
        logger.removeHandler(caplog.handler)
    assert "carry no tube_score" not in caplog.text
    facts = blocks.facts["vesicles"]
    for key, value in CARD_POST.items():
        assert facts["params"][key] == value
        assert ref.facts["vesicles"]["params"][key] == value
    a, b = ref.vesicles, blocks.vesicles
    assert len(a) > 5 and len(a) == len(b)
    vs = np.asarray(volume.voxel_size_nm)
    assert (np.abs(a[CENTERS].to_numpy() - b[CENTERS].to_numpy()) * vs).max() < 1e-3

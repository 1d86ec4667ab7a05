"""synapseg.train.export.export_model: the card it writes."""

from __future__ import annotations

from synapseg.model.registry import load_model, read_card
from synapseg.model.unet import UNetConfig, build_unet
from synapseg.train.export import export_model


def _export(folder, **kw):
    net = build_unet(UNetConfig(stem=1, base_channels=4, depth=2), seed=0)
    return export_model(
        folder,
        net,
        name="tiny",
        voxel_size_nm=2.0,
        patch_size=(16, 16, 16),
        training_data="unit test",
        metrics={},
        **kw,
    )


def test_export_writes_the_calibrated_postprocessing_into_the_card(tmp_path):
    folder = _export(tmp_path / "calibrated", postprocessing={"vesicle_membrane_weight": 0.0})
    assert read_card(folder / "model.json").postprocessing == {"vesicle_membrane_weight": 0.0}
    _, card = load_model(tmp_path / "calibrated", device="cpu")
    assert card.postprocessing == {"vesicle_membrane_weight": 0.0}
    assert read_card(_export(tmp_path / "plain") / "model.json").postprocessing == {}

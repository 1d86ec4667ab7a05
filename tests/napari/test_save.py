"""Saving corrections (every export, provenance, no silent overwrite) and the training set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import OutputExistsError
from synapseg.io.volume import read_volume
from synapseg.napari.corrections import CENTER_PX, CorrectionStack
from synapseg.napari.save import add_to_training_set, existing_outputs, save_corrected

VOXEL_NM = 1.68


class FakeFitter:
    def add(self, point):
        return pd.Series({"center_z_px": point[0], "center_y_px": point[1],
                          "center_x_px": point[2], "radius_nm": 16.0})  # fmt: skip


@pytest.fixture
def corrected(segmented):
    table = pd.read_csv(segmented["out"] / "tomo_vesicles.csv")
    stack = CorrectionStack(table, VOXEL_NM)
    ids = list(table["id"])
    stack.delete([ids[0]])
    stack.move({ids[1]: (table.loc[1, CENTER_PX].to_numpy(float) + 0.5)})
    stack.resize([ids[2]], 19.0)
    new = stack.add([24.0, 64.0, 64.0], FakeFitter())
    return stack, ids, new


def test_save_round_trip_keeps_ids_corrections_and_provenance(segmented, corrected, tmp_path):
    stack, ids, new = corrected
    volume = read_volume(segmented["tomogram"])
    out = tmp_path / "saved"
    written = save_corrected(
        stack.table, volume, out, corrections=stack.provenance(), segmented_with={"tool": "x"}
    )
    assert {"csv", "json", "star", "mod", "labels"} <= set(written)
    saved = pd.read_csv(out / "tomo_vesicles.csv")
    assert sorted(saved["id"]) == sorted(ids[1:] + [new])  # ids kept, the deleted one gone
    row = saved.set_index("id")
    assert row.loc[ids[1], "correction"] == "moved" and row.loc[ids[2], "correction"] == "resized"
    assert row.loc[ids[2], "radius_nm"] == pytest.approx(19.0)
    assert row.loc[ids[2], "outer_radius_nm"] == pytest.approx(19.0 + 2.25)
    assert row.loc[new, "source"] == "manual" and np.isnan(row.loc[new, "score"])
    assert row.loc[ids[3], "source"] == "auto" and "membrane_contrast" in saved  # QC kept
    prov = json.loads((out / "tomo_vesicles.provenance.json").read_text())
    assert prov["edited_with"] == "synapseg napari plugin" and prov["segmented_with"]["tool"] == "x"
    corr = prov["corrections"]
    assert corr["deleted"] == [ids[0]] and corr["moved"] == [ids[1]]
    assert corr["resized"] == [ids[2]] and corr["added"] == [new]
    doc = json.loads((out / "tomo_vesicles.json").read_text())
    assert doc["provenance"]["corrections"]["added"] == [new]
    labels = np.asarray(read_volume(out / "tomo_vesicles.mrc").data)
    assert set(np.unique(labels)) - {0} <= set(saved["id"]) and new in set(np.unique(labels))
    # never overwrites without being told to
    assert existing_outputs(out, "tomo", ["csv", "mod"])
    before = (out / "tomo_vesicles.csv").read_bytes()
    stack.delete([new])
    with pytest.raises(OutputExistsError):
        save_corrected(stack.table, volume, out)
    assert (out / "tomo_vesicles.csv").read_bytes() == before  # untouched
    save_corrected(stack.table, volume, out, overwrite=True, formats=["csv"])
    assert new not in set(pd.read_csv(out / "tomo_vesicles.csv")["id"])


def test_confidence_cut_leaves_out_hidden_detections(segmented, corrected, tmp_path):
    stack, _, new = corrected
    volume = read_volume(segmented["tomogram"])
    cut = float(np.nanmedian(stack.table["confidence"]))
    save_corrected(stack.table, volume, tmp_path, formats=["csv"], min_confidence=cut)
    saved = pd.read_csv(tmp_path / "tomo_vesicles.csv")
    conf = stack.table.set_index("id")["confidence"]
    expect = sorted(int(i) for i, c in conf.items() if not c < cut)  # NaN (by hand) kept
    assert sorted(saved["id"]) == expect and new in expect
    prov = json.loads((tmp_path / "tomo_vesicles.provenance.json").read_text())
    assert prov["min_confidence_shown"] == cut
    assert sorted(prov["hidden_by_confidence"]) == sorted(set(conf.index) - set(expect))


def test_add_to_training_set_writes_what_train_reads(segmented, corrected, tmp_path):
    from synapseg.train.data import load_data_config, prepare_item
    from synapseg.train.targets import load_annotation

    stack, _, _ = corrected
    volume = read_volume(segmented["tomogram"])
    item = add_to_training_set(tmp_path / "train", volume, stack.table, provenance={"a": 1})
    assert item == tmp_path / "train" / "tomo"
    [config] = load_data_config(tmp_path / "train")
    assert config.annotation.name == "vesicle_labels.mrc"
    tomo = read_volume(config.tomogram)
    assert tomo.shape == volume.shape and np.allclose(tomo.voxel_size_nm, VOXEL_NM, rtol=1e-4)
    ann = load_annotation(config.annotation, shape=tomo.shape, voxel_size_nm=tomo.voxel_size_nm)
    assert set(np.unique(ann.labels)) - {0} == set(stack.table["id"])
    prepared = prepare_item(config, 1.8)  # what `synapseg train` does with each item
    assert prepared.n_vesicles > 0.8 * len(stack.table)
    with pytest.raises(OutputExistsError):
        add_to_training_set(tmp_path / "train", volume, stack.table)


def test_a_layer_without_file_is_copied_into_the_training_set(sim, tmp_path):
    from synapseg.io.volume_base import Volume

    volume = Volume(sim.tomogram, (VOXEL_NM,) * 3)  # in memory: no header to link to
    table = sim.vesicles[["id", *CENTER_PX, "radius_nm"]]
    item = add_to_training_set(tmp_path, volume, table)
    copy = read_volume(item / "tomogram.mrc")
    assert not (item / "tomogram.mrc").is_symlink()
    np.testing.assert_array_equal(np.asarray(copy.data), sim.tomogram)

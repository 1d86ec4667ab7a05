"""detect_filaments on a synthetic scene with exact connector and tether."""

from __future__ import annotations

import numpy as np
import pytest
from tests.filaments.conftest import CLEAR, VS, gt_table

from synapseg.evaluate.filaments import score_filaments
from synapseg.filaments import FilamentParams, detect_filaments


def test_finds_the_connector_and_the_tether(tiny_scene):
    params = FilamentParams(**CLEAR)
    table, labels = detect_filaments(
        tiny_scene["image"], VS, tiny_scene["vesicles"], tiny_scene["az"], params
    )
    kinds = sorted(table["kind"])
    assert kinds == ["connector", "tether"]
    con = table[table["kind"] == "connector"].iloc[0]
    assert (con["vesicle_a"], con["vesicle_b"]) == (1, 2)
    teth = table[table["kind"] == "tether"].iloc[0]
    assert teth["vesicle_a"] == 2 and teth["vesicle_b"] is pd_na()
    scores = score_filaments(gt_table(tiny_scene["filaments"]), table)
    assert scores["all"]["f1"] == 1.0
    assert scores["all"]["length_error_median_nm"] <= 2.0
    # labels carry the ids of the table, on the filament voxels only
    assert set(np.unique(labels)) == {0, *table["id"]}


def pd_na():
    import pandas as pd

    return pd.NA


def test_nothing_without_filaments(empty_scene):
    table, labels = detect_filaments(
        empty_scene["image"],
        VS,
        empty_scene["vesicles"],
        empty_scene["az"],
        FilamentParams(**CLEAR),
    )
    assert len(table) == 0 and not labels.any()


def test_no_az_means_no_tethers(tiny_scene):
    table, _ = detect_filaments(tiny_scene["image"], VS, tiny_scene["vesicles"], None)
    assert set(table["kind"]) == {"connector"}


def test_inverted_contrast(tiny_scene):
    params = FilamentParams(invert=True, **CLEAR)
    table, _ = detect_filaments(
        -tiny_scene["image"], VS, tiny_scene["vesicles"], tiny_scene["az"], params
    )
    assert sorted(table["kind"]) == ["connector", "tether"]


def test_az_mask_shape_is_checked(tiny_scene):
    with pytest.raises(ValueError, match="az_mask shape"):
        detect_filaments(tiny_scene["image"], VS, tiny_scene["vesicles"], np.zeros((2, 2, 2), bool))

"""The membrane segmentation: hysteresis plus an area floor in nm² (context.membrane_mask)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from synapseg.context.membrane_mask import (
    CARD_KEY,
    DEFAULTS,
    card_segmentation_params,
    clean_membrane_map,
    membrane_segmentation,
    segmentation_params,
)
from synapseg.context.stage import CONTEXT_STAGE
from synapseg.core.grid import Grid
from synapseg.core.segment import run_stages, stage_params

from .conftest import VOXEL_NM, truth_probabilities


def _sheet_and_blobs(voxel_nm: float, seed: int = 3):
    """A noisy membrane probability map: a tilted 5 nm sheet (p ≈ 0.95) across the whole
    volume, 12 noise blobs (spheres of 2.5 nm radius, p ≈ 0.8) well away from it, and
    low-probability noise everywhere (p < 0.4)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(round(n / voxel_nm)) for n in (48.0, 120.0, 120.0))
    z, y, x = np.meshgrid(*[(np.arange(s) + 0.5) * voxel_nm for s in shape], indexing="ij")
    prob = rng.uniform(0, 100, shape)
    sheet = np.abs(x - 30.0 - 0.2 * z - 0.1 * y) <= 2.5
    prob[sheet] = rng.uniform(220, 255, int(sheet.sum()))
    blobs = np.zeros(shape, bool)
    for _ in range(12):
        c = rng.uniform([6, 6, 60], [42, 114, 114])
        blob = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 2.5**2
        prob[blob] = rng.uniform(190, 215, int(blob.sum()))
        blobs |= blob
    return prob.astype(np.uint8), sheet, blobs


@pytest.mark.parametrize("voxel_nm", [1.0, 1.6])
def test_blobs_go_and_the_sheet_stays(voxel_nm):
    prob, sheet, blobs = _sheet_and_blobs(voxel_nm)
    assert (prob[blobs] >= 128).all()  # the raw map at 0.5 keeps every blob
    cleaned, facts = membrane_segmentation(prob, voxel_nm, min_area_nm2=200.0)
    mask = cleaned >= 128
    assert not mask[blobs].any()
    assert mask[sheet].all()
    assert (cleaned[mask] == prob[mask]).all()  # kept voxels keep their probability
    assert facts["pieces_kept"] == 1 and facts["voxels_removed"] == int(blobs.sum())


def test_hysteresis_needs_a_seed():
    prob, sheet, _ = _sheet_and_blobs(1.0)
    prob[sheet] = 200  # a large sheet, but nothing reaches high = 0.9
    assert not (membrane_segmentation(prob, 1.0, min_area_nm2=0.0)[0] >= 128).any()
    kept = membrane_segmentation(prob, 1.0, high=0.7, min_area_nm2=0.0)[0] >= 128
    assert kept[sheet].all()


def _patch(voxel_nm: float, side_nm: float = 16.0, thick_nm: float = 4.5) -> np.ndarray:
    """A square membrane patch of ``side_nm`` (area side², thickness ``thick_nm``)."""
    shape = tuple(int(round(n / voxel_nm)) for n in (32.0, 32.0, 32.0))
    z, y, x = np.meshgrid(*[(np.arange(s) + 0.5) * voxel_nm for s in shape], indexing="ij")
    on = (np.abs(z - 16) <= thick_nm / 2) & (np.abs(y - 16) < side_nm / 2)
    on &= np.abs(x - 16) < side_nm / 2
    return np.where(on, 250, 0).astype(np.uint8)


@pytest.mark.parametrize("voxel_nm", [0.8, 1.0, 2.0])
def test_the_area_floor_is_in_nm2_at_any_voxel_size(voxel_nm):
    prob = _patch(voxel_nm)  # ≈ 256 nm² of membrane at every voxel size
    area = (prob > 0).sum() * voxel_nm**3 / 4.5
    assert 190 < area < 330
    kept = membrane_segmentation(prob, voxel_nm, min_area_nm2=150.0)[0]
    gone = membrane_segmentation(prob, voxel_nm, min_area_nm2=400.0)[0]
    assert (kept > 0).sum() == (prob > 0).sum() and not gone.any()


def test_parameters_defaults_and_unknown_keys():
    assert segmentation_params() == {**DEFAULTS, "enabled": True}
    assert segmentation_params({"high": 0.8})["high"] == 0.8
    with pytest.raises(ValueError, match="unknown"):
        segmentation_params({"hi": 0.8})
    with pytest.raises(ValueError, match="low"):
        segmentation_params({"low": 0.9, "high": 0.6})
    prob = _patch(1.0)
    same, facts = clean_membrane_map(prob, 1.0, {"enabled": False})
    assert same is prob and facts["parameters"]["enabled"] is False


@pytest.fixture()
def card_folder(tmp_path):
    """A copy of the shipped membrane model whose card sets segmentation parameters."""
    from synapseg.context.membrane_net import default_membrane_model

    card = default_membrane_model()
    if card is None:
        pytest.skip("the default membrane model is not installed")
    folder = tmp_path / "mem"
    shutil.copytree(card.parent, folder)
    data = json.loads((folder / card.name).read_text())
    data.setdefault("postprocessing", {})[CARD_KEY] = {"high": 0.6, "min_area_nm2": 5e5}
    (folder / card.name).write_text(json.dumps(data))
    return folder


def test_a_bad_card_key_is_a_model_error(card_folder):
    from synapseg.errors import ModelError

    card = next(card_folder.glob("*.json"))
    data = json.loads(card.read_text())
    data["postprocessing"][CARD_KEY] = {"hi": 0.6}
    card.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="membrane_segmentation is invalid"):
        card_segmentation_params(card_folder)


def test_the_card_keys_are_honoured_by_the_stage(card_folder, synapse):
    got = card_segmentation_params(card_folder)
    assert got["high"] == 0.6 and got["min_area_nm2"] == 5e5 and got["low"] == DEFAULTS["low"]
    prob = truth_probabilities(synapse.membrane_labels)
    base = {**stage_params({"context": CONTEXT_STAGE}), "membrane_model": str(card_folder)}

    def run(**params):
        artifacts = {
            "grid": Grid(prob.shape, VOXEL_NM),
            "membrane_probabilities": prob,
            "vesicles": synapse.vesicles.copy(),
        }
        facts = run_stages([CONTEXT_STAGE], artifacts, {**base, **params})["context"]
        return facts, artifacts["membranes"]

    facts, membranes = run()  # the card's floor (5e5 nm²) removes every membrane
    seg = facts["membrane_segmentation"]
    assert seg["parameters"]["min_area_nm2"] == 5e5 and seg["pieces_kept"] == 0
    assert not np.isin(membranes, [1, 3, 4]).any() and facts["active_zone"]["found"] is False
    facts, membranes = run(membrane_segmentation={"min_area_nm2": 1000.0})  # caller wins
    assert facts["membrane_segmentation"]["pieces_kept"] > 0
    assert facts["active_zone"]["found"] is True
    facts, _ = run(membrane_segmentation=False)
    assert facts["membrane_segmentation"]["parameters"]["enabled"] is False


def test_the_stage_removes_noise_blobs_from_the_classes(synapse):
    prob = truth_probabilities(synapse.membrane_labels)
    rng = np.random.default_rng(5)
    noisy = prob.copy()
    free = np.argwhere(prob == 0)
    specks = free[rng.choice(len(free), 40, replace=False)]
    for z, y, x in specks:  # 3x3x3 specks at p = 0.9
        noisy[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 230
    noisy[prob > 0] = 255
    out = {}
    for on in (True, False):
        artifacts = {
            "grid": Grid(prob.shape, VOXEL_NM),
            "membrane_probabilities": noisy,
            "vesicles": pd.DataFrame(synapse.vesicles),
        }
        params = {**stage_params({"context": CONTEXT_STAGE}), "membrane_segmentation": on}
        run_stages([CONTEXT_STAGE], artifacts, params)
        out[on] = artifacts["membranes"]
    at = tuple(specks.T)
    # specks on a vesicle's shell take the vesicle's class, those touching a membrane its
    # class; the others are unclassified membrane (5) without the segmentation
    alone = out[False][at] == 5
    assert alone.sum() > 20
    assert (out[True][at][alone] == 0).all()  # with it, none is left
    true = prob > 0
    assert (out[True][true] == out[False][true]).mean() > 0.99  # the membranes are kept


def test_the_class_volume_covers_the_map_when_no_level_finds_a_pair(no_cleft):
    from synapseg.context import analyse_context

    prob = truth_probabilities(no_cleft.membrane_labels)
    prob[prob > 0] = 160  # above 0.5, below the stricter retry levels (192, 230)
    ctx = analyse_context(prob, no_cleft.vesicles, VOXEL_NM)
    assert ctx.az is None and ctx.facts["level"] == 128
    on = (prob > 0) & (ctx.membranes != 2)
    assert (ctx.membranes[on] != 0).mean() > 0.99  # was empty: classes read at level 230

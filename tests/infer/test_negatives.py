"""No vesicles where there are none: vesicle-free tomograms give an empty table and a plain
statement, and the contrast decision does not flip between crops of the same data set."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.infer.polarity import decide_polarity
from synapseg.infer.predict import predict_volume
from synapseg.io.volume import Volume
from synapseg.model.registry import load_model
from synapseg.post.vesicles import PostParams, find_vesicles
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.specimen.mask import specimen_mask

VOXEL_NM = 1.68


@pytest.fixture(scope="module")
def model():
    net, card = load_model("default")
    if card.name.startswith("test-random"):
        pytest.skip("the shipped default model is untrained")
    return net, card


def vesicle_free(seed: int, **overrides) -> np.ndarray:
    params = SimulationParams(
        shape=(64, 160, 160), voxel_size_nm=VOXEL_NM, seed=seed, n_vesicles=0, **overrides
    )
    return simulate_tomogram(params, keep_phantom=False).tomogram


@pytest.fixture(scope="module")
def negative_103():
    return vesicle_free(103)


def segment(tomogram: np.ndarray, model) -> tuple:
    mask = specimen_mask(tomogram, VOXEL_NM)
    vol = Volume(tomogram, (VOXEL_NM,) * 3)
    prob = predict_volume(vol, model=model, device="cpu", specimen=mask)
    return find_vesicles(tomogram, prob, VOXEL_NM, PostParams(), specimen=mask)


@pytest.mark.parametrize(
    "seed, overrides",
    [
        pytest.param(103, {}, id="distractors-filaments-membranes"),
        pytest.param(102, {"distractors": False}, id="membranes-filaments", marks=pytest.mark.slow),
        pytest.param(101, {}, id="distractors-2", marks=pytest.mark.slow),
        pytest.param(104, {"filaments": False}, id="no-filaments", marks=pytest.mark.slow),
    ],
)
def test_vesicle_free_tomogram_gives_an_empty_table(seed, overrides, model, negative_103):
    tomogram = negative_103 if seed == 103 and not overrides else vesicle_free(seed, **overrides)
    table, rejected, info = segment(tomogram, model)
    assert len(table) == 0
    assert info["statement"].startswith("no vesicles found")


def decisions(volumes, model) -> list[dict]:
    return [
        decide_polarity(Volume(x, (VOXEL_NM,) * 3), model, "cpu", specimen_mask(x, VOXEL_NM))
        for x in volumes
    ]


def test_polarity_is_the_same_on_two_crops_of_vesicle_free_data(negative_103, model):
    """Both crops hold a few spurious confident voxels, more of them inverted (the old rule,
    a ratio of confident fractions only, declared both inverted): no evidence, dark kept."""
    a, b = negative_103[:, :128, :128], negative_103[:, 32:, 32:]
    found = decisions((a, b), model)
    assert [d["invert"] for d in found] == [False, False]
    assert all(d["evidence"] == "none" and d["confidence"] == 0.0 for d in found)


def test_bright_protein_alone_does_not_flip_the_contrast():
    """A vesicle-free draw of world v2 whose inverted crop holds more confident voxels than
    ``MIN_EVIDENCE`` (bright protein densities read as lumens by ``sim-unet-v2``) and over
    twice the normal ones: the old rule flipped it, and 10 false vesicles followed.
    Flipping needs ``MIN_INVERT_EVIDENCE``."""
    from synapseg.infer import polarity
    from synapseg.train.rehearsal import world_params

    v2 = load_model("sim-unet-v2")
    params = world_params("v2", 1004, seed=20261295).replace(n_vesicles=0)
    x = simulate_tomogram(params, keep_phantom=False).tomogram
    vs = params.voxel_size_nm
    found = decide_polarity(Volume(x, (vs,) * 3), v2, "cpu", specimen_mask(x, vs))
    share = found["confident_fraction"]
    assert polarity.MIN_EVIDENCE <= share["inverted"] < polarity.MIN_INVERT_EVIDENCE
    assert share["inverted"] >= polarity.MIN_RATIO * share["normal"]
    assert found["invert"] is False and found["evidence"] == "weak"
    assert found["confidence"] == 0.0  # dark densities assumed, not measured
    assert "--invert yes" in found["statement"]


@pytest.mark.slow
def test_polarity_of_inverted_vesicle_free_data_stays_dark(negative_103, model):
    a, b = negative_103[:, :128, :128], negative_103[:, 32:, 32:]
    found = decisions((-a, -b), model)
    assert [d["invert"] for d in found] == [False, False]
    assert all("assuming the usual dark densities" in d["statement"] for d in found)


def test_a_confident_candidate_passes_the_no_vesicle_gate(negative_103):
    """The gate acts on the tomogram's best candidate: a confident one lets candidates on to
    the sphere fit and QC; a weak one alone is 'no vesicles found'."""
    zz, yy, xx = np.ogrid[:64, :160, :160]
    ball = ((zz - 32) ** 2 + (yy - 80) ** 2 + (xx - 80) ** 2) <= 11**2
    for value, gated in ((0.7, True), (0.97, False)):
        prob = np.where(ball, value, 0.0).astype(np.float32)
        _, rejected, info = find_vesicles(negative_103, prob, VOXEL_NM, PostParams(invert="no"))
        reasons = " ".join(rejected["reason"].astype(str))
        assert ("no confident vesicle" in reasons) is gated
        assert info["counts"]["fitted"] == 1

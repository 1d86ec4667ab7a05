"""The membrane_net stage: registration, skipping, streaming into a sink, model checks."""

from __future__ import annotations

import numpy as np
import pytest

import synapseg
from synapseg.context.membrane_net import (
    ARTIFACT,
    combine_on_model_grid,
    default_membrane_model,
    sample_vesicles,
)
from synapseg.core.stages import registered_stages
from synapseg.errors import ModelError
from synapseg.model.registry import ModelCard, save_model
from synapseg.model.unet import UNetConfig, build_unet

VS = 1.68


@pytest.fixture(scope="module")
def sim():
    return synapseg.simulate(shape=(32, 96, 96), voxel_size_nm=VS, seed=11, n_vesicles=4)


@pytest.fixture(scope="module")
def random_membrane_model(tmp_path_factory):
    """An untrained two-channel membrane model (the shipped one's channel names)."""
    config = UNetConfig(stem=2, base_channels=4, depth=2, out_channels=2)
    card = ModelCard(
        name="test-membrane",
        architecture=config.to_dict(),
        voxel_size_nm=2.4,
        output_channels=["membrane", "vesicle_membrane"],
        training_data="none",
        trained=False,
    )
    return save_model(tmp_path_factory.mktemp("membrane_model"), build_unet(config, seed=1), card)


def test_stage_is_registered_with_the_contract():
    stage = registered_stages()["membrane_net"]
    assert stage.outputs == (ARTIFACT,)
    assert set(stage.inputs) == {"image", "grid", "specimen", "polarity", "probabilities"}
    assert ARTIFACT in stage.persist


@pytest.mark.parametrize("params", [{"context": False}, {"membrane_model": "none"}])
def test_stage_can_be_switched_off(sim, params):
    seg = synapseg.segment(
        sim.tomogram, voxel_size_nm=VS, outputs=[ARTIFACT], invert="no", **params
    )
    assert seg[ARTIFACT] is None
    assert seg.facts["membrane_net"]["skipped"] is True


def test_stage_streams_the_membrane_channel_into_the_sink(sim, random_membrane_model, tmp_path):
    from synapseg.infer.predict import predict_volume
    from synapseg.io.volume import Volume

    sink = np.lib.format.open_memmap(
        tmp_path / "m.npy", mode="w+", dtype=np.uint8, shape=sim.tomogram.shape
    )
    seg = synapseg.segment(
        sim.tomogram,
        voxel_size_nm=VS,
        outputs=[ARTIFACT],
        sinks={ARTIFACT: sink},
        invert="no",
        membrane_model=str(random_membrane_model),
    )
    assert seg[ARTIFACT] is sink
    facts = seg.facts["membrane_net"]
    assert facts["model"]["name"] == "test-membrane" and facts["channel"] == "membrane"
    # the same engine and preprocessing as the vesicle network (predict_volume) on the
    # model grid, any membrane minus the vesicle network's vesicles there, then one channel
    # resampled to the input grid
    from synapseg.infer.preprocess import (
        grid_shape,
        resample_stream,
        rescale_factors,
        rescale_volume,
    )

    mshape = tuple(grid_shape(sim.tomogram.shape, VS, 2.4))
    maps = np.zeros((2, *mshape), np.uint8)
    predict_volume(
        Volume(rescale_volume(sim.tomogram, VS, 2.4), (2.4,) * 3),
        model=str(random_membrane_model),
        out=maps,
        channels=(0, 1),
        specimen=seg["specimen"],
    )
    ves = sample_vesicles(seg["probabilities"], VS, 2.4, mshape)
    combined = combine_on_model_grid(maps, ves).astype(np.float32)
    back = np.zeros(sink.shape, np.float32)

    def put(z0, z1, block):
        back[z0:z1] = block

    resample_stream(lambda a, b: combined[a:b], mshape, sink.shape, rescale_factors(2.4, VS), put)
    assert facts["model_grid_shape_zyx"] == list(mshape)
    assert np.array_equal(np.asarray(sink), np.clip(np.rint(back), 0, 255).astype(np.uint8))
    assert sink.max() > 0


def test_vesicles_are_taken_out_of_the_membrane_map():
    maps = np.full((2, 10, 12, 12), 200, np.uint8)
    vesicles = np.zeros((10, 12, 12), np.uint8)
    vesicles[4:6, 5:7, 5:7] = 255
    out = combine_on_model_grid(maps, vesicles)
    p = 1 - (1 - 200 / 255) ** 2
    assert out[0, 0, 0] == round(p * 255)
    assert (out[vesicles > 0] == 0).all() and (out[vesicles == 0] > 0).all()


def test_vesicle_membrane_weight_scales_the_second_channel():
    maps = np.zeros((2, 4, 6, 6), np.uint8)
    maps[0, :, :, :3] = 100
    maps[1] = 200
    out = combine_on_model_grid(maps.copy(), None, weights=(1.0, 0.0))
    assert np.array_equal(out, maps[0])  # weight 0: the membrane channel alone
    half = combine_on_model_grid(maps.copy(), None, weights=(1.0, 0.5))
    p = 1 - (1 - 100 / 255) * (1 - 0.5 * 200 / 255)
    assert half[0, 0, 0] == round(p * 255) and half[0, 0, 5] == round(0.5 * 200)


def test_a_card_weight_of_zero_runs_the_membrane_channel_alone(sim):
    seg = synapseg.segment(
        sim.tomogram,
        voxel_size_nm=VS,
        outputs=[ARTIFACT],
        invert="no",
        membrane_model="sim-membrane-v3",
    )
    facts = seg.facts["membrane_net"]
    assert facts["vesicle_membrane_weight"] == 0.0
    assert facts["details"]["channels"] == ["membrane"]
    v2 = synapseg.segment(
        sim.tomogram,
        voxel_size_nm=VS,
        outputs=[ARTIFACT],
        invert="no",
        membrane_model="sim-membrane-v2",
    ).facts["membrane_net"]
    assert v2["vesicle_membrane_weight"] == 1.0
    assert v2["details"]["channels"] == ["membrane", "vesicle_membrane"]


def test_vesicles_reach_the_model_grid_with_their_margin():
    # input 1 nm, model 2 nm: a vesicle voxel block at input 8-11 lies at model 4-5; the
    # margin (1.5 nm + half a 2 nm voxel = 1.25 model voxels) spreads it by one model voxel
    ves = np.zeros((20, 24, 24), np.uint8)
    ves[8:12, 8:12, 8:12] = 255
    out = sample_vesicles(ves, 1.0, 2.0, (10, 12, 12), margin_nm=1.5)
    assert out.shape == (10, 12, 12)
    core = np.zeros(out.shape, bool)
    core[3:7, 3:7, 3:7] = True
    assert (out[core] == 255).all() and (out[~core] == 0).all()
    assert (sample_vesicles(ves, 1.0, 2.0, (10, 12, 12), margin_nm=0.0)[4:6, 4:6, 4:6] == 255).all()


def test_a_vesicle_model_is_refused_as_membrane_model(sim):
    with pytest.raises(ModelError, match="no 'membrane' output channel"):
        synapseg.segment(
            sim.tomogram,
            voxel_size_nm=VS,
            outputs=[ARTIFACT],
            invert="no",
            membrane_model="test-random",
        )


@pytest.mark.skipif(default_membrane_model() is None, reason="membrane weights not installed")
@pytest.mark.parametrize(
    ("spec", "name", "min_dice"),
    # measured 0.49 (v1) and 0.537 (v2), median surface distance 1.68 nm = 1 voxel for both,
    # on 2026-12-02: far from issue 14's 0.85 (docs/benchmarks.md), but membrane maps, not
    # noise. The default is v1: the same active zone, distances and pools as v2 at a third
    # of its CPU (docs/model.md); v2 is one option away.
    # v3 (v2 fine-tuned on non-vesicle membranes, card channel weight 0; 2026-12-02 third
    # session): 0.584, 1.68 nm. v4 (v3 fine-tuned on the signed distance to the bilayer
    # surface, 2026-12-03): 0.536, 1.68 nm.
    [
        ("default", "sim-membrane-v1", 0.42),
        ("sim-membrane-v2", "sim-membrane-v2", 0.45),
        ("sim-membrane-v3", "sim-membrane-v3", 0.45),
        ("sim-membrane-v4", "sim-membrane-v4", 0.45),
    ],
)
def test_shipped_models_find_the_plasma_membrane(sim, spec, name, min_dice):
    from synapseg.evaluate.membranes import score_membranes

    seg = synapseg.segment(
        sim.tomogram, voxel_size_nm=VS, outputs=[ARTIFACT], invert="no", membrane_model=spec
    )
    assert seg.facts["membrane_net"]["model"]["name"] == name
    score = score_membranes(seg[ARTIFACT], sim.membrane_labels, VS)
    assert score["dice"] > min_dice, score
    assert score["surface_distance_nm"]["median"] <= 2 * VS, score

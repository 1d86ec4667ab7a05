"""Fixtures for the core: a small simulated tomogram and a network stand-in.

The stand-in (the ground-truth balls, blurred so that close neighbours bridge, as in
tests/test_pipeline.py) replaces the network so that these tests check the core around it
in seconds; the network itself is tested in tests/infer and tests/model.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from synapseg.core import file_stages
from synapseg.core.stages import Stage, register_stage, temporary_stages, unregister_stage
from synapseg.io.volume_writer import open_volume_writer, write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

VOXEL_NM = 1.68


@pytest.fixture(scope="session")
def core_sim():
    params = SimulationParams(shape=(32, 96, 96), voxel_size_nm=VOXEL_NM, seed=7, n_vesicles=6)
    return simulate_tomogram(params, keep_phantom=False)


@pytest.fixture(scope="session")
def truth_u8(core_sim) -> np.ndarray:
    """The stand-in probability map, uint8 0-255 like the predict stage's."""
    blurred = ndimage.gaussian_filter((core_sim.vesicle_labels > 0).astype(np.float32), 1.2)
    return np.round(np.clip(blurred * 1.1, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def tomo_file(core_sim, tmp_path):
    return write_volume(tmp_path / "in" / "syn.mrc", np.asarray(core_sim.tomogram), VOXEL_NM)


@pytest.fixture
def fake_core_network(truth_u8):
    """The registry's network, polarity and predict stages replaced by the truth map."""

    def predict(ctx):
        out = ctx.sink("probabilities", ctx["grid"].shape, np.uint8)
        out[:] = truth_u8
        ctx.facts["model"] = {"name": "truth-map", "sha256": "0" * 64}
        return {"probabilities": out, "polarity": {"invert": False, "forced": True}}

    with temporary_stages():
        unregister_stage("network")
        unregister_stage("polarity")
        register_stage(
            Stage(
                "predict",
                ("image", "grid"),
                ("probabilities", "polarity"),
                predict,
                persist=("probabilities", "polarity"),
            ),
            replace=True,
        )
        yield


@pytest.fixture
def fake_file_hooks(truth_u8):
    """``hooks`` for ``segment_tomogram``: the truth map as the file-level predict stage;
    ``calls`` counts the stages that ran."""
    calls: list[str] = []

    def stage_predict(volume, options, target, specimen=None):
        calls.append("predict")
        with open_volume_writer(target, volume.shape, np.uint8, volume.voxel_size_nm) as out:
            out[:] = truth_u8
        return {
            "seconds": 0.0,
            "model": {"name": "truth-map", "sha256": "0" * 64},
            "polarity": {"invert": False, "forced": True},
        }

    def stage_vesicles(*args, **kwargs):
        calls.append("vesicles")
        return file_stages.stage_vesicles(*args, **kwargs)

    return SimpleNamespace(
        stage_predict=stage_predict,
        stage_vesicles=stage_vesicles,
        stage_export=file_stages.stage_export,
        calls=calls,
    )

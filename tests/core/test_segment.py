"""``synapseg.segment`` on arrays: sinks, wanted outputs, parameters, no network needed."""

from __future__ import annotations

import numpy as np
import pytest

import synapseg
from synapseg.core.stages import Stage, register_stage, temporary_stages


def _double(ctx):
    out = ctx.sink("doubled", ctx["grid"].shape, np.float32)
    out[:] = np.asarray(ctx["image"], dtype=np.float32) * ctx.params["factor"]
    ctx.facts["factor"] = ctx.params["factor"]
    return {"doubled": out}


@pytest.fixture
def doubling():
    with temporary_stages():
        register_stage(Stage("double", ("image", "grid"), ("doubled",), _double, {"factor": 2.0}))
        yield


def test_outputs_stream_into_the_given_sink(doubling, tmp_path):
    image = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    sink = np.lib.format.open_memmap(tmp_path / "d.npy", "w+", np.float32, image.shape)
    seg = synapseg.segment(
        image, voxel_size_nm=1.0, outputs=["doubled"], sinks={"doubled": sink}, factor=3.0
    )
    assert seg["doubled"] is sink and seg.facts == {"double": {"factor": 3.0}}
    sink.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), image * 3)


def test_a_sink_of_the_wrong_shape_or_dtype_is_refused(doubling):
    image = np.zeros((3, 4, 5), np.float32)
    for wrong in (np.zeros((3, 4, 4), np.float32), np.zeros((3, 4, 5), np.uint8)):
        with pytest.raises(ValueError, match="sink for 'doubled'"):
            synapseg.segment(
                image, voxel_size_nm=1.0, outputs=["doubled"], sinks={"doubled": wrong}
            )


def test_a_volume_carries_its_geometry_into_the_grid(doubling):
    from synapseg.io.volume import Volume

    volume = Volume(np.ones((2, 3, 4), np.float32), (2.0, 1.0, 1.0), origin_nm=(10.0, 0.0, 0.0))
    seg = synapseg.segment(volume, outputs=["doubled"])
    assert seg.grid.voxel_size_nm == (2.0, 1.0, 1.0) and seg.grid.origin_nm == (10.0, 0.0, 0.0)
    assert seg["doubled"].sum() == 2 * volume.data.sum()
    with pytest.raises(ValueError, match="voxel_size_nm"):
        synapseg.segment(np.ones((2, 3, 4)), outputs=["doubled"])  # an array needs one


def test_rejected_candidates_keep_their_confidence():
    """The report lists every rejected candidate with its confidence (for calibration)."""
    import pandas as pd

    from synapseg.core.builtin import rejected_summary

    rejected = pd.DataFrame(
        {
            "center_z_px": [1.0],
            "center_y_px": [2.0],
            "center_x_px": [3.0],
            "radius_nm": [9.0],
            "score": [0.7],
            "confidence": [0.12],
            "reason": ["confidence 0.12 < 0.5: weak membrane"],
        }
    )
    (row,) = rejected_summary(rejected)
    assert row["confidence"] == 0.12 and row["score"] == 0.7 and row["reason"].startswith("conf")

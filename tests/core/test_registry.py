"""A stage registered from outside the package runs through ``segment`` and through the
runner, with resume, without touching the driver."""

from __future__ import annotations

import json

import numpy as np
import pytest

import synapseg
from synapseg.core.grid import Grid
from synapseg.core.options import SegmentOptions
from synapseg.core.runner import Runner
from synapseg.core.stages import (
    Stage,
    register_stage,
    registered_stages,
    stage_order,
    temporary_stages,
)
from synapseg.core.tomogram import segment_tomogram

TOY_CALLS: list[str] = []


def vesicles_per_section(ctx):
    """Toy stage: how many vesicle centers lie in each z-section."""
    TOY_CALLS.append(ctx.stage)
    z = np.rint(ctx["vesicles"]["center_z_px"].to_numpy()).astype(int)
    counts = np.bincount(np.clip(z, 0, ctx["grid"].shape[0] - 1), minlength=ctx["grid"].shape[0])
    ctx.facts["n_counted"] = int(counts.sum())
    return {"vesicles_per_section": counts.astype(np.int64)}


@pytest.fixture
def toy_stage():
    with temporary_stages():
        TOY_CALLS.clear()
        register_stage(
            Stage(
                "toy_counts",
                ("grid", "vesicles"),
                ("vesicles_per_section",),
                vesicles_per_section,
                persist=("vesicles_per_section",),
            )
        )
        yield


def test_toy_stage_runs_through_segment(core_sim, fake_core_network, toy_stage):
    seg = synapseg.segment(np.asarray(core_sim.tomogram), voxel_size_nm=1.68)
    counts = seg["vesicles_per_section"]
    assert TOY_CALLS == ["toy_counts"]
    assert len(seg.vesicles) >= 4  # the stand-in map holds the 6 simulated vesicles
    assert counts.sum() == len(seg.vesicles) == seg.facts["toy_counts"]["n_counted"]
    assert seg.grid.wedge is not None  # the acquisition stage ran before the vesicles
    # Only the stages the wanted artifact needs run.
    TOY_CALLS.clear()
    only = synapseg.segment(np.asarray(core_sim.tomogram), voxel_size_nm=1.68, outputs=["wedge"])
    assert TOY_CALLS == [] and "vesicles" not in only and "wedge" in only


def test_toy_stage_resumes_in_the_file_runner(tomo_file, tmp_path, fake_file_hooks, toy_stage):
    out = tmp_path / "out"
    options = SegmentOptions(formats=("csv",))
    report = segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)
    saved = out / "syn_vesicles_per_section.npy"
    assert TOY_CALLS == ["toy_counts"] and fake_file_hooks.calls == ["predict", "vesicles"]
    assert saved.exists() and report["finished"]
    assert np.load(saved).sum() == report["n_vesicles"]
    on_disk = json.loads((out / "syn_report.json").read_text())
    assert on_disk["stages"]["toy_counts"]["n_counted"] == report["n_vesicles"]
    # A second run skips everything, the toy stage included.
    assert segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)["skipped"]
    assert TOY_CALLS == ["toy_counts"]
    # Deleting its artifact recomputes only it.
    saved.unlink()
    again = segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)
    assert TOY_CALLS == ["toy_counts", "toy_counts"]
    assert fake_file_hooks.calls == ["predict", "vesicles"]
    assert saved.exists() and again["finished"] and "skipped" not in again


def _blur(ctx):
    TOY_CALLS.append("blur")
    return {"blurred": np.asarray(ctx["image"], dtype=np.float32) * 0.5}


def _total(ctx):
    TOY_CALLS.append("total")
    return {"total": float(ctx["blurred"].sum())}


def test_runner_resumes_a_chain_and_recomputes_downstream(tmp_path):
    stages = {
        "blur": Stage("blur", ("image",), ("blurred",), _blur, persist=("blurred",)),
        "total": Stage("total", ("blurred",), ("total",), _total, persist=("total",)),
    }
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    state: dict = {}

    def run() -> dict:
        return Runner(image, Grid.of(image, 1.0), tmp_path, "t", state=state, stages=stages).run()

    TOY_CALLS.clear()
    assert run()["total"] == pytest.approx(image.sum() / 2)
    assert TOY_CALLS == ["blur", "total"]
    assert run()["image"] is image and TOY_CALLS == ["blur", "total"]  # nothing to do
    (tmp_path / "t_blurred.npy").unlink()
    assert run()["total"] == pytest.approx(image.sum() / 2)
    assert TOY_CALLS == ["blur", "total"] * 2  # a recomputed input redoes what follows


def test_registry_refuses_clashes_and_unknown_inputs():
    with temporary_stages():
        with pytest.raises(ValueError, match="already registered"):
            register_stage(Stage("vesicles", ("image",), ("other",), _blur))
        with pytest.raises(ValueError, match="already produced"):
            register_stage(Stage("second", ("image",), ("probabilities",), _blur))
        register_stage(Stage("orphan", ("nothing_makes_this",), ("x",), _blur))
        with pytest.raises(ValueError, match="no stage produces"):
            stage_order(registered_stages(), ["x"])
    loop = {
        "a": Stage("a", ("b_out",), ("a_out",), _blur),
        "b": Stage("b", ("a_out",), ("b_out",), _blur),
    }
    with pytest.raises(ValueError, match="cycle"):
        stage_order(loop)
    with pytest.raises(TypeError, match="unknown parameter"):
        synapseg.segment(np.zeros((4, 4, 4)), voxel_size_nm=1.0, outputs=[], thresold=0.5)


def test_builtin_stages_in_dependency_order():
    names = [st.name for st in stage_order(registered_stages(), ["vesicles"])]
    assert names.index("predict") < names.index("vesicles")
    assert names.index("specimen") < names.index("acquisition") < names.index("vesicles")
    assert names.index("network") < names.index("polarity") < names.index("predict")

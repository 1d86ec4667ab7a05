"""The filaments stage: when it runs, and what the file runner keeps of it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from tests.filaments.conftest import CLEAR, VS

from synapseg.core.grid import Grid
from synapseg.core.runner import Runner
from synapseg.core.stages import Stage, StageContext, registered_stages
from synapseg.filaments.stage import FILAMENT_OUTPUTS, run_filaments


def _ctx(scene, az, mode):
    grid = Grid.of(scene["image"], VS)
    inputs = {
        "image": scene["image"],
        "grid": grid,
        "polarity": {"invert": False},
        "vesicles": scene["vesicles"],
        "az": az,
    }
    return StageContext("filaments", inputs, {"filaments": mode, "filament_params": CLEAR})


def test_auto_needs_an_active_zone(tiny_scene):
    ctx = _ctx(tiny_scene, None, "auto")
    out = run_filaments(ctx)
    assert all(out[k] is None for k in FILAMENT_OUTPUTS)
    assert ctx.facts["ran"] is False


def test_forced_without_az_finds_connectors_only(tiny_scene):
    ctx = _ctx(tiny_scene, None, True)
    out = run_filaments(ctx)
    assert set(out["filaments"]["kind"]) == {"connector"}
    assert "no active zone" in ctx.facts["note"]


def test_with_az_object_and_summary(tiny_scene):
    ctx = _ctx(tiny_scene, SimpleNamespace(mask=tiny_scene["az"]), "auto")
    out = run_filaments(ctx)
    assert sorted(out["filaments"]["kind"]) == ["connector", "tether"]
    assert out["vesicles_with_filaments"]["n_tethers"].tolist() == [0, 1]
    assert ctx.facts["summary"]["n_connectors"] == 1
    assert out["filament_labels"].dtype == np.uint16


def test_registered_and_kept_by_the_runner(tiny_scene, tmp_path):
    stage = registered_stages()["filaments"]
    assert set(FILAMENT_OUTPUTS) == set(stage.outputs)
    # the stage after stand-in producers of its inputs
    given = {
        "polarity": {"invert": False},
        "vesicles": tiny_scene["vesicles"],
        "az": SimpleNamespace(mask=tiny_scene["az"]),
        "vesicles_in_context": None,
    }
    stages = {
        f"make_{k}": Stage(f"make_{k}", (), (k,), lambda ctx, k=k, v=v: {k: v})
        for k, v in given.items()
        if k in stage.inputs
    }
    stages["filaments"] = stage
    grid = Grid.of(tiny_scene["image"], VS)
    params = {"filament_params": CLEAR}
    runner = Runner(tiny_scene["image"], grid, tmp_path, "t", params=params, stages=stages)
    runner.run()
    for suffix in ("_filaments.csv", "_filaments.mrc", "_filaments.mod", "_vesicles.csv"):
        assert (tmp_path / f"t{suffix}").is_file(), suffix
    assert (tmp_path / "t_filaments_summary.png").is_file()
    table = pd.read_csv(tmp_path / "t_filaments.csv")
    assert sorted(table["kind"]) == ["connector", "tether"]
    assert runner.state["stages"]["filaments"]["summary"]["n_tethers"] == 1
    # resume: nothing to do
    assert runner.plan() == []

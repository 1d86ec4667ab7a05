"""The ``context`` stage: off / no membrane map, in ``segment``, and in the file runner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synapseg.context.stage import CONTEXT_OUTPUTS, CONTEXT_STAGE
from synapseg.core.grid import Grid
from synapseg.core.runner import Runner
from synapseg.core.segment import run_stages, stage_params
from synapseg.core.stages import Stage, registered_stages

from .conftest import VOXEL_NM, truth_probabilities


def _params(**overrides):
    return {**stage_params({"context": CONTEXT_STAGE}), **overrides}


def test_registered_after_the_membrane_network():
    stages = registered_stages()
    assert stages["context"] is CONTEXT_STAGE
    assert "membrane_probabilities" in CONTEXT_STAGE.inputs
    assert set(CONTEXT_STAGE.persist) == set(CONTEXT_OUTPUTS)


@pytest.mark.parametrize(
    ("params", "prob", "reason"),
    [({"context": False}, np.zeros((4, 4, 4), np.uint8), "off"), ({}, None, "no membrane")],
)
def test_off_or_without_membranes_every_output_is_none(params, prob, reason):
    artifacts = {
        "grid": Grid((4, 4, 4), 1.0),
        "membrane_probabilities": prob,
        "vesicles": pd.DataFrame(),
    }
    facts = run_stages([CONTEXT_STAGE], artifacts, _params(**params))["context"]
    assert facts["ran"] is False and reason in facts["reason"]
    assert all(artifacts[k] is None for k in CONTEXT_OUTPUTS)


def _stages(synapse):
    prob = truth_probabilities(synapse.membrane_labels)
    return {
        "membrane_net": Stage(
            "membrane_net",
            (),
            ("membrane_probabilities",),
            lambda c: {"membrane_probabilities": prob},
        ),
        "vesicles": Stage(
            "vesicles",
            (),
            ("vesicles",),
            lambda c: {"vesicles": synapse.vesicles.copy()},
            persist=("vesicles",),
        ),
        "context": CONTEXT_STAGE,
    }


def test_runner_persists_the_context_and_resumes(synapse, tmp_path):
    from synapseg.context.files import read_active_zone
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume import read_volume

    grid = Grid(synapse.membrane_labels.shape, VOXEL_NM)
    state: dict = {}
    runner = Runner(None, grid, tmp_path, "syn", state=state, stages=_stages(synapse))
    runner.run()
    assert "context" in runner.ran
    facts = state["stages"]["context"]
    assert facts["ran"] and facts["active_zone"]["found"]
    assert facts["pools"]["docked"] + facts["pools"]["proximal"] + facts["pools"]["distal"] == len(
        synapse.vesicles
    )
    json.dumps(facts)  # the report can hold them
    table = read_table_csv(tmp_path / "syn_vesicles.csv")
    for col in ("az_distance_nm", "az_nearest_z_nm", "az_nearest_y_nm", "az_nearest_x_nm", "pool"):
        assert col in table.columns
    membranes = read_volume(tmp_path / "syn_membranes.mrc", VOXEL_NM)
    assert membranes.data.dtype == np.uint8 and set(np.unique(membranes.data)) <= {0, 1, 2, 3, 4, 5}
    assert (tmp_path / "syn_compartment.mrc").is_file() and (tmp_path / "syn_layers.csv").is_file()
    assert (tmp_path / "syn_az.mrc").is_file() and (tmp_path / "syn_az.ply").is_file()
    az = read_active_zone(tmp_path / "syn_az.json", VOXEL_NM)
    assert az is not None and az.mask.sum() == runner.artifacts["az"].mask.sum()
    np.testing.assert_allclose(az.points_nm, runner.artifacts["az"].points_nm, atol=1e-3)
    again = Runner(None, grid, tmp_path, "syn", state=state, stages=_stages(synapse))
    again.run()
    assert again.ran == []  # everything on disk: nothing recomputed
    (tmp_path / "syn_compartment.mrc").unlink()
    third = Runner(None, grid, tmp_path, "syn", state=state, stages=_stages(synapse))
    third.run()
    assert third.ran == ["membrane_net", "context"]


def test_runner_records_none_when_off(synapse, tmp_path):
    state: dict = {}
    grid = Grid(synapse.membrane_labels.shape, VOXEL_NM)
    Runner(None, grid, tmp_path, "s", {"context": False}, state, _stages(synapse)).run()
    assert state["artifacts"]["az"] == {"kind": "json", "value": None}
    assert not (tmp_path / "s_membranes.mrc").exists()
    again = Runner(None, grid, tmp_path, "s", {"context": False}, state, _stages(synapse))
    again.run()
    assert again.ran == []

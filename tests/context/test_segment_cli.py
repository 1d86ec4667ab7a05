"""``synapseg segment`` with the context stage: files, columns, report, Pyto, --no-context."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from synapseg import pipeline
from synapseg.cli import app
from synapseg.core.stages import Stage, register_stage, temporary_stages
from synapseg.io.tables import read_table_csv
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import open_volume_writer, write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

from .conftest import truth_probabilities


@pytest.fixture(scope="module")
def sim():
    params = SimulationParams(shape=(48, 128, 128), voxel_size_nm=1.68, seed=41, n_vesicles=14)
    return simulate_tomogram(params)


def truth_stage_predict(sim):
    """``pipeline.stage_predict`` replaced by the simulator's vesicles, blurred."""

    def stage_predict(volume, options, target, specimen=None):
        prob = ndimage.gaussian_filter((sim.vesicle_labels > 0).astype(np.float32), 1.2)
        with open_volume_writer(target, volume.shape, np.uint8, volume.voxel_size_nm) as out:
            out[:] = np.round(np.clip(prob * 1.1, 0, 1) * 255).astype(np.uint8)
        return {"seconds": 0.0, "model": {"name": "truth-map", "sha256": "0" * 64}}

    return stage_predict


@pytest.fixture
def truth_networks(sim, monkeypatch):
    """The vesicle network and the membrane network replaced by the truth maps."""

    def membranes(ctx):
        if not ctx.params.get("context", True):
            return {"membrane_probabilities": None}
        return {"membrane_probabilities": truth_probabilities(sim.membrane_labels)}

    monkeypatch.setattr(pipeline, "stage_predict", truth_stage_predict(sim))
    with temporary_stages():
        register_stage(
            Stage("membrane_net", (), ("membrane_probabilities",), membranes, {"context": True}),
            replace=True,
        )
        yield


def _segment(tomo, out, *extra):
    args = ["segment", str(tomo), "-o", str(out), "--formats", "csv,json,star,pyto", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "syn_report.json").read_text())


@pytest.mark.slow
def test_segment_runs_the_context(sim, tmp_path, truth_networks):
    tomo = write_volume(tmp_path / "in" / "syn.mrc", sim.tomogram, 1.68)
    out = tmp_path / "out"
    report = _segment(tomo, out, "--proximal-nm", "40")
    facts = report["stages"]["context"]
    assert facts["ran"] and facts["active_zone"]["found"]
    assert facts["pool_thresholds_nm"] == {"docked": 5.0, "proximal": 40.0}
    seg = facts["membrane_segmentation"]  # the report records the segmentation's parameters
    assert seg["parameters"]["enabled"] and seg["parameters"]["min_area_nm2"] > 0
    assert seg["pieces_kept"] >= 1
    for name in (
        "membranes.mrc",
        "az.json",
        "az.mrc",
        "az.ply",
        "az.mod",
        "compartment.mrc",
        "layers.csv",
        "pyto_labels.mrc",
        "pyto_layers.mrc",
    ):
        assert (out / f"syn_{name}").is_file(), name
    table = read_table_csv(out / "syn_vesicles.csv")
    assert table["az_distance_nm"].notna().all() and set(table["pool"]) <= {
        "docked",
        "proximal",
        "distal",
    }
    assert "synapsegPool" in (out / "syn_vesicles.star").read_text()
    assert "az_distance_nm" in json.loads((out / "syn_vesicles.json").read_text())["columns"]
    labels = np.asarray(read_volume(out / "syn_pyto_labels.mrc").data)
    assert labels.dtype == np.int16 and {2, 3} <= set(np.unique(labels).tolist())
    params = (out / "syn_pyto_params.py").read_text()
    assert "segmentation_region = 3" in params and "distance_id = 2" in params
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _segment(tomo, out, "--proximal-nm", "40")  # finished: nothing is recomputed
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.slow
def test_no_context_turns_it_off(sim, tmp_path, truth_networks):
    tomo = write_volume(tmp_path / "in" / "syn.mrc", sim.tomogram, 1.68)
    out = tmp_path / "out"
    report = _segment(tomo, out, "--no-context")
    assert report["stages"]["context"]["ran"] is False
    assert not (out / "syn_membranes.mrc").exists() and not (out / "syn_az.json").exists()
    assert "az_distance_nm" not in read_table_csv(out / "syn_vesicles.csv")
    assert "NOTE: no region 3" in (out / "syn_pyto_params.py").read_text()


def test_invalid_pool_thresholds_are_one_line_errors(sim, tmp_path):
    tomo = write_volume(tmp_path / "in" / "syn.mrc", sim.tomogram, 1.68)
    result = CliRunner().invoke(
        app, ["segment", str(tomo), "-o", str(tmp_path / "o"), "--docked-nm", "50"]
    )
    assert result.exit_code == 2 and "--proximal-nm" in result.output


@pytest.mark.slow
def test_membrane_model_option_reaches_the_membrane_stage(sim, tmp_path, monkeypatch):
    seen: list = []

    def membranes(ctx):
        seen.append(ctx.params["membrane_model"])
        return {"membrane_probabilities": None}

    monkeypatch.setattr(pipeline, "stage_predict", truth_stage_predict(sim))
    tomo = write_volume(tmp_path / "in" / "syn.mrc", sim.tomogram, 1.68)
    with temporary_stages():
        register_stage(
            Stage(
                "membrane_net",
                (),
                ("membrane_probabilities",),
                membranes,
                {"context": True, "membrane_model": "default"},
            ),
            replace=True,
        )
        report = _segment(tomo, tmp_path / "out", "--membrane-model", "sim-membrane-v1")
    assert seen == ["sim-membrane-v1"]
    assert report["provenance"]["parameters"]["membrane_model"] == "sim-membrane-v1"

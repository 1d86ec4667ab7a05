"""`synapseg segment` / `export` end to end: outputs, provenance, resume, batches, bad input.

The network stage is swapped for a realistic probability map (ground-truth balls, blurred at
about the model's voxel size so that close neighbours bridge) so that these tests check the
pipeline around the network; the network itself is tested in tests/infer and tests/model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from synapseg import pipeline
from synapseg.cli import app
from synapseg.evaluate.metrics import compute_metrics
from synapseg.io.imod import read_imod_spheres
from synapseg.io.tables import read_table_csv, read_table_json
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import open_volume_writer, write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

ALL = "csv,json,star,mod,labels,pyto"


@pytest.fixture(scope="module")
def sim():
    params = SimulationParams(shape=(48, 128, 128), voxel_size_nm=1.68, seed=11, n_vesicles=14)
    return simulate_tomogram(params)


@pytest.fixture
def tomo(sim, tmp_path) -> Path:
    return write_volume(tmp_path / "in" / "syn.mrc", sim.tomogram, 1.68)


def truth_map(labels: np.ndarray) -> np.ndarray:
    """A probability map like a real network's: soft, with bridges between close vesicles."""
    return np.clip(ndimage.gaussian_filter((labels > 0).astype(np.float32), 1.2) * 1.1, 0, 1)


@pytest.fixture
def fake_network(sim, monkeypatch):
    """Replace the network stage by the truth map; count its calls."""
    calls = []

    def stage_predict(volume, options, target, specimen=None):
        calls.append(volume.path)
        prob = truth_map(sim.vesicle_labels) if volume.shape == sim.tomogram.shape else None
        with open_volume_writer(target, volume.shape, np.uint8, volume.voxel_size_nm) as out:
            out[:] = 0 if prob is None else np.round(prob * 255).astype(np.uint8)
        return {"seconds": 0.0, "model": {"name": "truth-map", "sha256": "0" * 64}}

    monkeypatch.setattr(pipeline, "stage_predict", stage_predict)
    return calls


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_segment_writes_every_output_with_provenance(sim, tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out, "--formats", ALL)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for suffix in (
        "_probabilities.mrc",
        "_vesicles.csv",
        "_vesicles.json",
        "_vesicles.star",
        "_vesicles.mod",
        "_vesicles.mrc",
        "_pyto_labels.mrc",
        "_report.json",
    ):
        assert f"syn{suffix}" in names, names
    report = json.loads((out / "syn_report.json").read_text())
    assert report["finished"] and set(report["timings_s"]) == {"predict", "vesicles", "export"}
    assert report["provenance"]["synapseg_version"]
    assert report["provenance"]["model"]["sha256"] == "0" * 64
    assert report["provenance"]["parameters"]["tilt_range_deg"] is None  # estimated:
    assert abs(report["acquisition"]["tilt_range_deg"] - 60.0) < 5.0  # the simulator's ±60°

    table = read_table_csv(out / "syn_vesicles.csv")
    metrics = compute_metrics(sim.vesicles, table)
    assert metrics["f1"] >= 0.9, metrics
    assert metrics["center_error_nm"]["median"] < 1.0
    # Every export holds the same vesicles.
    assert len(read_table_json(out / "syn_vesicles.json")) == len(table)
    centers, radius_px, _ = read_imod_spheres(out / "syn_vesicles.mod")
    np.testing.assert_allclose(
        centers, table[["center_z_px", "center_y_px", "center_x_px"]], atol=1e-3
    )
    labels = np.asarray(read_volume(out / "syn_vesicles.mrc").data)
    assert set(np.unique(labels)) - {0} == set(table["id"])
    provenance = json.loads((out / "syn_vesicles.provenance.json").read_text())
    assert provenance["tomogram"].endswith("syn.mrc")


def test_interrupted_run_resumes_without_recomputing(tomo, tmp_path, fake_network, monkeypatch):
    out = tmp_path / "out"
    real_stage = pipeline.stage_vesicles

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "stage_vesicles", crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.segment_tomogram(tomo, out)
    assert len(fake_network) == 1
    assert not (out / "syn_vesicles.csv").exists()
    monkeypatch.setattr(pipeline, "stage_vesicles", real_stage)
    report = pipeline.segment_tomogram(tomo, out)
    assert len(fake_network) == 1, "the finished predict stage was recomputed"
    assert report["finished"] and (out / "syn_vesicles.csv").exists()
    # A finished tomogram is skipped; --from-stage redoes only the later stages.
    assert pipeline.segment_tomogram(tomo, out)["skipped"]
    pipeline.segment_tomogram(tomo, out, pipeline.SegmentOptions(from_stage="vesicles"))
    assert len(fake_network) == 1


def test_folder_batch_skips_finished(sim, tmp_path, fake_network):
    folder = tmp_path / "batch"
    for name in ("a", "b"):
        write_volume(folder / f"{name}.mrc", sim.tomogram[:, :96, :96].copy(), 1.68)
    out = tmp_path / "out"
    assert run("segment", folder, "-o", out).exit_code == 0
    assert (out / "a_vesicles.csv").exists() and (out / "b_vesicles.csv").exists()
    second = run("segment", folder, "-o", out)
    assert second.exit_code == 0 and "skipped" in second.stdout
    assert len(fake_network) == 2


def test_same_named_inputs_go_to_their_own_folders(sim, tmp_path, fake_network):
    """simulate's layout (sim_000/tomogram.mrc, ...) segments into out/sim_000/ for evaluate."""
    for name in ("sim_000", "sim_001"):
        write_volume(
            tmp_path / "sim" / name / "tomogram.mrc", sim.tomogram[:, :64, :64].copy(), 1.68
        )
    inputs = sorted((tmp_path / "sim").glob("*/tomogram.mrc"))
    result = run("segment", *inputs, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for name in ("sim_000", "sim_001"):
        assert (tmp_path / "out" / name / "tomogram_vesicles.csv").exists()


def test_tiff_and_ome_zarr_inputs_in_a_folder(sim, tmp_path, fake_network):
    small = sim.tomogram[:, :64, :64].copy()
    write_volume(tmp_path / "mixed" / "a.tif", small, 1.68)
    write_volume(tmp_path / "mixed" / "b.ome.zarr", small, 1.68)
    result = run("segment", tmp_path / "mixed", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_vesicles.csv").exists()
    assert (tmp_path / "out" / "b_vesicles.csv").exists()
    zarr_only = run("segment", tmp_path / "mixed" / "b.ome.zarr", "-o", tmp_path / "out2")
    assert zarr_only.exit_code == 0 and (tmp_path / "out2" / "b_report.json").exists()


def test_empty_probability_map_gives_zero_vesicles(sim, tmp_path, fake_network):
    tomo = write_volume(tmp_path / "small.mrc", sim.tomogram[:, :64, :64].copy(), 1.68)
    result = run("segment", tomo, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "no vesicles" in result.stderr
    assert len(read_table_csv(tmp_path / "out" / "small_vesicles.csv")) == 0


def test_existing_outputs_are_not_overwritten(tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    out.mkdir()
    (out / "syn_vesicles.csv").write_text("mine")
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 2
    assert "syn_vesicles.csv" in result.stderr and "--overwrite" in result.stderr
    assert (out / "syn_vesicles.csv").read_text() == "mine"
    assert not fake_network
    # Any output a run would write is protected, not only the table.
    other = tmp_path / "other"
    other.mkdir()
    (other / "syn_vesicles.mod").write_text("my edits")
    result = run("segment", tomo, "-o", other)
    assert result.exit_code == 2 and "syn_vesicles.mod" in result.stderr
    assert (other / "syn_vesicles.mod").read_text() == "my edits"
    assert not fake_network
    assert run("segment", tomo, "-o", out, "--overwrite").exit_code == 0


def test_mask_on_another_grid_is_refused(sim, tomo, tmp_path, fake_network):
    mask = write_volume(tmp_path / "mask.mrc", np.ones((10, 20, 30), np.uint8), 1.68)
    result = run("segment", tomo, "-o", tmp_path / "out", "--mask", mask)
    assert result.exit_code == 2
    assert "mask.mrc" in result.stderr and "shape" in result.stderr
    coarse = write_volume(tmp_path / "coarse.mrc", np.ones(sim.tomogram.shape, np.uint8), 2.0)
    result = run("segment", tomo, "-o", tmp_path / "out2", "--mask", coarse)
    assert result.exit_code == 2 and "voxel size" in result.stderr


def test_mask_keeps_only_vesicles_inside(sim, tomo, tmp_path, fake_network):
    mask = np.zeros(sim.tomogram.shape, np.uint8)
    mask[:, :, :64] = 1
    mask_path = write_volume(tmp_path / "mask.mrc", mask, 1.68)
    out = tmp_path / "out"
    assert run("segment", tomo, "-o", out, "--mask", mask_path).exit_code == 0
    table = read_table_csv(out / "syn_vesicles.csv")
    assert len(table) and (table["center_x_px"] < 64).all()
    report = json.loads((out / "syn_report.json").read_text())
    reasons = [r["reason"] for r in report["stages"]["vesicles"]["rejected"]]
    assert "center outside --mask" in reasons


@pytest.mark.parametrize("bad", [["--formats", "csv,png"], ["--from-stage", "train"]])
def test_bad_options(tomo, tmp_path, bad):
    result = run("segment", tomo, "-o", tmp_path / "out", *bad)
    assert result.exit_code == 2 and result.stderr.startswith("error: --")


def test_export_rerenders_edited_table(sim, tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    assert run("segment", tomo, "-o", out).exit_code == 0
    table = read_table_csv(out / "syn_vesicles.csv")
    # The user deletes one vesicle and adds it back by its center only.
    gt = sim.vesicles.iloc[0]
    px = ["center_z_px", "center_y_px", "center_x_px"]
    nearest = int(np.argmin(np.linalg.norm(table[px].to_numpy() - gt[px].to_numpy(float), axis=1)))
    edited = table.drop(index=nearest)[[*px, "radius_nm"]]
    added = pd.DataFrame(
        [{c: gt[c] for c in ("center_z_px", "center_y_px", "center_x_px")} | {"radius_nm": None}]
    )
    edited = pd.concat([edited, added], ignore_index=True)
    edited_path = tmp_path / "edited.csv"
    edited.to_csv(edited_path, index=False)
    result = run("export", edited_path, "--tomogram", tomo, "-o", tmp_path / "re")
    assert result.exit_code == 0, result.output
    again = read_table_csv(tmp_path / "re" / "syn_vesicles.csv")
    assert len(again) == len(table)
    assert abs(again["radius_nm"].iloc[-1] - gt["radius_nm"]) < 1.5
    labels = np.asarray(read_volume(tmp_path / "re" / "syn_vesicles.mrc").data)
    assert len(np.unique(labels)) - 1 == len(again)
    # Hand-placed points on an inverted tomogram get the same radius (contrast detected).
    inverted = write_volume(tmp_path / "inv" / "syn.mrc", -sim.tomogram, 1.68)
    result = run("export", edited_path, "--tomogram", inverted, "-o", tmp_path / "re_inv")
    assert result.exit_code == 0, result.output
    again_inv = read_table_csv(tmp_path / "re_inv" / "syn_vesicles.csv")
    assert abs(again_inv["radius_nm"].iloc[-1] - again["radius_nm"].iloc[-1]) < 0.2
    # Exporting again into the same folder needs --overwrite.
    result = run("export", edited_path, "--tomogram", tomo, "-o", tmp_path / "re")
    assert result.exit_code == 2 and "--overwrite" in result.stderr

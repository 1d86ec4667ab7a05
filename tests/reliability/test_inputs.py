"""Issue 13, the input side: bad input gives a clear error or a right answer, never a
silently wrong one with exit code 0.

The network stage of ``segment`` is replaced by the ground-truth probability map (as in
tests/test_pipeline.py), so these tests check the checks around it; ``predict`` runs the
untrained ``test-random`` model.
"""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from synapseg import pipeline
from synapseg.cli import app
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import open_volume_writer, write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

VOXEL_NM = 1.68


@pytest.fixture(scope="module")
def sim():
    params = SimulationParams(shape=(40, 112, 112), voxel_size_nm=VOXEL_NM, seed=5, n_vesicles=10)
    return simulate_tomogram(params)


@pytest.fixture
def fake_network(sim, monkeypatch):
    """The network stage gives the truth map when the grid matches the simulation."""

    def stage_predict(volume, options, target, specimen=None):
        prob = None
        if volume.shape == sim.tomogram.shape:
            blurred = ndimage.gaussian_filter((sim.vesicle_labels > 0).astype(np.float32), 1.2)
            prob = np.clip(blurred * 1.1, 0, 1)
        with open_volume_writer(target, volume.shape, np.uint8, volume.voxel_size_nm) as out:
            out[:] = 0 if prob is None else np.round(prob * 255).astype(np.uint8)
        return {"seconds": 0.0, "model": {"name": "truth-map", "sha256": "0" * 64}}

    monkeypatch.setattr(pipeline, "stage_predict", stage_predict)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def n_true(sim) -> int:
    return int(len(np.unique(sim.vesicle_labels)) - 1)


def write(tmp_path: Path, name: str, data: np.ndarray, voxel_nm=VOXEL_NM) -> Path:
    return write_volume(tmp_path / "in" / name, data, voxel_nm)


# ----------------------------------------------------------------- 1. non-finite values


@pytest.mark.parametrize(
    "where,kind",
    [((17,), np.nan), ((21, 60, 60), np.inf)],
    ids=["nan-section", "one-inf-voxel"],
)
def test_segment_refuses_nonfinite_voxels_the_sample_misses(
    sim, tmp_path, fake_network, where, kind
):
    data = sim.tomogram.astype(np.float32).copy()
    data[where] = kind
    tomo = write(tmp_path, "bad.mrc", data)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 2, result.output
    assert f"first at z={where[0]}" in result.output and "--fill-nonfinite median" in result.output
    assert "NaN" in result.output or "+inf" in result.output
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_segment_fill_nonfinite_median_gives_the_right_answer(sim, tmp_path, fake_network):
    data = sim.tomogram.astype(np.float32).copy()
    data[17] = np.nan
    data[30, 5, 5] = -np.inf
    tomo = write(tmp_path, "bad.mrc", data)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out, "--fill-nonfinite", "median")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bad_report.json").read_text())
    n_bad = data[17].size + 1
    assert report["fill_nonfinite"]["method"] == "median"
    assert report["fill_nonfinite"]["n_filled"] == n_bad
    assert report["input_scan"]["n_nonfinite"] == n_bad
    assert any("replaced by the median" in w for w in report["warnings"])
    assert "replaced by the median" in result.output
    assert report["n_vesicles"] >= n_true(sim) - 1


def test_segment_rejects_an_unknown_fill_method(sim, tmp_path, fake_network):
    tomo = write(tmp_path, "ok.mrc", sim.tomogram)
    result = run("segment", tomo, "-o", tmp_path / "out", "--fill-nonfinite", "zero")
    assert result.exit_code == 2 and "--fill-nonfinite" in result.output


def test_predict_refuses_then_fills_nonfinite_voxels(sim, tmp_path):
    data = sim.tomogram.astype(np.float32).copy()
    data[9] = np.nan
    tomo = write(tmp_path, "bad.mrc", data)
    out = tmp_path / "out"
    args = ["predict", tomo, "-o", out, "--model", "test-random", "--format", "float32"]
    result = run(*args)
    assert result.exit_code == 2 and "first at z=9" in result.output, result.output
    assert not (out / "bad_probabilities.mrc").exists()
    result = run(*args, "--fill-nonfinite", "median")
    assert result.exit_code == 0, result.output
    prob = np.asarray(read_volume(out / "bad_probabilities.mrc").data)
    assert np.isfinite(prob).all()
    report = json.loads((out / "bad_predict_report.json").read_text())
    assert report["fill_nonfinite"]["n_filled"] == data[9].size


# ----------------------------------------------------------------- 2. inputs that gave tracebacks


def test_float16_mrc_is_segmented(sim, tmp_path, fake_network):
    tomo = tmp_path / "half.mrc"
    with mrcfile.new(tomo) as mrc:
        mrc.set_data(sim.tomogram.astype(np.float16))
        mrc.voxel_size = VOXEL_NM * 10
    assert int(mrcfile.open(tomo, header_only=True).header.mode) == 12
    result = run("segment", tomo, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "half_report.json").read_text())
    assert report["n_vesicles"] >= n_true(sim) - 1


def _stack_4d(path: Path) -> Path:
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((3, 6, 16, 16), np.float32))
        mrc.voxel_size = 16.8
    return path


def test_info_on_a_4d_stack_is_a_one_line_error(tmp_path):
    result = run("info", _stack_4d(tmp_path / "stack.mrc"))
    assert result.exit_code == 2
    assert "4D/stack" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_segment_does_not_call_a_4d_stack_2d(tmp_path):
    result = run("segment", _stack_4d(tmp_path / "stack.mrc"), "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "4D/stack" in result.output and "2D" not in result.output


def test_a_text_file_named_mrc_is_not_an_mrc_file(tmp_path):
    path = tmp_path / "notes.mrc"
    path.write_text("these are my notes about tomogram 12\n" * 50)
    for command in (["info", path], ["segment", path, "-o", tmp_path / "out"]):
        result = run(*command)
        assert result.exit_code == 2
        assert "not an MRC file" in result.output and "mode 2" not in result.output


# ----------------------------------------------------------------- 1b. training


def _train_folder(sim, tmp_path: Path, nan_voxels: int = 0) -> Path:
    folder = tmp_path / "data" / "t1"
    data = sim.tomogram.astype(np.float32).copy()
    flat = data.reshape(-1)
    flat[np.random.default_rng(0).choice(flat.size, nan_voxels, replace=False)] = np.nan
    write_volume(folder / "tomogram.mrc", data, VOXEL_NM)
    write_volume(folder / "vesicle_labels.mrc", sim.vesicle_labels.astype(np.uint16), VOXEL_NM)
    return folder.parent


def _train_args(data: Path, out: Path, steps: int) -> list:
    return [
        "train", "--data", data, "-o", out, "--steps", steps, "--patch-size", "16,32,32",
        "--threads", "1", "--model-voxel-size", VOXEL_NM, "--val-fraction", "0",
    ]  # fmt: skip


def test_train_refuses_nonfinite_voxels(sim, tmp_path):
    data = _train_folder(sim, tmp_path, nan_voxels=2)
    result = run(*_train_args(data, tmp_path / "m", 2))
    assert result.exit_code == 2, result.output
    assert "2 NaN voxel" in result.output and "tomogram.mrc" in result.output
    assert not (tmp_path / "m" / "model.pt").exists()


def test_train_stops_on_a_nonfinite_loss_and_keeps_the_checkpoint(sim, tmp_path, monkeypatch):
    import torch

    from synapseg.train import trainer

    data = _train_folder(sim, tmp_path)
    out = tmp_path / "m"
    assert run(*_train_args(data, out, 2)).exit_code == 0
    model_bytes = (out / "model.pt").read_bytes()
    real_loss = trainer.masked_dice_bce

    def nan_loss(*args, **kwargs):
        loss, parts = real_loss(*args, **kwargs)
        return loss * float("nan"), parts

    monkeypatch.setattr(trainer, "masked_dice_bce", nan_loss)
    result = run(*_train_args(data, out, 4), "--resume")
    assert result.exit_code == 2, result.output
    assert "training stopped at step 3" in result.output and "step 2" in result.output
    assert (out / "model.pt").read_bytes() == model_bytes  # the earlier model is untouched
    ckpt = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    result = run(*_train_args(data, tmp_path / "fresh", 2))
    assert result.exit_code == 2 and "no model was written" in result.output
    assert not (tmp_path / "fresh" / "model.pt").exists()


# ----------------------------------------------------------------- 3. voxel size


def _raw_header_mrc(path: Path, data: np.ndarray, voxel_a: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.astype(np.float32))
        mrc.voxel_size = voxel_a
    return path


def test_nm_written_as_angstrom_is_an_error_unless_voxel_size_is_given(sim, tmp_path, fake_network):
    tomo = _raw_header_mrc(tmp_path / "in" / "nm.mrc", sim.tomogram, VOXEL_NM)  # 1.68 "Å"
    out = tmp_path / "out"
    for command in ("segment", "predict"):
        result = run(command, tomo, "-o", out)
        assert result.exit_code == 2, result.output
        assert f"--voxel-size {VOXEL_NM:g}" in result.output and "nm written as Å" in result.output
        assert not out.exists() or not any(out.iterdir())
    info = run("info", tomo)
    assert info.exit_code == 0 and "nm written as Å" in info.output  # info reports, not stops
    result = run("segment", tomo, "-o", out, "--voxel-size", VOXEL_NM)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "nm_report.json").read_text())
    assert report["n_vesicles"] >= n_true(sim) - 1


def test_voxel_size_outside_the_training_range_warns_and_is_reported(sim, tmp_path, fake_network):
    from synapseg.model.registry import read_card, resolve_model
    from synapseg.summary import training_voxel_range_nm

    lo, hi = training_voxel_range_nm(read_card(resolve_model("default")))
    claimed = round(hi * 1.6, 2)  # far outside, but not so coarse that rescaling is refused
    tomo = write(tmp_path, "coarse.mrc", sim.tomogram, claimed)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 0, result.output
    assert "outside the range model" in result.output
    report = json.loads((out / "coarse_report.json").read_text())
    assert any("outside the range model" in w for w in report["warnings"])


def test_absurd_rescaling_stops_before_anything_is_written(sim, tmp_path, fake_network):
    tomo = write(tmp_path, "absurd.mrc", sim.tomogram, 40.0)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 2 and "coarser than the model" in result.output, result.output
    assert not out.exists() or not any(out.iterdir())


def test_vesicle_sizes_that_betray_a_wrong_voxel_size_are_reported():
    from synapseg.summary import SV_RADIUS_NM, vesicle_warnings

    rng = np.random.default_rng(0)
    good = rng.uniform(*SV_RADIUS_NM, 40)
    assert vesicle_warnings(good, (1.68,) * 3, 10.0) == []
    # a header claiming 3x the true voxel size: 3x the radii in nm
    assert any(
        "outside the synaptic-vesicle range" in w
        for w in vesicle_warnings(good * 3, (5.0,) * 3, 10.0)
    )
    # hundreds of tiny vesicles of 2-3 px at the minimum radius
    tiny = rng.uniform(10.0, 11.0, 600)
    warnings = vesicle_warnings(tiny, (5.0,) * 3, 10.0)
    assert any("px in radius" in w for w in warnings)
    assert any("smallest allowed radius" in w for w in warnings)
    assert vesicle_warnings(good[:3] * 3, (1.68,) * 3, 10.0) == []  # too few to judge


# ----------------------------------------------------------------- 4. missing warnings


def test_segment_repeats_the_unrotated_warning_and_records_it(sim, tmp_path, fake_network):
    unrotated = np.ascontiguousarray(np.swapaxes(sim.tomogram, 0, 1))  # beam axis along y
    tomo = write(tmp_path, "unrot.mrc", unrotated)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 0, result.output
    assert "thinnest axis is y" in result.output
    report = json.loads((out / "unrot_report.json").read_text())
    assert any("thinnest axis is y" in w for w in report["warnings"])


def test_anisotropic_voxels_and_thin_slabs_warn(sim, tmp_path, fake_network):
    tomo = write(tmp_path, "aniso.mrc", sim.tomogram, (2.4, VOXEL_NM, VOXEL_NM))
    result = run("info", tomo)
    assert result.exit_code == 0 and "anisotropic" in result.output
    slab = write(tmp_path, "slab.mrc", sim.tomogram[16:24])  # 8 sections
    out = tmp_path / "out"
    result = run("segment", slab, "-o", out)
    assert result.exit_code == 0, result.output
    assert "only 13 nm thick (8 sections)" in result.output
    report = json.loads((out / "slab_report.json").read_text())
    assert any("thick" in w for w in report["warnings"])


def test_an_all_zero_mask_warns_before_anything_runs(sim, tmp_path, fake_network):
    tomo = write(tmp_path, "t.mrc", sim.tomogram)
    mask = write(tmp_path, "mask.mrc", np.zeros(sim.tomogram.shape, np.uint8))
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out, "--mask", mask)
    assert result.exit_code == 0, result.output
    assert "is all zero" in result.output
    report = json.loads((out / "t_report.json").read_text())
    assert any("is all zero" in w for w in report["warnings"]) and report["n_vesicles"] == 0


def test_centers_outside_the_volume_are_counted():
    from synapseg.summary import centers_outside_warning

    vs = (2.0, 1.0, 1.0)
    inside = np.array([[-0.9, 0.0, 0.0], [8.9, 19.4, 29.4]])  # voxel centers +- half a voxel
    assert centers_outside_warning(inside, (5, 20, 30), vs, "ground-truth") is None
    outside = np.vstack([inside, [[9.1, 5, 5], [5, -0.6, 5]]])
    warning = centers_outside_warning(outside, (5, 20, 30), vs, "ground-truth")
    assert warning.startswith("2 of 4 ground-truth centers lie outside the tomogram")


@pytest.mark.slow  # two evaluate reports with figures: ~7 s each on 2 cores
def test_evaluate_warns_when_ground_truth_lies_outside_the_tomogram(sim, tmp_path):
    from synapseg.io.tables import CENTER_PX, make_table, write_table_csv

    tomo = write(tmp_path, "t.mrc", sim.tomogram)
    centers = sim.vesicles[CENTER_PX].to_numpy(float)
    radii = sim.vesicles["radius_nm"].to_numpy(float)
    pred = write_table_csv(tmp_path / "pred.csv", make_table(centers, radii, (VOXEL_NM,) * 3))
    # ground truth in unbinned pixels of a bin-4 tomogram: 4x the coordinates
    gt = write_table_csv(tmp_path / "gt.csv", make_table(centers * 4, radii, (VOXEL_NM,) * 3))
    result = run("evaluate", "--gt", gt, "--pred", pred, "--tomogram", tomo, "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "lie outside the tomogram" in result.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert any("lie outside the tomogram" in w for w in metrics["warnings"])
    result = run(
        "evaluate", "--gt", pred, "--pred", pred, "--tomogram", tomo, "-o", tmp_path / "ok"
    )
    assert result.exit_code == 0 and "outside the tomogram" not in result.output

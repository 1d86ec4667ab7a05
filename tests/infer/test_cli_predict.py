"""End-to-end tests of ``synapseg predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import write_volume
from synapseg.model.registry import create_random_model, default_model_name
from synapseg.model.unet import UNetConfig

runner = CliRunner()


@pytest.fixture
def tomo(tmp_path, rng):
    path = tmp_path / "tomo.mrc"
    data = rng.normal(size=(20, 48, 40)).astype(np.float32)
    write_volume(path, data, (1.5, 1.5, 1.5), origin_nm=(3.0, 0.0, 1.5))
    return path


def test_predict_writes_probabilities_and_report(tmp_path, tomo):
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(tomo), "-o", str(out)])
    assert result.exit_code == 0, result.output
    prob = read_volume(out / "tomo_probabilities.mrc")
    assert prob.shape == (20, 48, 40) and prob.dtype == np.float16
    assert np.allclose(prob.voxel_size_nm, 1.5) and np.allclose(prob.origin_nm, (3.0, 0.0, 1.5))
    values = np.asarray(prob.data, dtype=np.float32)
    assert 0 <= values.min() and values.max() <= 1
    report = json.loads((out / "tomo_predict_report.json").read_text())
    assert report["model"]["name"] == default_model_name() and len(report["model"]["sha256"]) == 64
    assert report["device"] == "cpu" and report["synapseg_version"]
    assert {"rescale_s", "network_s", "resample_back_s", "command_total_s"} <= set(
        report["timings"]
    )
    assert report["throughput"]["input_mvoxel_per_s"] > 0
    assert ("untrained" in result.output) == (not report["model"]["trained"])
    # existing outputs are kept unless --overwrite
    again = runner.invoke(app, ["predict", str(tomo), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    assert runner.invoke(app, ["predict", str(tomo), "-o", str(out), "--overwrite"]).exit_code == 0


def test_predict_with_model_folder_and_uint8(tmp_path, tomo):
    model_dir = create_random_model(
        tmp_path / "mymodel", name="mine", config=UNetConfig(stem=1, base_channels=2, depth=1)
    )
    out = tmp_path / "out"
    args = ["predict", str(tomo), "-o", str(out), "--model", str(model_dir), "--format", "uint8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_volume(out / "tomo_probabilities.mrc").dtype == np.uint8
    assert json.loads((out / "tomo_predict_report.json").read_text())["model"]["name"] == "mine"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--tile-size", "12"], "multiple of 8"),
        (["--tile-size", "16"], "receptive field"),
        (["--voxel-size", "9"], "coarser"),
        (["--model", "nope"], "unknown model name"),
        (["--format", "int7"], "unknown format"),
        (["--tile-size", "96", "--halo", "48"], "halo 48"),
    ],
)
def test_predict_bad_input(tmp_path, tomo, extra, message):
    args = ["predict", str(tomo), "-o", str(tmp_path / "o"), "--model", "test-random", *extra]
    if "--model" in extra:
        args = args[:4] + extra
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "o" / "tomo_probabilities.mrc").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_predict_cuda_without_cuda(tmp_path, tomo):
    result = runner.invoke(app, ["predict", str(tomo), "-o", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_corrupt_model_is_named(tmp_path, tomo):
    model_dir = create_random_model(tmp_path / "m", config=UNetConfig(stem=1, base_channels=2))
    weights = model_dir / "model.pt"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = runner.invoke(
        app, ["predict", str(tomo), "-o", str(tmp_path / "o"), "--model", str(model_dir)]
    )
    assert result.exit_code == 2 and "model.pt" in result.output and "sha256" in result.output

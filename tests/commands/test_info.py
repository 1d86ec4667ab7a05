"""`synapseg info` and the CLI's error contract, end to end through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synapseg import __version__
from synapseg.cli import app
from synapseg.io.volume_writer import write_volume


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_info_reports_geometry_and_stats(runner, tmp_path):
    data = np.random.default_rng(1).normal(5.0, 2.0, size=(8, 40, 60)).astype(np.float32)
    path = write_volume(tmp_path / "tomo.mrc", data, 1.4)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["shape_zyx"] == [8, 40, 60]
    assert facts["voxel_size_nm_zyx"] == [1.4, 1.4, 1.4]
    assert facts["voxel_size_angstrom_zyx"] == [14.0, 14.0, 14.0]
    assert facts["extent_nm_zyx"] == [11.2, 56.0, 84.0]
    assert facts["intensity_sample"]["mean"] == pytest.approx(5.0, abs=0.1)
    assert facts["intensity_sample"]["std"] == pytest.approx(2.0, abs=0.1)
    # 8 sections of 1.4 nm: only the thin-slab warning (issue 13)
    assert len(facts["warnings"]) == 1 and "only 11 nm thick" in facts["warnings"][0]
    table = runner.invoke(app, ["info", str(path)])
    assert table.exit_code == 0
    assert "14 × 14 × 14 Å" in table.stdout and "shape (z, y, x) [voxels]" in table.stdout


def test_info_warns_when_beam_axis_is_not_z(runner, tmp_path):
    data = np.random.default_rng(2).normal(size=(40, 6, 50)).astype(np.float32)
    path = write_volume(tmp_path / "unrotated.mrc", data, 1.4)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0
    assert "thinnest axis is y" in result.stderr


def test_info_voxel_size_override(runner, tmp_path):
    path = write_volume(
        tmp_path / "t.mrc", (np.ones((4, 5, 6)) * np.arange(6)).astype(np.float32), 1.4
    )
    result = runner.invoke(app, ["info", str(path), "--voxel-size", "2.5", "--json"])
    facts = json.loads(result.stdout)
    assert facts["voxel_size_nm_zyx"] == [2.5, 2.5, 2.5] and facts["voxel_size_source"] == "user"


@pytest.mark.parametrize(
    "fill, words", [(np.nan, "NaN"), (3.0, "constant")], ids=["all-nan", "constant"]
)
def test_info_unusable_volume_exits_2(runner, tmp_path, fill, words):
    path = write_volume(tmp_path / "bad.mrc", np.full((4, 8, 8), fill, np.float32), 1.4)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert words in result.stderr and str(path) in result.stderr
    assert "cannot be segmented" in result.stderr


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "missing.mrc", "not found"),
        (lambda d: d, "folder"),
        (lambda d: (d / "x.mrc").write_bytes(b"") or d / "x.mrc", "empty"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_bad_input_is_one_clear_line_exit_2(runner, tmp_path, make, words):
    path = make(tmp_path)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}: ") and words in lines[0]


def test_negative_voxel_size_flag(runner, tmp_path):
    path = write_volume(tmp_path / "t.mrc", np.ones((4, 5, 6), np.float32), 1.4)
    result = runner.invoke(app, ["info", str(path), "--voxel-size", "-1"])
    assert result.exit_code == 2
    assert "--voxel-size" in result.stderr and "positive" in result.stderr

"""`synapseg train` on the command line: the warning without validation data and plain
progress lines when stderr is not a terminal (issue 13, item 10)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from synapseg.cli import app


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory):
    """Two tiny simulated tomograms (``synapseg simulate`` layout is training data as is)."""
    root = tmp_path_factory.mktemp("train_cli") / "sim"
    args = ["simulate", str(root), "-n", "2", "--shape", "32", "80", "80", "--seed", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return root


def _train(data, out, *extra):
    args = ["train", "--data", str(data), "-o", str(out), "--patch-size", "16,32,32"]
    args += ["--batch-size", "1", "--threads", "1", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_train_without_validation_warns_and_prints_plain_progress(sim_data, tmp_path):
    result = _train(sim_data / "sim_000", tmp_path / "m1", "--steps", "3")
    assert "no validation data" in result.stderr and "last weights are kept" in result.stderr
    lines = re.findall(r"train: step (\d+)/3 \(\d+%\), loss [0-9.]+", result.stderr)
    assert lines == ["1", "2", "3"], result.stderr  # periodic lines up to the last step
    assert (tmp_path / "m1" / "model.pt").exists()


def test_train_with_validation_does_not_warn_and_reports_validation(sim_data, tmp_path):
    result = _train(sim_data, tmp_path / "m2", "--steps", "2", "--val-every", "1")
    assert "no validation data" not in result.stderr
    assert re.search(r"train: step 1/2 .*val F1 [0-9.]+ Dice [0-9.]+", result.stderr), result.stderr
    args = ["-q", "train", "--data", str(sim_data / "sim_000"), "-o", str(tmp_path / "m3")]
    args += ["--steps", "1", "--patch-size", "16,32,32", "--batch-size", "1", "--threads", "1"]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.strip() == "", quiet.stderr  # --quiet: only errors

"""`synapseg filaments` and `synapseg evaluate --filaments-*`, end to end (CliRunner)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.filaments.conftest import VS, gt_table, scene
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.io.volume_writer import write_volume


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fil")
    s = scene()
    write_volume(folder / "tomo.mrc", s["image"], VS)
    write_volume(folder / "az.mrc", s["az"].astype(np.uint8), VS)
    s["vesicles"].to_csv(folder / "vesicles.csv", index=False)
    gt_table(s["filaments"]).to_csv(folder / "truth.csv", index=False)
    labels = np.zeros(s["image"].shape, np.int16)
    labels[s["az"]] = 2
    from synapseg.geometry import render_labels

    balls = render_labels(s["vesicles"].assign(id=[10, 11]), s["image"].shape, VS)
    labels[balls > 0] = balls[balls > 0]
    write_volume(folder / "pyto_labels.mrc", labels, VS)
    return folder


def test_filaments_then_evaluate(files, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    # the clean synthetic scene asks for a clear decision (tests/filaments/conftest.py CLEAR)
    args = ["filaments", str(files / "tomo.mrc"), "--vesicles", str(files / "vesicles.csv"),
            "--min-score", "0.9"]  # fmt: skip
    res = runner.invoke(app, [*args, "--az", str(files / "az.mrc"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 connectors, 1 tethers" in res.output
    names = ["filaments.csv", "filaments.mrc", "filaments.mod", "pyto_tethers.dat"]
    for name in [*names, "vesicles.csv", "filaments_summary.png"]:
        name = f"tomo_{name}"
        assert (out / name).is_file(), name
    # never overwrite without --overwrite
    res = runner.invoke(app, [*args, "--az", str(files / "az.mrc"), "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    ev = tmp_path / "ev"
    res = runner.invoke(
        app,
        ["evaluate", "--gt", str(files / "vesicles.csv"), "--pred", str(out / "tomo_vesicles.csv"),
         "-o", str(ev), "--filaments-truth", str(files / "truth.csv"),
         "--filaments-pred", str(out / "tomo_filaments.csv")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["filaments"]["connector"]["f1"] == 1.0
    assert metrics["filaments"]["tether"]["f1"] == 1.0


def test_pyto_boundaries_alone(files, tmp_path):
    res = CliRunner().invoke(
        app,
        ["filaments", str(files / "tomo.mrc"), "--boundaries", str(files / "pyto_labels.mrc"),
         "--min-score", "0.9", "-o", str(tmp_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 connectors, 1 tethers" in res.output


def test_method_and_min_score_reach_the_detector(files, tmp_path):
    runner = CliRunner()
    args = ["filaments", str(files / "tomo.mrc"), "--vesicles", str(files / "vesicles.csv"),
            "--az", str(files / "az.mrc")]  # fmt: skip
    res = runner.invoke(app, [*args, "--method", "thresholds", "-o", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    provenance = json.loads((tmp_path / "t" / "tomo_filaments.provenance.json").read_text())
    assert provenance["parameters"]["lines_for"] == []
    assert provenance["parameters"]["line_threshold"] == 0.5
    res = runner.invoke(app, [*args, "--min-score", "1.5", "-o", str(tmp_path / "e")])
    assert res.exit_code == 2 and "--min-score" in res.output
    res = runner.invoke(app, [*args, "--method", "magic", "-o", str(tmp_path / "e")])
    assert res.exit_code == 2 and "--method" in res.output


def test_errors_are_one_line(files, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["filaments", str(files / "tomo.mrc"), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "error: --vesicles" in res.output
    res = runner.invoke(
        app,
        ["evaluate", "--gt", str(files / "vesicles.csv"), "--pred", str(files / "vesicles.csv"),
         "-o", str(tmp_path / "e"), "--filaments-truth", str(files / "truth.csv")],
    )  # fmt: skip
    assert res.exit_code == 2 and "--filaments-pred" in res.output

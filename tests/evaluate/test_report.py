from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from synapseg.errors import OutputExistsError
from synapseg.evaluate.matching import match_vesicles
from synapseg.evaluate.metrics import metrics_from_match
from synapseg.evaluate.report import FIGURES, write_report
from synapseg.io.tables import make_table
from synapseg.io.volume import Volume

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_case():
    gt = make_table([[10, 20, 20], [10, 50, 50], [12, 20, 60]], [9, 10, 9.5], 1.0)
    pred = make_table(
        [[10, 21, 20], [10, 50, 51], [12, 70, 10]],
        [8.5, 10, 9],
        1.0,
        score=[0.9, 0.8, 0.3],
        ids=np.array([5, 6, 7]),
    )
    match = match_vesicles(gt, pred)
    return match, metrics_from_match(match)


def test_report_renders_headless_with_all_plots(tmp_path, small_case):
    match, metrics = small_case
    tomo = Volume(np.random.default_rng(0).normal(size=(24, 80, 80)).astype(np.float32), (1, 1, 1))
    page = write_report(tmp_path / "rep", metrics, match, tomogram=tomo, inputs={"gt": "a.csv"})
    assert matplotlib.get_backend().lower() == "agg"
    drawn = [f for f in FIGURES if f != "reliability"]  # no confidence column: no diagram
    for name in drawn:
        png = (tmp_path / "rep" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert not (tmp_path / "rep" / "reliability.png").exists()
    html = page.read_text()
    assert html.count("data:image/png;base64,") == len(drawn)  # self-contained
    assert "Missed vesicles (false negatives): 1" in html
    assert "False detections (false positives): 1" in html
    assert "<td>3</td>" in html and "<td>7</td>" in html  # FN id 3, FP id 7 listed
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["tp"] == 2
    assert not list((tmp_path / "rep").glob("*.tmp"))


def test_report_refuses_to_overwrite_and_writes_nothing(tmp_path, small_case):
    match, metrics = small_case
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.html").write_text("old")
    with pytest.raises(OutputExistsError):
        write_report(tmp_path / "rep", metrics, match)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.html"]
    write_report(tmp_path / "rep", metrics, match, overwrite=True)
    assert "synapseg evaluation" in (tmp_path / "rep" / "report.html").read_text()


def test_report_of_empty_prediction_renders(tmp_path, small_case):
    match, _ = small_case
    empty = match_vesicles(match.gt, make_table(np.zeros((0, 3)), [], 1.0))
    metrics = metrics_from_match(empty)
    page = write_report(tmp_path / "rep", metrics, empty, slices=False, vesicle_lists=True)
    assert "Missed vesicles (false negatives): 3" in page.read_text()
    assert not (tmp_path / "rep" / "slices.png").exists()


def test_report_draws_a_reliability_diagram_when_predictions_carry_confidence(tmp_path):
    gt = make_table([[10, 20, 20], [10, 50, 50], [12, 20, 60]], [9, 10, 9.5], 1.0)
    pred = make_table(
        [[10, 21, 20], [10, 50, 51], [12, 70, 10], [12, 20, 61]],
        [8.5, 10, 9, 9.5],
        1.0,
        confidence=np.array([0.9, 0.85, 0.15, 0.95]),
    )
    match = match_vesicles(gt, pred)
    metrics = metrics_from_match(match, confidence=pred["confidence"].to_numpy())
    cal = metrics["calibration"]
    # 3 matched at 0.9/0.85/0.95 (bins 8, 9, 9), one false at 0.15 (bin 1)
    assert cal["n"] == 4 and cal["accuracy"] == 0.75
    assert cal["ece"] == pytest.approx((0.15 + 0.15 + 0.05 + 0.1) / 4)
    page = write_report(tmp_path / "rep", metrics, match)
    png = (tmp_path / "rep" / "reliability.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    html = page.read_text()
    assert "confidence calibration (ECE, 10 bins)" in html and "Reliability of the" in html


def test_evaluate_cli_draws_the_reliability_diagram_from_a_confidence_column(tmp_path):
    from typer.testing import CliRunner

    from synapseg.cli import app
    from synapseg.io.tables import write_table_csv

    gt = make_table([[10, 20, 20], [10, 50, 50], [12, 20, 60]], [9, 10, 9.5], 1.0)
    pred = make_table(
        [[10, 21, 20], [10, 50, 51], [12, 70, 10]], [8.5, 10, 9], 1.0, confidence=[0.9, 0.8, 0.3]
    )
    write_table_csv(tmp_path / "gt.csv", gt)
    write_table_csv(tmp_path / "pred.csv", pred)
    args = ["evaluate", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    cal = json.loads((tmp_path / "rep" / "metrics.json").read_text())["calibration"]
    assert cal["n"] == 3 and cal["ece"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    assert (tmp_path / "rep" / "reliability.png").read_bytes().startswith(PNG_MAGIC)

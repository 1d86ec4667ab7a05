"""`synapseg demo`, the README's first command: the default model on the simulated sample."""

from __future__ import annotations

from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.evaluate.metrics import compute_metrics
from synapseg.io.tables import read_table_csv
from synapseg.model.registry import load_model
from synapseg.simulate import sample_path


def test_demo_finds_the_sample_vesicles_with_the_default_model(tmp_path):
    _, card = load_model("default")
    assert card.trained, "the shipped default model must be a trained one"
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "F1" in result.stdout and "median center error" in result.stdout
    truth = read_table_csv(sample_path() / "vesicles.csv")
    found = read_table_csv(out / "tomogram_vesicles.csv")
    metrics = compute_metrics(truth, found)
    assert metrics["f1"] >= 0.8, metrics
    assert metrics["center_error_nm"]["median"] < 1.0
    for suffix in ("csv", "json", "star", "mod", "mrc"):
        assert (out / f"tomogram_vesicles.{suffix}").exists()
    assert "time per stage (s)" in result.stdout and "reused" not in result.stdout
    # a second run reuses the outputs and says so instead of printing fresh-looking timings
    again = CliRunner().invoke(app, ["demo", "-o", str(out)])
    assert again.exit_code == 0, again.output
    assert "results reused from an earlier run" in again.stdout
    assert "--overwrite" in again.stdout and "time per stage (s)" not in again.stdout
    assert "time per stage of that earlier run (s)" in again.stdout
    assert "F1" in again.stdout  # the scores are still printed

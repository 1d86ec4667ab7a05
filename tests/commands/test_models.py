"""`synapseg models` lists the shipped models and shows their cards."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.model.registry import available_models, default_model_name


def test_models_lists_every_shipped_model_and_the_default():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert sorted(r["name"] for r in rows) == available_models()
    assert [r["name"] for r in rows if r["default"]] == [default_model_name()]
    assert all(len(r["sha256"]) == 64 and r["voxel_size_nm"] > 0 for r in rows)
    table = CliRunner().invoke(app, ["models"])
    assert table.exit_code == 0 and "(default)" in table.stdout


def test_models_shows_one_card_and_rejects_unknown_names():
    result = CliRunner().invoke(app, ["models", "default"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["name"] == default_model_name()
    bad = CliRunner().invoke(app, ["models", "no-such-model"])
    assert bad.exit_code == 2 and "unknown model name" in bad.stderr

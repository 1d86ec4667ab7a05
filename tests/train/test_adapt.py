"""``synapseg adapt``: pseudo-labels with an ignore mask, a loadable card, refusal, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.io.tables import make_table
from synapseg.train.adapt import STATEMENT, AdaptConfig, candidate_confidence, pseudo_labels

from .conftest import table_as_pseudo_labels

VS = 2.0
SHAPE = (40, 64, 64)


def _tables():
    """Kept vesicles with confidence 0.95 / 0.5 / 0.1 and two rejected candidates."""
    centers = np.array([[20, 16, 16], [20, 16, 48], [20, 48, 16]], float)
    table = make_table(centers, np.full(3, 10.0), (VS,) * 3)
    table["confidence"] = [0.95, 0.5, 0.1]
    rejected = pd.DataFrame(
        {
            "center_z_px": [20.0, 20.0],
            "center_y_px": [48.0, 32.0],
            "center_x_px": [48.0, 32.0],
            "radius_nm": [10.0, 10.0],
            "reason": ["confidence 0.05 < 0.2: weak membrane", "fit failed"],
        }
    )
    return table, rejected


def _at(weight: np.ndarray, zyx) -> int:
    return int(weight[tuple(int(v) for v in zyx)])


def test_candidate_confidence_parses_reasons():
    _, rejected = _tables()
    conf = candidate_confidence(rejected)
    assert conf[0] == pytest.approx(0.05)
    assert np.isnan(conf[1])


def test_pseudo_labels_respect_cut_offs():
    table, rejected = _tables()
    prob = np.zeros(SHAPE, np.float32)
    prob[4:8, 4:8, 30:34] = 0.6  # a blob no confident vesicle explains
    config = AdaptConfig(high_confidence=0.8, low_confidence=0.2, margin_nm=4.0)
    positives, weight, counts = pseudo_labels(table, rejected, prob, VS, config)
    assert len(positives) == 1 and positives["confidence"].iloc[0] >= 0.8
    assert counts == {**counts, "positive": 1, "uncertain": 2, "negative_candidates": 2}
    assert _at(weight, (20, 16, 16)) == 1  # confident vesicle: a positive target
    assert _at(weight, (20, 16, 48)) == 0  # 0.5: between the cut-offs, ignored
    # its ignore sphere reaches outer radius + margin (10 + 2.25 + 4 nm = 8.1 px)
    assert _at(weight, (20, 16, 48 + 7)) == 0 and _at(weight, (20, 16, 48 + 10)) == 1
    assert _at(weight, (20, 48, 16)) == 1  # 0.1 < low: trained as background
    assert _at(weight, (20, 48, 48)) == 1  # rejected with confidence 0.05: background
    assert _at(weight, (20, 32, 32)) == 0  # rejected for another reason: ignored
    assert _at(weight, (6, 6, 32)) == 0  # probability blob: ignored
    assert _at(weight, (6, 6, 50)) == 1  # far from everything: background


def test_default_low_cut_off_ignores_every_unconfident_candidate():
    table, rejected = _tables()
    prob = np.zeros(SHAPE, np.float32)
    _, weight, counts = pseudo_labels(table, rejected, prob, VS, AdaptConfig())
    assert counts["negative_candidates"] == 0
    assert _at(weight, (20, 48, 16)) == 0 and _at(weight, (20, 48, 48)) == 0


def _normal_sizes(tomogram, segment_dir, min_confidence):
    """Stand-in for the size probe (no segment output here): ordinary vesicle sizes."""
    return {"radii_nm": [12.5, 15.0, 18.0, 21.0], "current_min_radius_nm": 10.0}


def test_adapt_model_card_refusal_and_seed(tmp_path, monkeypatch):
    """Fast: the pipeline is replaced by known labels; one step per round."""
    from synapseg.errors import OutputExistsError
    from synapseg.model.registry import load_model, read_card, resolve_model
    from synapseg.train import adapt, adapt_post

    from .conftest import write_item

    monkeypatch.setattr(adapt, "label_tomogram", table_as_pseudo_labels)
    monkeypatch.setattr(adapt_post, "probe_radii", _normal_sizes)
    tomo = write_item(tmp_path / "toy", seed=1, shape=(40, 64, 64)) / "tomogram.mrc"
    config = adapt.AdaptConfig(
        rounds=2, steps=1, patch_size=(32, 32, 32), seed=5, rehearsal=0.0, check_forgetting=False,
        check_gain=False,  # equal counts (6, 6): the gain guard would drop the weights
    )  # fmt: skip
    record = adapt.adapt_model([tomo], tmp_path / "a", config=config)
    net, card = load_model(str(tmp_path / "a"))  # loadable: sha256 matches the weights
    assert card.extra["adaptation"] == json.loads(json.dumps(record, default=str))
    assert card.sha256 != read_card(resolve_model("default")).sha256
    assert record["base_model"]["sha256"] == read_card(resolve_model("default")).sha256
    assert [r["pseudo_labels"] for r in record["rounds"]] == [6, 6]
    assert "no ground truth" in card.description and "round 2: 6" in card.description
    with pytest.raises(OutputExistsError):
        adapt.adapt_model([tomo], tmp_path / "a", config=config)
    adapt.adapt_model([tomo], tmp_path / "b", config=config)
    assert read_card(tmp_path / "b" / "model.json").sha256 == card.sha256  # same seed


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory) -> Path:
    from synapseg.simulate import simulate_tomogram
    from synapseg.simulate.writer import write_simulation

    folder = tmp_path_factory.mktemp("adapt_tomo")
    result = simulate_tomogram(shape=(48, 64, 64), voxel_size_nm=1.8, seed=7)
    write_simulation(folder, result)
    return folder / "tomogram.mrc"


def _adapt(tomogram: Path, out: Path, *extra: str):
    args = ["-q", "adapt", str(tomogram), "-o", str(out), "--steps", "2", "--rounds", "1",
            "--no-check-forgetting"]  # fmt: skip
    return CliRunner().invoke(app, [*args, "--seed", "3", *extra])


@pytest.mark.slow
def test_adapt_cli_end_to_end(tomogram, tmp_path):
    """The real pipeline pseudo-labels a simulated tomogram (about 2 min on a loaded 2-core
    machine: the default model's minimum tile is 208 voxels)."""
    from synapseg.model.registry import load_model, read_card, resolve_model

    first = _adapt(tomogram, tmp_path / "a", "--min-confidence", "0.5")
    assert first.exit_code == 0, first.output
    net, card = load_model(str(tmp_path / "a"))
    base = read_card(resolve_model("default"))
    record = card.extra["adaptation"]
    assert record["statement"] == STATEMENT and STATEMENT in card.description
    assert record["base_model"]["sha256"] == base.sha256
    assert record["tomograms"] == [str(tomogram.resolve())]
    assert record["config"]["high_confidence"] == 0.5 and record["config"]["steps"] == 2
    n = record["rounds"][0]["pseudo_labels"]
    assert n > 0
    labels = pd.read_csv(tmp_path / "a" / "pseudo_labels" / "round1" / "00_adapt_tomo0_tomogram"
                         / "vesicles.csv", comment="#")  # fmt: skip
    assert len(labels) == n and (labels["confidence"] >= 0.5).all()
    assert card.sha256 != base.sha256  # the weights changed

    again = _adapt(tomogram, tmp_path / "a", "--min-confidence", "0.5")
    assert again.exit_code == 2 and "--overwrite" in again.output

    second = _adapt(tomogram, tmp_path / "b", "--min-confidence", "0.5")
    assert second.exit_code == 0, second.output
    card_b = json.loads((tmp_path / "b" / "model.json").read_text())
    assert card_b["sha256"] == card.sha256  # same seed, same weights

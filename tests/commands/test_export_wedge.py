"""``export`` fits hand-placed points with the wedge ``segment`` would use."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

import synapseg.post.seeds as seeds_mod
from synapseg.cli import app
from synapseg.io.volume_writer import write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram


def _run(tmp_path, monkeypatch, tilt_range, *extra):
    sim = simulate_tomogram(
        SimulationParams(shape=(48, 96, 96), seed=5, n_vesicles=4, tilt_range_deg=tilt_range)
    )
    tomo = write_volume(tmp_path / "tomo.mrc", sim.tomogram, 1.68)
    rows = sim.vesicles[["center_z_px", "center_y_px", "center_x_px"]].round(0)
    src = tmp_path / "points.csv"
    pd.DataFrame(rows).to_csv(src, index=False)  # centers only: all hand-placed
    seen = []
    real = seeds_mod.refine_hand_placed

    def spy(*args, **kwargs):
        seen.append(kwargs["sphere_params"])
        return real(*args, **kwargs)

    monkeypatch.setattr(seeds_mod, "refine_hand_placed", spy)
    res = CliRunner().invoke(
        app, ["export", str(src), "-t", str(tomo), "-o", str(tmp_path / "o"), *extra]
    )
    assert res.exit_code == 0, res.output
    return seen[0]


def test_hand_placed_points_use_the_estimated_wedge(tmp_path, monkeypatch):
    params = _run(tmp_path, monkeypatch, 45.0)
    assert abs(params.tilt_range_deg - 45.0) < 5.0  # estimated from the data, not ±60°
    assert params.tilt_axis == "y"


def test_given_wedge_wins(tmp_path, monkeypatch):
    params = _run(tmp_path, monkeypatch, 45.0, "--tilt-range", "60", "--tilt-axis", "x")
    assert params.tilt_range_deg == 60.0 and params.tilt_axis == "x"

"""``SimulationParams.microtubule_tilt_deg``: steep microtubules on demand, the default draw
untouched (the committed training-data hashes pin it byte for byte)."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.world import _tilted

SHAPE = (40, 96, 96)


def _tilt_deg(direction) -> float:
    return float(np.degrees(np.arcsin(abs(direction[0]))))


def test_tilt_law_spans_the_range_and_keeps_the_azimuth():
    rng = np.random.default_rng(20261271)
    draws = rng.normal(size=(4000, 3)) * np.array([0.15, 1.0, 1.0])
    out = np.array([_tilted(d, (0.0, 60.0)) for d in draws])
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    tilts = np.degrees(np.arcsin(np.abs(out[:, 0])))
    assert tilts.min() >= 0 and tilts.max() <= 60.0 + 1e-9
    counts, _ = np.histogram(tilts, bins=6, range=(0, 60))  # uniform in 0..60
    assert counts.min() > 0.8 * len(draws) / 6
    assert np.all(np.sign(out[:, 0]) == np.sign(draws[:, 0]))
    az_in, az_out = np.arctan2(draws[:, 1], draws[:, 2]), np.arctan2(out[:, 1], out[:, 2])
    assert np.allclose(az_in, az_out)
    # the default law (z component x 0.15) almost never gives such steep axes
    default = draws / np.linalg.norm(draws, axis=1, keepdims=True)
    assert np.mean(np.degrees(np.arcsin(np.abs(default[:, 0]))) > 30) < 0.05
    assert np.mean(tilts > 30) > 0.45


def test_steep_microtubules_in_a_scene_only_change_their_axes():
    base = {"shape": SHAPE, "n_vesicles": 0, "n_microtubules": 3, "distractors": False,
            "filaments": False, "plasma_membrane": False, "cleft": False, "seed": 5}  # fmt: skip
    flat = simulate_tomogram(SimulationParams(**base))
    steep = simulate_tomogram(SimulationParams(**base, microtubule_tilt_deg=(40.0, 60.0)))
    for a, b in zip(flat.info["microtubules"], steep.info["microtubules"]):
        assert a["point_px"] == b["point_px"]  # same random draws, other tilt law
        assert 40.0 - 1e-6 <= _tilt_deg(b["direction"]) <= 60.0 + 1e-6
        assert _tilt_deg(a["direction"]) < 40.0
    assert not np.array_equal(flat.phantom, steep.phantom)


@pytest.mark.parametrize("tilt", [(-5.0, 30.0), (50.0, 40.0), (0.0, 95.0)])
def test_microtubule_tilt_is_validated(tilt):
    with pytest.raises(InputError, match="microtubule tilt"):
        SimulationParams(microtubule_tilt_deg=tilt)


def test_microtubule_tilt_round_trips_through_dict():
    p = SimulationParams(microtubule_tilt_deg=(0.0, 60.0))
    assert SimulationParams.from_dict(p.to_dict()) == p
    assert SimulationParams().microtubule_tilt_deg is None

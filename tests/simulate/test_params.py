import json

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.simulate import SimulationParams


def test_tilt_angles_cover_the_range_symmetrically():
    angles = SimulationParams(tilt_range_deg=60, tilt_step_deg=2).tilt_angles_deg
    assert len(angles) == 61
    assert angles[0] == -60 and angles[-1] == 60 and 0 in angles


def test_round_trip_through_json():
    p = SimulationParams(shape=(32, 64, 96), seed=7, snr=None, radius_range_nm=(16, 28))
    again = SimulationParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_unknown_keys_are_rejected():
    with pytest.raises(InputError, match="unknown"):
        SimulationParams.from_dict({"shape": [8, 8, 8], "colour": "blue"})


@pytest.mark.parametrize(
    "change",
    [
        {"tilt_range_deg": 95},
        {"tilt_step_deg": 0},
        {"snr": -1.0},
        {"shape": (4, 64, 64)},
        {"voxel_size_nm": 0.0},
        {"crowding": 1.5},
        {"tilt_scheme": "spiral"},
        {"radius_range_nm": (30, 15)},
    ],
)
def test_invalid_values_raise_input_error(change):
    with pytest.raises(InputError):
        SimulationParams(**change)


def test_random_draws_are_realistic_and_reproducible():
    draws = [SimulationParams.random(np.random.default_rng(i)) for i in range(30)]
    assert all(0.8 <= d.voxel_size_nm <= 2.2 for d in draws)
    assert all(40 <= d.tilt_range_deg <= 70 for d in draws)
    assert all(d.snr is not None and d.snr > 0 for d in draws)
    assert len({d.seed for d in draws}) == 30
    assert SimulationParams.random(5) == SimulationParams.random(5)
    fixed = SimulationParams.random(1, shape=(32, 64, 64), snr=None)
    assert fixed.shape == (32, 64, 64) and fixed.snr is None

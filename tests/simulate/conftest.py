"""Fixtures of the simulator tests: small simulations, built once per session."""

from __future__ import annotations

import pytest

from synapseg.simulate import SimulationParams, simulate_tomogram

SMALL = SimulationParams(shape=(48, 128, 128), voxel_size_nm=1.68, seed=3)


@pytest.fixture(scope="session")
def small_params() -> SimulationParams:
    return SMALL


@pytest.fixture(scope="session")
def noisy(small_params):
    return simulate_tomogram(small_params)


@pytest.fixture(scope="session")
def noise_free(small_params):
    return simulate_tomogram(small_params, snr=None)

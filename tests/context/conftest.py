"""Small simulated synapses (phantoms only: exact membranes and vesicles) for the context."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.simulate import SimulationParams
from synapseg.simulate.context import active_zone_truth
from synapseg.simulate.phantom import build_phantom

SHAPE = (48, 192, 192)
VOXEL_NM = 1.68


def phantom(seed: int, **overrides):
    """The phantom, with ``truth``: its vesicle table plus the true AZ columns."""
    params = SimulationParams(shape=SHAPE, voxel_size_nm=VOXEL_NM, seed=seed).replace(**overrides)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    ph = build_phantom(params, rng)
    ph.truth = active_zone_truth(ph.vesicles, ph.info)
    return ph


def truth_probabilities(membrane_labels: np.ndarray) -> np.ndarray:
    """A perfect membrane map: 255 on every non-vesicle membrane class."""
    return np.where(np.isin(membrane_labels, [1, 3, 4]), 255, 0).astype(np.uint8)


@pytest.fixture(scope="session")
def synapse():
    """A synapse with a cleft (an active zone)."""
    return phantom(21)


@pytest.fixture(scope="session")
def no_cleft():
    """Plasma membrane but no cleft: no active zone."""
    return phantom(22, cleft=False)


@pytest.fixture(scope="session")
def synapse_context(synapse):
    from synapseg.context import analyse_context

    return analyse_context(truth_probabilities(synapse.membrane_labels), synapse.vesicles, VOXEL_NM)

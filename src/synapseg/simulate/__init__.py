"""Synthetic synapse tomograms with exact ground truth (see docs/simulation.md).

>>> from synapseg.simulate import SimulationParams, simulate_tomogram  # doctest: +SKIP
>>> result = simulate_tomogram(SimulationParams(shape=(64, 128, 128), seed=0))  # doctest: +SKIP
"""

import sys as _sys
import types as _types

from synapseg.simulate.measure import vesicle_contrast
from synapseg.simulate.params import DEFAULT_SNR, SimulationParams
from synapseg.simulate.phantom import MEMBRANE_CLASSES
from synapseg.simulate.sample import sample_path
from synapseg.simulate.simulator import SimulationResult, simulate_tomogram
from synapseg.simulate.writer import write_simulation

__all__ = [
    "DEFAULT_SNR",
    "MEMBRANE_CLASSES",
    "SimulationParams",
    "SimulationResult",
    "sample_path",
    "simulate_tomogram",
    "vesicle_contrast",
    "write_simulation",
]


class _CallableModule(_types.ModuleType):
    """``synapseg.simulate(...)`` is :func:`simulate_tomogram` (the package stays a package)."""

    def __call__(self, *args: object, **kwargs: object) -> SimulationResult:
        return simulate_tomogram(*args, **kwargs)  # type: ignore[arg-type]


_sys.modules[__name__].__class__ = _CallableModule

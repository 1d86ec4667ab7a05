"""The Examples in the public API's docstrings run (and stay true)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "synapseg.core.units",
    "synapseg.core.grid",
    "synapseg.core.stages",
    "synapseg.core.segment",
    "synapseg._lazy",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no Examples"
    assert result.failed == 0


def test_public_api_is_lazy_and_complete():
    import synapseg

    assert set(synapseg.__all__) >= {"segment", "Segmentation", "Grid", "read_volume", "simulate"}
    for name in synapseg.__all__:
        assert getattr(synapseg, name) is not None
    for package in ("core", "io", "infer", "model", "post", "train", "simulate", "specimen"):
        module = importlib.import_module(f"synapseg.{package}")
        assert module.__all__, package
        for name in module.__all__:
            assert getattr(module, name) is not None, f"synapseg.{package}.{name}"


def test_simulate_stays_callable_after_its_package_is_imported():
    """Importing synapseg.simulate binds the package to synapseg.simulate: it must still be
    the function of the API (regression: the walkthrough failed after other tests)."""
    import synapseg
    import synapseg.simulate  # noqa: F401

    result = synapseg.simulate(shape=(8, 16, 16), seed=1, n_vesicles=1)
    assert result.tomogram.shape == (8, 16, 16)


def test_import_synapseg_stays_light():
    import subprocess
    import sys

    code = "import sys, synapseg; print(sorted({'numpy', 'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
